"""The GAN task: train (darkroom.gan.train: WGAN, WGAN-GP, DCGAN, hinge on DCGAN nets and the 2-D toys), sample.

Public entry points (benchmarks and other layers use these names only):"""
from darkroom.gan.config import LOSS_DEFAULTS, GanConfig, Resolved, resolve
from darkroom.gan.data import build_batches as build_image_batches
from darkroom.gan.presets import PRESETS
from darkroom.gan.sample import generate, interpolation_strip, load_generator, sample_grid
from darkroom.gan.train import Loop, build_batches, build_loop, build_nets, build_optimizer, data_settings, run

CONFIG = GanConfig
__all__ = ["CONFIG", "GanConfig", "PRESETS", "LOSS_DEFAULTS", "Resolved", "resolve", "run", "build_loop", "Loop",
           "build_nets", "build_optimizer", "build_batches", "build_image_batches", "data_settings", "generate",
           "interpolation_strip", "load_generator", "sample_grid"]
