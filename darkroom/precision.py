"""Mixed precision: bf16 autocast by default on GPU, fp16 with a dynamic GradScaler, fp32 everywhere else."""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "fast", "fp32", "bf16", "fp16")


def resolve(precision: str, device: torch.device) -> str:
    """`auto` means bf16 on CUDA (no loss scaling needed), fp32 on CPU (AVX2 CPUs have no fast bf16). `fast` is bf16
    wherever the device multiplies bf16 in hardware (CUDA, and CPUs with AMX or AVX512-BF16: 2.2x the fp32 step of
    cpunet on 2 Sapphire Rapids cores), else fp32; the CPU budget presets use it."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision == "fast":
        return "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()) else "fp32"
    return precision


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), where --precision bf16 can beat fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Dynamic loss scaling for fp16 only (a disabled scaler passes losses and steps straight through)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def to_memory_format(module: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    return module.to(memory_format=torch.channels_last) if channels_last else module


def maybe_compile(module: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    return torch.compile(module) if enabled else module
