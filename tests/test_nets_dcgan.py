"""DCGAN nets: shapes over sizes, channels, presets and upsample modes; block order; norms; pinned sizes."""
import dataclasses

import pytest
import torch
from torch import nn

from darkroom.errors import UserError
from darkroom.nets import dcgan


@pytest.fixture(autouse=True)
def one_thread():
    # these nets are tiny: one thread is faster than two and immune to a busy machine's contention
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def small(spec: dcgan.DCGANSpec) -> dcgan.DCGANSpec:
    return dataclasses.replace(spec, nz=8, ngf=4, ndf=4)


@pytest.mark.parametrize("preset", sorted(dcgan.DCGAN_PRESETS))
@pytest.mark.parametrize("upsample", dcgan.UPSAMPLES)
@pytest.mark.parametrize("size", [16, 28, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_ranges(preset, upsample, size, channels):
    torch.manual_seed(0)
    spec = dataclasses.replace(small(dcgan.DCGAN_PRESETS[preset]), upsample=upsample)
    G = dcgan.build_generator(spec, size, channels)
    D = dcgan.build_critic(spec, size, channels)
    x = G(torch.randn(3, spec.nz))
    assert x.shape == (3, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert D(x).shape == (3,)
    assert D(x[:1]).shape == (1,)


@pytest.mark.parametrize("size", [48, 80, 112])
def test_multiples_of_16_that_are_not_powers_of_2(size):
    # the lesson's nets loop forever (generator) or fail (critic) here; base_grid makes them work
    G = dcgan.dcgan_generator(size, 1, nz=4, ngf=2, n_extra_layers=0)
    D = dcgan.dcgan_critic(size, 1, ndf=2, n_extra_layers=0)
    assert D(G(torch.randn(2, 4))).shape == (2,)


def test_lesson_noise_shape_is_accepted():
    G = dcgan.dcgan_generator(32, 1, nz=8, ngf=4)
    z = torch.randn(2, 8)
    assert torch.equal(G.eval()(z), G(z.view(2, 8, 1, 1)))


def test_critic_scores_are_per_sample():
    # each score depends on its own sample only (eval BN): changing sample 1 leaves score 0 alone
    torch.manual_seed(0)
    D = dcgan.dcgan_critic(32, 3, ndf=8).eval()
    x = torch.randn(2, 3, 32, 32)
    y = x.clone()
    y[1] += 1
    assert D(x)[0] == D(y)[0] and D(x)[1] != D(y)[1]


def test_28_px_is_a_centre_crop_of_32_and_the_critic_pads_with_zeros():
    torch.manual_seed(0)
    G28 = dcgan.dcgan_generator(28, 1, nz=8, ngf=4).eval()
    G32 = dcgan.dcgan_generator(32, 1, nz=8, ngf=4).eval()
    G32.load_state_dict({k: v for k, v in G28.state_dict().items()})
    z = torch.randn(2, 8)
    assert torch.equal(G28(z), G32(z)[:, :, 2:30, 2:30])
    D28 = dcgan.dcgan_critic(28, 1, ndf=4).eval()
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(D28(x), D28[1:](nn.functional.pad(x, (2, 2, 2, 2))))


def test_wgan_preset_critic_uses_the_lessons_conv_leakyrelu_bn_order():
    D = dcgan.CRITICS["wgan"](64, 3)
    blocks = [m for m in D if isinstance(m, nn.Sequential)]
    assert [type(m) for m in blocks[0]] == [nn.Conv2d, nn.LeakyReLU]  # first block: no norm
    for block in blocks[1:]:
        assert [type(m) for m in block] == [nn.Conv2d, nn.LeakyReLU, nn.BatchNorm2d]
        assert block[1].negative_slope == 0.2
    G = dcgan.GENERATORS["wgan"](64, 3)
    assert [type(m) for m in G[1]] == [nn.ConvTranspose2d, nn.ReLU, nn.BatchNorm2d]
    assert isinstance(G[-1], nn.Tanh)


def test_dcgan_preset_uses_conv_bn_act():
    D = dcgan.CRITICS["dcgan"](64, 3)
    assert [type(m) for m in D[1]] == [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU]


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_gradient_penalty_critics_have_no_batchnorm(norm):
    D = dcgan.dcgan_critic(64, 3, ndf=8, norm=norm)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in D.modules()) == (norm == "layer")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in dcgan.CRITICS["wgan-gp"](32, 1).modules())


def test_nearest_conv_generator_has_no_strided_deconv():
    G = dcgan.dcgan_generator(64, 3, nz=8, ngf=4, upsample="nearest-conv")
    strided = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d) and m.stride != (1, 1)]
    assert strided == [] and any(isinstance(m, nn.Upsample) for m in G.modules())


def test_lesson_parameter_counts():
    # lesson: 64 px, 3 channels, nz 100, ngf = ndf = 64, 1 extra layer, no conv biases.
    # G: deconv 100->512 k4 (819,200) + BN 1,024; 512->256, 256->128, 128->64 k4 (2,097,152 + 524,288
    #    + 131,072) + BN (512 + 256 + 128); extra 64->64 k3 36,864 + BN 128; last 64->3 k4 3,072.
    # D: 3->64 k4 3,072; extra 64->64 k3 36,864 + BN 128; 64->128, 128->256, 256->512 k4 (131,072
    #    + 524,288 + 2,097,152) + BN (256 + 512 + 1,024); last 512->1 k4 8,192.
    assert n_params(dcgan.dcgan_generator(64, 3, nz=100, ngf=64, n_extra_layers=1)) == 3_613_696
    assert n_params(dcgan.dcgan_critic(64, 3, ndf=64, n_extra_layers=1)) == 2_802_560
    assert n_params(dcgan.GENERATORS["wgan"](64, 3)) == 3_613_696
    assert n_params(dcgan.CRITICS["wgan"](64, 3)) == 2_802_560


def test_init_follows_dcgan():
    torch.manual_seed(0)
    G = dcgan.GENERATORS["wgan"](64, 3)
    weight = G[2][0].weight  # (512, 256, 4, 4)
    assert abs(weight.std().item() - 0.02) < 0.001 and abs(weight.mean().item()) < 0.001
    bn = G[2][2]
    assert abs(bn.weight.mean().item() - 1) < 0.01 and 0.01 < bn.weight.std().item() < 0.03
    assert torch.all(bn.bias == 0)


@pytest.mark.parametrize("bad", [
    lambda: dcgan.dcgan_generator(12, 1),
    lambda: dcgan.dcgan_generator(32, 1, norm="layer"),
    lambda: dcgan.dcgan_generator(32, 1, upsample="bilinear"),
    lambda: dcgan.dcgan_critic(32, 1, norm="instance"),
])
def test_bad_options_are_user_errors(bad):
    with pytest.raises(UserError):
        bad()
