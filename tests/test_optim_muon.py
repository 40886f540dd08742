"""Muon: the Newton-Schulz orthogonalisation against the exact U V^T, agreement with torch.optim.Muon where both
apply, airbench's weight renormalisation, conv filters, and an exact state round trip."""
from __future__ import annotations

import pytest
import torch

from darkroom.optim import Muon, orthogonalize


def test_orthogonalize_maps_singular_values_near_one_along_u_vt() -> None:
    g = torch.Generator().manual_seed(0)
    for shape in ((64, 288), (288, 64), (32, 32)):
        matrix = torch.randn(shape, generator=g, dtype=torch.float64).float()
        out = orthogonalize(matrix, steps=5)
        singular = torch.linalg.svdvals(out.double())
        assert out.shape == matrix.shape
        assert singular.min() > 0.6 and singular.max() < 1.25, (shape, singular.min(), singular.max())
        u, _, vt = torch.linalg.svd(matrix.double(), full_matrices=False)
        exact = u @ vt
        cosine = (out.double() * exact).sum() / (out.double().norm() * exact.norm())
        assert cosine > 0.97, (shape, cosine)
    # more steps, no better than 5 in the quintic's design, but never worse than the 1-step start on this matrix
    matrix = torch.randn(64, 128, generator=g)
    assert (orthogonalize(matrix, 5) @ orthogonalize(matrix, 5).T - torch.eye(64)).norm() < \
           (orthogonalize(matrix, 1) @ orthogonalize(matrix, 1).T - torch.eye(64)).norm()


def test_orthogonalize_is_scale_free() -> None:
    matrix = torch.randn(16, 40, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(orthogonalize(matrix), orthogonalize(matrix * 1e3), rtol=1e-4, atol=1e-5)


def _steps(optimizer_factory, parameter_shape, n=4):
    g = torch.Generator().manual_seed(2)
    parameter = torch.nn.Parameter(torch.randn(parameter_shape, generator=g))
    optimizer = optimizer_factory([parameter])
    for _ in range(n):
        parameter.grad = torch.randn(parameter_shape, generator=g)
        optimizer.step()
    return parameter.detach().clone()


@pytest.mark.parametrize("nesterov", [True, False])
def test_matches_torch_muon_on_matrices_without_renormalisation(nesterov) -> None:
    ours = _steps(lambda p: Muon(p, lr=0.05, momentum=0.9, nesterov=nesterov, normalize_weights=False,
                                 ns_dtype=torch.bfloat16), (24, 48))
    theirs = _steps(lambda p: torch.optim.Muon(p, lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=0.0), (24, 48))
    start = _steps(lambda p: torch.optim.SGD(p, lr=0.0), (24, 48))
    assert (ours - start).norm() > 0.1  # the step is real
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-2)


def test_renormalises_filters_to_sqrt_out_channels_before_each_step() -> None:
    parameter = torch.nn.Parameter(torch.randn(8, 3, 3, 3) * 5)
    optimizer = Muon([parameter], lr=0.0, momentum=0.6)
    parameter.grad = torch.randn_like(parameter)
    optimizer.step()
    assert parameter.norm().item() == pytest.approx(8 ** 0.5, rel=1e-5)
    # with lr > 0 the conv update is the orthogonalised (out, in*k*k) matrix, reshaped
    parameter = torch.nn.Parameter(torch.randn(8, 3, 3, 3))
    optimizer = Muon([parameter], lr=0.1, momentum=0.0, normalize_weights=False)
    grad = torch.randn_like(parameter)
    parameter.grad = grad.clone()
    before = parameter.detach().clone()
    optimizer.step()
    expected = before - 0.1 * orthogonalize(grad.reshape(8, -1)).view_as(grad)
    torch.testing.assert_close(parameter.detach(), expected)


def test_state_round_trip_is_exact() -> None:
    def run(split: bool) -> torch.Tensor:
        g = torch.Generator().manual_seed(3)
        parameter = torch.nn.Parameter(torch.randn(16, 4, 3, 3, generator=g))
        optimizer = Muon([parameter], lr=0.2, momentum=0.6, ns_steps=3)
        for step in range(6):
            if split and step == 3:
                state = optimizer.state_dict()
                weights = parameter.detach().clone()
                parameter = torch.nn.Parameter(weights)
                optimizer = Muon([parameter], lr=0.2, momentum=0.6, ns_steps=3)
                optimizer.load_state_dict(state)
            parameter.grad = torch.randn(parameter.shape, generator=g)
            optimizer.step()
        return parameter.detach()

    assert torch.equal(run(False), run(True))


def test_refuses_vectors() -> None:
    with pytest.raises(ValueError, match="biases and norms"):
        Muon([torch.nn.Parameter(torch.zeros(4))])
