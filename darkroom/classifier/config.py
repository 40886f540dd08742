"""The classifier's settings: one frozen dataclass, a help string per field (cleanrl style); `--flag` per field.

    darkroom train classifier --help
"""
from __future__ import annotations

from dataclasses import dataclass

from darkroom import precision
from darkroom.config import option, validate
from darkroom.errors import UserError
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
    optimizer: str = option("sgd", "sgd (momentum, optionally Nesterov), adamw, or muon: Muon on the conv filters and "
                            "SGD (--momentum, --nesterov) on the rest (airbench94_muon)", choices=("sgd", "adamw", "muon"))
    lr: float = option(0.4, "peak learning rate (--optimizer muon: of the SGD-trained parameters)", above=0)
    muon_lr: float = option(0.24, "--optimizer muon: peak learning rate of the conv filters (airbench94_muon: 0.24)",
                            above=0)
    muon_momentum: float = option(0.6, "--optimizer muon: Muon's momentum (airbench94_muon: 0.6)", low=0, high=0.999)
    muon_ns_steps: int = option(3, "--optimizer muon: Newton-Schulz steps orthogonalising each update "
                                "(airbench94_muon: 3)", low=1)
    muon_normalize: bool = option(True, "--optimizer muon: rescale each filter bank to Frobenius norm sqrt(out "
                                  "channels) before its step, as airbench94_muon does (the step is then relative)")
    head_lr: float = option(0.0, "peak learning rate of the final Linear layer's weight (airbench94_muon: 0.67); "
                            "0 = --lr", low=0)
    schedule: str = option("one-cycle", "one-cycle (fast.ai), linear (warm-up then linear decay) or cosine",
                           choices=("one-cycle", "linear", "cosine"))
    div: float = option(20.0, "one-cycle: start/end LR is lr/div", above=0)
    pct: float = option(20.0, "one-cycle: percent of steps in the final annealing phase", low=0, high=100)
    mom_max: float = option(0.95, "one-cycle: momentum at the start and end", low=0, high=1)
    mom_min: float = option(0.85, "one-cycle: momentum at the LR peak", low=0, high=1)
    momentum: float = option(0.9, "momentum for the linear and cosine schedules", low=0, high=1)
    warmup: float = option(0.2, "linear/cosine: warm-up fraction of steps", low=0, high=1)
    nesterov: bool = option(True, "Nesterov momentum (SGD, and Muon under --optimizer muon)")
    weight_decay: float = option(5e-4, "weight decay", low=0)
    step_decay: float = option(0.0, "airbench94_muon's weight decay: the fraction of each decaying SGD weight removed "
                               "per step at its peak LR, falling with the LR (an L2 of step-decay / the group's peak "
                               "LR; airbench94_muon: 2e-6 x batch); 0 = off, else pass --weight-decay 0", low=0)
    decoupled_wd: bool = option(False, "decoupled weight decay (AdamW style) instead of L2 added to the gradient")
    exempt_norm_bias: bool = option(True, "no weight decay on norm weights and biases")
    bias_lr_scale: float = option(1.0, "learning-rate multiplier for biases (airbench uses 64 for BN biases)", above=0)
    label_smoothing: float = option(0.0, "label smoothing (arXiv:1512.00567)", low=0, high=1)
    loss_reduction: str = option("mean", "cross-entropy averaged over the batch (mean) or summed (sum, airbench94_muon: "
                                 "LRs are then per summed loss, batch-size times larger gradients)",
                                 choices=("mean", "sum"))
    logit_scale: float = option(0.0, "multiply the logits by this fixed factor, the head's weight starting at unit "
                                "standard deviation (airbench94_muon: 1/256, one over the head's width); 0 = the "
                                "net's own head", low=0)
    freeze_norm_weight: bool = option(False, "BatchNorm weights frozen at 1, only their biases train (airbench)")
    norm_eps: float | None = option(None, "BatchNorm epsilon (airbench94_muon: 1e-12; unset = PyTorch's 1e-5)",
                                    above=0)
    ema: float = option(0.0, "EMA decay of the weights used for evaluation (0 = off)", low=0, high=1)
    progressive: str = option("", "progressive resizing (fast.ai's DAWNBench): SIZE:EPOCHS[,SIZE:EPOCHS...] trains at "
                                  "SIZE px until epoch EPOCHS, then at full size; evaluation is always at full size")
    pad: int = option(2, "reflection padding before the random crop (0 = no crop)", low=0)
    flip: bool = option(True, "random horizontal flips (turn off where a flip changes the label)")
    alternating_flip: bool = option(False, "airbench's alternating flip: each image flipped every other epoch")
    tta: str = option("flip", "test-time augmentation: none, flip, multi (the image, 1-pixel shifts both ways and "
                      "their mirrors, 6 views averaged) or weighted (multi's views weighted as airbench94: image and "
                      "mirror 1/4 each, the 4 shifted views 1/8 each)", choices=("none", "flip", "multi", "weighted"))
    whiten: bool = option(True, "initialise a 2x2 whitening stem from the data (nets that have one)")
    freeze_stem: bool = option(False, "keep the 2x2 whitening stem's filters at their data-derived values (airbench)")
    stem_bias_epochs: float = option(0.0, "train the whitening stem's bias for only the first N epochs, its LR falling "
                                     "linearly from its peak to 0 over them whatever --schedule, then frozen "
                                     "(airbench94_muon: 3); 0 = trained with the rest", low=0)
    precision: str = option("auto", "auto (bf16 on GPU, fp32 on CPU), fast (bf16 where the device multiplies bf16 in hardware: GPUs, AMX or AVX512-BF16 CPUs; else fp32), fp32, bf16 or fp16 (dynamic loss scaling)",
                            choices=precision.PRECISIONS)
    channels_last: bool = option(False, "channels_last memory format (faster on recent GPUs, and ~1.3x for the CPU "
                                     "presets' nets on AVX2 CPUs)")
    compile: bool = option(False, "torch.compile the net")
    compile_mode: str = option("default", "--compile's mode: default, reduce-overhead (CUDA graphs), max-autotune "
                               "(autotuned kernels and CUDA graphs, a long first compile; airbench94_muon) or "
                               "max-autotune-no-cudagraphs",
                               choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"))
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
        if self.step_decay > 0 and self.weight_decay > 0:
            raise UserError(f"--step-decay {self.step_decay:g} and --weight-decay {self.weight_decay:g} are two forms "
                            "of one decay: pass --weight-decay 0 with --step-decay")


# settings a --resume may change: both data paths make the same batches (the checkpoint's mean and std are kept);
# --processes too: the global batches are the same (only the norm layers' per-rank statistics differ)
RESUME_MAY_CHANGE = ("stream", "workers", "processes")
