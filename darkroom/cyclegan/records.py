"""What a CycleGAN run writes besides its checkpoints: the --log-every window's averages, held-out cycle errors and
real/fake/reconstructed grids. The window's sums live in the run's state, so they are checkpointed: a line averaged
across a kill and --resume equals the uninterrupted run's.
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


def count_step(state: dict, losses: dict[str, float], lr: float, seconds: float) -> None:
    """Add one iteration to the window; a step skipped by --on-nan skip adds its LR only, and is counted."""
    window, skipped = state["window"], bool(losses.get("skipped"))
    state["skipped"] += skipped
    values = {"lr": lr} if skipped else {**{name: losses[name] for name in LOSS_TERMS}, "lr": lr}
    for name, value in values.items():
        window["sums"][name] = window["sums"].get(name, 0.0) + value
        window["counts"][name] = window["counts"].get(name, 0) + 1
    window["steps"] += 1
    window["seconds"] += seconds


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
