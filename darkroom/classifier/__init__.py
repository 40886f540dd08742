"""The classifier task: train (darkroom.classifier.train), evaluate and predict (predict), lr-find (lr_find).

Public entry points (benchmarks and other layers use these names only):"""
from darkroom.classifier.config import ClassifierConfig
from darkroom.classifier.lr_find import lr_find
from darkroom.classifier.predict import evaluate, evaluate_run, load_run, predict_files
from darkroom.classifier.presets import BUDGET_PRESETS, PRESETS, RECORD_PRESET
from darkroom.classifier.train import (build_model, build_optimizer, load_data, lr_momentum_at, run, set_schedule,
                                       train_step)

CONFIG = ClassifierConfig
__all__ = ["CONFIG", "ClassifierConfig", "PRESETS", "BUDGET_PRESETS", "RECORD_PRESET", "run", "load_data", "build_model", "build_optimizer",
           "lr_momentum_at", "set_schedule", "train_step", "evaluate", "evaluate_run", "load_run", "predict_files", "lr_find"]
