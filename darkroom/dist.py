"""Distributed setup detected from torchrun's environment: nccl on GPU, gloo on CPU; rank 0 prints and writes.

The same command runs under `python -m darkroom` and `torchrun -m darkroom`.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as torch_dist

from darkroom.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(name: str) -> torch.device:
    """`auto` picks cuda when present, else mps, else cpu; a named device that is not there is a UserError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {name}: this machine has no CUDA GPU that torch {torch.__version__} can use")
        if device.index is not None and device.index >= count:
            raise UserError(f"--device {name}: there are only {count} CUDA GPUs (cuda:0 to cuda:{count - 1})")
    elif device.type == "mps" and not _mps_available():
        raise UserError(f"--device {name}: MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {name}: darkroom runs on cpu, cuda or mps")
    return device


def setup(device_name: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1); a no-op otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if world_size > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    if world_size > 1 and not torch_dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend=backend, rank=rank, world_size=world_size, store=attempt_store(world_size))
    return DistInfo(rank, world_size, local_rank, device)


def attempt_store(world_size: int) -> torch_dist.Store | None:
    """Under torchrun's shared rendezvous store, this attempt's own key space in it; None otherwise (env://).

    torchrun (>= 2.4) lets workers reuse the agent's TCPStore, which outlives a restart: the workers of attempt 2
    can then read attempt 1's addresses and fail in gloo's connectFullMesh ("Connection refused"), using up every
    --max-restarts (pytorch/pytorch#135712). A prefix per TORCHELASTIC_RESTART_COUNT keeps attempts apart.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = torch_dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                                is_master=False, timeout=timedelta(minutes=10))
    return torch_dist.PrefixStore(f"darkroom/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def cleanup() -> None:
    """Leave the process group. Callers drop their DistributedDataParallel wrappers first: a wrapper still alive
    when gloo is torn down can abort the rank at exit ("terminate called without an active exception": 1 run in
    12 of a 2-rank CycleGAN step on a fast CPU, 0 in 16 with the wrappers collected first)."""
    if torch_dist.is_initialized():
        gc.collect()  # the dropped wrappers' reducers, before the group they use goes
        torch_dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (identity when not distributed)."""
    if torch_dist.is_initialized():
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    if torch_dist.is_initialized():
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        tensor /= torch_dist.get_world_size()
    return tensor


def all_reduce_min(tensor: torch.Tensor) -> torch.Tensor:
    """In-place minimum over ranks (identity when not distributed)."""
    if torch_dist.is_initialized():
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MIN)
    return tensor


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on a CUDA device, so that a clock read next covers it (a no-op elsewhere: CPU ops
    run as they are called)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def finite_on_every_rank(value: torch.Tensor) -> bool:
    """Whether `value` is finite on every rank: one decision for all (a rank that skipped a backward the others ran
    would hang DDP's next all-reduce)."""
    bad = (~torch.isfinite(value.detach())).any().float().reshape(1)
    return float(all_reduce_sum(bad)) == 0.0


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank `src`'s buffers (BatchNorm running statistics). The classifier's DDP does not broadcast them
    at each forward (broadcast_buffers=False, one exchange less per step): training reads none, so rank 0's evolve
    as before, and this call before each evaluation makes every rank evaluate with them."""
    if torch_dist.is_initialized():
        for buffer in module.buffers():
            torch_dist.broadcast(buffer, src)


def broadcast_object(obj: object, src: int = 0) -> object:
    """Send a picklable object from `src` to every rank (used for run folder names chosen on rank 0)."""
    if not torch_dist.is_initialized():
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if torch_dist.is_initialized():
        torch_dist.barrier()
