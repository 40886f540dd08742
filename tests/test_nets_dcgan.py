"""DCGAN nets: shapes over sizes, channels, presets and upsample modes; block order; norms; pinned sizes."""
import dataclasses

import pytest
import torch
from torch import nn

from darkroom.errors import UserError
from darkroom.nets import dcgan


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small nets, one torch thread


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


def spectral_critic(size: int, channels: int, norm: str = "none", seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    spec = dataclasses.replace(small(dcgan.DCGAN_PRESETS["wgan-gp"]), ndf=8, critic_norm=norm, spectral_norm=True)
    return dcgan.build_critic(spec, size, channels)


def reshaped_sigma(conv: nn.Conv2d) -> float:
    """Largest singular value of the (normalised) weight reshaped to (out, in * kh * kw), as the paper."""
    weight = conv.weight.detach()
    return torch.linalg.matrix_norm(weight.reshape(weight.shape[0], -1).double(), ord=2).item()


@pytest.mark.parametrize("norm", ["none", "layer"])
@pytest.mark.parametrize("size", [16, 28, 64])
def test_spectral_norm_makes_every_conv_1_lipschitz(norm, size):
    D = spectral_critic(size, 3, norm).train()
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(c, "parametrizations") for c in convs)
    x = torch.randn(4, 3, size, size)
    with torch.no_grad():
        for _ in range(30):
            D(x)  # one power iteration per forward in train mode (15 more ran when it was built)
    D.eval()  # eval: the weight is computed from the stored u, v without iterating
    for conv in convs:
        assert reshaped_sigma(conv) == pytest.approx(1.0, abs=0.05)
        raw = conv.parametrizations.weight.original.detach()
        # N(0, 0.02) init puts the raw weight's sigma well below 1: the 1 above is the normalisation's
        assert torch.linalg.matrix_norm(raw.reshape(raw.shape[0], -1), ord=2).item() < 0.9
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())


