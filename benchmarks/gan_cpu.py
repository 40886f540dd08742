"""GANs on CPU, Fashion-MNIST: (a) darkroom's generator iteration vs a plain fp32 loop written the way the
reference repositories write it (martinarjovsky/WassersteinGAN for clipping, the common PyTorch WGAN-GP port for
the penalty: eager, default memory format, no autocast, a DataLoader with per-image transforms in 2 workers), same
nets and initial weights, generator iterations/s alternating in one process (darkroom in fp32, and with bf16
autocast where the CPU multiplies bf16 in hardware), peak memory per side in fresh processes; (b) the
`fashion-mnist-cpu` preset trained through the CLI with --loss wgan-gp (the preset as is), then wgan and dcgan
for the same training time; each run's sample grid and `darkroom eval gan RUN` numbers.

    python -m benchmarks.gan_cpu                         # everything (13 minutes on 2 AVX-512 cores)
    python -m benchmarks.gan_cpu --only speed --rounds 4
    python -m benchmarks.gan_cpu --only quality --loss wgan-gp
    python -m benchmarks.gan_cpu --only best             # (c) fashion-mnist-dcgan-cpu as is, against issue 25's bars
    python -m benchmarks.gan_cpu --quick                 # tiny settings: checks the code paths, numbers mean nothing
Writes gan_cpu.json, and gan_cpu_best.json for (c) (-quick names under --quick), to $OUT or benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import autograd, nn
from torch.utils.data import DataLoader, Dataset

from benchmarks import common
from darkroom import dist, precision
from darkroom.config import build
from darkroom.data import sources
from darkroom import gan

CPU = torch.device("cpu")
# (name, settings over the preset): the REFERENCE.md section 5 WassersteinGAN row, and darkroom's CPU preset
SETTINGS = {
    "wgan-32": dict(gan.PRESETS["wgan"], image_size=32, nz=100, ngf=64, ndf=64, n_extra_layers=0, batch_size=64),
    "fashion-mnist-cpu": dict(gan.PRESETS["fashion-mnist-cpu"]),
}
LOSSES = ("wgan-gp", "wgan", "dcgan")
BEST_PRESET = "fashion-mnist-dcgan-cpu"  # darkroom's best CPU preset for Fashion-MNIST (the `best` part)
# issue 25's bars for it: 10,000 samples against the test split, trained in <= 10 minutes on the CPU
BEST_BARS = {"frechet_inception_distance": 25.0, "modes_hit": 10, "mode_kl_fake_real": 0.02, "memo_nn_ratio": 1.0,
             "train_time_s": 600.0}
# quality: the preset tunes Adam for wgan-gp; the other losses get their papers' optimisers
PAPER_OPTIMIZERS = {"wgan-gp": [], "wgan": ["--optimizer", "rmsprop", "--lr", "5e-5"],
                    "dcgan": ["--optimizer", "adam", "--lr", "2e-4", "--beta1", "0.5", "--beta2", "0.999"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings for development and tests")
    parser.add_argument("--only", choices=("speed", "memory", "quality", "best"), action="append",
                        help="run only these parts (best: the --best preset as is, against issue 25's quality bars)")
    parser.add_argument("--best", default=BEST_PRESET, choices=tuple(gan.PRESETS), help="best: the preset to train")
    parser.add_argument("--setting", choices=tuple(SETTINGS), action="append", help="speed/memory: only these settings")
    parser.add_argument("--loss", choices=LOSSES, action="append", help="quality: only these losses")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds per side")
    parser.add_argument("--steps", type=int, default=8, help="timed generator iterations per round")
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers (WassersteinGAN's default)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every usable core)")
    parser.add_argument("--eval-n", type=int, default=10000, help="samples scored by darkroom eval gan")
    parser.add_argument("--memory-probe", nargs=2, metavar=("SIDE", "SETTING"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.eval_n = 2, 1, 200
    args.threads = args.threads or common.usable_cores()
    return args


def config(setting: str, quick: bool) -> gan.GanConfig:
    values = dict(SETTINGS[setting], data="fashion-mnist", device="cpu", quiet=True, warmup_critic="off")
    if quick:
        values.update(ngf=4, ndf=4, nz=8, batch_size=8, sample=0.01)
    return build(gan.CONFIG, values)


def build_nets(cfg: gan.GanConfig, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    G, D, _ = gan.build_nets(cfg, gan.resolve(cfg), 1)
    return G, D


class DarkroomSide:
    """darkroom's generator iteration as gan.run() runs it on CPU: resident uint8 batches, channels_last, one
    backward per step."""

    def __init__(self, cfg: gan.GanConfig, precision_name: str = "fp32") -> None:
        self.settings = gan.resolve(cfg)
        batches = gan.build_image_batches(gan.data_settings(cfg), cfg.batch_size, 0, 1, CPU)
        torch.manual_seed(0)  # the nets of build_nets(cfg), built as gan.run() builds them
        self.loop, _ = gan.build_loop(cfg, self.settings, dist.DistInfo(0, 1, 0, CPU), precision_name, batches)

    def step(self) -> None:
        for _ in range(self.settings.n_critic):
            self.loop.critic_step()
        self.loop.generator_step()


class ReferenceImages(Dataset):
    """torchvision's Compose([Resize(size), ToTensor(), Normalize((0.5,), (0.5,))]) on PIL images, per item."""

    def __init__(self, images: np.ndarray, size: int) -> None:
        self.images, self.size = images, size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index], mode="L")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).unsqueeze(0)
        return (x - 0.5) / 0.5, 0


