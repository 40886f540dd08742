"""Named CycleGAN settings, one line per value with its unit and why (airbench's `hyp` table). Measurements and
their history: benchmarks/README.md ("Preset history"). Flags given beside --preset override these values."""

PRESETS: dict[str, dict] = {
    # the reference's defaults (junyanz/pytorch-CycleGAN-and-pix2pix)
    "reference": dict(
        load_size=286, crop_size=256,   # px: resize the shorter side, then random crop
        generator="resnet_9blocks", ngf=64, ndf=64,
        batch_size=1,
        epochs=100.0, epochs_decay=100.0,  # epochs at full LR, then linear decay to 0
    ),
    # sneaker <-> ankle boot in under 5 minutes on 2 CPU cores (benchmarks/cyclegan_cpu.py, three seeds)
    "fashion-mnist-shoes": dict(
        data="fashion-mnist:sneaker,ankle-boot", load_size=28, crop_size=28,
        flip=False,             # 99.9% of the shoes point one way: mirrors only widen what the nets must learn
        identity=0.0,           # for two shapes in one grey palette it holds the source shape back
        generator="resnet_6blocks",
        blocks=3,               # residual blocks: twice the iterations of 6 in about the same time
        ngf=32, ndf=32,
        batch_size=4,           # more, smaller updates than 8 in the same time
        cycle_decoder=8.0,      # the reconstructing generator gets 8x the cycle gradient (README, CycleGAN)
        lambda_a=5.0,           # A -> B -> A cycle weight
        lambda_b=12.0,          # B -> A -> B cycle weight
        lr=3e-4,                # Adam
        epochs=0.8, epochs_decay=1.8,  # 3858 iterations of batch 4
        workers=0,              # decoding 28 px images costs less than a worker's hand-off
        log_every=50, sample_every=100, checkpoint_every=100,  # iterations
    ),
    # the default for images up to 64 px when no --preset is given (config.default_preset sets load/crop to the
    # images' size); one recipe for every pair: benchmarks/cyclegan_cpu_pairs.py measures it on six class pairs
    "small-images": dict(
        load_size=28, crop_size=28,  # px: Fashion-MNIST's; with no --preset they follow the images
        flip=False,             # mirrored images only widen what the nets must learn in a short run
        identity=0.0,           # the identity loss holds the source shape back when the two domains share a palette
        generator="resnet_6blocks",
        blocks=3,               # residual blocks: at 7 x 7 features three already see the whole image
        ngf=24, ndf=32,         # 96 channels at 7 x 7 (4,704 numbers for a 784-pixel image): a step costs 0.79x 32's,
                                # spent on 1.26x the iterations (trouser <-> bag seed 1: bag -> trouser 95.7 -> 96.7%)
        d_layers=2,             # a 5 x 5 map of 34 px patches at 28 px; three stride-2 layers judge the whole image at
                                # once through 3 x 3 and 2 x 2 instance norms (config.patch_layers sets it by size)
        input_norm=False,       # the generators see their input's contrast (a bag's brightness survives its trouser)
        padding="zero",         # convs pad themselves after the first: about 13% more images/s in bf16 on 2 CPU cores,
                                # spent on 11% more iterations (bag cycle 0.104 -> 0.103, sandal -> sneaker 94.4 -> 95.0%)
        batch_size=16,          # bf16 on AMX: about 100 images/s at 16, 79 at 8, 48 at 4 (2 cores)
        channels_last=True,     # about 5% faster on the CPU too
        cycle_decoder=4.0,      # the reconstructing generator gets 4x the cycle gradient: at 8 g_ab, the boot's
                                # rebuilder, translated bags to boots judged 92.6% (98.5% at 4, the same bag cycle)
        lambda_a=10.0, lambda_b=10.0,  # the reference's cycle weights as the start ...
        cycle_target=0.09,      # ... then each follows its own cycle error towards 0.09 (held-out cycles came back up
                                # to 0.004 above the training batches'), down to 1/10 (an easy cycle frees its
        cycle_span=10.0,        # translators) and up to 10x (a bag needs about 100 to come back within 0.1 through a
        cycle_span_down=10.0,   # trouser or a boot; 140-200 cost 4-6 points judged; benchmarks/README.md)
        cycle_fall=4.0,         # weights fall 4x faster than they rise: every cycle starts far above any target, so
                                # every weight climbs at first (a boot's to 25-32); boot -> sneaker 95.4% -> 98.0%
        lr=4e-4,                # Adam (6e-4 gave the same cycle errors)
        epochs=2.27, epochs_decay=5.05,  # epochs of max(|A|, |B|) images: 2,716 iterations for 6000-image classes
        precision="fast",       # bf16 where the CPU or GPU multiplies it in hardware, else fp32
        workers=0,              # decoding small images costs less than a worker's hand-off
        log_every=50, sample_every=250, checkpoint_every=250,  # iterations
    ),
    # the GPU benchmark's settings: reference nets at 256 px
    "gpu-256": dict(load_size=286, crop_size=256, generator="resnet_9blocks", ngf=64, ndf=64, batch_size=4,
                    precision="bf16", channels_last=True, workers=8, epochs=100.0, epochs_decay=100.0),
}
