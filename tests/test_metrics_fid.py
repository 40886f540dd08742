"""Fréchet distance and KID: closed forms, planted facts, and agreement with pytorch-fid / torch-fidelity."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

import numpy as np
import pytest
import torch

from darkroom.errors import UserError
from darkroom.metrics.fid import fid_from_features, frechet_distance, gaussian_stats, kid


class _StubMeta(type):
    def __getattr__(cls, attr: str) -> type:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _StubMeta(attr, (), {})


class _TorchvisionStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Empty `torchvision` modules: both reference packages import it at top level, but their pure
    numpy/torch metric functions never touch it (torchvision cannot be installed beside this torch)."""

    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__, module.__version__ = [], "0.0"
        module.__getattr__ = lambda attr: _StubMeta(attr, (), {})
        return module

    def exec_module(self, module) -> None:
        pass


def import_reference(name: str) -> types.ModuleType:
    """Import `name` with torchvision stubbed, then forget every module that import added, so no other
    test sees the stub. pip install --no-deps torch-fidelity pytorch-fid makes these importable."""
    before, stub = set(sys.modules), _TorchvisionStub()
    sys.meta_path.insert(0, stub)
    try:
        return importlib.import_module(name)
    except ImportError as error:
        pytest.skip(f"reference {name} not importable: {error}")
    finally:
        sys.meta_path.remove(stub)
        for key in set(sys.modules) - before:
            del sys.modules[key]


def _random_psd(rng: np.random.Generator, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / d


def test_frechet_closed_form_2x2_non_commuting() -> None:
    # For 2x2 PSD A, B: tr sqrt(AB) = sqrt(tr(AB) + 2 sqrt(det(AB))) (the two eigenvalues' roots, squared).
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[1.5, -0.4], [-0.4, 0.5]])
    mu1, mu2 = np.array([0.3, -1.0]), np.array([1.0, 2.0])
    ab = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(ab) + 2 * np.sqrt(np.linalg.det(ab)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-12)


def test_frechet_closed_form_scaled_identity() -> None:
    # S1 = a I commutes with anything: tr sqrt(a S2) = sqrt(a) * sum sqrt(eigenvalues of S2).
    rng = np.random.default_rng(0)
    d, a = 64, 0.7
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = rng.uniform(0.1, 3.0, d)
    s2 = q @ np.diag(lam) @ q.T
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu1 - mu2) ** 2) + d * a + lam.sum() - 2 * np.sqrt(a) * np.sqrt(lam).sum()
    assert frechet_distance(mu1, a * np.eye(d), mu2, s2) == pytest.approx(expected, rel=1e-10)


def test_fid_of_samples_approaches_closed_form() -> None:
    rng = np.random.default_rng(1)
    d, n = 4, 200_000
    s1, s2 = np.diag([1.0, 2.0, 0.5, 1.0]), np.diag([2.0, 0.5, 0.5, 3.0])
    mu2 = np.array([1.0, 0.0, -1.0, 0.5])
    x = rng.standard_normal((n, d)) @ np.sqrt(s1)
    y = mu2 + rng.standard_normal((n, d)) @ np.sqrt(s2)
    expected = mu2 @ mu2 + np.sum((np.sqrt(np.diag(s1)) - np.sqrt(np.diag(s2))) ** 2)
    assert fid_from_features(x, y) == pytest.approx(expected, rel=0.02)


def test_gaussian_stats_match_numpy() -> None:
    x = np.random.default_rng(2).standard_normal((300, 20)) * 3 + 5
    mu, sigma = gaussian_stats(torch.from_numpy(x).float())
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.astype(np.float32).mean(0), rtol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float32), rowvar=False), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("n", [500, 40])  # full-rank and singular (n < d) covariances
def test_fid_of_identical_features_is_zero(n: int) -> None:
    x = np.random.default_rng(3).standard_normal((n, 64)) * 2.0
    assert 0.0 <= fid_from_features(x, x) < 1e-6


def test_singular_covariances_stay_finite_and_match_eigvals() -> None:
    rng = np.random.default_rng(4)
    d = 50
    s1, s2 = _random_psd(rng, d, rank=10), _random_psd(rng, d, rank=20)
    mu = np.zeros(d)
    value = frechet_distance(mu, s1, mu, s2)
    eig = np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).sum()
    assert np.isfinite(value) and value >= 0
    assert value == pytest.approx(expected, rel=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pytorch-fid passes scipy's deprecated disp=
def test_fid_agrees_with_pytorch_fid_and_torch_fidelity() -> None:
    rng = np.random.default_rng(5)
    a, b = np.abs(rng.standard_normal((400, 32))), np.abs(rng.standard_normal((300, 32))) * 1.3
    (mu1, s1), (mu2, s2) = gaussian_stats(a), gaussian_stats(b)
    ours = frechet_distance(mu1, s1, mu2, s2)
    pytorch_fid = import_reference("pytorch_fid.fid_score")
    assert ours == pytest.approx(pytorch_fid.calculate_frechet_distance(mu1, s1, mu2, s2), rel=1e-3)
    fidelity = import_reference("torch_fidelity.metric_fid")
    stats = ({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2})
    assert ours == pytest.approx(fidelity.fid_statistics_to_metric(*stats, False)["frechet_inception_distance"], rel=1e-3)


def test_frechet_rejects_mismatched_shapes() -> None:
    with pytest.raises(UserError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(UserError, match="2-D"):
        gaussian_stats(np.zeros(5))


def test_kid_same_distribution_is_near_zero_and_shift_is_positive() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((600, 32)), rng.standard_normal((600, 32))
    mean, std = kid(a, b, subsets=20, subset_size=200)
    assert abs(mean) < 3 * std
    mean, std = kid(a, b + 0.5, subsets=20, subset_size=200)
    assert mean > 10 * std > 0


def test_kid_is_seeded_and_clips_subset_size() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((50, 8)), rng.standard_normal((70, 8))
    first = kid(a, b, subsets=5, seed=3)  # subset_size 1000 clipped to 50
    assert first == kid(a, b, subsets=5, seed=3)
    assert first != kid(a, b, subsets=5, seed=4)
    with pytest.raises(UserError, match="width"):
        kid(a, rng.standard_normal((70, 9)))


def test_kid_agrees_with_torch_fidelity() -> None:
    rng = np.random.default_rng(8)
    a, b = np.abs(rng.standard_normal((500, 64))), np.abs(rng.standard_normal((400, 64))) * 1.1
    fidelity = import_reference("torch_fidelity.metric_kid")
    ref = fidelity.kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=10,
                                          kid_subset_size=300, rng_seed=5, verbose=False)
    mean, std = kid(a, b, subsets=10, subset_size=300, seed=5)
    assert mean == pytest.approx(ref["kernel_inception_distance_mean"], abs=1e-9, rel=1e-6)
    assert std == pytest.approx(ref["kernel_inception_distance_std"], abs=1e-9, rel=1e-6)


def test_translation_scores() -> None:
    from darkroom.metrics.translation import translation_scores

    rng = np.random.default_rng(9)
    real_b = rng.standard_normal((300, 6))
    scores = translation_scores(torch.tensor([1, 1, 0, 1]), 1, real_b[:150], real_b[150:],
                                torch.tensor([[0.5, -0.5], [1.0, 0.0]]))
    assert scores["translation_target_accuracy"] == 0.75
    assert scores["translation_cycle_l1"] == 0.5
    assert scores["translation_fid"] == pytest.approx(fid_from_features(real_b[:150], real_b[150:]))
    assert translation_scores([1], 1, real_b + 3.0, real_b, [0.0])["translation_fid"] > 50
