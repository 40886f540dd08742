"""What a CycleGAN run writes besides its checkpoints: the --log-every window's averages, held-out cycle errors and
real/fake/reconstructed grids. The window's sums live in the run's state, so they are checkpointed: a line averaged
across a kill and --resume equals the uninterrupted run's. Between host reads the loss sums wait on the device
(DeviceSums), so the steps between make no host sync.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from darkroom import dist, runs
from darkroom.report.grid import save_grid
from darkroom.cyclegan.losses import LOSS_TERMS


def to_input(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float in [-1, 1] on `device`."""
    x = images.to(device, non_blocking=True).float().div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def new_window() -> dict:
    """Per name: the sum and count of the values since the last metrics line (plain numbers: checkpointed)."""
    return {"sums": {}, "counts": {}, "steps": 0, "seconds": 0.0}


def count_step(state: dict, skipped: bool, lr: float, seconds: float) -> None:
    """Add one iteration's host numbers to the window (its losses go through DeviceSums); a step skipped by
    --on-nan skip is counted."""
    window = state["window"]
    state["skipped"] += skipped
    window["sums"]["lr"] = window["sums"].get("lr", 0.0) + lr
    window["counts"]["lr"] = window["counts"].get("lr", 0) + 1
    window["steps"] += 1
    window["seconds"] += seconds


class DeviceSums:
    """The loss terms of the iterations since the last host read, summed on the device, and the first iteration whose
    terms were not all finite (with its terms). add() queues a few ops; flush() (one sync, and a minimum over ranks)
    moves the sums into the window's plain numbers. Every rank flushes at the same iterations."""

    NONE = 2 ** 62  # no non-finite iteration yet

    def __init__(self, device: torch.device) -> None:
        self.dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.sums = torch.zeros(len(LOSS_TERMS), dtype=self.dtype, device=device)
        self.last = torch.full((len(LOSS_TERMS),), float("nan"), dtype=self.dtype, device=device)
        self.bad = torch.zeros(len(LOSS_TERMS), dtype=self.dtype, device=device)
        self.first_bad = torch.full((1,), self.NONE, dtype=torch.int64, device=device)
        self.steps = 0  # iterations summed (skipped ones are not)

    def add(self, values: torch.Tensor, step: int, watch: bool) -> None:
        """values: an unskipped iteration's LOSS_TERMS (9,); watch: note it when they are not all finite."""
        values = values.to(self.dtype)
        self.sums += values
        self.last = values
        self.steps += 1
        if watch:
            now = (self.first_bad == self.NONE) & ~torch.isfinite(values).all()  # (1,)
            self.first_bad = torch.where(now, step, self.first_bad)
            self.bad = torch.where(now, values, self.bad)

    def flush(self, window: dict) -> tuple[int | None, dict[str, float] | None, dict[str, float]]:
        """Add the sums to `window`; returns (first non-finite iteration on any rank or None, this rank's terms there
        (None when another rank's came first), the last iteration's terms)."""
        first_bad = dist.all_reduce_min(self.first_bad.clone())
        n = len(LOSS_TERMS)
        flat = torch.cat([self.sums, self.bad, self.last, first_bad.to(self.dtype), self.first_bad.to(self.dtype)])
        flat = flat.tolist()
        if self.steps:
            for name, value in zip(LOSS_TERMS, flat[:n]):
                window["sums"][name] = window["sums"].get(name, 0.0) + value
                window["counts"][name] = window["counts"].get(name, 0) + self.steps
        bad_step, mine = int(flat[3 * n]), int(flat[3 * n + 1])
        self.sums.zero_()
        self.steps = 0
        found = bad_step < self.NONE
        return (bad_step if found else None, dict(zip(LOSS_TERMS, flat[n:2 * n])) if found and mine == bad_step else None,
                dict(zip(LOSS_TERMS, flat[2 * n:3 * n])))


