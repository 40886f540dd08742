"""Toy MLP nets: shapes, per-sample scores, layer counts and unbounded generator output."""
import pytest
import torch
from torch import nn

from darkroom.nets import toy


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("nz,hidden,layers", [(2, 128, 3), (4, 256, 1), (2, 16, 4)])
def test_shapes_and_parameter_counts(nz, hidden, layers):
    G = toy.mlp_generator(nz, hidden, layers)
    D = toy.mlp_critic(2, hidden, layers)
    x = G(torch.randn(5, nz))
    assert x.shape == (5, 2) and D(x).shape == (5,) and D(x[:1]).shape == (1,)
    assert sum(isinstance(m, nn.Linear) for m in G) == layers + 1
    # weights and biases: input layer, layers - 1 hidden-to-hidden, output layer
    assert n_params(G) == (nz + 1) * hidden + (layers - 1) * (hidden + 1) * hidden + (hidden + 1) * 2
    assert n_params(D) == 3 * hidden + (layers - 1) * (hidden + 1) * hidden + (hidden + 1)


def test_critic_scores_are_per_sample_and_differentiable_in_the_input():
    torch.manual_seed(0)
    D = toy.mlp_critic()
    x = torch.randn(4, 2, requires_grad=True)
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)  # what the gradient penalty needs
    assert grad.shape == (4, 2) and grad.norm(dim=1).min() > 0
    y = x.detach().clone()
    y[3] += 1
    assert torch.equal(D(x)[:3], D(y)[:3])


def test_generator_output_is_unbounded():
    # toy data lies outside [-1, 1]: a final tanh would cap this at 0.995
    G = toy.mlp_generator(hidden=16, layers=1)
    with torch.no_grad():
        G[-1].weight.zero_()
        G[-1].bias.fill_(3.0)
    assert torch.all(G(torch.randn(4, 2)) == 3)
