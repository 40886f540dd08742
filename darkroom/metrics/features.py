"""Inception-v3 pool features for FID/KID/PR (the TF-ported FID network of TTUR, pytorch-fid and torch-fidelity).

Weights come from a local file (`--inception-weights PATH` or torch's hub cache); nothing is downloaded.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from darkroom.errors import UserError

# The architecture is written here: pytorch_fid.inception subclasses torchvision's blocks and
# `import torch_fidelity` imports torchvision (its CLIP/VGG extractors), and torchvision is optional
# for darkroom. Module names follow torchvision's, so both projects' weight files load unchanged;
# tests/test_metrics_features.py checks keys, shapes and outputs against torch-fidelity's
# FeatureExtractorInceptionV3 where it can be imported.
WEIGHT_FILES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
WEIGHTS_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + WEIGHT_FILES[0]
INPUT_SIZE = 299


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, TensorFlow's) -> ReLU, named as the weight files expect."""

    def __init__(self, c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's 3x3 average pool ignores the zero padding when averaging.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b-d): 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = ConvBN(c_in, 48, 1), ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = ConvBN(64, 96, 3, padding=1), ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)), double,
                          self.branch_pool(_avg3(x))], dim=1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a)."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = ConvBN(64, 96, 3, padding=1), ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), double, F.max_pool2d(x, 3, stride=2)], dim=1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b-e)."""

    def __init__(self, c_in: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 192, 1)
        self.branch7x7_1 = ConvBN(c_in, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(c_in, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([self.branch1x1(x), single, double, self.branch_pool(_avg3(x))], dim=1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (Mixed_7a)."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = ConvBN(c_in, 192, 1), ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(c_in, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], dim=1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 branches (Mixed_7b, 7c). The TF graph max-pools in its last block's
    pool branch where the paper average-pools; max_pool=True reproduces that."""

    def __init__(self, c_in: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(c_in, 320, 1)
        self.branch3x3_1 = ConvBN(c_in, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = ConvBN(c_in, 448, 1), ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(single), self.branch3x3_2b(single),
                          self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double), self.branch_pool(pooled)], dim=1)


def fid_inception_v3() -> nn.Sequential:
    """Randomly initialised FID Inception-v3 trunk: (B, 3, 299, 299) in [-1, 1] -> (B, 2048) pool features."""
    return nn.Sequential(OrderedDict([
        ("Conv2d_1a_3x3", ConvBN(3, 32, 3, stride=2)), ("Conv2d_2a_3x3", ConvBN(32, 32, 3)),
        ("Conv2d_2b_3x3", ConvBN(32, 64, 3, padding=1)), ("MaxPool_1", nn.MaxPool2d(3, stride=2)),
        ("Conv2d_3b_1x1", ConvBN(64, 80, 1)), ("Conv2d_4a_3x3", ConvBN(80, 192, 3)),
        ("MaxPool_2", nn.MaxPool2d(3, stride=2)),
        ("Mixed_5b", InceptionA(192, 32)), ("Mixed_5c", InceptionA(256, 64)), ("Mixed_5d", InceptionA(288, 64)),
        ("Mixed_6a", InceptionB(288)), ("Mixed_6b", InceptionC(768, 128)), ("Mixed_6c", InceptionC(768, 160)),
        ("Mixed_6d", InceptionC(768, 160)), ("Mixed_6e", InceptionC(768, 192)),
        ("Mixed_7a", InceptionD(768)), ("Mixed_7b", InceptionE(1280, max_pool=False)),
        ("Mixed_7c", InceptionE(2048, max_pool=True)),
        ("AvgPool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
    ]))


def _missing_weights(detail: str) -> UserError:
    cache = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHT_FILES[0]
    return UserError(f"{detail}: download {WEIGHTS_URL} on a machine with internet, then pass "
                     f"--inception-weights PATH or put the file at {cache}.")


def load_inception(weights_path: Path | None) -> nn.Module:
    """The FID Inception-v3 trunk with weights from `weights_path`, or from torch's hub cache when None
    (torch-fidelity's or pytorch-fid's file name). The published file's 1008-way classifier is not used."""
    if weights_path is None:
        found = [Path(torch.hub.get_dir()) / "checkpoints" / name for name in WEIGHT_FILES]
        found = [path for path in found if path.is_file()]
        if not found:
            raise _missing_weights(f"no Inception weights in {Path(torch.hub.get_dir()) / 'checkpoints'}")
        weights_path = found[0]
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise _missing_weights(f"Inception weights file {weights_path} does not exist")
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's file at fault
        first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot read Inception weights {weights_path} (not a PyTorch weights file, or damaged: "
                        f"{first})") from None
    if not isinstance(state, dict):
        raise UserError(f"{weights_path} holds a {type(state).__name__}, not an Inception-v3 state dict.")
    model = fid_inception_v3()
    expected = model.state_dict()
    # Counters of batches seen are unused in eval mode; the file's 1008-way classifier (fc.*) is unused.
    missing = [key for key in expected if key not in state and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in state if key not in expected and not key.startswith("fc.")]
    misshapen = [key for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)]
    if missing or unexpected or misshapen:
        raise UserError(f"{weights_path} is not an FID Inception-v3 state dict (missing {missing[:2]}, "
                        f"unexpected {unexpected[:2]}, wrong shape {misshapen[:2]}).")
    model.load_state_dict({key: value for key, value in state.items() if key in expected}, strict=False)
    return model.eval().requires_grad_(False)


def tf1_resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) bilinear weights of TensorFlow 1.x resize_bilinear (align_corners=False): output i
    samples input i * n_in / n_out, no half-pixel offset. This is the resize inside the TF FID graph,
    which torch-fidelity reproduces; pytorch-fid's F.interpolate uses half-pixel centres instead."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long().clamp_max(n_in - 1)
    hi = (lo + 1).clamp_max(n_in - 1)
    frac = src - lo
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    weights.index_put_((rows, lo), 1 - frac, accumulate=True)
    weights.index_put_((rows, hi), frac, accumulate=True)
    return weights


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W), C = 1 or 3 -> float32 (B, 3, 299, 299) in [-1, 1], as torch-fidelity feeds its
    network: TF1 bilinear resize of the 0..255 values, then (x - 128) / 128."""
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # grayscale replicated to the three channels
    wh = tf1_resize_matrix(x.shape[2], INPUT_SIZE).to(x)
    ww = tf1_resize_matrix(x.shape[3], INPUT_SIZE).to(x)
    x = torch.einsum("oh,bchw,pw->bcop", wh, x, ww)
    return (x - 128) / 128


def inception_features(model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int,
                       device: torch.device | str) -> np.ndarray:
    """(N, 2048) float64 pool features of uint8 images (N, C, H, W), C = 1 or 3; moves `model` to `device`."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise UserError(f"Inception features need uint8 images (N, 1 or 3, H, W), got {images.dtype} "
                        f"{tuple(images.shape)}.")
    model = model.to(device).eval()
    out = np.empty((images.shape[0], 2048), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].to(device)
            out[start:start + batch.shape[0]] = model(preprocess(batch)).double().cpu().numpy()
    return out