def log_window(folder: runs.RunFolder | None, info: dist.DistInfo, state: dict, spe: int, batch_size: int,
               skipped_images: int, count_skipped_steps: bool) -> None:
    """One JSON line: every loss term averaged over the window's unskipped steps (and over ranks), the LR, the speed."""
    window = state["window"]
    names = [name for name in (*LOSS_TERMS, "lr") if window["counts"].get(name)]  # the same on every rank
    means = torch.tensor([window["sums"][name] / window["counts"][name] for name in names], dtype=torch.float64)
    means = dist.all_reduce_mean(means.to(info.device)).cpu()  # nccl reduces CUDA tensors only
    step = state["step"]
    record = {"step": step, "epoch": step / spe, **dict(zip(names, means.tolist())),
              "images_per_s": window["steps"] * batch_size / max(window["seconds"], 1e-9),
              "train_time": state["train_time"]}
    if skipped_images:
        record["skipped_images"] = skipped_images
    if count_skipped_steps:
        record["skipped_steps"] = state["skipped"]
    state["window"] = new_window()
    if folder:
        folder.log(record)


@torch.no_grad()
def translate_fixed(nets: dict[str, nn.Module], fixed: tuple[torch.Tensor, torch.Tensor], device: torch.device,
                    batch_size: int = 64) -> dict[str, torch.Tensor]:
    """real/fake/rec of both domains for the fixed images, float in [-1, 1] on the CPU."""
    out: dict[str, list] = {name: [] for name in ("real_a", "fake_b", "rec_a", "real_b", "fake_a", "rec_b")}
    for images, g, f, tag in ((fixed[0], nets["g_ab"], nets["g_ba"], "a"), (fixed[1], nets["g_ba"], nets["g_ab"], "b")):
        other = "b" if tag == "a" else "a"
        for chunk in images.split(batch_size):
            x = to_input(chunk, device, False)
            fake = g(x)
            out[f"real_{tag}"].append(x.cpu())
            out[f"fake_{other}"].append(fake.float().cpu())
            out[f"rec_{tag}"].append(f(fake).float().cpu())
    return {name: torch.cat(parts) for name, parts in out.items()}


def record_validation(folder: runs.RunFolder | None, info: dist.DistInfo, nets: dict[str, nn.Module],
                      fixed: tuple[torch.Tensor, torch.Tensor], held_out: bool, step: int, spe: int) -> dict[str, float]:
    """Mean |F(G(x)) - x| on the held-out images of each domain, in [-1, 1] units (rank 0 computes and logs)."""
    if not info.is_main:
        return {"step": step, "val_cycle_a": float("nan"), "val_cycle_b": float("nan")}
    images = translate_fixed(nets, fixed, info.device)
    result = {"val_cycle_a": float((images["rec_a"] - images["real_a"]).abs().mean()),
              "val_cycle_b": float((images["rec_b"] - images["real_b"]).abs().mean())}
    if folder:
        folder.log({"step": step, "epoch": step / spe, **result, "held_out": held_out})
    return {"step": step, **result}


def draw_grid(nets: dict[str, nn.Module], fixed: tuple[torch.Tensor, torch.Tensor], device: torch.device, path: Path,
              rows: int = 8) -> None:
    """One row per image pair: real_A, fake_B, rec_A, real_B, fake_A, rec_B (what the lesson shows)."""
    images = translate_fixed(nets, (fixed[0][:rows], fixed[1][:rows]), device)
    order = ("real_a", "fake_b", "rec_a", "real_b", "fake_a", "rec_b")
    n = min(images[name].shape[0] for name in order)
    channels = max(images[name].shape[1] for name in order)
    columns = [images[name][:n].expand(-1, channels, -1, -1) for name in order]  # grayscale next to colour
    grid = torch.stack(columns, dim=1).flatten(0, 1)  # (n * 6, C, H, W), row-major
    save_grid(grid, path, nrow=len(order), scale=max(1, 96 // grid.shape[-1]))
