"""Named GAN settings, one line per value with its unit and why (airbench's `hyp` table). Measurements and their
history: benchmarks/README.md ("Preset history"). Flags given beside --preset override these values."""

PRESETS: dict[str, dict] = {
    # CPU preset: <= 10 minutes on 2 cores for Fashion-MNIST (benchmarks/gan_cpu.py)
    "fashion-mnist-cpu": dict(
        data="fashion-mnist", image_size=28, loss="wgan-gp",
        nz=64,                  # noise dimension
        ngf=48,                 # generator width: learns faster per second than 32
        ndf=24,                 # critic width: the critic runs ~87% of the arithmetic, so it is the narrower net
        n_extra_layers=0,
        batch_size=32,          # more, smaller updates: iterations matter most at this budget
        iterations=2200,        # generator iterations (the time cap usually ends the run first)
        max_minutes=9.5,        # minutes of training, then checkpoint and stop
        lr=2e-4,                # both nets; twice the paper's (lower class-histogram KL at equal time)
        beta1=0.5, beta2=0.9,   # Adam, as the WGAN-GP code's MNIST and CIFAR scripts
        sample_every=250, log_every=50, checkpoint_every=250,  # generator iterations
    ),
    # the best CPU preset for Fashion-MNIST (benchmarks/gan_cpu.py --only best): DCGAN's non-saturating loss, one critic
    # step per generator step, bf16 where the CPU multiplies it, and a generator EMA. In 60 s on 2 AMX
    # cores it made 2,133 iterations to FID 92 and 10/10 classes where SNGAN's hinge + spectral norm + TTUR made
    # 2,357 to FID 442 and 6/10 (benchmarks/README.md "Preset history")
    "fashion-mnist-dcgan-cpu": dict(
        data="fashion-mnist", image_size=28, loss="dcgan",
        nz=64, ngf=48, ndf=24, n_extra_layers=0,  # fashion-mnist-cpu's nets
        batch_size=32,
        iterations=17_000,      # generator iterations: about 8.5 minutes at 2,000 a minute (bf16, 2 AMX cores)
        max_minutes=9.5,        # a slower CPU stops here, before the decay ends
        optimizer="adam", lr=2e-4, beta1=0.5, beta2=0.999,  # DCGAN's Adam (arXiv:1511.06434)
        lr_decay="none",        # constant: 2,000 iterations with a linear decay to 0 scored FID 136 where 3,000 constant
                                # scored 68 (both with the EMA); the EMA does the averaging
        ema=0.999,              # the generator's moving average draws the samples (StyleGAN2-ADA) ...
        ema_rampup=0.05,        # ... with its half-life capped at 5% of the iterations so far
        precision="fast",       # bf16 where the CPU or GPU multiplies it in hardware (2x the iterations on AMX)
        sample_every=1000, log_every=100, checkpoint_every=1000,  # generator iterations
    ),
    # lesson 12's notebook: 64 px, its nets (conv -> LeakyReLU -> BN, one extra layer); add --load-size 128 for its
    # 128 px resize and random 64 px crop of LSUN
    "lesson": dict(
        image_size=64, loss="wgan", arch="wgan", nz=100, ngf=64, ndf=64, n_extra_layers=1,
        optimizer="rmsprop", lr=1e-4,
        clip=0.01,              # weight clipping bound c
        n_critic=5, warmup_critic="on",  # 100 critic steps early and every 500th generator iteration
        batch_size=64,
    ),
    # the WGAN paper (arXiv:1701.07875, algorithm 1)
    "wgan": dict(image_size=64, loss="wgan", arch="wgan", optimizer="rmsprop", lr=5e-5, clip=0.01, n_critic=5,
                 warmup_critic="on", batch_size=64),
    # WGAN-GP (arXiv:1704.00028, algorithm 1): no BatchNorm in the critic
    "wgan-gp": dict(image_size=64, loss="wgan-gp", arch="wgan-gp", optimizer="adam", lr=1e-4, beta1=0.0, beta2=0.9,
                    gp_weight=10.0, n_critic=5, batch_size=64),
    # DCGAN (arXiv:1511.06434): one D step per G step, non-saturating loss
    "dcgan": dict(image_size=64, loss="dcgan", arch="dcgan", n_extra_layers=0, optimizer="adam", lr=2e-4,
                  beta1=0.5, beta2=0.999, n_critic=1, batch_size=64),
    # LSUN bedrooms on GPUs (pass --data path/to/bedroom_train_lmdb): WGAN-GP at 64 px, streamed
    "lsun-64": dict(image_size=64, load_size=64, channels=3, loss="wgan-gp", iterations=100_000, batch_size=64,
                    workers=8, stream="always", on_bad_image="skip", sample_every=1000, log_every=100,
                    checkpoint_every=2000),
    # 2-D toys on PacGAN's mixtures and protocol (benchmarks/toy_cpu.py); --data toy:grid25 for the 25-Gaussian grid.
    # WGAN-GP's loss and toy lambda; the schedule measured on the grid across seeds (benchmarks/README.md "Toys")
    "toy": dict(
        data="toy:ring8", loss="wgan-gp",
        nz=2,                   # noise dimension of WGAN-GP's and PacGAN's toys
        batch_size=100,         # PacGAN's batch
        iterations=12_000,      # about 75 s on 2 CPU cores at 3 critic steps (WGAN-GP trained 100k at 5)
        n_critic=3,             # 5 reached 24/25 modes at 0.53 high quality in 5,000 iterations where 3 reached 25 and 0.82
        lr=1e-3, lr_decay="linear",  # 10x the paper's 1e-4, decayed to 0: the decay is what sharpens the modes
        gp_weight=0.1,          # "smaller lambda seems to help for toy tasks" (WGAN-GP sec. 5.1)
        beta1=0.5, beta2=0.9,
        n_samples=2500,         # PacGAN's evaluation count: fixed-noise points per scatter and mode count
        sample_every=2500, log_every=500, checkpoint_every=2500,
    ),
    # the GPU benchmark: 64x64 WGAN-GP on Fashion-MNIST upscaled to 64 (make bench-gpu)
    "gpu-64": dict(data="fashion-mnist", image_size=64, loss="wgan-gp", nz=100, ngf=64, ndf=64, n_extra_layers=1,
                   batch_size=64, iterations=500, sample_every=500, log_every=50, checkpoint_every=500),
}
