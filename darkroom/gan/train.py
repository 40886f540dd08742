"""darkroom train gan: WGAN (arXiv:1701.07875), WGAN-GP (arXiv:1704.00028), DCGAN and hinge (SNGAN) on DCGAN nets, one
loop; options: spectral norm, TTUR, a generator EMA, DiffAugment and PacGAN packing.

    darkroom train gan --preset fashion-mnist-cpu
    darkroom train gan --data path/to/images --image-size 64 --loss wgan-gp
    torchrun --nproc_per_node=8 -m darkroom train gan --preset lsun-64 --data bedroom_train_lmdb
Losses follow one sign convention (see losses): both nets minimise; W = E[D(x)] - E[D(G(z))]. The run's life
(folder, resume, checkpoint, report) is darkroom.lifecycle's; this file holds what is the GAN's.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from darkroom import dist, lifecycle, precision
from darkroom.errors import UserError
from darkroom.gan import data as gan_data
from darkroom.gan import toy as gan_toy
from darkroom.gan.augment import apply_augment, draw_augment, pack
from darkroom.gan.config import RESUME_MAY_CHANGE, GanConfig, Resolved, check_packing, resolve
from darkroom.gan.losses import clip_weights_, critic_objective, critic_steps, generator_objective
from darkroom.gan.presets import PRESETS  # noqa: F401 (the trainer module carries its table, as CONFIG)
from darkroom.nets import dcgan
from darkroom.optim import GeneratorEMA, ema_decay, set_lr_momentum, standing_batchnorm_stats_

CONFIG = GanConfig
STANDING_BATCHES = 16  # batches of noise (of --batch-size) over which an EMA generator's BatchNorm statistics are taken


def build_optimizer(name: str, parameters, lr: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr)
    return torch.optim.Adam(parameters, lr=lr, betas=betas)


def build_nets(cfg: GanConfig, settings: Resolved, channels: int) -> tuple[nn.Module, nn.Module, dict]:
    """(G, D, meta): meta holds what gan_sample needs to rebuild G without the data."""
    if gan_toy.is_toy(cfg.data):
        G, D = gan_toy.build_nets(cfg.nz, packing=cfg.packing, spectral_norm=cfg.spectral_norm)
        return G, D, {"kind": "toy", "nz": cfg.nz, "hidden": gan_toy.HIDDEN, "data": cfg.data,
                      "scale": gan_toy.extent(cfg.data)}
    spec = settings.spec
    G = dcgan.build_generator(spec, cfg.image_size, channels)
    D = dcgan.build_critic(spec, cfg.image_size, channels)
    return G, D, {"kind": "dcgan", "spec": dataclasses.asdict(spec), "size": cfg.image_size, "channels": channels,
                  "nz": spec.nz, "data": cfg.data}


def data_settings(cfg: GanConfig) -> gan_data.DataSettings:
    load_size = cfg.load_size or cfg.image_size
    if load_size < cfg.image_size:
        raise UserError(f"--load-size {load_size} is smaller than --image-size {cfg.image_size}")
    return gan_data.DataSettings(spec=cfg.data, root=cfg.data_root, sample=cfg.sample, size=cfg.image_size,
                                 load_size=load_size, channels=cfg.channels, flip=cfg.flip, stream=cfg.stream,
                                 workers=cfg.workers, on_bad_image=cfg.on_bad_image, allow_upscale=cfg.allow_upscale,
                                 seed=cfg.seed)


def build_batches(cfg: GanConfig, info: dist.DistInfo):
    """This rank's share of each global batch: the toy's sampler, or images resident or streamed."""
    if gan_toy.is_toy(cfg.data):
        return gan_toy.ToyBatches(cfg.data, cfg.batch_size, info.rank, info.world_size, cfg.seed, info.device)
    return gan_data.build_batches(data_settings(cfg), cfg.batch_size, info.rank, info.world_size, info.device)


def run(cfg: GanConfig) -> dict:
    """Train, write samples/metrics/checkpoints into the run folder, return the final metrics."""
    settings = resolve(cfg)
    info, precision_name = lifecycle.setup_runtime(cfg.device, cfg.seed, cfg.deterministic, cfg.batch_size,
                                                           cfg.precision)
    check_packing(cfg, info.world_size)
    life = lifecycle.open_run("gan", cfg, info, RESUME_MAY_CHANGE)
    cfg = life.cfg
    batches = build_batches(cfg, info)
    loop, meta = build_loop(cfg, settings, info, precision_name, batches)
    fixed_z = torch.randn(cfg.n_samples, meta["nz"], generator=torch.Generator().manual_seed(cfg.seed + 2))
    state = restore(life, loop) if life.saved is not None else new_state()
    if life.saved is not None and life.status.get("status") == "finished" and not has_work(cfg, state):
        numbers = {key: value for key, value in life.status.items()
                   if isinstance(value, float) and key not in ("updated", "started")}
        return lifecycle.already_finished(life, f"{cfg.out} already finished at generator iteration "
                                          f"{state['iteration']}: nothing to do (raise --iterations or --max-minutes "
                                          "to train on)", numbers)
    lifecycle.start(life, f"resumed {cfg.out} at generator iteration {state['iteration']} of {cfg.iterations}")
    meta.update(source=batches.source, images=len(batches), loss=cfg.loss)
    loop.wrap(info.distributed, cfg.compile)
    life.say(f"training {cfg.loss} on {batches.source} ({len(batches)} images, {batches.kind}) for "
             f"{cfg.iterations} generator iterations, batch {cfg.batch_size} on {info.world_size} x "
             f"{info.device.type}, {precision_name}, {settings.optimizer} lr {settings.lr:g}"
             + (f" (critic {settings.lr_d:g})" if settings.lr_d != settings.lr else ""))
    try:
        result = train(life, loop, state, fixed_z, meta)
    except UserError as error:  # a NaN stop or a bad streamed image: say so in status.json, keep the checkpoint
        lifecycle.fail(life, error, iteration=state["iteration"])
        raise
    if batches.skipped:
        life.say(f"skipped {batches.skipped} unreadable or too small images of {batches.source}")
    lifecycle.finish(life, {k: v for k, v in result.items() if isinstance(v, float)})
    life.say(f"done: {state['iteration']} generator iterations, W {result.get('wasserstein', float('nan')):.4f}, "
             f"{state['train_time']:.1f} s training; run folder {cfg.out}")
    del loop  # the DDP wrappers, before dist.cleanup
    dist.cleanup()
    return {**result, "run_dir": cfg.out}


def build_loop(cfg: GanConfig, settings: Resolved, info: dist.DistInfo, precision_name: str,
               batches) -> tuple["Loop", dict]:
    """The nets (on the device, in their memory format), optimizers, scalers and noise stream of a run; (Loop, meta)."""
    G, D, meta = build_nets(cfg, settings, batches.channels)
    memory_format = torch.channels_last if cfg.channels_last and meta["kind"] == "dcgan" else torch.contiguous_format
    G, D = G.to(info.device, memory_format=memory_format), D.to(info.device, memory_format=memory_format)
    loop = Loop(cfg=cfg, settings=settings, info=info, precision_name=precision_name, G=G, D=D, g_net=G, d_net=D,
                opt_g=build_optimizer(settings.optimizer, G.parameters(), settings.lr, settings.betas),
                opt_d=build_optimizer(settings.optimizer, D.parameters(), settings.lr_d, settings.betas),
                scaler_g=precision.make_scaler(precision_name, info.device),
                scaler_d=precision.make_scaler(precision_name, info.device),
                # z and GP weights, global batch on every rank, drawn on the device: no copy per step
                noise=torch.Generator(device=info.device).manual_seed(cfg.seed + 1),
                batches=batches, memory_format=memory_format,
                ema=GeneratorEMA(G, cfg.ema) if cfg.ema > 0 else None,  # a copy of G as it starts (StyleGAN2-ADA)
                # DiffAugment's draws, global batch on every rank like the noise, from their own stream
                augment=torch.Generator(device=info.device).manual_seed(cfg.seed + 3) if cfg.diffaugment else None)
    return loop, meta


def new_state() -> dict:
    # result: the last line's numbers, for status.json also after a kill between the last checkpoint and the end
    return {"iteration": 0, "critic_iterations": 0, "skipped": 0, "log_lines": 0, "train_time": 0.0, "result": {},
            "interval": {"sums": {}, "count": 0, "critic_steps": 0, "time": 0.0}}


def budget_seconds(cfg: GanConfig) -> float:
    return cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf


def has_work(cfg: GanConfig, state: dict) -> bool:
    return state["iteration"] < cfg.iterations and state["train_time"] < budget_seconds(cfg)


@dataclass
class Loop:
    """Everything a generator iteration touches: `critic_step()` n_critic times, then `generator_step()` (train())."""
    cfg: GanConfig
    settings: Resolved
    info: dist.DistInfo
    precision_name: str
    G: nn.Module
    D: nn.Module
    g_net: nn.Module  # G, or its DDP wrapper
    d_net: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    noise: torch.Generator
    batches: object
    memory_format: torch.memory_format
    ema: GeneratorEMA | None = None  # the averaged generator that samples are drawn from (--ema)
    augment: torch.Generator | None = None  # DiffAugment's draws (--diffaugment)

    def wrap(self, distributed: bool, compile_nets: bool) -> None:
        """g_net and d_net: DDP-wrapped (several ranks) and/or compiled; G and D stay the bare nets."""
        self.g_net = nn.parallel.DistributedDataParallel(self.G) if distributed else self.G
        self.d_net = nn.parallel.DistributedDataParallel(self.D) if distributed else self.D
        # WGAN-GP differentiates the critic twice (the penalty's gradient of a gradient), which inductor's compiled
        # backward refuses (pytorch#183603): under --compile only the generator is compiled there
        compile_critic = compile_nets and self.cfg.loss != "wgan-gp"
        self.g_net = precision.maybe_compile(self.g_net, compile_nets)
        self.d_net = precision.maybe_compile(self.d_net, compile_critic)

    def checkpointed(self) -> dict:
        return {"generator": self.G, "critic": self.D, "opt_g": self.opt_g, "opt_d": self.opt_d,
                "scaler_g": self.scaler_g, "scaler_d": self.scaler_d, "noise": self.noise, "batches": self.batches,
                "generator_ema": self.ema.model if self.ema else None, "augment": self.augment}

    def draw(self, shape: tuple[int, ...], uniform: bool = False) -> torch.Tensor:
        """This rank's slice of a global draw (global batch first), so any rank count gives the same run; drawn on
        the device from the run's device generator (its state is checkpointed)."""
        values = (torch.rand if uniform else torch.randn)(shape, generator=self.noise, device=self.noise.device)
        per_rank = shape[0] // self.info.world_size
        return values[self.info.rank * per_rank:(self.info.rank + 1) * per_rank]

    def critic_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the critic sees of this rank's batch x (b, C, H, W) or toy points (b, 2): DiffAugment with fresh
        draws (real and fake batches each their own, as the paper's code), then PacGAN packing to (b / m, m C, ...)."""
        if self.augment is not None:
            # drawn for the global batch, this rank's rows kept: any rank count gives the same run
            b, world = x.shape[0], self.info.world_size
            draws = draw_augment(self.cfg.diffaugment, b * world, x.shape[2], x.shape[3], self.augment)
            x = apply_augment(x, draws.rows(self.info.rank * b, (self.info.rank + 1) * b))
        if self.cfg.packing > 1:  # pack's reshape of a channels_last batch comes back in NCHW order
            x = pack(x, self.cfg.packing).contiguous(memory_format=self.memory_format)
        return x

    def critic_step(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        real = self.batches.next_batch().contiguous(memory_format=self.memory_format)  # (b, C, H, W) in [-1, 1]
        if cfg.loss == "wgan":
            clip_weights_(self.D, cfg.clip)  # before each critic step, as the WGAN code
        z = self.draw((cfg.batch_size, self.settings.spec.nz))  # (b, nz)
        with torch.no_grad(), precision.autocast(self.info.device, self.precision_name):
            fake = self.G(z).float()  # (b, C, H, W); no graph into G
        # one weight per critic input: the penalty interpolates packed (and augmented) inputs
        alpha = self.draw((cfg.batch_size // cfg.packing,), uniform=True) if cfg.loss == "wgan-gp" else None
        scale = self.scaler_d.get_scale() if self.scaler_d.is_enabled() else 1.0
        objective, stats = critic_objective(self.d_net, self.critic_input(real), self.critic_input(fake), cfg.loss,
                                            cfg.gp_weight, self.precision_name, scale, alpha)
        return self._step(objective, self.opt_d, self.scaler_d, None, stats)

    def generator_step(self) -> dict[str, torch.Tensor]:
        z = self.draw((self.cfg.batch_size, self.settings.spec.nz))
        with precision.autocast(self.info.device, self.precision_name):
            fake = self.g_net(z)  # (b, C, H, W), graph into G
        # the bare critic, not its DDP wrapper: no critic gradient is reduced, and backward(inputs=G's
        # parameters) leaves the critic's .grad alone (the lesson froze it with set_trainable(netD, False));
        # DiffAugment is differentiable, so G learns through the same kind of transform the critic sees
        fake = self.critic_input(fake.contiguous(memory_format=self.memory_format))
        objective = generator_objective(self.D, fake, self.cfg.loss, self.precision_name)
        return self._step(objective, self.opt_g, self.scaler_g, list(self.G.parameters()),
                          {"generator_loss": objective.detach()})

    def average_generator(self, iteration: int) -> None:
        """After generator iteration `iteration` (0-based): fold G's new weights into the EMA, if the run keeps one."""
        if self.ema is not None:
            self.ema.update(self.G, ema_decay(self.cfg.ema, iteration, self.cfg.ema_rampup or None))

    def sampler(self) -> nn.Module:
        """The generator that grids, toy counts, `darkroom sample` and eval draw from: the EMA when the run keeps one,
        else G. An EMA copies the live net's BatchNorm statistics, which belong to other weights; before sampling
        they are recomputed for the averaged weights over fixed noise (BigGAN's standing statistics, arXiv:1809.11096).
        Training never reads them (the next update copies the live ones again), so resume stays exact."""
        if self.ema is None:
            return self.G
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.ema.model.modules()):
            noise = torch.Generator(device=self.info.device).manual_seed(self.cfg.seed + 4)  # the same each time
            shape = (self.cfg.batch_size, self.settings.spec.nz)
            standing_batchnorm_stats_(self.ema.model, (torch.randn(shape, generator=noise, device=noise.device)
                                                       for _ in range(STANDING_BATCHES)))
        return self.ema.model

    def _step(self, objective, optimizer, scaler, inputs, stats: dict) -> dict[str, torch.Tensor]:
        if self.precision_name == "fp16":
            # dynamic loss scaling: an overflow (inf/NaN, also in the penalty's scaled input gradients) makes
            # GradScaler skip the step and halve the scale; such a step is counted, its statistics left out
            finite = bool(torch.isfinite(objective.detach()))
            scaler.scale(objective).backward(inputs=inputs)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            return stats if finite else {"skipped": torch.ones(())}
        if self.cfg.on_nan == "skip" and not dist.finite_on_every_rank(objective):
            optimizer.zero_grad(set_to_none=True)
            return {"skipped": torch.ones(())}
        objective.backward(inputs=inputs)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return stats


def train(life: lifecycle.Run, loop: Loop, state: dict, fixed_z: torch.Tensor, meta: dict) -> dict:
    """Generator iterations until --iterations or --max-minutes; logs, grids and checkpoints on their steps."""
    cfg, info, folder = life.cfg, life.info, life.folder
    bar = tqdm(total=cfg.iterations, initial=state["iteration"], desc="gan", disable=cfg.quiet or not info.is_main,
               leave=False)
    result: dict = dict(state.get("result", {}))
    budget = budget_seconds(cfg)
    while has_work(cfg, state):
        started = time.time()
        steps = critic_steps(state["iteration"], loop.settings.n_critic, loop.settings.warmup)
        for optimizer, lr in ((loop.opt_g, loop.settings.lr), (loop.opt_d, loop.settings.lr_d)):
            set_lr_momentum(optimizer, lr_at(cfg, lr, state["iteration"]), None)
        for _ in range(steps):
            accumulate(state, loop.critic_step())
        accumulate(state, loop.generator_step())
        loop.average_generator(state["iteration"])
        state["iteration"] += 1
        state["critic_iterations"] += steps
        if state["iteration"] % cfg.log_every == 0 or state["iteration"] == cfg.iterations:
            dist.synchronize(info.device)  # the log's it/s covers the queued iterations (the others make no sync)
        elapsed = time.time() - started
        state["train_time"] += elapsed
        state["interval"]["count"] += 1
        state["interval"]["critic_steps"] += steps
        state["interval"]["time"] += elapsed
        bar.update(1)
        last = state["iteration"] == cfg.iterations or state["train_time"] >= budget
        if state["iteration"] % cfg.log_every == 0 or last:
            result = log_interval(cfg, info, state, folder, bar, loop.batches.skipped)
        if info.is_main and (state["iteration"] % cfg.sample_every == 0 or last):
            G = loop.sampler()
            write_samples(G, fixed_z, folder, state["iteration"], meta, info.device)
            if meta["kind"] == "toy":  # the toy's mode counts are cheap: log them beside the losses
                counts = gan_toy.coverage(gan_toy.to_data_units(render(G, fixed_z, info.device), meta), cfg.data)
                folder.log({"iteration": state["iteration"], **counts})
                result.update(counts)
        state["result"] = result
        if state["iteration"] % cfg.checkpoint_every == 0 or last:
            save(life, loop, state, meta, fixed_z)
    bar.close()
    return result


def lr_at(cfg: GanConfig, lr: float, iteration: int) -> float:
    """A net's learning rate during generator iteration `iteration` (0-based): constant, or linear to 0."""
    return lr if cfg.lr_decay == "none" else lr * max(0.0, 1.0 - iteration / cfg.iterations)


def accumulate(state: dict, stats: dict[str, torch.Tensor]) -> None:
    sums = state["interval"]["sums"]
    for key, value in stats.items():
        count_key = f"{key}#n"
        sums[key] = sums.get(key, 0.0) + value.detach().float()  # stays on the device: no sync per step
        sums[count_key] = sums.get(count_key, 0.0) + 1


def check_finite(cfg: GanConfig, state: dict, values: list[float]) -> None:
    """--on-nan stop: raise before anything non-finite reaches a checkpoint or the log."""
    if cfg.on_nan == "stop" and not all(math.isfinite(value) for value in values):
        first = state["iteration"] - state["interval"]["count"]
        kept = (f"the last good checkpoint in {cfg.out}/checkpoints is intact" if (Path(cfg.out) / "checkpoints" / "last.pt").exists()
                else "no checkpoint had been written yet")
        raise UserError(f"the GAN losses became non-finite between generator iterations {first} and "
                        f"{state['iteration']}; {kept} (lower --lr, or pass --on-nan skip)")


def log_interval(cfg: GanConfig, info: dist.DistInfo, state: dict, folder, bar, bad_images: int) -> dict:
    """Average the interval's statistics over steps and ranks; stop on a non-finite loss (before any checkpoint)."""
    interval = state["interval"]
    sums = interval["sums"]
    names = sorted(key for key in sums if not key.endswith("#n"))
    means = torch.tensor([float(sums[key]) / max(1.0, float(sums[f"{key}#n"])) for key in names], dtype=torch.float64)
    means = dist.all_reduce_mean(means.to(info.device)).cpu()  # nccl reduces CUDA tensors only
    record = {"iteration": state["iteration"], "critic_iterations": state["critic_iterations"],
              "lr": lr_at(cfg, resolve(cfg).lr, state["iteration"] - 1)}
    record.update({key: float(value) for key, value in zip(names, means) if key != "skipped"})
    check_finite(cfg, state, [record[key] for key in ("critic_loss", "generator_loss") if key in record])
    state["skipped"] += int(round(float(sums.get("skipped", 0.0))))
    record.update(skipped_steps=state["skipped"], bad_images=bad_images, it_per_s=interval["count"] / max(1e-9, interval["time"]),
                  critic_steps_per_s=interval["critic_steps"] / max(1e-9, interval["time"]),
                  train_time=state["train_time"])
    state["interval"] = {"sums": {}, "count": 0, "critic_steps": 0, "time": 0.0}
    if info.is_main:
        bar.set_postfix(d=f"{record.get('critic_loss', float('nan')):.3f}", g=f"{record.get('generator_loss', float('nan')):.3f}",
                        W=f"{record.get('wasserstein', float('nan')):.3f}", it_s=f"{record['it_per_s']:.2f}")
    if folder:
        folder.log(record)
    return record


@torch.no_grad()
def render(G: nn.Module, z: torch.Tensor, device: torch.device) -> torch.Tensor:
    """G's outputs for z in eval mode (BatchNorm's running statistics), float32 on the CPU."""
    was_training = G.training
    G.eval()
    out = torch.cat([G(chunk.to(device)).float().cpu() for chunk in z.split(256)])
    G.train(was_training)
    return out


def write_samples(G: nn.Module, fixed_z: torch.Tensor, folder, iteration: int, meta: dict, device: torch.device) -> None:
    from darkroom.report.grid import save_grid

    images = render(G, fixed_z, device)
    path = folder.samples_dir / f"iter_{iteration:06d}.png"
    if meta["kind"] == "toy":
        gan_toy.save_scatter(gan_toy.to_data_units(images, meta), meta["data"], path)
    else:
        save_grid(images, path, nrow=int(math.ceil(math.sqrt(len(images)))), scale=max(1, 64 // meta["size"]))


def save(life: lifecycle.Run, loop: "Loop", state: dict, meta: dict, fixed_z: torch.Tensor) -> None:
    sums = state["interval"]["sums"]
    sums.update({key: float(value) for key, value in sums.items()})  # device tensors -> numbers (one sync)
    check_finite(life.cfg, state, [sums.get(key, 0.0) for key in ("critic_loss", "generator_loss")])
    loop.sampler()  # an EMA's BatchNorm statistics for its own weights: what darkroom sample and eval load
    lifecycle.save(life, state, loop.checkpointed(), extra={"meta": meta, "fixed_z": fixed_z})


def restore(life: lifecycle.Run, loop: "Loop") -> dict:
    state = lifecycle.restore(life, loop.checkpointed())
    state.pop("rank")
    return state
