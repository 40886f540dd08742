"""CycleGAN's losses (arXiv:1703.10593), its history pool of fakes, and the one training step.

Names are direction-explicit: g_ab maps domain A to B, d_b judges domain B (real_b vs fake_b). The
reference calls these netG_A and netD_A; its loss_G_A is our gan_ab and its loss_idt_A our idt_b.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from darkroom import dist, precision

GAN_LOSSES = ("lsgan", "vanilla")
# the step's logged values: its loss terms, then the cycle weights it used (fixed, or --cycle-target's)
LOSS_TERMS = ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "g", "d_a", "d_b", "lambda_a", "lambda_b")


def gan_loss(logits: torch.Tensor, real: bool, kind: str) -> torch.Tensor:
    """Patch logits (B, 1, H', W') against an all-real or all-fake target, averaged over every patch.

    lsgan: least squares to 1/0 (Mao et al., arXiv:1611.04076), the reference default;
    vanilla: binary cross-entropy on logits (Goodfellow et al., arXiv:1406.2661).
    """
    logits = logits.float()
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if kind == "lsgan":
        return F.mse_loss(logits, target)
    if kind == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    raise ValueError(f"gan loss must be one of {GAN_LOSSES}, not {kind!r}")


def cycle_loss(real: torch.Tensor, reconstructed: torch.Tensor) -> torch.Tensor:
    """Mean |F(G(x)) - x| over every pixel (the paper's eq. 2, before its lambda)."""
    return F.l1_loss(reconstructed.float(), real.float())


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Halved, as the reference does, so D learns at half the rate of G (paper section 4 / 7.1)."""
    return 0.5 * (gan_loss(logits_real, True, kind) + gan_loss(logits_fake, False, kind))


@dataclass(frozen=True)
class LossWeights:
    lambda_a: float = 10.0  # cycle A -> B -> A
    lambda_b: float = 10.0  # cycle B -> A -> B
    identity: float = 0.5  # identity L1 weight, relative to lambda (0 turns it off; arXiv:1703.10593 section 5.2)
    gan: str = "lsgan"
    decoder: float = 1.0  # cycle gradient into the reconstructing generator, relative to the translating one


class CycleWeightControl:
    """--cycle-target: each direction's cycle weight follows its own reconstruction error instead of a hand-set lambda.

    After every step, log(lambda_x) += RATE * clamp(log(L1_x / target), -1, 1), times `fall` where that is negative,
    where L1_x is that step's mean |F(G(x)) - x| (averaged over ranks), kept within [lambda_x0 / span_down,
    lambda_x0 * span] of the configured lambda_x0 (the clamp keeps the first steps, whose reconstructions are still
    noise, from driving the weight up). A direction whose reconstructions stay worse than the target gets a larger
    weight; one that reconstructs better than needed gets a smaller one, leaving its translator more room for the
    adversarial term. A pair's shapes decide what each direction needs: rebuilding a bag from a trouser needs more
    weight than rebuilding a trouser from a bag. Every cycle starts above any target because the nets are untrained,
    so every weight climbs at first; `fall` > 1 brings the ones that did not need it back down sooner.
    Lives on the device (no host sync) and in the checkpoint (resume is exact)."""

    RATE = 0.005  # per step: an L1 e times the target (or more) multiplies lambda by e in 200 steps

    def __init__(self, lambda_a: float, lambda_b: float, target: float, device: torch.device, span: float = 3.0,
                 span_down: float | None = None, fall: float = 1.0) -> None:
        span_down = span if span_down is None else span_down
        if target <= 0 or span < 1 or span_down < 1 or fall <= 0:
            raise ValueError("cycle target must be > 0, its spans >= 1 and its fall rate > 0")
        self.target, self.span, self.span_down, self.fall = target, span, span_down, fall
        self.base = torch.tensor([lambda_a, lambda_b], dtype=torch.float32, device=device)
        self.log_factor = torch.zeros(2, dtype=torch.float32, device=device)

    def weights(self) -> torch.Tensor:
        """(lambda_a, lambda_b) for this step, (2,) float32 on the device."""
        return self.base * self.log_factor.exp()

    def update(self, l1: torch.Tensor) -> None:
        """l1: this step's (L1_a, L1_b) on the device (the same on every rank after the mean)."""
        l1 = dist.all_reduce_mean(l1.detach().float().clone())
        error = (l1.clamp_min(1e-12) / self.target).log().clamp(-1.0, 1.0)
        if self.fall != 1.0:
            error = torch.where(error < 0, error * self.fall, error)
        self.log_factor = (self.log_factor + self.RATE * error).clamp(-math.log(self.span_down), math.log(self.span))

    def state_dict(self) -> dict:
        return {"log_factor": self.log_factor.detach().cpu().clone(), "target": self.target}

    def load_state_dict(self, state: dict) -> None:
        self.log_factor = state["log_factor"].to(self.log_factor.device, torch.float32)


def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """x in the forward pass; its gradient multiplied by `factor` in the backward pass."""
    return x if factor == 1.0 else x.detach() + factor * (x - x.detach())


