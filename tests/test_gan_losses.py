"""GAN losses against closed forms: gradient penalty of a linear critic, clipping, the critic-step rule, AMP."""
import math

import pytest
import torch
from torch import nn

from darkroom.nets import dcgan
from darkroom.gan import losses as L


def linear_critic(w: torch.Tensor) -> nn.Module:
    """D(x) = w . flatten(x): its input gradient is w everywhere, so GP = (||w|| - 1)^2 exactly."""
    layer = nn.Linear(w.numel(), 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(w.view(1, -1))
    return nn.Sequential(nn.Flatten(1), layer, nn.Flatten(0))


@pytest.mark.parametrize("norm", [0.0, 0.3, 1.0, 2.5])
def test_gradient_penalty_of_linear_critic(norm):
    torch.manual_seed(0)
    w = torch.randn(1 * 4 * 4, dtype=torch.float64)
    w = w / w.norm() * norm
    critic = linear_critic(w.float())
    x_hat = L.interpolates(torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4), torch.rand(8))
    penalty, norms = L.gradient_penalty(critic, x_hat)
    assert penalty.item() == pytest.approx((norm - 1) ** 2, rel=1e-5, abs=1e-6)
    assert torch.allclose(norms, torch.full((8,), norm), atol=1e-5)


def test_gradient_penalty_gradient_wrt_weights():
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||: checks create_graph and the one ordinary backward
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])
    critic = linear_critic(w)
    penalty, _ = L.gradient_penalty(critic, torch.randn(5, 4))
    penalty.backward()
    expected = 2 * (5.0 - 1.0) * w / 5.0
    assert torch.allclose(critic[1].weight.grad.view(-1), expected, atol=1e-5)


def test_gradient_penalty_loss_scale_is_undone():
    # the AMP recipe multiplies the scores by the loss scale before autograd.grad and divides after
    torch.manual_seed(0)
    critic = dcgan.dcgan_critic(16, 1, ndf=4, n_extra_layers=0, norm="layer")
    x_hat = torch.randn(4, 1, 16, 16)
    plain, _ = L.gradient_penalty(critic, x_hat, "fp32", 1.0)
    scaled, _ = L.gradient_penalty(critic, x_hat, "fp32", 2.0 ** 16)
    assert scaled.item() == pytest.approx(plain.item(), rel=1e-5)


def test_gradient_penalty_under_bf16_autocast_matches_fp32():
    torch.manual_seed(0)
    critic = dcgan.dcgan_critic(16, 1, ndf=8, n_extra_layers=0, norm="layer")
    real, fake = torch.randn(16, 1, 16, 16).tanh(), torch.randn(16, 1, 16, 16).tanh()
    x_hat = L.interpolates(real, fake, torch.rand(16))
    fp32, norms32 = L.gradient_penalty(critic, x_hat, "fp32")
    bf16, norms16 = L.gradient_penalty(critic, x_hat, "bf16")
    assert torch.isfinite(bf16) and bf16.dtype == torch.float32
    assert torch.allclose(norms16, norms32, rtol=0.05)
    assert bf16.item() == pytest.approx(fp32.item(), rel=0.05, abs=1e-3)
    bf16.backward()  # the double backward runs under bf16 too
    grads = [p.grad for p in critic.parameters() if p.grad is not None]  # norm biases only shift ReLU masks: no grad
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_clipping_keeps_every_critic_parameter_inside():
    torch.manual_seed(0)
    critic = dcgan.dcgan_critic(16, 3, ndf=4, n_extra_layers=1, norm="batch")
    with torch.no_grad():
        for parameter in critic.parameters():
            parameter.mul_(0).add_(torch.randn_like(parameter) * 3)
    L.clip_weights_(critic, 0.01)
    for parameter in critic.parameters():
        assert parameter.abs().max().item() <= 0.01
    assert any(parameter.abs().max().item() == pytest.approx(0.01) for parameter in critic.parameters())


def test_critic_step_schedule():
    for iteration in range(25):
        assert L.critic_steps(iteration, 5) == 100
    for iteration in (500, 1000, 1500):
        assert L.critic_steps(iteration, 5) == 100
    for iteration in (25, 26, 499, 501, 999, 1001):
        assert L.critic_steps(iteration, 5) == 5
    assert L.critic_steps(0, 5, warmup=False) == 5
    assert L.critic_steps(500, 1, warmup=False) == 1


