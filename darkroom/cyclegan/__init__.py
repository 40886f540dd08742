"""The CycleGAN task: train (darkroom.cyclegan.train), translate folders of images of any size (translate).

Public entry points (benchmarks and other layers use these names only):"""
from darkroom.cyclegan.config import CycleGANConfig, default_preset
from darkroom.cyclegan.losses import LOSS_TERMS, CycleGANNets, GeneratorPair, ImagePool, LossWeights, train_step
from darkroom.cyclegan.nets import build_generator, build_nets
from darkroom.cyclegan.presets import PRESETS
from darkroom.cyclegan.records import to_input
from darkroom.cyclegan.train import lr_factor, run
from darkroom.cyclegan.translate import load_generators, translate_folder, translate_images

CONFIG = CycleGANConfig
__all__ = ["CONFIG", "CycleGANConfig", "PRESETS", "default_preset", "run", "build_nets", "build_generator", "train_step", "lr_factor",
           "CycleGANNets", "GeneratorPair", "ImagePool", "LossWeights", "LOSS_TERMS", "load_generators",
           "translate_folder", "translate_images", "to_input"]