@pytest.mark.parametrize("size", [16, 28, 32, 48, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_spectral_norm_keeps_shapes(size, channels):
    plain = dcgan.dcgan_critic(size, channels, ndf=4, norm="none")
    D = dcgan.dcgan_critic(size, channels, ndf=4, norm="none", spectral_norm=True)
    x = torch.randn(3, channels, size, size)
    assert D(x).shape == plain(x).shape == (3,)
    weights = {k: v.shape for k, v in plain.state_dict().items()}
    originals = {k.replace(".parametrizations.weight.original", ".weight"): v.shape
                 for k, v in D.state_dict().items() if not k.endswith(("_u", "_v"))}
    assert originals == weights


def test_spectral_norm_state_round_trip_resumes_bit_exactly():
    import io
    D = spectral_critic(28, 1).train()
    optimizer = torch.optim.Adam(D.parameters(), lr=1e-3)
    x = torch.randn(4, 1, 28, 28)

    def step(net, opt):
        opt.zero_grad()
        loss = net(x).mean()
        loss.backward()
        opt.step()
        return loss.detach()

    for _ in range(3):
        step(D, optimizer)
    state = D.state_dict()
    assert sum(k.endswith("_u") for k in state) == sum(isinstance(m, nn.Conv2d) for m in D.modules())
    buffer = io.BytesIO()
    torch.save({"D": state, "opt": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = spectral_critic(28, 1, seed=1).train()  # other init and other u, v: all must come from the state
    assert not torch.equal(resumed.state_dict()["1.0.parametrizations.weight.0._u"], state["1.0.parametrizations.weight.0._u"])
    resumed.load_state_dict(saved["D"])
    resumed_optimizer = torch.optim.Adam(resumed.parameters(), lr=1e-3)
    resumed_optimizer.load_state_dict(saved["opt"])
    for _ in range(3):
        assert torch.equal(step(D, optimizer), step(resumed, resumed_optimizer))
    for (key, a), b in zip(D.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key


def test_spectral_norm_eval_forward_leaves_u_alone():
    D = spectral_critic(16, 1).eval()
    before = {k: v.clone() for k, v in D.state_dict().items()}
    D(torch.randn(2, 1, 16, 16))
    assert all(torch.equal(before[k], v) for k, v in D.state_dict().items())
    D.train()(torch.randn(2, 1, 16, 16))
    assert not torch.equal(before["1.0.parametrizations.weight.0._u"], D.state_dict()["1.0.parametrizations.weight.0._u"])


@pytest.mark.parametrize("loss", ["wgan-gp", "hinge"])
def test_spectral_norm_critic_in_the_critic_objective(loss):
    # three train-mode forwards (real, fake, the penalty's interpolates) each advance u in place before one
    # backward, and the penalty differentiates twice through the parametrization
    from darkroom.gan import losses
    D = spectral_critic(16, 1).train()
    real, fake = torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)
    objective, _ = losses.critic_objective(D, real, fake, loss, 10.0, alpha=torch.rand(4))
    objective.backward()
    grads = [p.grad for p in D.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_spectral_norm_refuses_batchnorm_and_late_init():
    with pytest.raises(UserError, match="BatchNorm"):
        dcgan.dcgan_critic(32, 1, norm="batch", spectral_norm=True)
    with pytest.raises(UserError, match="BatchNorm"):
        dcgan.build_critic(dataclasses.replace(dcgan.DCGAN_PRESETS["wgan"], spectral_norm=True), 32, 1)
    with pytest.raises(ValueError, match="before spectral_norm_"):
        dcgan.dcgan_init_(dcgan.dcgan_critic(32, 1, ndf=4, norm="none", spectral_norm=True))


def ema_pair(ema_class):
    """A BatchNorm DCGAN generator, its EMA at decay 0.9, and the generator after one changed step."""
    from darkroom import optim
    torch.manual_seed(0)
    G = dcgan.build_generator(small(dcgan.DCGAN_PRESETS["wgan"]), 16, 1)
    ema = getattr(optim, ema_class)(G, 0.9)
    old = {k: v.clone() for k, v in G.state_dict().items()}
    G.train()(torch.randn(8, 8))  # moves BatchNorm's running statistics and counter
    with torch.no_grad():
        for parameter in G.parameters():
            parameter.add_(torch.randn_like(parameter))
    ema.update(G)
    return G, ema, old


def test_ema_averages_batchnorm_buffers_for_existing_callers():
    # darkroom.optim.EMA (the classifier's): every floating state entry, buffers included, is lerped; the
    # integer counter num_batches_tracked is copied
    G, ema, old = ema_pair("EMA")
    new = G.state_dict()
    for key, value in ema.model.state_dict().items():
        if value.dtype.is_floating_point:
            assert torch.allclose(value, 0.9 * old[key] + 0.1 * new[key], atol=1e-6), key
        else:
            assert torch.equal(value, new[key]) and new[key].item() == 1, key
    assert not torch.allclose(ema.model.state_dict()["1.2.running_mean"], new["1.2.running_mean"])


def test_generator_ema_averages_parameters_and_copies_buffers():
    # StyleGAN2-ADA / StudioGAN: buffers are the live net's, parameters the average
    G, ema, old = ema_pair("GeneratorEMA")
    parameters = dict(G.named_parameters())
    for key, value in ema.model.state_dict().items():
        if key in parameters:
            assert torch.allclose(value, 0.9 * old[key] + 0.1 * parameters[key].detach(), atol=1e-6), key
        else:
            assert torch.equal(value, G.state_dict()[key]), key
    assert any(isinstance(m, nn.BatchNorm2d) for m in G.modules())
    before = {k: v.clone() for k, v in ema.model.state_dict().items()}
    ema.update(G, decay=1.0)  # a per-call decay: 1 keeps the parameters
    assert all(torch.equal(before[k], v) for k, v in ema.model.state_dict().items())


def test_ema_decay_ramp_caps_the_half_life():
    from darkroom.optim import ema_decay
    assert ema_decay(0.999, 0) == 0.999 and ema_decay(0.999, 10**6, None) == 0.999
    # half-life of 0.999: log 0.5 / log 0.999 = 692.8 updates; with rampup 0.05 the cap is 0.05 (t + 1)
    assert ema_decay(0.999, 0, 0.05) == pytest.approx(0.5 ** 20)
    assert ema_decay(0.999, 99, 0.05) == pytest.approx(0.5 ** (1 / 5))
    assert ema_decay(0.999, 13_900, 0.05) == 0.999 and ema_decay(0.999, 13_800, 0.05) < 0.999
    decays = [ema_decay(0.999, t, 0.05) for t in range(0, 20_000, 50)]
    assert decays == sorted(decays)


def test_standing_batchnorm_stats_are_the_average_batch_statistics():
    from darkroom.optim import standing_batchnorm_stats_
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6)).eval()
    model[1].running_mean.fill_(5.0)  # stale statistics to be replaced
    batches = [torch.randn(16, 4) * 2 + 1 for _ in range(3)]
    standing_batchnorm_stats_(model, batches)
    with torch.no_grad():
        h = [model[0](x) for x in batches]  # (16, 6) each
    assert torch.allclose(model[1].running_mean, torch.cat(h).mean(0), atol=1e-5)
    assert torch.allclose(model[1].running_var, torch.stack([x.var(0) for x in h]).mean(0), atol=1e-5)
    assert model[1].num_batches_tracked.item() == 3
    assert model[1].momentum == 0.1 and not model.training


@pytest.mark.parametrize("size", [16, 28, 32, 48, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("packing", [2, 4])
def test_packed_critic_shapes(size, channels, packing):
    from darkroom.gan.augment import pack
    spec = dataclasses.replace(small(dcgan.DCGAN_PRESETS["wgan-gp"]), packing=packing)
    D = dcgan.build_critic(spec, size, channels)
    assert D[1 if size % 16 else 0][0].in_channels == channels * packing
    x = torch.randn(2 * packing, channels, size, size)
    assert D(pack(x, packing)).shape == (2,)
    plain = dcgan.build_critic(small(dcgan.DCGAN_PRESETS["wgan-gp"]), size, channels)
    # only the first conv grows: (packing - 1) * channels * ndf * 4 * 4 more weights
    assert n_params(D) - n_params(plain) == (packing - 1) * channels * 4 * 16


@pytest.mark.parametrize("norm,spectral", [("none", False), ("layer", True)])
def test_packed_critic_scores_each_group_of_m_consecutive_samples(norm, spectral):
    from darkroom.gan.augment import pack
    torch.manual_seed(0)
    D = dcgan.dcgan_critic(28, 1, ndf=4, norm=norm, spectral_norm=spectral, packing=2).eval()
    x = torch.randn(8, 1, 28, 28)
    y = x.clone()
    y[5] += 1  # sample 5 sits in packed row 5 // 2 = 2
    assert (D(pack(y, 2)) != D(pack(x, 2))).tolist() == [False, False, True, False]


def test_packing_must_be_positive():
    with pytest.raises(UserError, match="packing"):
        dcgan.dcgan_critic(32, 1, packing=0)
