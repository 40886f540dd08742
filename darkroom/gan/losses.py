"""GAN losses and critic-step rules as pure functions: WGAN (arXiv:1701.07875), WGAN-GP (arXiv:1704.00028),
the non-saturating DCGAN baseline (arXiv:1406.2661 sec. 3, arXiv:1511.06434) and the hinge loss of
SNGAN / BigGAN (arXiv:1705.02894, arXiv:1802.05957, arXiv:1809.11096).

Sign convention (the WGAN-GP paper's; used everywhere in darkroom): both nets *minimise* their loss,
    critic loss     L_D = E[D(G(z))] - E[D(x)]   (+ lambda * GP)
    generator loss  L_G = -E[D(G(z))]
    Wasserstein estimate W = E[D(x)] - E[D(G(z))] = -L_D without the penalty, >= 0 when the critic separates.
The lesson (and the WassersteinGAN code) minimise D(x) - D(G(z)) and D(G(z)): the same game with the
critic's sign flipped, so its reported losses are the negatives of ours.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from darkroom import precision

HINGE = "hinge"
LOSSES = ("wgan", "wgan-gp", "dcgan", HINGE)  # the trainer's choices (gan/config.py: one LOSS_DEFAULTS row each)
WARMUP_CRITIC_STEPS = 100  # WGAN paper code: 100 critic steps early on and every 500th generator iteration


def critic_steps(gen_iterations: int, n_critic: int, warmup: bool = True) -> int:
    """Critic steps before generator iteration `gen_iterations` (0-based).

    The WassersteinGAN code: 100 while gen_iterations < 25 (train the critic close to optimality first) and
    at every 500th iteration (re-tighten the Wasserstein estimate), else n_critic. The lesson wrote
    `100 if (first and (gen_iterations < 25) or (gen_iterations % 500 == 0)) else 5`: `and` binds tighter
    than `or`, so its `first=False` second call still gives 100 steps at iteration 0 (its counter restarts
    at 0 and 0 % 500 == 0). darkroom keeps one counter for the whole run, so resuming never repeats the burst.
    """
    if warmup and (gen_iterations < 25 or gen_iterations % 500 == 0):
        return WARMUP_CRITIC_STEPS
    return n_critic


@torch.no_grad()
def clip_weights_(critic: nn.Module, clip: float) -> None:
    """WGAN's Lipschitz constraint: clamp every critic parameter (BatchNorm's too, as the paper's code) to [-c, c]."""
    for parameter in critic.parameters():
        parameter.clamp_(-clip, clip)


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """L_D = E[D(G(z))] - E[D(x)]; scores (B,), computed in fp32."""
    return fake_scores.float().mean() - real_scores.float().mean()


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """L_G = -E[D(G(z))]."""
    return -fake_scores.float().mean()


def wasserstein_estimate(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """W = E[D(x)] - E[D(G(z))] (meaningful for WGAN critics; for DCGAN it is a logit gap)."""
    return real_scores.detach().float().mean() - fake_scores.detach().float().mean()


def dcgan_critic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator BCE: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))), from logits for stability."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def dcgan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -log sigmoid(D(G(z))) (arXiv:1406.2661 sec. 3): strong gradients early."""
    fake_logits = fake_logits.float()
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def hinge_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))] (Lim & Ye, arXiv:1705.02894; SNGAN); scores (B,), in fp32.

    Only scores inside the margin (D(x) < 1, D(G(z)) > -1) give the critic a gradient.
    """
    return F.relu(1 - real_scores.float()).mean() + F.relu(1 + fake_scores.float()).mean()


def hinge_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """L_G = -E[D(G(z))]: the hinge loss's generator (SNGAN, BigGAN) is WGAN's."""
    return wgan_generator_loss(fake_scores)


def interpolates(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """x_hat = a x + (1 - a) G(z) with one a ~ U[0, 1] per sample (WGAN-GP alg. 1); real, fake (B, ...), alpha (B,)."""
    alpha = (alpha if alpha.device == real.device else alpha.to(real.device)).to(real.dtype)  # the trainer's: on the device
    alpha = alpha.view((real.shape[0],) + (1,) * (real.dim() - 1))
    return (alpha * real.detach() + (1 - alpha) * fake.detach()).contiguous(memory_format=_memory_format(real))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def gradient_penalty(critic: nn.Module, x_hat: torch.Tensor, precision_name: str = "fp32",
                     loss_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """WGAN-GP penalty E[(||grad_x D(x_hat)||_2 - 1)^2] and the per-sample norms (B,).

    As PyTorch's AMP guide prescribes ("gradient penalty"): the critic runs under autocast; the scores are
    multiplied by the loss scale (fp16's GradScaler; 1 otherwise) before an out-of-place
    `autograd.grad(..., create_graph=True)`; the resulting input gradients are unscaled by ordinary division
    and the penalty is formed in fp32 outside autocast. The caller adds it to the critic loss and runs ONE
    ordinary backward, so DDP's gradient hooks fire once per parameter (autograd.grad w.r.t. inputs only
    never touches parameter .grad).
    """
    x_hat = x_hat.detach().requires_grad_(True)
    with precision.autocast(x_hat.device, precision_name):
        scores = critic(x_hat)  # (B,)
    (scaled_grad,) = torch.autograd.grad(scores.float().sum() * loss_scale, x_hat, create_graph=True)
    grad = scaled_grad.float() / loss_scale  # (B, C, H, W) or (B, F)
    norms = torch.linalg.vector_norm(grad.flatten(1), dim=1)  # (B,)
    return (norms - 1).square().mean(), norms.detach()


def critic_objective(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, loss: str, gp_weight: float,
                     precision_name: str = "fp32", loss_scale: float = 1.0,
                     alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The critic's loss for one step and detached statistics (critic_loss without penalty, wasserstein, gp).

    real, fake (B, ...): fake must come from the generator under no_grad. alpha (B,): the interpolation weights
    of the gradient penalty (drawn from torch's global RNG when None; the trainer draws them for the global
    batch and passes each rank its slice, so results do not depend on the number of ranks). The critic is called on the real
    and the fake batch separately, as the lesson does: a BatchNorm critic (`wgan` nets) normalises each
    batch with its own statistics.
    """
    with precision.autocast(real.device, precision_name):
        real_scores = critic(real)  # (B,)
        fake_scores = critic(fake)  # (B,)
    if loss == "dcgan":
        objective = dcgan_critic_loss(real_scores, fake_scores)
    elif loss == HINGE:
        objective = hinge_critic_loss(real_scores, fake_scores)
    else:
        objective = wgan_critic_loss(real_scores, fake_scores)
    stats = {"critic_loss": objective.detach(), "wasserstein": wasserstein_estimate(real_scores, fake_scores)}
    if loss == "wgan-gp":
        alpha = torch.rand(real.shape[0], device=real.device) if alpha is None else alpha
        penalty, norms = gradient_penalty(critic, interpolates(real, fake, alpha), precision_name, loss_scale)
        objective = objective + gp_weight * penalty
        stats["gp"], stats["grad_norm"] = penalty.detach(), norms.mean()
    return objective, stats


def generator_objective(critic: nn.Module, fake: torch.Tensor, loss: str, precision_name: str = "fp32") -> torch.Tensor:
    """The generator's loss on a fake batch (B, ...) that carries the generator's graph."""
    with precision.autocast(fake.device, precision_name):
        fake_scores = critic(fake)  # (B,)
    if loss == "dcgan":
        return dcgan_generator_loss(fake_scores)
    return hinge_generator_loss(fake_scores) if loss == HINGE else wgan_generator_loss(fake_scores)
