"""Named classifier settings, one line per value with its unit and why (airbench's `hyp` table). Measurements and
their history: benchmarks/README.md. Flags given beside --preset override these values."""

PRESETS: dict[str, dict] = {
    # the built-in feature and judge network of `darkroom eval` (darkroom/evaluate/features.py): all at 28 px
    "fashion-mnist-cpunet": dict(
        arch="cpunet",          # small whitened net sized for 2 CPU cores
        epochs=5.0,             # epochs
        batch_size=256,         # images per step
        lr=0.4,                 # one-cycle peak LR (SGD, Nesterov)
        label_smoothing=0.1,    # fraction of target mass spread over all classes
        tta="flip",             # average the logits of the image and its mirror
        channels_last=True,     # faster convolutions on AVX2/AVX-512 CPUs
    ),
    # CPU speed preset: cpunet with its first 2 epochs at 20 px (about half the cost of those epochs)
    "fashion-mnist-cpu": dict(
        arch="cpunet", epochs=5.0, batch_size=256, lr=0.4, label_smoothing=0.1, tta="flip", channels_last=True,
        progressive="20:2",     # 20 px until epoch 2, then the full 28 px
    ),
    # the best accuracy for the time on CPU (benchmarks/classifier_cpu_pareto.py): one recipe for every budget, set
    # --epochs to the time you have (about 12 s an epoch on 2 AMX cores, 27 s where bf16 is not native)
    "fashion-mnist-fast": dict(
        arch="cpunet", epochs=10.0, batch_size=256, lr=0.4, label_smoothing=0.1, tta="flip", channels_last=True,
        precision="fast",       # bf16 autocast where the CPU multiplies bf16 in hardware: 2.2x the fp32 step on AMX
        pad=0,                  # no random crop: at 5 and 10 epochs it cost 0.3-0.8 points (flips stay)
    ),
    # the 300-second record on 2 CPU cores: fashion-mnist-fast for 16 epochs (about 195 s on 2 AMX cores)
    "fashion-mnist-record": dict(),  # filled below: fashion-mnist-fast with epochs=16.0
    # lesson 12's Darknet recipe: use_clr_beta (div 20, pct 20, momentum 0.95 -> 0.85), 30 epochs
    "darknet-lesson": dict(
        arch="darknet",         # Darknet([1, 2, 4, 6, 3])
        epochs=30.0, batch_size=256,
        lr=1.3,                 # one-cycle peak LR
        weight_decay=1e-4,      # coupled L2, on every parameter (fastai 0.7)
        div=20.0, pct=20.0,     # start/end LR lr/20; last 20% of steps anneal
        mom_max=0.95, mom_min=0.85,
        nesterov=False, exempt_norm_bias=False,
        pad=4,                  # px of reflection padding before the random crop
        tta="none",
    ),
    # the benchmark net of REFERENCE.md section 5 (Darknet [1, 2, 2], nf 16), as 2 local data-parallel ranks
    "darknet-small": dict(
        arch="darknet_small", epochs=2.0, batch_size=256, lr=0.4, pad=2, tta="none", channels_last=True,
        processes=2,            # one rank per core: small ops wait less at intra-op barriers
    ),
    # fast.ai's 1-GPU DAWNBench CIFAR-10 entry (2018, dawn_submit wrn_22: 94% in 404 s on one V100)
    "wrn_22-dawnbench": dict(
        arch="wrn_22", epochs=30.0,
        batch_size=512,         # images per step on one GPU
        lr=1.5,                 # one-cycle peak LR
        weight_decay=1e-4,      # coupled L2 on every parameter
        div=20.0, pct=20.0,     # use_clr_beta (20, 20, 0.95, 0.85)
        mom_max=0.95, mom_min=0.85, nesterov=False, exempt_norm_bias=False,
        pad=4, tta="none", channels_last=True,
    ),
    # fast.ai's 8-GPU DAWNBench CIFAR-10 entry (2018: 94% in 174 s on 8 V100): run it with torchrun --nproc_per_node=8
    "wrn_22-dawnbench-8gpu": dict(
        arch="wrn_22", epochs=40.0,
        batch_size=1024,        # 128 per GPU x 8 GPUs
        lr=2.0,                 # one-cycle peak LR
        weight_decay=2e-4,      # coupled L2 on every parameter
        div=50.0, pct=12.5,     # use_clr_beta (50, 12.5, 0.95, 0.85)
        mom_max=0.95, mom_min=0.85, nesterov=False, exempt_norm_bias=False,
        pad=4, tta="none", channels_last=True,
    ),
    # GPU speed preset in airbench94's spirit (whitening stem, dirac init, BN-bias LR x64, label smoothing 0.2,
    # alternating flip, multi-view TTA, warm-up + linear decay, Nesterov SGD, batch 1024); EMA stays off
    "fastnet-gpu": dict(
        arch="fastnet", epochs=10.0, batch_size=1024, optimizer="sgd",
        lr=0.2,                 # peak LR per step of mean loss
        schedule="linear", warmup=0.2,  # 20% of steps warm-up, then linear decay to 0
        momentum=0.85, nesterov=True, weight_decay=5e-4,
        bias_lr_scale=64.0,     # BN biases learn 64x faster (airbench)
        label_smoothing=0.2, alternating_flip=True,
        ema=0.0,                # off: no gain measured at this budget
        tta="multi",            # flip and 1-px shifts
        pad=2, channels_last=True,
    ),
    # KellerJordan/cifar10-airbench airbench94_muon.py (94.01% on CIFAR-10 in 2.59 s on an A100, n=200), technique for
    # technique; bf16 autocast over fp32 weights where airbench keeps fp16 weights (BatchNorm in fp32)
    "airbench94_muon": dict(
        data="cifar10",
        arch="fastnet",         # 2x2 whitening stem (2*C*2*2 channels), groups 64/256/256, dirac-initialised 3x3 convs
        epochs=8.0,             # epochs (airbench: ceil(8 * 25) = 200 steps on CIFAR-10)
        batch_size=2000,        # images per step
        optimizer="muon",       # Muon on the conv filters, Nesterov SGD on BN biases, stem bias and head
        muon_lr=0.24,           # Muon LR of the conv filters (each a step of the orthogonalised update)
        muon_momentum=0.6, muon_ns_steps=3,  # Muon momentum; Newton-Schulz steps per update
        muon_normalize=True,    # filter banks renormalised to norm sqrt(out channels) before each step
        nesterov=True,          # Nesterov momentum for both optimizers
        lr=0.053,               # SGD LR of the BN biases and the stem bias, per summed loss
        bias_lr_scale=1.0,      # (the biases are --lr's parameters here)
        head_lr=0.67,           # SGD LR of the head's weight, per summed loss
        momentum=0.85,          # SGD momentum, constant
        schedule="linear", warmup=0.0,  # LR x (1 - step / steps): linear decay to 0 from the first step
        weight_decay=0.0,
        step_decay=2e-6 * 2000,  # 2e-6 x batch of each SGD weight per step at its peak LR (airbench: wd / lr)
        exempt_norm_bias=False,  # ... on the biases too (the BN weights are frozen)
        loss_reduction="sum",   # summed cross-entropy
        label_smoothing=0.2,    # fraction of target mass spread over all classes
        logit_scale=1 / 256,    # logits = head(x) / 256, the head's weight starting at std 1
        freeze_norm_weight=True, norm_eps=1e-12,  # BN weights fixed at 1; fastnet's BN momentum 0.4 = airbench's 0.6
        whiten=True, freeze_stem=True,  # stem filters from 5,000 training images' patch covariance (eps 5e-4), fixed
        stem_bias_epochs=3.0,   # the stem's bias trains 3 epochs (LR 0.053 x (1 - step / 75) on CIFAR-10), then fixed
        pad=2, flip=True, alternating_flip=True,  # 2-px reflection translate; each image flipped every other epoch
        tta="weighted",         # 6 views: image and mirror 1/4 each, 1-px shifts both ways and their mirrors 1/8 each
        ema=0.0,
        channels_last=True,
        compile=True, compile_mode="max-autotune",  # airbench's model.compile(mode="max-autotune")
    ),
}
PRESETS["fashion-mnist-record"] = {**PRESETS["fashion-mnist-fast"], "epochs": 16.0}

# the time-accuracy front on 2 CPU cores (benchmarks/classifier_cpu_pareto.py): the preset for each epoch budget, and
# the 300-second record preset
BUDGET_PRESETS: dict[int, str] = {epochs: "fashion-mnist-fast" for epochs in (1, 2, 3, 5, 10, 16)}
RECORD_PRESET = "fashion-mnist-record"