class ReferenceSide:
    """The reference loops: WassersteinGAN/main.py (clamp, backward(one)/backward(mone), requires_grad toggles) or
    the common WGAN-GP port (three backward calls: real, fake, penalty); DCGAN as pytorch/examples."""

    def __init__(self, cfg: gan.GanConfig, workers: int) -> None:
        self.cfg, self.settings = cfg, gan.resolve(cfg)
        self.netG, self.netD = build_nets(cfg)
        images = sources.load("fashion-mnist", "train", sample=cfg.sample).images[:, 0].numpy()
        loader = DataLoader(ReferenceImages(images, cfg.image_size), batch_size=cfg.batch_size, shuffle=True,
                            num_workers=workers, drop_last=True, persistent_workers=workers > 0)
        self.loader, self.data_iter = loader, iter(loader)
        lr, betas = self.settings.lr, self.settings.betas
        make = (lambda p: torch.optim.RMSprop(p, lr=lr)) if self.settings.optimizer == "rmsprop" else \
            (lambda p: torch.optim.Adam(p, lr=lr, betas=betas))
        self.optimizerD, self.optimizerG = make(self.netD.parameters()), make(self.netG.parameters())
        self.one, self.mone = torch.tensor(1.0), torch.tensor(-1.0)

    def next_real(self) -> torch.Tensor:
        try:
            return next(self.data_iter)[0]
        except StopIteration:
            self.data_iter = iter(self.loader)
            return next(self.data_iter)[0]

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        alpha = torch.rand(real.size(0), 1, 1, 1).expand(real.size())
        interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        disc_interpolates = self.netD(interpolates)
        gradients = autograd.grad(outputs=disc_interpolates, inputs=interpolates,
                                  grad_outputs=torch.ones(disc_interpolates.size()), create_graph=True,
                                  retain_graph=True, only_inputs=True)[0]
        return ((gradients.view(gradients.size(0), -1).norm(2, dim=1) - 1) ** 2).mean() * self.cfg.gp_weight

    def step(self) -> None:
        cfg, netD, netG = self.cfg, self.netD, self.netG
        for p in netD.parameters():
            p.requires_grad = True
        for _ in range(self.settings.n_critic):
            if cfg.loss == "wgan":
                for p in netD.parameters():
                    p.data.clamp_(-cfg.clip, cfg.clip)
            real = self.next_real()
            netD.zero_grad()
            noise = torch.randn(cfg.batch_size, cfg.nz, 1, 1)
            with torch.no_grad():
                fake = netG(noise)
            if cfg.loss == "dcgan":
                criterion = nn.BCEWithLogitsLoss()
                errD = criterion(netD(real), torch.ones(cfg.batch_size)) + criterion(netD(fake), torch.zeros(cfg.batch_size))
                errD.backward()
            elif cfg.loss == "wgan":  # WassersteinGAN/main.py's signs
                netD(real).mean().backward(self.one)
                netD(fake).mean().backward(self.mone)
            else:  # WGAN-GP port's signs
                netD(real).mean().backward(self.mone)
                netD(fake).mean().backward(self.one)
                self.gradient_penalty(real, fake).backward()
            self.optimizerD.step()
        for p in netD.parameters():
            p.requires_grad = False
        netG.zero_grad()
        errG = netD(netG(torch.randn(cfg.batch_size, cfg.nz, 1, 1)))
        if cfg.loss == "dcgan":
            nn.BCEWithLogitsLoss()(errG, torch.ones(cfg.batch_size)).backward()
        else:
            errG.mean().backward(self.one if cfg.loss == "wgan" else self.mone)
        self.optimizerG.step()


