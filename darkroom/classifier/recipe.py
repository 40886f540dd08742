"""The classifier's net and optimizer as its config asks, airbench94_muon's techniques included (each a config field,
off by default): BatchNorm eps and frozen weights, a fixed logit scale, a frozen whitening stem whose bias trains for
its first epochs only, Muon on the conv filters beside SGD, a head LR, per-step weight decay, the summed loss.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from darkroom.errors import UserError
from darkroom.nets import CLASSIFIERS
from darkroom.nets.classifier import Scale
from darkroom.optim import Muon, param_groups, set_lr_momentum

NORMS = (nn.modules.batchnorm._BatchNorm,)


def stem_of(model: nn.Module) -> nn.Conv2d | None:
    """The net's 2x2 whitening stem (fastnet, cpunet), or None."""
    first = model[0] if isinstance(model, nn.Sequential) else None
    return first if isinstance(first, nn.Conv2d) and first.kernel_size == (2, 2) else None


def head_of(model: nn.Module) -> nn.Linear:
    return [module for module in model.modules() if isinstance(module, nn.Linear)][-1]


def build_net(arch: str, channels: int, classes: int, norm_eps: float | None = None,
              logit_scale: float = 0.0) -> nn.Sequential:
    """CLASSIFIERS[arch] with what the config changes in its forward (training and `load_run` build it alike):
    BatchNorm's eps and, when logit_scale > 0, a fixed factor on the logits (airbench94_muon divides them by the
    head's width, 256)."""
    return configure_net(CLASSIFIERS[arch](channels, classes), norm_eps, logit_scale)


def configure_net(net: nn.Sequential, norm_eps: float | None = None, logit_scale: float = 0.0) -> nn.Sequential:
    """build_net's changes to a built net, in place; returns it."""
    if norm_eps is not None:
        for module in net.modules():
            if isinstance(module, NORMS):
                module.eps = norm_eps
    if logit_scale > 0:
        if isinstance(net[-1], Scale):
            net[-1].factor = logit_scale
        else:
            net.append(Scale(logit_scale))
    return net


def prepare_for_training(net: nn.Module, cfg, fresh: bool) -> None:
    """What the config freezes and (fresh runs only) initialises: BatchNorm weights fixed at their initial 1, the
    stem's filters fixed, the head's weight at unit standard deviation under --logit-scale (airbench94_muon)."""
    stem = stem_of(net)
    if (cfg.freeze_stem or cfg.stem_bias_epochs > 0) and stem is None:
        flag = "--freeze-stem" if cfg.freeze_stem else "--stem-bias-epochs"
        raise UserError(f"{flag}: --arch {cfg.arch} has no 2x2 whitening stem (fastnet and cpunet have one)")
    if cfg.stem_bias_epochs > 0 and stem.bias is None:
        raise UserError(f"--stem-bias-epochs: the stem of --arch {cfg.arch} has no bias")
    if cfg.freeze_norm_weight:
        for module in net.modules():
            if isinstance(module, NORMS) and module.weight is not None:
                module.weight.requires_grad_(False)
    if cfg.freeze_stem:
        stem.weight.requires_grad_(False)
    if cfg.logit_scale > 0 and fresh:
        with torch.no_grad():
            weight = head_of(net).weight
            weight /= weight.std()


def stem_bias_steps(cfg, steps_per_epoch: int) -> int:
    """Steps the stem's bias trains under --stem-bias-epochs (airbench94_muon: ceil(3 x steps per epoch)); 0: all."""
    return math.ceil(cfg.stem_bias_epochs * steps_per_epoch) if cfg.stem_bias_epochs > 0 else 0


def stem_bias_factor(step: int, steps: int) -> float:
    """The stem bias's LR as a fraction of its peak: 1 - step / steps, then 0 (frozen: an SGD step of LR 0 leaves a
    weight exactly as it is), a function of the step alone so a resume continues it."""
    return max(0.0, 1.0 - step / steps)


class MuonWithSGD:
    """--optimizer muon: Muon for the conv filters and SGD for every other parameter, stepped together (airbench94_
    muon's two optimizers). It exposes both optimizers' param_groups (the GradScaler unscales them, decoupled decay
    and the schedule set them) and one state_dict."""

    def __init__(self, muon: Muon, sgd: torch.optim.SGD) -> None:
        self.muon, self.sgd = muon, sgd

    @property
    def param_groups(self) -> list[dict]:
        return self.sgd.param_groups + self.muon.param_groups

    def step(self, closure=None) -> None:
        self.sgd.step()
        self.muon.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.sgd.zero_grad(set_to_none=set_to_none)
        self.muon.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"sgd": self.sgd.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.sgd.load_state_dict(state["sgd"])
        self.muon.load_state_dict(state["muon"])