class ImagePool:
    """A history of up to `size` generated images (Shrivastava et al., arXiv:1612.07828), as the reference.

    query(): while the pool is not full, each image is stored and returned as is; once full, each image is,
    with probability 1/2, swapped for a random stored one (which is returned), else returned as is.
    Random draws come from the pool's own generator, so its contents and choices resume exactly.
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []  # each (C, H, W), detached
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W) drawn from the new images and the history."""
        if self.size == 0:
            return images.detach()
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator) < 0.5:
                index = int(torch.randint(0, self.size, (), generator=self.generator))
                out.append(self.images[index].clone())
                self.images[index] = image.clone()
            else:
                out.append(image)
        pooled = torch.stack(out)
        if images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous():
            pooled = pooled.contiguous(memory_format=torch.channels_last)
        return pooled

    def snapshot(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """What query() changes, taken cheaply: stored images are replaced by query(), never written in place."""
        return list(self.images), self.generator.get_state()

    def restore(self, snapshot: tuple[list[torch.Tensor], torch.Tensor]) -> None:
        self.images = list(snapshot[0])
        self.generator.set_state(snapshot[1])

    def state_dict(self) -> dict:
        stacked = torch.stack(self.images).cpu() if self.images else torch.zeros(0)
        return {"size": self.size, "images": stacked, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.size = int(state["size"])
        self.images = [image.to(device) for image in state["images"]] if state["images"].numel() else []
        self.generator.set_state(state["generator"])


class GeneratorPair(nn.Module):
    """g_ab and g_ba as one module, so DDP syncs both with one forward: the generator half of a CycleGAN step."""

    def __init__(self, g_ab: nn.Module, g_ba: nn.Module) -> None:
        super().__init__()
        self.g_ab, self.g_ba = g_ab, g_ba

    def forward(self, real_a: torch.Tensor, real_b: torch.Tensor, identity: bool,
                decoder: float = 1.0) -> dict[str, torch.Tensor]:
        """Every image the generator losses need, each (B, C, H, W). With `decoder` k != 1 the cycle losses' gradient
        reaches the translating generator through the fake divided by k (the caller multiplies the cycle terms by k).

        Three generator calls where the reference makes six (four without identity): each net runs once on everything
        it can see at that point, g_ab(real_a, real_b) -> g_ba(real_b, fake_b, real_a) -> g_ab(fake_a). Instance
        norm is per image, so a call on a concatenation equals separate calls (to rounding). Fewer, larger calls cut the
        fixed per-call cost: the fashion-mnist-shoes preset's step (28 px, batch 4) is about 1.1x faster on 2 CPU
        cores; where convolutions dominate (32 px, batch 8, 6 blocks) it is about the same."""
        n_a, n_b = real_a.shape[0], real_b.shape[0]
        first = self.g_ab(torch.cat([real_a, real_b]) if identity else real_a)  # fake_b (, idt_b)
        fake_b = first[:n_a]
        second = self.g_ba(torch.cat([real_b, scale_gradient(fake_b, 1.0 / decoder), *([real_a] if identity else [])]))
        fake_a = second[:n_b]
        out = {"fake_b": fake_b, "rec_a": second[n_b:n_b + n_a], "fake_a": fake_a,
               "rec_b": self.g_ab(scale_gradient(fake_a, 1.0 / decoder))}
        if identity:  # G should leave images already of its target domain unchanged
            out["idt_b"] = first[n_a:]
            out["idt_a"] = second[n_b + n_a:]
        return out


@dataclass
class CycleGANNets:
    generators: nn.Module  # GeneratorPair, possibly DDP-wrapped
    d_a: nn.Module  # judges domain A, possibly DDP-wrapped
    d_b: nn.Module  # judges domain B, possibly DDP-wrapped


def _unwrapped(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def _requires_grad_(module: nn.Module, flag: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(flag)


def train_step(nets: CycleGANNets, real_a: torch.Tensor, real_b: torch.Tensor, opt_g: torch.optim.Optimizer,
               opt_d: torch.optim.Optimizer, pool_a: ImagePool, pool_b: ImagePool, weights: LossWeights,
               device: torch.device, precision_name: str, scaler: torch.amp.GradScaler,
               skip_non_finite: bool = False, control: CycleWeightControl | None = None) -> tuple[dict[str, float], dict]:
    """One CycleGAN iteration (train_step_on_device) with every loss term read as a float (one device sync) and the
    images of this step (for sample grids); a skipped step's losses hold "skipped": 1.0."""
    values, skipped, images = train_step_on_device(nets, real_a, real_b, opt_g, opt_d, pool_a, pool_b, weights, device,
                                                   precision_name, scaler, skip_non_finite, control)
    losses = dict(zip(LOSS_TERMS, values.tolist()))
    return ({**losses, "skipped": 1.0} if skipped else losses), images


def train_step_on_device(nets: CycleGANNets, real_a: torch.Tensor, real_b: torch.Tensor, opt_g: torch.optim.Optimizer,
                         opt_d: torch.optim.Optimizer, pool_a: ImagePool, pool_b: ImagePool, weights: LossWeights,
                         device: torch.device, precision_name: str, scaler: torch.amp.GradScaler,
                         skip_non_finite: bool = False, control: CycleWeightControl | None = None
                         ) -> tuple[torch.Tensor, bool, dict]:
    """One CycleGAN iteration on real_a (B, Ca, H, W) and real_b (B, Cb, H, W) in [-1, 1], nothing read on the host
    (outside --on-nan skip and fp16's GradScaler): (the LOSS_TERMS values (9,) on the device, skipped, images).

    Generators first (with both discriminators frozen), then d_a and d_b on pooled fakes, as the reference.
    skip_non_finite (--on-nan skip; fp16's GradScaler skips overflows by itself): when a loss is non-finite on any
    rank (a host decision, one sync), neither optimizer steps and both pools are left as they were; skipped is True.
    The G step waits for the D losses then (D's forward does not read G's parameters: the fakes are detached).
    control (--cycle-target): the cycle weights come from it and it moves them after the step (not after a skipped one).
    """
    use_identity = weights.identity > 0
    d_a, d_b = _unwrapped(nets.d_a), _unwrapped(nets.d_b)  # the G step needs no D gradients: no DDP sync there

    # Generators: adversarial + cycle (eq. 3) + identity terms
    _requires_grad_(d_a, False)
    _requires_grad_(d_b, False)
    opt_g.zero_grad(set_to_none=True)
    with precision.autocast(device, precision_name):
        images = nets.generators(real_a, real_b, use_identity, weights.decoder)
        logits_fake_b, logits_fake_a = d_b(images["fake_b"]), d_a(images["fake_a"])
    if control is not None:
        lambdas = control.weights()
        lambda_a, lambda_b = lambdas[0], lambdas[1]
    else:
        lambda_a, lambda_b = weights.lambda_a, weights.lambda_b
    l1_a, l1_b = cycle_loss(real_a, images["rec_a"]), cycle_loss(real_b, images["rec_b"])
    terms = {
        "gan_ab": gan_loss(logits_fake_b, True, weights.gan),
        "gan_ba": gan_loss(logits_fake_a, True, weights.gan),
        "cycle_a": l1_a * lambda_a,
        "cycle_b": l1_b * lambda_b,
    }
    if use_identity:
        terms["idt_a"] = cycle_loss(real_a, images["idt_a"]) * lambda_a * weights.identity
        terms["idt_b"] = cycle_loss(real_b, images["idt_b"]) * lambda_b * weights.identity
    loss_g = sum(terms.values())  # logged as the reference's G loss whatever the decoder weight
    # decoder k: the cycle terms count k times, and the gradient through each fake into the translator was divided
    # by k (GeneratorPair), so the translators' cycle gradient stays lambda and the reconstructors' becomes k lambda
    objective = loss_g if weights.decoder == 1.0 else loss_g + (weights.decoder - 1.0) * (terms["cycle_a"] + terms["cycle_b"])
    scaler.scale(objective).backward()
    if not skip_non_finite:
        scaler.step(opt_g)

    # Discriminators: real vs a fake drawn from the history pool; one forward on the concatenation (instance
    # norm is per image, so this equals two forwards, and DDP sees one forward per backward)
    _requires_grad_(d_a, True)
    _requires_grad_(d_b, True)
    opt_d.zero_grad(set_to_none=True)
    pools_before = (pool_a.snapshot(), pool_b.snapshot()) if skip_non_finite else None
    fake_a, fake_b = pool_a.query(images["fake_a"]), pool_b.query(images["fake_b"])
    n_a, n_b = real_a.shape[0], real_b.shape[0]
    with precision.autocast(device, precision_name):
        logits_a = nets.d_a(torch.cat([real_a, fake_a]))
        logits_b = nets.d_b(torch.cat([real_b, fake_b]))
    terms["d_a"] = discriminator_loss(logits_a[:n_a], logits_a[n_a:], weights.gan)
    terms["d_b"] = discriminator_loss(logits_b[:n_b], logits_b[n_b:], weights.gan)
    terms["g"] = loss_g
    terms["lambda_a"], terms["lambda_b"] = (value.detach() if isinstance(value, torch.Tensor)
                                            else loss_g.new_full((), value) for value in (lambda_a, lambda_b))
    images = {name: image.detach() for name, image in images.items()}
    if skip_non_finite:
        if not dist.finite_on_every_rank((loss_g + terms["d_a"] + terms["d_b"]).detach()):
            opt_g.zero_grad(set_to_none=True)
            pool_a.restore(pools_before[0])
            pool_b.restore(pools_before[1])
            return _stacked(terms), True, images
        scaler.step(opt_g)
    scaler.scale(terms["d_a"] + terms["d_b"]).backward()
    scaler.step(opt_d)
    scaler.update()
    if control is not None:
        control.update(torch.stack([l1_a, l1_b]))
    return _stacked(terms), False, images


def _stacked(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every value of LOSS_TERMS (0.0 for the identity terms when they are off), (11,) float32 on the device."""
    zero = terms["g"].new_zeros(())
    return torch.stack([terms.get(name, zero).detach().float() for name in LOSS_TERMS])
