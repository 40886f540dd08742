"""darkroom: fast classifiers, Wasserstein GANs, CycleGAN and honest evaluation (fast.ai 2018 lesson 12)."""
__version__ = "0.1.0"