def optimizer_groups(cfg, model: nn.Module) -> tuple[list[dict], list[nn.Parameter]]:
    """(SGD/AdamW parameter groups, conv filters for Muon). The groups are optim.param_groups' (decaying weights,
    exempt norm weights, biases at --bias-lr-scale), with, as the config asks, the conv filters taken out for Muon,
    the head's weight in a group of its own at --head-lr and the stem's bias in one of its own (--stem-bias-epochs);
    every group's weight decay is --weight-decay, or --step-decay / the group's peak LR. With all of those off the
    groups are optim.param_groups' exactly."""
    groups = param_groups(model, 1.0, cfg.exempt_norm_bias, cfg.bias_lr_scale)  # weight_decay 1 marks decaying groups
    filters: list[nn.Parameter] = []
    if cfg.optimizer == "muon":
        filters = [p for group in groups for p in group["params"] if p.dim() == 4]
    stem = stem_of(model)
    own: dict[int, dict] = {}  # id(parameter) -> its own group's settings
    if cfg.head_lr > 0:
        own[id(head_of(model).weight)] = {"lr_scale": cfg.head_lr / cfg.lr}
    if cfg.stem_bias_epochs > 0 and stem is not None and stem.bias is not None:
        own[id(stem.bias)] = {"stem_bias": True}
    taken = {id(p) for p in filters} | set(own)
    split: list[dict] = []
    for group in groups:
        for p in group["params"]:
            if id(p) in own:
                split.append({**group, "params": [p], **own[id(p)]})
        group["params"] = [p for p in group["params"] if id(p) not in taken]
    groups = [group for group in groups + split if group["params"]]
    for group in groups:
        peak = cfg.lr * group["lr_scale"]
        group["weight_decay"] *= cfg.step_decay / peak if cfg.step_decay > 0 else cfg.weight_decay
        if group.get("stem_bias"):
            group["peak_lr"] = peak
    return groups, filters


def build_optimizer(cfg, model: nn.Module):
    groups, filters = optimizer_groups(cfg, model)
    if cfg.optimizer == "adamw":  # AdamW's decay is decoupled already
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.mom_max, 0.99))
    if cfg.decoupled_wd:  # torch's SGD has no decoupled decay: the step applies it (optim.decoupled_decay_)
        for group in groups:
            group["decoupled_decay"], group["weight_decay"] = group["weight_decay"], 0.0
    sgd = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.mom_max, nesterov=cfg.nesterov)
    if cfg.optimizer != "muon":
        return sgd
    if not filters:
        raise UserError(f"--optimizer muon: --arch {cfg.arch} has no trainable conv filters")
    muon = Muon([{"params": filters, "lr_scale": cfg.muon_lr / cfg.lr}], lr=cfg.muon_lr, momentum=cfg.muon_momentum,
                nesterov=cfg.nesterov, ns_steps=cfg.muon_ns_steps, normalize_weights=cfg.muon_normalize)
    return MuonWithSGD(muon, sgd)


def set_schedule(optimizer, lr: float, momentum: float | None, stem_factor: float = 1.0) -> None:
    """Each group's LR (lr times its lr_scale) and momentum; Muon keeps its own momentum; the stem bias's group (if
    any) at its peak LR times `stem_factor` (stem_bias_factor), apart from the main schedule as airbench94_muon."""
    if isinstance(optimizer, MuonWithSGD):
        set_lr_momentum(optimizer.sgd, lr, momentum)
        set_lr_momentum(optimizer.muon, lr, None)
    else:
        set_lr_momentum(optimizer, lr, momentum)
    for group in optimizer.param_groups:
        if group.get("stem_bias"):
            group["lr"] = group["peak_lr"] * stem_factor


def loss_of(logits: torch.Tensor, y: torch.Tensor, cfg, world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss to differentiate, this rank's mean loss per image for the log). --loss-reduction sum is times the
    ranks: DDP averages gradients over them, and the global batch's summed loss is what the LRs are for."""
    if cfg.loss_reduction == "mean":
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        return loss, loss.detach()
    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing, reduction="sum")
    return loss * world_size, loss.detach() / y.numel()
