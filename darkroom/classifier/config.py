"""The classifier's settings: one frozen dataclass, a help string per field (cleanrl style); `--flag` per field.

    darkroom train classifier --help
"""
from __future__ import annotations

from dataclasses import dataclass

from darkroom import precision
from darkroom.config import option, validate
from darkroom.nets import CLASSIFIERS


@dataclass(frozen=True)
class ClassifierConfig:
    data: str = option("fashion-mnist", "data spec: fashion-mnist, mnist, cifar10, a class folder or a .csv list")
    data_root: str | None = option(None, "folder holding the data files (else $DARKROOM_DATA, the cache, the Debian path)")
    sample: float = option(1.0, "fraction of the training set to use, for quick experiments", above=0, high=1)
    test_sample: float = option(1.0, "fraction of the test set to evaluate on, for quick experiments", above=0, high=1)
    image_size: int | None = option(None, "resize folder/CSV images to this square size", low=8)
    stream: str = option("auto", "folders and .csv lists: stream them from disk through DataLoader workers (always), "
                         "decode them into memory (never), or auto: stream when the decoded set would take over a "
                         "quarter of the free memory (RAM, and GPU memory on CUDA)", choices=("auto", "always", "never"))
    workers: int = option(4, "DataLoader workers when streaming (0 = in the training process; at most the usable cores)", low=0)
    on_bad_image: str = option("fail", "folders and .csv lists: an unreadable image file stops the run naming it "
                               "(fail), or is left out, named in the log and counted as skipped_images (skip)",
                               choices=("fail", "skip"))
    arch: str = option("cpunet", "net: " + ", ".join(CLASSIFIERS), choices=tuple(CLASSIFIERS))
    epochs: float = option(5.0, "epochs to train (fractions allowed: a fixed step budget)", above=0)
    batch_size: int = option(256, "global batch size (split over ranks)", low=1)
    optimizer: str = option("sgd", "sgd (momentum, optionally Nesterov) or adamw", choices=("sgd", "adamw"))
    lr: float = option(0.4, "peak learning rate", above=0)
    schedule: str = option("one-cycle", "one-cycle (fast.ai), linear (warm-up then linear decay) or cosine",
                           choices=("one-cycle", "linear", "cosine"))
    div: float = option(20.0, "one-cycle: start/end LR is lr/div", above=0)
    pct: float = option(20.0, "one-cycle: percent of steps in the final annealing phase", low=0, high=100)
    mom_max: float = option(0.95, "one-cycle: momentum at the start and end", low=0, high=1)
    mom_min: float = option(0.85, "one-cycle: momentum at the LR peak", low=0, high=1)
    momentum: float = option(0.9, "momentum for the linear and cosine schedules", low=0, high=1)
    warmup: float = option(0.2, "linear/cosine: warm-up fraction of steps", low=0, high=1)
    nesterov: bool = option(True, "Nesterov momentum (SGD)")
    weight_decay: float = option(5e-4, "weight decay", low=0)
    decoupled_wd: bool = option(False, "decoupled weight decay (AdamW style) instead of L2 added to the gradient")
    exempt_norm_bias: bool = option(True, "no weight decay on norm weights and biases")
    bias_lr_scale: float = option(1.0, "learning-rate multiplier for biases (airbench uses 64 for BN biases)", above=0)
    label_smoothing: float = option(0.0, "label smoothing (arXiv:1512.00567)", low=0, high=1)
    ema: float = option(0.0, "EMA decay of the weights used for evaluation (0 = off)", low=0, high=1)
    progressive: str = option("", "progressive resizing (fast.ai's DAWNBench): SIZE:EPOCHS[,SIZE:EPOCHS...] trains at "
                                  "SIZE px until epoch EPOCHS, then at full size; evaluation is always at full size")
    pad: int = option(2, "reflection padding before the random crop (0 = no crop)", low=0)
    flip: bool = option(True, "random horizontal flips (turn off where a flip changes the label)")
    alternating_flip: bool = option(False, "airbench's alternating flip: each image flipped every other epoch")
    tta: str = option("flip", "test-time augmentation: none, flip, or multi (flip and 1-pixel shifts)",
                      choices=("none", "flip", "multi"))
    whiten: bool = option(True, "initialise a 2x2 whitening stem from the data (nets that have one)")
    precision: str = option("auto", "auto (bf16 on GPU, fp32 on CPU), fp32, bf16 or fp16 (dynamic loss scaling)",
                            choices=precision.PRECISIONS)
    channels_last: bool = option(False, "channels_last memory format (faster on recent GPUs, and ~1.3x for the CPU "
                                     "presets' nets on AVX2 CPUs)")
    compile: bool = option(False, "torch.compile the net")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")
    processes: int = option(1, "CPU: train as N data-parallel processes on this machine (gloo), each with its share "
                               "of the cores (darknet-small: 1.2x faster on 2 cores); ignored on GPUs and under torchrun", low=1)
    seed: int = option(0, "random seed")
    deterministic: bool = option(False, "deterministic algorithms (exact resume checks)")
    checkpoint_every: int = option(0, "also checkpoint every N steps (0 = at each epoch end only)", low=0)
    on_nan: str = option("stop", "non-finite loss: stop (last good checkpoint kept) or skip the step and count",
                         choices=("stop", "skip"))
    out: str | None = option(None, "run folder (default runs/classifier-<time>)")
    resume: bool = option(False, "continue the run in --out from its last checkpoint")
    quiet: bool = option(False, "no progress bar")

    def __post_init__(self) -> None:
        validate(self)  # every field's type, choices and bounds (config.option)


# settings a --resume may change: both data paths make the same batches (the checkpoint's mean and std are kept);
# --processes too: the global batches are the same (only the norm layers' per-rank statistics differ)
RESUME_MAY_CHANGE = ("stream", "workers", "processes")