def speed(args: argparse.Namespace) -> dict:
    out = {}
    for setting in args.setting or list(SETTINGS):
        cfg = config(setting, args.quick)
        sides = {"darkroom": DarkroomSide(cfg), "reference": ReferenceSide(cfg, args.workers)}
        if precision.cpu_has_native_bf16():  # darkroom's --precision bf16 where the CPU multiplies bf16 in hardware
            sides["darkroom_bf16"] = DarkroomSide(cfg, "bf16")
        measurements = {name: common.timed_rate(side.step, args.steps) for name, side in sides.items()}
        values = common.alternate(measurements, args.rounds)
        out[setting] = {name: {"it_per_s": common.summary([v[0] for v in runs]),
                               "main_process_cpu_s_per_it": common.summary([v[1] for v in runs])}
                        for name, runs in values.items()}
        print(setting, json.dumps({name: side["it_per_s"]["mean"] for name, side in out[setting].items()}), flush=True)
    return out


def memory_probe(args: argparse.Namespace) -> None:
    """In a fresh process: peak RSS during 3 iterations above the RSS once nets and data exist (printed as JSON)."""
    side_name, setting = args.memory_probe
    cfg = config(setting, args.quick)
    side = DarkroomSide(cfg) if side_name == "darkroom" else ReferenceSide(cfg, 0)
    print(json.dumps(common.step_peak_rss(side.step)))


def memory(args: argparse.Namespace) -> dict:
    out: dict = {}
    for setting in args.setting or list(SETTINGS):
        for side in ("darkroom", "reference"):
            out.setdefault(setting, {})[side] = common.run_memory_probe(
                "benchmarks.gan_cpu", [side, setting, *(["--quick"] if args.quick else [])], args.threads)
    return out


# -- quality -------------------------------------------------------------------------------------------


def train_cli(args: argparse.Namespace, preset: str, extra: list[str], run: Path
              ) -> tuple[list[str], float, dict, subprocess.CompletedProcess]:
    """`darkroom train gan --preset PRESET EXTRA --out RUN --quiet` in a child process: (command, wall seconds, the
    last metrics line, the finished process); a failed run stops the benchmark with its stderr."""
    command = [sys.executable, "-m", "darkroom", "train", "gan", "--preset", preset, *extra, "--out", str(run), "--quiet"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=common.REPO,
                            env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"training {preset} failed: {result.stderr[-2000:]}")
    return command, wall, json.loads((run / "metrics.jsonl").read_text().splitlines()[-1]), result


def train_run(args: argparse.Namespace, loss: str, work: Path, minutes: float | None) -> tuple[Path, dict]:
    """The fashion-mnist-cpu preset through the CLI; with `minutes`, a time budget instead of its iterations."""
    run = work / f"fashion-mnist-cpu-{loss}"
    # a time budget has no last iteration for a linear decay to reach 0 at: constant lr there
    extra = ["--iterations", "1000000", "--max-minutes", f"{minutes:.4f}", "--lr-decay", "none"] if minutes else []
    extra += PAPER_OPTIMIZERS[loss]
    if args.quick:
        extra += ["--ngf", "4", "--ndf", "4", "--nz", "8", "--sample", "0.02"] + ([] if minutes else ["--iterations", "3"])
    command, wall, last, result = train_cli(args, "fashion-mnist-cpu", ["--loss", loss, *extra], run)
    return run, {"command": " ".join(command[1:]), "wall_s": wall, "train_time_s": last["train_time"],
                 "generator_iterations": last["iteration"], "critic_iterations": last["critic_iterations"],
                 "summary": result.stdout.strip().splitlines()[-1], "last_metrics": last}


def darkroom_eval(run: Path, n: int) -> dict | None:
    """`darkroom eval gan RUN --n N` (the evaluation issue's command; it writes RUN/eval.json)."""
    probe = subprocess.run([sys.executable, "-m", "darkroom", "eval", "gan", "--help"], capture_output=True, text=True,
                           cwd=common.REPO)
    if probe.returncode != 0:
        return None
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "darkroom", "eval", "gan", str(run), "--n", str(n)],
                            capture_output=True, text=True, cwd=common.REPO)
    if result.returncode != 0:
        return {"error": result.stderr.strip()[-1000:]}
    return {**json.loads((run / "eval.json").read_text()), "eval_wall_s": time.perf_counter() - started}


