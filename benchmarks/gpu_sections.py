"""The sections of `make bench-gpu` (benchmarks/gpu.py runs them in order, each guarded and budgeted).

correctness: bf16/fp16 training steps finite and mostly taken, logits near fp32; classifier: time to 94% of the
airbench94_muon and fastnet-gpu presets vs airbench94; gan: WGAN-GP 64x64 iterations/s bf16+channels_last vs fp32;
cyclegan: 256x256 batch 1 and 8, bf16+channels_last and bf16 in the default format vs fp32 (dawnbench:
gpu_dawnbench.py).
Each takes (ctx, budget) and returns the path of the JSON it wrote; every JSON's settings carry float32_maths()
(an "fp32" side runs TF32 where those allow it). Under ctx.smoke: CPU, tiny sizes.
"""
from __future__ import annotations

import copy
import math
import traceback
import warnings
from pathlib import Path

import torch

from benchmarks import common
from darkroom import dist, precision
from darkroom.config import build

TARGET_ACCURACY = 0.94
MIN_TAKEN = 0.5  # fp16 checks: at least this share of optimizer steps not skipped by the GradScaler


def float32_maths() -> dict:
    """How torch runs float32 maths now: with TF32 allowed, "fp32" matmuls (cuBLAS) and convolutions (cuDNN) round
    their inputs to 10 mantissa bits on Ampere and later GPUs, so an fp32 baseline is not IEEE fp32."""
    import torch.backends.cuda
    import torch.backends.cudnn

    with warnings.catch_warnings():  # newer torch prefers fp32_precision and may warn on the allow_tf32 flags
        warnings.simplefilter("ignore")
        maths = {"cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
                 "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                 "float32_matmul_precision": torch.get_float32_matmul_precision()}
        for name, backend in (("cuda_matmul", torch.backends.cuda.matmul), ("cudnn", torch.backends.cudnn)):
            precision_value = getattr(backend, "fp32_precision", None)  # torch >= 2.9
            if precision_value is not None:
                maths[f"{name}_fp32_precision"] = str(precision_value)
    return maths


def with_maths(settings: dict) -> dict:
    return {**settings, "float32_maths": float32_maths()}


# ---------------------------------------------------------------------------------------------- builders
def classifier_values(ctx, preset: str = "fastnet-gpu", **overrides) -> dict:
    """A classifier preset on Fashion-MNIST; --smoke: a few CPU steps, uncompiled (inductor's CPU compile alone
    would take minutes)."""
    from darkroom import classifier

    values = {**classifier.PRESETS[preset], "data": "fashion-mnist", "data_root": ctx.data_root,
              "device": ctx.device, "quiet": True}
    if ctx.smoke:
        values.update(sample=0.002, test_sample=0.01, epochs=1.0, batch_size=32, compile=False, compile_mode="default")
    return {**values, **overrides}


def gan_loop(ctx, **overrides):
    """darkroom's GAN loop (gan.Loop) built as gan.run() builds it (gan.build_loop), for the gpu-64 preset."""
    from darkroom import gan

    values = {**gan.PRESETS["gpu-64"], "data_root": ctx.data_root, "device": ctx.device, "quiet": True}
    if ctx.smoke:
        values.update(image_size=16, ngf=8, ndf=8, nz=16, batch_size=8, sample=0.002, n_critic=2)
    cfg = build(gan.CONFIG, {**values, **overrides})
    device = torch.device(ctx.device)
    settings = gan.resolve(cfg)
    batches = gan.build_image_batches(gan.data_settings(cfg), cfg.batch_size, 0, 1, device)
    loop, _ = gan.build_loop(cfg, settings, dist.DistInfo(0, 1, 0, device), precision.resolve(cfg.precision, device),
                             batches)
    return loop, cfg


def gan_iteration(loop) -> list[dict]:
    """One generator iteration: n_critic critic steps, then one generator step (the stats, still on the device)."""
    stats = [loop.critic_step() for _ in range(loop.settings.n_critic)]
    return stats + [loop.generator_step()]


class CycleGANSide:
    """darkroom's CycleGAN iteration (cyclegan_losses.train_step) on fixed device-resident images."""

    def __init__(self, ctx, batch_size: int, **overrides) -> None:
        from darkroom import cyclegan
        from darkroom.cyclegan import CycleGANNets, GeneratorPair, ImagePool, LossWeights

        values = {**cyclegan.PRESETS["gpu-256"], "device": ctx.device, "quiet": True, "batch_size": batch_size}
        if ctx.smoke:
            values.update(load_size=32, crop_size=32, ngf=4, ndf=4, generator="resnet_6blocks")
        self.cfg = cfg = build(cyclegan.CONFIG, {**values, **overrides})
        self.device = torch.device(ctx.device)
        self.nets = cyclegan.build_nets(cfg, 3, 3, self.device)
        self.step_nets = CycleGANNets(GeneratorPair(self.nets["g_ab"], self.nets["g_ba"]), self.nets["d_a"], self.nets["d_b"])
        self.opt_g = torch.optim.Adam([*self.nets["g_ab"].parameters(), *self.nets["g_ba"].parameters()], lr=cfg.lr,
                                      betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam([*self.nets["d_a"].parameters(), *self.nets["d_b"].parameters()], lr=cfg.lr,
                                      betas=(cfg.beta1, cfg.beta2))
        self.precision = precision.resolve(cfg.precision, self.device)
        self.scaler = precision.make_scaler(self.precision, self.device)
        self.pools = (ImagePool(cfg.pool_size, seed=1), ImagePool(cfg.pool_size, seed=2))
        self.weights = LossWeights(cfg.lambda_a, cfg.lambda_b, cfg.identity, cfg.gan_loss)
        generator = torch.Generator().manual_seed(0)
        shape = (batch_size, 3, cfg.crop_size, cfg.crop_size)
        self.real_a, self.real_b = (cyclegan.to_input((torch.rand(shape, generator=generator) * 255).to(torch.uint8),
                                                      self.device, cfg.channels_last) for _ in range(2))

    def __call__(self) -> dict[str, float]:
        from darkroom.cyclegan import train_step

        losses, _ = train_step(self.step_nets, self.real_a, self.real_b, self.opt_g, self.opt_d, self.pools[0],
                               self.pools[1], self.weights, self.device, self.precision, self.scaler)
        return losses


def params_finite(*modules) -> bool:
    return all(bool(torch.isfinite(p).all()) for module in modules for p in module.parameters())


# ---------------------------------------------------------------------------------------------- correctness
def correctness(ctx, budget: common.Budget) -> Path:
    """bf16 and fp16 training steps stay finite (classifier, GAN, CycleGAN); bf16/fp16 logits match fp32."""
    checks = classifier_checks(ctx) + gan_checks(ctx) + cyclegan_checks(ctx)
    passed = sum(check["passed"] for check in checks)
    row = common.comparison_row(f"correctness: bf16/fp16 steps finite, logits match fp32 ({ctx.device})",
                                f"{passed}/{len(checks)} passed",
                                None, "", "fp32 reference",
                                note="; ".join(f"{c['name']} failed ({c.get('value')})" for c in checks if not c["passed"]))
    row["met"] = passed == len(checks)
    return common.write_result(ctx.name("gpu_correctness"), with_maths({"smoke": ctx.smoke, "min_taken": MIN_TAKEN}),
                               {"checks": checks, "passed": passed, "total": len(checks)}, rows=[row], device=ctx.device)


def classifier_checks(ctx) -> list[dict]:
    """fastnet-gpu's and airbench94_muon's training steps (the latter: Muon + SGD, summed loss, frozen weights)."""
    return [check for preset in ("fastnet-gpu", "airbench94_muon") for check in preset_checks(ctx, preset)]


def preset_checks(ctx, preset: str) -> list[dict]:
    from darkroom.nets.classifier import fastnet
    from darkroom import classifier
    from darkroom.classifier import recipe

    device = torch.device(ctx.device)
    cfg = build(classifier.CONFIG, classifier_values(ctx, preset, compile=False, compile_mode="default"))
    info = dist.DistInfo(0, 1, 0, device)
    torch.manual_seed(0)
    # --smoke: the preset's builder at tiny widths (CPU bf16/fp16 are emulated and slow)
    if ctx.smoke:
        net = recipe.configure_net(fastnet((8, 16, 16), 10, in_channels=1), cfg.norm_eps, cfg.logit_scale)
        recipe.prepare_for_training(net, cfg, True)
    else:
        net = classifier.build_model(cfg, 1, 10)
    model = precision.to_memory_format(net.to(device), cfg.channels_last)
    batch, steps = (8, 2) if ctx.smoke else (512, 8)
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    optimizer = classifier.build_optimizer(cfg, model)
    for step in range(steps):  # a few fp32 steps so the logits are not those of the initialisation
        classifier.set_schedule(cfg, optimizer, step, 2 * steps, steps)
        classifier.train_step(model, x, y, cfg, info, "fp32", optimizer, precision.make_scaler("fp32", device))
    model.eval()
    with torch.no_grad():
        reference = model(x).float()
    checks = []
    tolerances = {"bf16": 0.05, "fp16": 0.01}  # max |logit error| / max |logit|: bf16 keeps 8 bits, fp16 11
    for name, tolerance in tolerances.items():
        with torch.no_grad(), precision.autocast(device, name):
            logits = model(x).float()
        error = float((logits - reference).abs().max() / reference.abs().max().clamp_min(1e-12))
        agree = float((logits.argmax(1) == reference.argmax(1)).float().mean())
        checks.append({"name": f"classifier {preset} {name} logits vs fp32", "passed": error <= tolerance,
                       "value": error, "tolerance": tolerance, "argmax_agreement": agree})
        trained = copy.deepcopy(model).train()
        optimizer = classifier.build_optimizer(cfg, trained)
        scaler = precision.make_scaler(name, device)
        results = []
        for step in range(steps):
            classifier.set_schedule(cfg, optimizer, step, 2 * steps, steps)
            results.append(classifier.train_step(trained, x, y, cfg, info, name, optimizer, scaler))
        losses = [float(loss) for loss, _ in results]
        taken = sum(stepped for _, stepped in results) / len(results)
        ok = all(math.isfinite(loss) for loss in losses) and params_finite(trained) and taken >= MIN_TAKEN
        checks.append({"name": f"classifier {preset} {name} training steps finite", "passed": ok, "value": losses,
                       "taken_fraction": taken})
    return checks


def gan_checks(ctx) -> list[dict]:
    """fp16's dynamic loss scale starts at 2**16, where the penalty's scaled gradients overflow: those first critic
    steps are skipped and the scale backs off (as GradScaler intends). The check, over a fixed number of iterations:
    parameters stay finite, the last iteration's steps are taken with finite statistics, and at least MIN_TAKEN of
    all steps were taken (a run whose every step the GradScaler skipped has finite weights too: they never moved)."""
    checks = []
    for name in ("bf16", "fp16"):
        loop, _ = gan_loop(ctx, precision=name, batch_size=4 if ctx.smoke else 16, sample=0.002 if ctx.smoke else 0.05)
        iterations = [gan_iteration(loop) for _ in range(8)]
        steps = [stat for stats in iterations for stat in stats]
        skipped = sum("skipped" in stat for stat in steps)
        last = {key: float(value) for stat in iterations[-1] for key, value in stat.items()}
        earlier = sum(not math.isfinite(float(value)) for stats in iterations[:-1] for stat in stats for value in stat.values())
        taken = 1 - skipped / len(steps)
        ok = (all(math.isfinite(value) for value in last.values()) and "skipped" not in last
              and params_finite(loop.G, loop.D) and taken >= MIN_TAKEN)
        checks.append({"name": f"WGAN-GP {name} critic+generator steps finite and taken", "passed": ok, "value": last,
                       "steps": len(steps), "skipped_steps": skipped, "taken_fraction": taken,
                       "nonfinite_stats_before_last_iteration": earlier,
                       "loss_scale": loop.scaler_d.get_scale() if loop.scaler_d.is_enabled() else None})
    return checks


def cyclegan_checks(ctx) -> list[dict]:
    checks = []
    for name in ("bf16", "fp16"):
        side = CycleGANSide(ctx, 1, precision=name, crop_size=32 if ctx.smoke else 64, load_size=32 if ctx.smoke else 64)
        losses = [side() for _ in range(1 if ctx.smoke else 2)][-1]
        ok = all(math.isfinite(value) for value in losses.values()) and params_finite(*side.nets.values())
        checks.append({"name": f"CycleGAN {name} iterations finite", "passed": ok, "value": losses})
    return checks


# ---------------------------------------------------------------------------------------------- classifier
TIME_PRESETS = {"darkroom": "airbench94_muon", "fastnet-gpu": "fastnet-gpu"}  # side -> preset; "darkroom" heads


def classifier_time_to_94(ctx, budget: common.Budget, runs: int) -> Path:
    """darkroom's airbench94_muon preset (the headline, side "darkroom") and its fastnet-gpu preset vs airbench94
    (unmodified), alternating runs (A B C, C B A, ...), mean over runs, same process."""
    from benchmarks import gpu_airbench
    from darkroom import classifier

    values = {side: classifier_values(ctx, preset) for side, preset in TIME_PRESETS.items()}
    train, test = classifier.load_data(build(classifier.CONFIG, values["darkroom"]))
    notes = [] if ctx.smoke else [note for side in TIME_PRESETS for note in [warm_up(ctx, side, values)] if note]
    counter = {side: 0 for side in TIME_PRESETS}

    def darkroom_run(side: str):
        def run() -> dict:
            seed = counter[side]
            counter[side] += 1
            cfg = build(classifier.CONFIG, {**values[side], "seed": seed, "out": str(ctx.work / f"classifier-{side}-{seed}")})
            with common.Stopwatch(ctx.device) as wall:
                result = classifier.run(cfg)
            epochs = epoch_times(result["run_dir"])
            print(f"  {TIME_PRESETS[side]} seed {seed}: acc {result['test_acc']:.4f}, train {result['train_time']:.2f} s "
                  f"(first epoch {epochs[0] if epochs else float('nan'):.2f} s)", flush=True)
            return {"seed": seed, "test_acc": result["test_acc"], "train_time": result["train_time"],
                    "wall_s": wall.seconds, "epoch_train_s": epochs}
        return guarded_run(TIME_PRESETS[side], run)

    sides = {"darkroom": darkroom_run("darkroom")}
    airbench_note = ""
    if ctx.smoke:
        airbench_note = f"not run in --smoke (needs CUDA); {gpu_airbench.check_format_on_cpu(ctx.work, train, test)}"
    else:
        try:
            bench = gpu_airbench.Airbench94(ctx.work, train, test)

            def airbench_run() -> dict:
                result = bench.run()
                print(f"  airbench94: acc {result['test_acc']:.4f}, train {result['train_time']:.2f} s", flush=True)
                return result
            sides["airbench94"] = guarded_run("airbench94", airbench_run)
        except Exception as error:  # noqa: BLE001 - darkroom's side still runs
            airbench_note = f"airbench94 failed to start: {type(error).__name__}: {error}"
    sides["fastnet-gpu"] = darkroom_run("fastnet-gpu")
    alternation_start = common.Budget(0)

    def keep_going() -> bool:  # another round fits when the budget holds 1.2 rounds at the pace so far
        return budget.left() > 1.2 * alternation_start.spent() / max(1, counter["darkroom"])
    results = common.alternate(sides, 1 if ctx.smoke else runs, keep_going=keep_going)
    figures = {name: run_figures(runs_) for name, runs_ in results.items()}
    theirs = figures.get("airbench94")
    if theirs is not None and not theirs["test_acc"]["n"]:
        airbench_note = "; ".join(filter(None, [airbench_note, f"every airbench94 run failed: {theirs['failures'][0]}"]))
        theirs = None
    note = "; ".join(filter(None, [airbench_note, *notes]))
    # the issue's goal for the airbench94_muon preset: <= 0.8x airbench94's time at >= 94% mean accuracy
    rows = [_time_row(figures["darkroom"], theirs, note, ctx.device, target=0.8),
            _time_row(figures["fastnet-gpu"], theirs, "", ctx.device, side="fastnet-gpu")]
    settings = {"smoke": ctx.smoke, "darkroom": {k: v for k, v in values["darkroom"].items() if v is not None},
                "fastnet-gpu": {k: v for k, v in values["fastnet-gpu"].items() if v is not None},
                "airbench": "airbench94 train94() at its defaults (9.9 epochs, batch 1024, TTA level 2), unmodified",
                "data": "Fashion-MNIST; airbench gets it zero-padded to 32x32 and replicated to 3 channels",
                "runs_requested": runs, "order": "alternating runs (A B C, C B A, ...) in one process",
                "timing": "training only: excludes the copy to the device, darkroom's warm-up run per preset (the "
                          "compile of airbench94_muon's max-autotune graph) and airbench's warmup94(), per-epoch "
                          "evaluation; airbench's own total_time_seconds minus its final TTA pass",
                "compile_note": "--smoke runs uncompiled (CPU)" if ctx.smoke else "darkroom's runs reuse the warm-up's "
                                "compiled graph (a new net of the same structure: no recompile; epoch_train_s shows "
                                "the first epoch)"}
    return common.write_result(ctx.name("gpu_classifier_time_to_94"), with_maths(settings), figures, rows=rows,
                               notes=note, device=ctx.device)


def warm_up(ctx, side: str, values: dict) -> str:
    """One short run of a side's preset outside every timed run: cuDNN autotuning, the allocator and, for a compiled
    preset, the compile. A compile that fails is retried uncompiled, the side then runs uncompiled, and the note
    says so (the section still measures it)."""
    from darkroom import classifier

    warm = {**values[side], "epochs": min(1.0, values[side]["epochs"]), "seed": 999,
            "out": str(ctx.work / f"classifier-{side}-warmup")}
    started = common.Budget(0)
    try:
        classifier.run(build(classifier.CONFIG, warm))
    except Exception as error:  # noqa: BLE001 - the side runs uncompiled, or its runs record the failure
        traceback.print_exc()
        if not values[side].get("compile"):
            return f"{TIME_PRESETS[side]}: the warm-up run failed ({type(error).__name__}: {error})"[:300]
        values[side] = {**values[side], "compile": False, "compile_mode": "default"}
        classifier.run(build(classifier.CONFIG, {**warm, "compile": False, "compile_mode": "default",
                                                 "out": warm["out"] + "-uncompiled"}))
        return f"{TIME_PRESETS[side]}: --compile failed in the warm-up ({type(error).__name__}: {error}); its runs are uncompiled"[:300]
    print(f"  {TIME_PRESETS[side]}: warm-up run {started.spent():.1f} s", flush=True)
    return ""


def epoch_times(run_dir: str) -> list[float]:
    """Training seconds of each epoch of a finished run (metrics.jsonl's cumulative train_time, differenced)."""
    from darkroom.runs import read_metrics

    cumulative = [line["train_time"] for line in read_metrics(run_dir) if "train_time" in line and "epoch" in line]
    return [later - earlier for earlier, later in zip([0.0, *cumulative], cumulative)]


def guarded_run(name: str, run):
    """`run` made safe to alternate: a run that raises is recorded as {"failed": "<error>"} (traceback in the log) and
    the section goes on with the other runs (the command's time limit, a BaseException, still stops it)."""
    def guarded() -> dict:
        try:
            return run()
        except Exception as error:  # noqa: BLE001 - one failing run must not drop the finished ones
            traceback.print_exc()
            print(f"  {name}: run FAILED: {type(error).__name__}: {error}", flush=True)
            return {"failed": f"{type(error).__name__}: {error}"[:300]}
    return guarded


def run_figures(runs: list[dict]) -> dict:
    """Accuracy and time over a side's finished runs; failed runs are counted and their errors kept."""
    finished = [run for run in runs if "failed" not in run]
    return {"runs": runs, "test_acc": common.summary([run["test_acc"] for run in finished]),
            "train_time_s": common.summary([run["train_time"] for run in finished]),
            "failed_runs": len(runs) - len(finished), "failures": [run["failed"] for run in runs if "failed" in run]}


def _time_row(ours: dict, theirs: dict | None, note: str, device: str, side: str = "darkroom",
              target: float = 1.0) -> dict:
    """Mean training time at the fixed budget, as time to 94% when the mean accuracy reaches it."""
    ours_time, our_acc = ours["train_time_s"]["mean"], ours["test_acc"]["mean"]
    label = TIME_PRESETS.get(side, side)
    notes = [note] if note else []
    if ours["test_acc"]["n"]:
        notes.append(f"{label} mean acc {our_acc:.4f} (min {ours['test_acc']['min']:.4f}, n={ours['test_acc']['n']})")
    their_time = their_acc = None
    if theirs:
        their_time, their_acc = theirs["train_time_s"]["mean"], theirs["test_acc"]["mean"]
        notes.append(f"airbench94 mean acc {their_acc:.4f} (n={theirs['test_acc']['n']})")
    notes += [f"{name}: {figures['failed_runs']} run(s) failed ({figures['failures'][0]})"
              for name, figures in ((label, ours), ("airbench94", theirs)) if figures and figures["failed_runs"]]
    row = common.comparison_row(f"time to 94% Fashion-MNIST, {label} ({device})", ours_time, their_time, "s",
                                "airbench94 (unmodified)", target=target, higher_is_better=False, note="; ".join(notes),
                                ratio_bound="<=" if their_acc is not None and their_acc < TARGET_ACCURACY else "")
    if our_acc is None or our_acc < TARGET_ACCURACY:
        row["met"] = False
        row["note"] += f"; {label} did not reach 94% on average: its time is the whole budget"
    return row


# ---------------------------------------------------------------------------------------------- throughput
def throughput_pair(ctx, budget: common.Budget, sides: dict, iterate, warmup: int, steps: int, rounds: int,
                    per_iteration: int) -> dict:
    """Alternate timed blocks of `steps` iterations per side; iterations/s and peak memory per block."""
    for side in sides.values():
        for _ in range(warmup):
            iterate(side)
    common.synchronize(ctx.device)

    def measure(side):
        def block() -> dict:
            common.synchronize(ctx.device)
            start_bytes = torch.cuda.memory_allocated() if ctx.device == "cuda" else 0
            common.reset_peak_memory(ctx.device)
            seconds = common.time_steps(lambda: iterate(side), steps, ctx.device)
            peak, what = common.peak_memory_bytes(ctx.device)
            return {"it_per_s": steps * per_iteration / seconds, "seconds": seconds, "peak_bytes": peak,
                    "peak_above_start_bytes": peak - start_bytes if ctx.device == "cuda" else None, "memory": what}
        return block
    blocks = common.alternate({name: measure(side) for name, side in sides.items()}, rounds,
                              keep_going=lambda: budget.left() > 0)
    return {name: {"it_per_s": common.summary([b["it_per_s"] for b in values]),
                   "peak_gib": max(b["peak_bytes"] for b in values) / 2**30,
                   "peak_above_start_gib": None if values[0]["peak_above_start_bytes"] is None
                   else max(b["peak_above_start_bytes"] for b in values) / 2**30,
                   "memory": values[0]["memory"], "blocks": values}
            for name, values in blocks.items()}


def gan_throughput(ctx, budget: common.Budget) -> Path:
    """gpu-64 WGAN-GP: the preset (bf16 autocast on GPU, channels_last) vs the same loop in fp32, default format."""
    # the preset's "auto" is bf16 on GPU, fp32 under --smoke (CPU bf16 is emulated and slow; correctness covers it)
    sample = 0.002 if ctx.smoke else 0.2  # 12,000 images resized to 64 px: what is drawn does not change the speed
    loops = {"darkroom": gan_loop(ctx, sample=sample)[0],
             "fp32": gan_loop(ctx, sample=sample, precision="fp32", channels_last=False)[0]}
    steps, warmup, rounds = (1, 1, 2) if ctx.smoke else (20, 5, 3)
    figures = throughput_pair(ctx, budget, loops, gan_iteration, warmup, steps, rounds, 1)
    cfg = loops["darkroom"].cfg
    row = common.comparison_row(f"WGAN-GP {cfg.image_size}x{cfg.image_size} batch {cfg.batch_size}: generator it/s, "
                                f"{loops['darkroom'].precision_name}+channels_last vs fp32 ({ctx.device})",
                                figures["darkroom"]["it_per_s"]["mean"], figures["fp32"]["it_per_s"]["mean"], "it/s",
                                "darkroom's loop in fp32, default memory format",
                                note=f"peak memory {figures['darkroom']['peak_gib']:.2f} vs {figures['fp32']['peak_gib']:.2f} GiB")
    settings = {"smoke": ctx.smoke, "preset": "gpu-64", "image_size": cfg.image_size, "batch_size": cfg.batch_size,
                "n_critic": loops["darkroom"].settings.n_critic, "darkroom": {"precision": loops["darkroom"].precision_name,
                "channels_last": cfg.channels_last}, "baseline": {"precision": "fp32", "channels_last": False},
                "warmup_iterations": warmup, "timed_iterations_per_block": steps, "rounds": rounds,
                "sample": sample, "timing": "synchronised wall clock over whole generator iterations (critic steps "
                "included), batches drawn from resident Fashion-MNIST (a 20% sample, upscaled to 64 px)"}
    return common.write_result(ctx.name("gpu_gan_throughput"), with_maths(settings), {**figures, "ratio": row["ratio"]},
                               rows=[row], device=ctx.device)


def cyclegan_throughput(ctx, budget: common.Budget) -> Path:
    """gpu-256 nets at 256x256, batch 1 and 8: the preset (bf16+channels_last) and bf16 in the default format (instance
    norm converts channels_last activations at every layer), each vs fp32 default format; iterations/s, peak memory."""
    figures, rows = {}, []
    batch_sizes = (1, 2) if ctx.smoke else (1, 8)
    for batch in batch_sizes:
        ours = {"precision": "fp32"} if ctx.smoke else {}  # CPU bf16 is emulated and slow; correctness covers it
        sides = {"darkroom": CycleGANSide(ctx, batch, **ours),
                 "default_format": CycleGANSide(ctx, batch, **ours, channels_last=False),
                 "fp32": CycleGANSide(ctx, batch, precision="fp32", channels_last=False)}
        steps, warmup, rounds = (1, 1, 2) if ctx.smoke else ((10, 3, 2) if batch == 1 else (6, 2, 2))
        result = throughput_pair(ctx, budget, sides, lambda side: side(), warmup, steps, rounds, 1)
        figures[f"batch_{batch}"] = result
        size = sides["darkroom"].cfg.crop_size
        for side, layout in (("darkroom", "+channels_last"), ("default_format", " default format")):
            rows.append(common.comparison_row(
                f"CycleGAN {size}x{size} batch {batch}: it/s, {sides[side].precision}{layout} vs fp32 ({ctx.device})",
                result[side]["it_per_s"]["mean"], result["fp32"]["it_per_s"]["mean"], "it/s",
                "darkroom's step in fp32, default memory format",
                note=f"peak memory {result[side]['peak_gib']:.2f} vs {result['fp32']['peak_gib']:.2f} GiB"))
        del sides
        if ctx.device == "cuda":
            torch.cuda.empty_cache()
    settings = {"smoke": ctx.smoke, "preset": "gpu-256", "generator": "resnet_9blocks", "batch_sizes": list(batch_sizes),
                "sides": {"darkroom": "the preset: bf16 autocast, channels_last", "default_format": "bf16 autocast, "
                          "default (NCHW) memory format", "fp32": "fp32, default memory format"},
                "data": "fixed random images resident on the device (data loading excluded)",
                "memory": "peak allocated during a side's timed block; every side's weights are resident"}
    return common.write_result(ctx.name("gpu_cyclegan_throughput"), with_maths(settings),
                               {**figures, "ratio": rows[0]["ratio"]}, rows=rows, device=ctx.device)