def test_loss_signs_and_closed_forms():
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([-1.0, 1.0])
    assert L.wgan_critic_loss(real, fake).item() == pytest.approx(0.0 - 3.0)
    assert L.wasserstein_estimate(real, fake).item() == pytest.approx(3.0)
    assert L.wgan_generator_loss(fake).item() == pytest.approx(0.0)
    zero = torch.zeros(3)
    assert L.dcgan_critic_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert L.dcgan_generator_loss(zero).item() == pytest.approx(math.log(2))
    # non-saturating: the generator's gradient stays large when the discriminator rejects fakes confidently
    logits = torch.tensor([-10.0], requires_grad=True)
    L.dcgan_generator_loss(logits).backward()
    assert logits.grad.abs().item() > 0.99


def test_critic_objective_adds_weighted_penalty():
    torch.manual_seed(0)
    critic = linear_critic(torch.tensor([0.0, 2.0, 0.0, 0.0]))
    real, fake = torch.randn(6, 4), torch.randn(6, 4)
    objective, stats = L.critic_objective(critic, real, fake, "wgan-gp", 10.0, alpha=torch.rand(6))
    assert stats["gp"].item() == pytest.approx(1.0, rel=1e-5)
    assert objective.item() == pytest.approx(stats["critic_loss"].item() + 10.0, rel=1e-5)
    assert stats["wasserstein"].item() == pytest.approx(-stats["critic_loss"].item(), rel=1e-5)
    _, stats = L.critic_objective(critic, real, fake, "wgan", 10.0)
    assert "gp" not in stats


def test_hinge_losses_closed_forms():
    # L_D = mean relu(1 - D(x)) + mean relu(1 + D(G(z))): real [2, 0.5, -1] -> [0, 0.5, 2] mean 5/6;
    # fake [-3, -0.5, 2] -> [0, 0.5, 3] mean 7/6; L_G = -mean D(G(z)) = 0.5
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-3.0, -0.5, 2.0])
    assert L.hinge_critic_loss(real, fake).item() == pytest.approx(5 / 6 + 7 / 6)
    assert L.hinge_generator_loss(fake).item() == pytest.approx(0.5)
    # a critic beyond the margin on both sides has zero loss
    assert L.hinge_critic_loss(torch.tensor([1.0, 5.0]), torch.tensor([-1.0, -7.0])).item() == 0.0
    # bf16 scores come back as an fp32 loss
    assert L.hinge_critic_loss(real.bfloat16(), fake.bfloat16()).dtype == torch.float32


def test_hinge_gradients_match_the_analytic_derivative():
    # d L_D / d D(x_i) = -1/B where D(x_i) < 1 else 0; d L_D / d D(G(z)_i) = 1/B where D(G(z)_i) > -1 else 0;
    # d L_G / d D(G(z)_i) = -1/B everywhere (no kinks sampled: the scores avoid exactly +-1)
    torch.manual_seed(0)
    real = (torch.randn(64, dtype=torch.float64) * 2).requires_grad_(True)
    fake = (torch.randn(64, dtype=torch.float64) * 2).requires_grad_(True)
    assert (real.detach() - 1).abs().min() > 1e-6 and (fake.detach() + 1).abs().min() > 1e-6
    L.hinge_critic_loss(real, fake).backward()
    assert torch.equal(real.grad, torch.where(real.detach() < 1, -1.0 / 64, 0.0).double())
    assert torch.equal(fake.grad, torch.where(fake.detach() > -1, 1.0 / 64, 0.0).double())
    assert 0 < (real.grad != 0).sum() < 64 and 0 < (fake.grad != 0).sum() < 64  # both branches exercised
    fake.grad = None
    L.hinge_generator_loss(fake).backward()
    assert torch.equal(fake.grad, torch.full((64,), -1.0 / 64, dtype=torch.float64))


def test_hinge_through_the_objectives():
    # D(x) = w . x with w = (1, 0): scores are the first coordinate
    critic = linear_critic(torch.tensor([1.0, 0.0]))
    real, fake = torch.tensor([[2.0, 9.0], [0.0, 9.0]]), torch.tensor([[-2.0, 9.0], [0.0, 9.0]])
    objective, stats = L.critic_objective(critic, real, fake, L.HINGE, 10.0)
    assert objective.item() == pytest.approx(0.5 + 0.5) and "gp" not in stats
    assert stats["wasserstein"].item() == pytest.approx(2.0)
    assert L.generator_objective(critic, fake, L.HINGE).item() == pytest.approx(1.0)
    assert L.HINGE in L.LOSSES  # a --loss choice of the trainer (its defaults: gan/config.py LOSS_DEFAULTS)