def quality(args: argparse.Namespace, work: Path, kept: dict | None = None) -> dict:
    """Each loss through the CLI and `darkroom eval gan`; wgan and dcgan get wgan-gp's training time (this run's,
    else the kept result's) as their budget."""
    out: dict = {}
    kept_gp = (kept or {}).get("wgan-gp", {}).get("training", {}).get("train_time_s")
    minutes = kept_gp / 60 if kept_gp else None
    for loss in args.loss or list(LOSSES):  # wgan-gp first: its training time is the others' budget
        run, training = train_run(args, loss, work, minutes if loss != "wgan-gp" else None)
        if loss == "wgan-gp":
            minutes = training["train_time_s"] / 60
        grid = sorted((run / "samples").glob("iter_*.png"))[-1]
        picture = common.results_dir() / f"gan_cpu_{loss}{'-quick' if args.quick else ''}.png"
        shutil.copyfile(grid, picture)
        out[loss] = {"training": training, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "grid": str(picture.relative_to(common.REPO)) if picture.is_relative_to(common.REPO) else str(picture),
                     "darkroom_eval": darkroom_eval(run, args.eval_n)}
        print(loss, json.dumps({key: out[loss]["training"][key] for key in ("train_time_s", "generator_iterations")}),
              flush=True)
    return out


def best(args: argparse.Namespace, work: Path) -> dict:
    """The --best preset through the CLI exactly as a user runs it, scored by `darkroom eval gan` on --eval-n samples."""
    run = work / args.best
    extra = ["--ngf", "4", "--ndf", "4", "--nz", "8", "--sample", "0.02", "--iterations", "3"] if args.quick else []
    command, wall, last, _ = train_cli(args, args.best, extra, run)
    picture = common.results_dir() / f"gan_cpu_best{'-quick' if args.quick else ''}.png"
    shutil.copyfile(sorted((run / "samples").glob("iter_*.png"))[-1], picture)
    scores = darkroom_eval(run, args.eval_n) or {}
    training = {"preset": args.best, "command": " ".join(["darkroom", *command[3:]]), "wall_s": wall,
                "train_time_s": last["train_time"], "generator_iterations": last["iteration"],
                "precision": json.loads((run / "config.json").read_text())["config"].get("precision")}
    measured = {key: scores.get(key) for key in BEST_BARS if key != "train_time_s"}
    measured["train_time_s"] = training["train_time_s"]
    met = {key: (value is not None and (value >= BEST_BARS[key] if key in ("modes_hit", "memo_nn_ratio")
                                        else value <= BEST_BARS[key])) for key, value in measured.items()}
    return {"training": training, "darkroom_eval": scores, "measured": measured, "bars": BEST_BARS, "met": met,
            "all_met": all(met.values()), "eval_n": args.eval_n,
            "grid": str(picture.relative_to(common.REPO)) if picture.is_relative_to(common.REPO) else str(picture)}


def best_rows(result: dict) -> list[dict]:
    """One row: the best preset's FID against issue 25's bars (gan_cpu_best.json)."""
    rows, bars = [], BEST_BARS
    if result:
        measured = result["measured"]
        row = common.comparison_row(
            f"{result['training']['preset']}: domain FID, {result['eval_n']} samples vs the test split, after "
            f"{measured['train_time_s']:.0f} s (CPU)", measured["frechet_inception_distance"], None, "FID", "",
            note=f"{measured['modes_hit']:.0f} of 10 classes, class-histogram KL {_rounded(measured['mode_kl_fake_real'])}, "
                 f"train-NN distance ratio {_rounded(measured['memo_nn_ratio'], 2)} (> 1: no copying); FID floor (real "
                 f"train vs test) {_rounded(result['darkroom_eval'].get('frechet_inception_distance_floor'), 2)}; "
                 f"{result['training']['generator_iterations']} iterations, {result['training']['precision']}")
        row["target"] = (f"FID <= {bars['frechet_inception_distance']:.0f}, 10/10 classes, KL <= "
                         f"{bars['mode_kl_fake_real']}, NN ratio >= 1, <= 600 s")
        row["met"] = result["all_met"]
        rows.append(row)
    return rows


