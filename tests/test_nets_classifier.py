"""Classifier nets: the lesson's exact parameter counts, any channel count and image size, block order."""
import pytest
import torch
from torch import nn

from darkroom.nets import CLASSIFIERS
from darkroom.nets.classifier import ResLayer, conv_layer, darknet, wide_resnet, whiten_init_


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_darknet_lesson_parameter_count():
    # REFERENCE.md: Darknet([1, 2, 4, 6, 3], nf=32) on 3-channel input has 31,410,922 parameters
    assert count(darknet([1, 2, 4, 6, 3], 10, nf=32, in_channels=3)) == 31_410_922


def test_darknet_lesson_strides_same_count_different_grid():
    assert count(darknet([1, 2, 4, 6, 3], 10, 32, lesson_strides=True)) == 31_410_922
    x = torch.randn(1, 3, 32, 32)
    faithful = darknet([1, 2], 10, 8)[:3](x).shape
    lesson = darknet([1, 2], 10, 8, lesson_strides=True)[:3](x).shape
    assert faithful[-1] == 16 and lesson[-1] == 16  # two groups: (1, 2) vs (2, 1) strides reach the same size
    assert darknet([1], 10, 8)[:2](x).shape[-1] == 32 and darknet([1], 10, 8, lesson_strides=True)[:2](x).shape[-1] == 16


def test_wrn_22_parameter_count():
    # REFERENCE.md says about 9.66 M; widths 16/96/192/384, 3 blocks per group, 1x1 shortcuts: 9,658,458
    assert count(wide_resnet(22, 6, 10, in_channels=3)) == 9_658_458


def test_conv_layer_block_order_and_bn_momentum():
    block = conv_layer(3, 8)
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU]
    assert block[0].bias is None and block[1].momentum == 0.01 and block[2].negative_slope == 0.1


def test_reslayer_is_residual_with_half_bottleneck():
    layer = ResLayer(16)
    assert layer.branch[0][0].out_channels == 8
    for p in layer.parameters():
        nn.init.zeros_(p)
    x = torch.randn(2, 16, 5, 5)
    assert torch.equal(layer(x), x)  # zero branch: output is the input


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (3, 45)])
def test_any_channels_and_size(name, channels, size):
    model = CLASSIFIERS[name](channels, 7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, channels, size, size)).shape == (2, 7)


def test_whitening_stem_decorrelates_patches():
    torch.manual_seed(0)
    base = torch.randn(64, 1, 16, 16)
    images = base + torch.roll(base, 1, dims=3)  # strongly correlated neighbouring pixels
    stem = nn.Conv2d(1, 8, 2)
    whiten_init_(stem, images, eps=1e-6)
    out = stem(images).detach()[:, :4].permute(1, 0, 2, 3).reshape(4, -1)
    covariance = torch.cov(out)
    assert torch.allclose(covariance, torch.eye(4), atol=0.05)


@pytest.mark.parametrize("channels", [1, 3])
def test_fastnet_whitening_stem_has_one_channel_per_patch_eigenvector_and_sign(channels):
    """2 * C * 2 * 2 channels (8 for grey images, airbench's 24 for colour): all distinct after whiten_init_."""
    model = CLASSIFIERS["fastnet"](channels, 10)
    stem = model[0]
    assert isinstance(stem, nn.Conv2d) and stem.kernel_size == (2, 2)
    assert stem.out_channels == 2 * channels * 4 and model[2][0].in_channels == stem.out_channels
    whiten_init_(stem, torch.randn(16, channels, 8, 8, generator=torch.Generator().manual_seed(0)))
    filters = stem.weight.detach().flatten(1)
    assert torch.linalg.matrix_rank(filters[:channels * 4].double()) == channels * 4  # no repeated filter
    assert torch.equal(filters[channels * 4:], -filters[:channels * 4])
