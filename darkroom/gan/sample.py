"""Samples from a trained GAN run: grids (optionally with the truncation trick) and latent interpolation strips.

    darkroom sample runs/gan-... --n 64 --out grid.png [--truncate 1.5] [--seed 0] [--interpolate]
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

from darkroom import checkpoint
from darkroom.dist import pick_device
from darkroom.errors import UserError
from darkroom.nets import dcgan
from darkroom.report.grid import save_grid, to_uint8


def _device(device: str | torch.device) -> torch.device:
    return pick_device(device) if isinstance(device, str) else device


def load_generator(run_dir: str | os.PathLike, device: str | torch.device = "cpu",
                   ema: bool = True) -> tuple[nn.Module, dict]:
    """The run's generator in eval mode on `device`, and the checkpoint's meta (nz, size, channels, kind, data) with
    "weights": "ema" when the run kept an average of the generator's weights (--ema; its BatchNorm statistics taken
    for those weights at the checkpoint) and `ema` asks for it, else "live" (the trained weights themselves)."""
    path = Path(run_dir) / "checkpoints" / "last.pt"
    if not Path(run_dir).is_dir():
        raise UserError(f"run folder {run_dir} does not exist")
    saved = checkpoint.load(path)
    if saved.get("task") != "gan":
        raise UserError(f"{run_dir} holds a {saved.get('task', 'unknown')} run, not a GAN run")
    meta = saved["meta"]
    if meta["kind"] == "toy":
        from darkroom.gan import toy as gan_toy

        G, _ = gan_toy.build_nets(meta["nz"], meta["hidden"])
    else:
        spec = dcgan.DCGANSpec(**meta["spec"])
        G = dcgan.build_generator(spec, meta["size"], meta["channels"])
    averaged = saved.get("generator_ema") if ema else None
    G.load_state_dict(saved["generator"] if averaged is None else averaged)
    return G.to(_device(device)).eval(), {**meta, "weights": "live" if averaged is None else "ema"}


def truncated_noise(n: int, nz: int, truncate: float | None, generator: torch.Generator) -> torch.Tensor:
    """z (n, nz) ~ N(0, I), with every entry whose |z| exceeds `truncate` redrawn until it does not
    (the truncation trick, BigGAN arXiv:1809.11096 sec. 3.1): fewer odd samples, less variety."""
    z = torch.randn(n, nz, generator=generator)
    if truncate is None:
        return z
    if truncate <= 0:
        raise UserError(f"--truncate must be positive, not {truncate}")
    for _ in range(1000):
        outside = z.abs() > truncate
        if not outside.any():
            return z
        z[outside] = torch.randn(int(outside.sum()), generator=generator)
    raise UserError(f"--truncate {truncate} is too small: values inside it are too rare to draw")


@torch.no_grad()
def render(G: nn.Module, z: torch.Tensor, device: str | torch.device = "cpu", batch_size: int = 500) -> torch.Tensor:
    """G(z) in float32 on the CPU: images (N, C, H, W) in [-1, 1], or toy points (N, 2)."""
    device = _device(device)
    return torch.cat([G(chunk.to(device)).float().cpu() for chunk in z.split(batch_size)])


def generate(run_dir: str | os.PathLike, n: int, seed: int = 0, device: str | torch.device = "cpu",
             truncate: float | None = None, ema: bool = True) -> torch.Tensor:
    """n samples of the run's generator (its EMA when it kept one and `ema`) as uint8 (n, C, H, W) (what darkroom
    eval gan scores)."""
    G, meta = load_generator(run_dir, device, ema)
    if meta["kind"] == "toy":
        raise UserError(f"{run_dir} is a toy run: its samples are points, not images")
    return to_uint8(render(G, truncated_noise(n, meta["nz"], truncate, torch.Generator().manual_seed(seed)), device))


def sample_grid(run_dir: str | os.PathLike, n: int = 64, out: str | os.PathLike = "grid.png", seed: int = 0,
                truncate: float | None = None, device: str | torch.device = "cpu", ema: bool = True) -> Path:
    """Write n samples (of the EMA when the run kept one and `ema`) as a square-ish grid PNG at `out` (a scatter
    plot for toy runs); returns the path."""
    if n < 1:
        raise UserError(f"--n must be at least 1, not {n}")
    G, meta = load_generator(run_dir, device, ema)
    images = render(G, truncated_noise(n, meta["nz"], truncate, torch.Generator().manual_seed(seed)), device)
    if meta["kind"] == "toy":
        from darkroom.gan import toy as gan_toy

        return gan_toy.save_scatter(gan_toy.to_data_units(images, meta), meta["data"], Path(out))
    return save_grid(images, Path(out), nrow=math.ceil(math.sqrt(n)), scale=max(1, 64 // meta["size"]))


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (White 2016, arXiv:1609.04468): z0, z1 (nz,), t (T,) -> (T, nz).

    Gaussian noise lives near a sphere of radius sqrt(nz); a straight line between two draws passes through
    the low-norm interior the generator never saw, so lerp's midpoints look washed out and slerp's do not.
    """
    cos = torch.dot(z0, z1) / (z0.norm() * z1.norm())
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if omega.abs() < 1e-4:  # nearly parallel: lerp is exact enough
        return (1 - t)[:, None] * z0 + t[:, None] * z1
    return (torch.sin((1 - t) * omega)[:, None] * z0 + torch.sin(t * omega)[:, None] * z1) / torch.sin(omega)


def interpolation_strip(run_dir: str | os.PathLike, out: str | os.PathLike = "interpolation.png", steps: int = 10,
                        seed: int = 0, device: str | torch.device = "cpu", rows: int = 1) -> Path:
    """Write `rows` strips of `steps` images, each slerping between two noise vectors drawn from `seed`."""
    if steps < 2 or rows < 1:
        raise UserError(f"an interpolation needs at least 2 steps and 1 row, not {steps} and {rows}")
    G, meta = load_generator(run_dir, device)
    if meta["kind"] == "toy":
        raise UserError(f"{run_dir} is a toy run: its samples are points, not images to interpolate")
    generator = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, steps)
    z = torch.cat([slerp(*torch.randn(2, meta["nz"], generator=generator), t) for _ in range(rows)])  # (rows * steps, nz)
    return save_grid(render(G, z, device), Path(out), nrow=steps, scale=max(1, 64 // meta["size"]))