def rows_for(figures: dict) -> list[dict]:
    rows = []
    for setting, sides in figures.get("speed", {}).items():
        dark, ref = (sides[name]["it_per_s"]["mean"] for name in ("darkroom", "reference"))
        rows.append(common.comparison_row(f"GAN generator iteration, {setting} setting: it/s (CPU)", dark, ref, "it/s",
                                          "reference-style plain fp32 loop with DataLoader, same nets", target=1.2,
                                          note="same process, alternating order; n_critic critic steps + 1 G step"))
        if "darkroom_bf16" in sides:
            rows.append(common.comparison_row(
                f"GAN generator iteration, {setting} setting: it/s, darkroom bf16 autocast (CPU)",
                sides["darkroom_bf16"]["it_per_s"]["mean"], ref, "it/s",
                "reference-style plain fp32 loop with DataLoader, same nets", target=1.2,
                note="same process, alternating order; --precision bf16 on a CPU with hardware bf16; the GAN's sample "
                     "quality in bf16 is not measured here (the CycleGAN preset's is, in cyclegan_cpu.json)"))
    for loss, result in figures.get("quality", {}).items():
        scores = result.get("darkroom_eval") or {}
        rows.append(common.comparison_row(
            f"fashion-mnist-cpu --loss {loss}: classes covered (of 10) after {result['training']['train_time_s']:.0f} s",
            scores.get("modes_hit"), None, "classes", "",
            note=f"class-histogram KL(samples || test) {_rounded(scores.get('mode_kl_fake_real'))}; domain FID "
                 f"{_rounded(scores.get('frechet_inception_distance'), 1)} (real train vs test floor "
                 f"{_rounded(scores.get('frechet_inception_distance_floor'), 2)}), KID "
                 f"{_rounded(scores.get('kernel_inception_distance_mean'), 1)} (floor "
                 f"{_rounded(scores.get('kernel_inception_distance_mean_floor'), 2)}); train-NN distance ratio "
                 f"{_rounded(scores.get('memo_nn_ratio'), 2)} (> 1: no copying); "
                 f"{result['training']['generator_iterations']} iterations"))
    return rows


def _rounded(value: object, digits: int = 3) -> object:
    return round(value, digits) if isinstance(value, (int, float)) else value


def previous_figures(name: str, parts: list[str]) -> dict:
    """Figures of the parts not rerun now, from the last result file (so `--only quality` keeps the speed part)."""
    path = common.results_dir() / f"{name}.json"
    try:
        previous = json.loads(path.read_text()).get("figures", {})
    except (OSError, ValueError):
        return {}
    return {key: value for key, value in previous.items() if key not in parts}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        memory_probe(args)
        return
    parts = args.only or ["speed", "memory", "quality", "best"]
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="gan-bench-") as scratch:
        if "speed" in parts:
            figures["speed"] = speed(args)
        if "memory" in parts:
            figures["memory"] = memory(args)
        if "quality" in parts:  # with --loss, the other losses' results are kept from the last result file
            kept = previous_figures("gan_cpu" + ("-quick" if args.quick else ""), []).get("quality", {}) if args.loss else {}
            figures["quality"] = {**kept, **quality(args, Path(scratch), kept)}
        if "best" in parts:  # its own file: this machine's numbers, not mixed into the parts kept from earlier runs
            result = best(args, Path(scratch))
            path = common.write_result("gan_cpu_best" + ("-quick" if args.quick else ""),
                                       {"preset": args.best, "eval_n": args.eval_n, "torch_threads": args.threads,
                                        "quick": args.quick, "bars": BEST_BARS,
                                        "protocol": "the preset through the CLI as is, then darkroom eval gan --n N"},
                                       result, rows=best_rows(result), device="cpu")
            print(f"wrote {path}")
            parts = [part for part in parts if part != "best"]
            if not parts:
                return
    settings = {"speed_settings": {name: {k: v for k, v in SETTINGS[name].items()} for name in args.setting or SETTINGS},
                "rounds": args.rounds, "generator_iterations_per_round": args.steps, "torch_threads": args.threads,
                "reference_workers": args.workers, "quick": args.quick,
                "precision": common.precision_setting(),
                "speed_notes": "steady state: n_critic critic steps + 1 generator step per iteration (no 100-step bursts); "
                               "reference CPU seconds count its main process only (its DataLoader workers are extra)",
                "memory": "peak RSS during 3 iterations above the RSS with nets and data built, one fresh process per "
                          "side (reference with 0 workers)",
                "quality": "fashion-mnist-cpu preset: --loss wgan-gp as is; wgan and dcgan with --max-minutes equal to "
                           "wgan-gp's training time and constant lr (no last iteration to decay to); scored by darkroom eval gan "
                           "on --eval-n samples"}
    load = os.getloadavg()
    notes = (f"Load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} (1/5/15 min) when written on {common.usable_cores()} "
             "cores: above the core count, other jobs shared the machine and wall-clock numbers are pessimistic; CPU "
             "seconds per iteration are given beside them.")
    name = "gan_cpu" + ("-quick" if args.quick else "")
    figures = {**previous_figures(name, parts), **figures}
    figures.setdefault("part_dates", {}).update({part: time.strftime("%Y-%m-%d %H:%M:%S") for part in parts})
    path = common.write_result(name, settings, figures, rows=rows_for(figures), notes=notes, device="cpu")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
