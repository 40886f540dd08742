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


# Newton-Schulz quintic coefficients chosen to maximise the slope at zero (K. Jordan's Muon, also torch.optim.Muon):
# the iteration maps every singular value of a matrix of spectral norm <= 1 into roughly [0.7, 1.2] in 5 steps.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: torch.Tensor, steps: int = 5, eps: float = 1e-7, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Approximately U V^T of matrix = U S V^T (2-D) by `steps` Newton-Schulz iterations, in `dtype` (default: bf16 on
    CUDA, where it is fast and enough, fp32 elsewhere). Runs on the wide orientation so the Gram matrix is small."""
    if matrix.dim() != 2:
        raise ValueError(f"orthogonalize needs a 2-D matrix, got shape {tuple(matrix.shape)}")
    a, b, c = NS_COEFFICIENTS
    x = matrix.to(dtype or (torch.bfloat16 if matrix.is_cuda else torch.float32))
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / (x.norm() + eps)  # Frobenius norm >= spectral norm: every singular value now <= 1
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(matrix.dtype)


class Muon(torch.optim.Optimizer):
    """Muon (K. Jordan 2024) as airbench94_muon uses it on conv filters: heavy-ball momentum (Nesterov optional),
    the update orthogonalised by Newton-Schulz over the filter flattened to (out, in*k*k), and, when
    `normalize_weights`, each filter bank rescaled to Frobenius norm sqrt(out) before its step (so the step size is
    relative and no weight decay is needed).

    torch.optim.Muon takes only 2-D parameters and has no weight renormalisation, hence this one; for 2-D
    parameters without renormalisation the two give the same update (momentum's scale cancels in the
    orthogonalisation), which the tests check.
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5,
                 normalize_weights: bool = True, ns_dtype: torch.dtype | None = None) -> None:
        if lr < 0 or not 0 <= momentum < 1 or ns_steps < 1:
            raise ValueError(f"Muon needs lr >= 0, 0 <= momentum < 1 and ns_steps >= 1 (got {lr}, {momentum}, {ns_steps})")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                                      normalize_weights=normalize_weights))
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.dim() < 2:
                    raise ValueError(f"Muon is for weight matrices and conv filters; got a parameter of shape "
                                     f"{tuple(parameter.shape)} (give biases and norms to another optimizer)")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            momentum = group["momentum"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                grad = parameter.grad
                state = self.state[parameter]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(grad)
                buffer = state["momentum_buffer"]
                buffer.mul_(momentum).add_(grad)
                direction = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
                if group["normalize_weights"]:
                    parameter.mul_(len(parameter) ** 0.5 / parameter.norm())
                update = orthogonalize(direction.reshape(len(direction), -1), group["ns_steps"], dtype=self.ns_dtype)
                parameter.add_(update.view_as(parameter), alpha=-group["lr"])
        return loss


class GeneratorEMA(EMA):
    """EMA of a GAN generator as StyleGAN2-ADA's and StudioGAN's training loops keep it: parameters averaged,
    buffers (BatchNorm's running statistics and counter) copied from the live net at every update.

    EMA (above) averages floating buffers too, as timm's ModelEmaV2 and BigGAN-PyTorch do. Neither gives the
    statistics of the averaged weights' own activations; copying keeps statistics that a real set of weights
    produced, averaging blends statistics of weights that were never averaged the same way. Where an eval-mode
    BatchNorm generator is sampled, `standing_batchnorm_stats_` (BigGAN) recomputes them for the EMA weights.
    `decay` per update: None = the constructor's (see `ema_decay` for a ramp at the start of a run).
    """

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float | None = None) -> None:
        weight = 1 - (self.decay if decay is None else decay)
        for ema_parameter, parameter in zip(self.model.parameters(), model.parameters()):
            ema_parameter.lerp_(parameter, weight)
        for ema_buffer, buffer in zip(self.model.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)


def ema_decay(decay: float, iteration: int, rampup: float | None = None) -> float:
    """The EMA decay at generator iteration `iteration` (0-based), optionally ramped as StyleGAN2-ADA (ema_rampup):
    the half-life, log(0.5) / log(decay) updates, is capped at `rampup` times the updates so far, so early
    on the average forgets the random initialisation quickly. rampup None: `decay` unchanged."""
    if rampup is None:
        return decay
    # 0.5 ** (1 / h) is the decay of half-life h and grows with h, so capping h caps the decay
    return min(decay, 0.5 ** (1 / (rampup * (iteration + 1))))


@torch.no_grad()
def standing_batchnorm_stats_(model: nn.Module, inputs: list[torch.Tensor]) -> nn.Module:
    """BigGAN's "standing statistics" (arXiv:1809.11096): reset every BatchNorm's running statistics and
    recompute them as the plain average over `inputs` (any iterable of batches, e.g. a few of noise), in train
    mode without gradients. Leaves `model` in its previous mode with its momenta restored; returns it."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average of the batch statistics
    model.train()
    for x in inputs:
        model(x)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return model.train(was_training)
