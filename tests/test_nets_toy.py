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


def test_default_nets_are_unchanged_by_packing():
    assert n_params(toy.mlp_critic()) == n_params(toy.mlp_critic(packing=1)) == 3 * 256 + 2 * 257 * 256 + 257
    D = toy.mlp_critic(2, 16, 2, packing=4)
    assert D[0].in_features == 8 and D(torch.randn(5, 8)).shape == (5,)


def test_pacgan_generator_layout_and_init():
    torch.manual_seed(0)
    G = toy.pacgan_generator()
    kinds = [type(m) for m in G]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 4 + [nn.Linear]
    linears = [m for m in G if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [400] * 4 + [2]
    assert all(m.bias is None for m in linears[:-1]) and torch.all(linears[-1].bias == 0)
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert weights.std().item() == pytest.approx(0.02, rel=0.02) and abs(weights.mean().item()) < 1e-3
    norms = [m for m in G if isinstance(m, nn.BatchNorm1d)]
    assert all(m.eps == 1e-4 and m.momentum == 0.05 and torch.all(m.weight == 1) for m in norms)
    # weights 2*400 + 3*400*400 + 400*2, output bias 2, BatchNorm scale and shift 4*2*400
    assert n_params(G) == 800 + 480_000 + 800 + 2 + 3_200
    x = G(torch.randn(7, 2))
    assert x.shape == (7, 2)


@pytest.mark.parametrize("packing", [1, 2, 4])
def test_pacgan_critic_shapes_and_parameter_counts(packing):
    torch.manual_seed(0)
    D = toy.pacgan_critic(packing=packing)
    maxouts = [m for m in D if isinstance(m, toy.LinearMaxout)]
    assert len(maxouts) == 3 and all(m.pieces == 5 and m.out_features == 200 for m in maxouts)
    assert maxouts[0].linear.in_features == 2 * packing
    # maxout layers (in + 1) * 200 * 5 each, output 200 + 1
    assert n_params(D) == (2 * packing + 1) * 1000 + 2 * 201 * 1000 + 201
    assert D(torch.randn(6, 2 * packing)).shape == (6,) and D(torch.randn(1, 2 * packing)).shape == (1,)
    linears = [m for m in D.modules() if isinstance(m, nn.Linear)]
    assert all(torch.all(m.bias == 0) for m in linears)
    assert torch.cat([m.weight.flatten() for m in linears]).std().item() == pytest.approx(0.02, rel=0.02)


def test_maxout_is_the_max_over_pieces_of_the_affine_maps():
    torch.manual_seed(0)
    layer = toy.LinearMaxout(3, 4, 5)
    x = torch.randn(6, 3)
    W, b = layer.linear.weight, layer.linear.bias  # (20, 3), (20,): unit k owns rows 5k ... 5k + 4
    expected = torch.stack([torch.stack([x @ W[5 * k + p] + b[5 * k + p] for p in range(5)]).amax(0)
                            for k in range(4)], 1)  # (6, 4)
    assert torch.allclose(layer(x), expected, atol=1e-6)
    # the gradient reaches only the winning piece of each unit
    layer(x[:1]).sum().backward()
    winners = (x[:1] @ W.T + b).view(4, 5).argmax(1)
    assert torch.equal((layer.linear.bias.grad.view(4, 5) != 0).nonzero()[:, 1], winners)


@pytest.mark.parametrize("make", [lambda m: toy.pacgan_critic(packing=m), lambda m: toy.mlp_critic(2, 32, 2, packing=m)])
def test_packed_critic_scores_each_group_of_m_consecutive_samples(make):
    from darkroom.gan.augment import pack
    torch.manual_seed(0)
    D = make(3)
    x = torch.randn(12, 2)
    scores = D(pack(x, 3))
    assert scores.shape == (4,)
    y = x.clone()
    y[7] += 1  # sample 7 sits in packed row 7 // 3 = 2
    changed = D(pack(y, 3)) != scores
    assert changed.tolist() == [False, False, True, False]
