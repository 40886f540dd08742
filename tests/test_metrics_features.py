"""Inception feature path: weight loading and its errors, TF1 resize, and agreement with torch-fidelity's network."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from darkroom.errors import UserError
from darkroom.metrics.features import (WEIGHT_FILES, fid_inception_v3, inception_features, load_inception, preprocess,
                                       tf1_resize_matrix)


class _StubMeta(type):
    def __getattr__(cls, attr: str) -> type:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _StubMeta(attr, (), {})


class _TorchvisionStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Empty `torchvision` modules: `import torch_fidelity` needs it, its Inception extractor does not."""

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
    """Import `name` with torchvision stubbed, then drop every module the import added (see test_metrics_fid)."""
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


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Scale-preserving random weights and varied BatchNorm statistics, so that every layer, the BN
    epsilon and each pooling choice visibly shape the output (default init fades to near zero)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.weight[0].numel()
            module.weight.data = torch.randn(module.weight.shape, generator=generator) * (2 / fan_in) ** 0.5
        elif isinstance(module, nn.BatchNorm2d):
            shape = module.weight.shape
            module.weight.data = 0.5 + torch.rand(shape, generator=generator)
            module.bias.data = 0.1 * torch.randn(shape, generator=generator)
            module.running_mean = 0.1 * torch.randn(shape, generator=generator)
            module.running_var = 0.5 + torch.rand(shape, generator=generator)
    return model


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised network of the FID architecture saved like the published file (with fc)."""
    state = _randomise(fid_inception_v3(), seed=0).state_dict()
    state["fc.weight"], state["fc.bias"] = torch.randn(1008, 2048) * 0.01, torch.zeros(1008)
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


@pytest.fixture(scope="module")
def features(weights: Path, images: torch.Tensor) -> np.ndarray:
    return inception_features(load_inception(weights), images, batch_size=1, device="cpu")


def test_absent_weights_say_how_to_provide_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="--inception-weights PATH") as error:
        load_inception(tmp_path / "nowhere.pth")
    assert "nowhere.pth" in str(error.value) and "https://github.com/" in str(error.value)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    with pytest.raises(UserError, match=str(tmp_path / "hub" / "checkpoints")):
        load_inception(None)


def test_wrong_files_are_user_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        load_inception(garbage)
    other = tmp_path / "other.pth"
    torch.save(nn.Linear(2, 2).state_dict(), other)
    with pytest.raises(UserError, match="not an FID Inception-v3"):
        load_inception(other)


def test_loads_from_path_and_hub_cache_and_extracts(weights: Path, images: torch.Tensor, features: np.ndarray,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert features.shape == (2, 2048) and features.dtype == np.float64 and np.isfinite(features).all()
    assert features.std() > 0.01  # the random network is not silent
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / WEIGHT_FILES[1]).write_bytes(weights.read_bytes())
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    cached = inception_features(load_inception(None), images[:1], batch_size=1, device="cpu")
    np.testing.assert_allclose(cached, features[:1], rtol=1e-5, atol=1e-6)


def test_grayscale_is_replicated(weights: Path, images: torch.Tensor) -> None:
    gray = images[:1, :1]
    assert torch.equal(preprocess(gray), preprocess(gray.expand(-1, 3, -1, -1)))
    model = load_inception(weights)
    assert inception_features(model, gray, 1, "cpu").shape == (1, 2048)
    with pytest.raises(UserError, match="uint8"):
        inception_features(model, images.float(), 2, "cpu")


def test_tf1_resize_closed_form() -> None:
    # TF1 legacy bilinear: output i samples input i * n_in / n_out, clamped at the last pixel.
    x = torch.tensor([[10.0, 20.0], [30.0, 50.0]], dtype=torch.float64)
    out = tf1_resize_matrix(2, 4) @ x @ tf1_resize_matrix(2, 4).T
    assert out[0].tolist() == [10.0, 15.0, 20.0, 20.0]
    assert out[:, 0].tolist() == [10.0, 20.0, 30.0, 30.0]
    assert torch.equal(tf1_resize_matrix(299, 299), torch.eye(299, dtype=torch.float64))


def test_matches_torch_fidelity(weights: Path, images: torch.Tensor, features: np.ndarray) -> None:
    reference = import_reference("torch_fidelity.feature_extractor_inceptionv3")
    theirs = reference.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    ours = load_inception(weights)
    their_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items() if not k.startswith("fc.")}
    assert their_shapes == {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    resize = import_reference("torch_fidelity.interpolate_compat_tensorflow").interpolate_bilinear_2d_like_tensorflow1x
    ref_input = (resize(images.float(), size=(299, 299), align_corners=False) - 128) / 128
    torch.testing.assert_close(preprocess(images), ref_input, rtol=0, atol=1e-4)
    with torch.inference_mode():
        expected = theirs(images)[0].double().numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
