"""Optimizer construction shared by the trainers: parameter groups (decay / no-decay / BN bias) and EMA."""
from __future__ import annotations

import copy

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float, exempt_norm_bias: bool, bias_lr_scale: float) -> list[dict]:
    """Split parameters: conv/linear weights decay; norm weights and biases optionally exempt (arXiv:1706.02677 §5.1
    practice) and biases' LR scaled by `bias_lr_scale` (airbench trains BN biases 64x faster)."""
    decay, no_decay, biases = [], [], []
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            is_norm = isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d))
            if name == "bias":
                biases.append(parameter)
            elif is_norm and exempt_norm_bias:
                no_decay.append(parameter)
            else:
                decay.append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay, "lr_scale": 1.0}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0})
    if biases:
        groups.append({"params": biases, "weight_decay": 0.0 if exempt_norm_bias else weight_decay, "lr_scale": bias_lr_scale})
    return groups


def set_lr_momentum(optimizer: torch.optim.Optimizer, lr: float, momentum: float | None) -> None:
    """Set each group's LR (times its lr_scale) and momentum (SGD) or beta1 (Adam family)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
        if momentum is None:
            continue
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        elif "momentum" in group:
            group["momentum"] = momentum


def decoupled_decay_(optimizer: torch.optim.Optimizer) -> None:
    """Decoupled weight decay (arXiv:1711.05101) for SGD: w <- w (1 - lr * wd) before the step, per group."""
    with torch.no_grad():
        for group in optimizer.param_groups:
            if group.get("decoupled_decay", 0) > 0:
                for parameter in group["params"]:
                    parameter.mul_(1 - group["lr"] * group["decoupled_decay"])


class EMA:
    """Exponential moving average of a model's parameters and buffers, kept as a frozen copy."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_value, value in zip(self.model.state_dict().values(), model.state_dict().values()):
            if ema_value.dtype.is_floating_point:
                ema_value.lerp_(value, 1 - self.decay)
            else:
                ema_value.copy_(value)
