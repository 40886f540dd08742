"""CycleGAN nets: any-size translation, reference parameter counts, checkpointed blocks, PatchGAN shapes."""
import pytest
import torch
from torch import nn

from darkroom.errors import UserError
from darkroom.nets import cyclegan


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small nets, one torch thread


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("size", [28, 64, 100, 256])
@pytest.mark.parametrize("in_channels,out_channels", [(1, 1), (3, 3), (1, 3)])
@pytest.mark.parametrize("upsample", cyclegan.UPSAMPLES)
def test_translation_keeps_the_input_shape(size, in_channels, out_channels, upsample):
    G = cyclegan.resnet_generator(in_channels, out_channels, ngf=2, n_blocks=1, upsample=upsample)
    x = torch.randn(1, in_channels, size, size)
    with torch.no_grad():
        y = cyclegan.translate_any_size(G, x)
    assert y.shape == (1, out_channels, size, size)
    assert y.abs().max() <= 1


@pytest.mark.parametrize("height,width", [(30, 17), (5, 9), (257, 64)])
def test_translation_of_non_square_odd_sizes(height, width):
    G = cyclegan.resnet_generator(3, 3, ngf=2, n_blocks=1)
    with torch.no_grad():
        assert cyclegan.translate_any_size(G, torch.randn(2, 3, height, width)).shape == (2, 3, height, width)


def test_translation_of_a_multiple_of_4_is_the_plain_generator():
    G = cyclegan.resnet_generator(3, 3, ngf=2, n_blocks=1)
    x = torch.randn(1, 3, 32, 36)
    with torch.no_grad():
        assert torch.equal(cyclegan.translate_any_size(G, x), G(x))


def test_translation_crops_the_padded_result():
    # a 30 px image is reflect-padded by 1 on each side to 32: the output is the centre of G(padded)
    G = cyclegan.resnet_generator(1, 1, ngf=2, n_blocks=1)
    x = torch.randn(1, 1, 30, 30)
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    with torch.no_grad():
        assert torch.equal(cyclegan.translate_any_size(G, x), G(padded)[..., 1:31, 1:31])


def test_too_small_images_are_user_errors():
    with pytest.raises(UserError):
        cyclegan.translate_any_size(cyclegan.resnet_generator(1, 1, ngf=2, n_blocks=1), torch.randn(1, 1, 4, 32))


def test_reference_parameter_counts():
    # junyanz ResnetGenerator(3, 3, 64, norm='instance', n_blocks=9) and NLayerDiscriminator(3, 64, 3):
    # every conv has a bias because the norm is InstanceNorm2d (affine=False adds no parameters).
    # G: c7s1-64 9,472; downs 73,856 + 295,168; 9 blocks x 2 x 590,080; ups 295,040 + 73,792; c7s1-3 9,411.
    # D: 3,136 + 131,200 + 524,544 + 2,097,664 (stride 1) + 8,193.
    assert n_params(cyclegan.GENERATORS["resnet_9blocks"](3, 3)) == 11_378_179
    assert n_params(cyclegan.GENERATORS["resnet_6blocks"](3, 3)) == 11_378_179 - 3 * 2 * 590_080
    assert n_params(cyclegan.DISCRIMINATORS["basic"](3)) == 2_764_737


def test_generator_layout():
    G = cyclegan.resnet_generator(3, 3, ngf=4, n_blocks=2)
    norms = [m for m in G.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and all(not m.affine and not m.track_running_stats for m in norms)
    assert sum(isinstance(m, cyclegan.ResidualBlock) for m in G) == 2
    assert isinstance(G[-1][-1], nn.Tanh)
    pads = [m for m in G.modules() if isinstance(m, nn.ReflectionPad2d)]
    assert [p.padding[0] for p in pads] == [3, 1, 1, 1, 1, 3]


def test_patchgan_sees_30x30_patches_at_256_and_has_no_norm_first():
    D = cyclegan.patchgan_discriminator(3, ndf=4)
    assert D(torch.randn(2, 3, 256, 256)).shape == (2, 1, 30, 30)
    assert [type(m) for m in D[0]] == [nn.Conv2d, nn.LeakyReLU]
    assert all(isinstance(D[i][1], nn.InstanceNorm2d) for i in (1, 2, 3))
    assert [D[i][0].stride[0] for i in range(4)] + [D[4].stride[0]] == [2, 2, 2, 1, 1]


def test_patchgan_receptive_field_is_70():
    # the gradient of one output patch reaches exactly a 70x70 window of the input (instance norm
    # removed: its per-image mean and variance would spread the gradient over the whole image)
    torch.manual_seed(0)
    D = cyclegan.patchgan_discriminator(1, ndf=2)
    for i in (1, 2, 3):
        D[i][1] = nn.Identity()
    x = torch.randn(1, 1, 128, 128, requires_grad=True)
    D(x)[0, 0, 6, 6].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    cols = x.grad[0, 0].abs().sum(0).nonzero()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


def forward_saving(G: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """G(x) and the number of elements autograd saved for backward."""
    saved = []

    def pack(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        y = G(x)
    return y, sum(saved)


def test_checkpointed_blocks_give_identical_outputs_and_grads():
    torch.manual_seed(0)
    plain = cyclegan.resnet_generator(3, 3, ngf=4, n_blocks=2)
    lean = cyclegan.resnet_generator(3, 3, ngf=4, n_blocks=2, checkpoint_blocks=True)
    lean.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    y_plain, saved_plain = forward_saving(plain, x)
    y_lean, saved_lean = forward_saving(lean, x)
    assert torch.equal(y_plain, y_lean)
    assert saved_lean < saved_plain  # the blocks' inner activations were not kept
    y_plain.square().mean().backward()
    y_lean.square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), lean.parameters()):
        assert torch.equal(p.grad, q.grad), name
    assert cyclegan.set_checkpointing_(plain, True) is plain
    assert all(m.checkpoint for m in plain.modules() if isinstance(m, cyclegan.ResidualBlock))


def test_init_is_normal_002_with_zero_bias():
    torch.manual_seed(0)
    G = cyclegan.GENERATORS["resnet_9blocks"](3, 3)
    weight = G[3].branch[1].weight  # (256, 256, 3, 3)
    assert abs(weight.std().item() - 0.02) < 0.001
    assert all(torch.all(m.bias == 0) for m in G.modules() if isinstance(m, nn.Conv2d))


def test_blocks_option_overrides_the_generator_name():
    from darkroom.cyclegan.train import build_generator

    values = {"ngf": 8, "generator": "resnet_9blocks", "upsample": "deconv"}
    for blocks, expected in ((0, 9), (3, 3), (None, 9)):
        G = build_generator({**values, "blocks": blocks} if blocks is not None else values, 1, 1)  # None: older runs
        assert sum(isinstance(m, cyclegan.ResidualBlock) for m in G) == expected


def test_negative_blocks_are_refused_in_one_sentence():
    from darkroom.cyclegan.train import CycleGANConfig

    with pytest.raises(UserError, match="--blocks must be at least 0, not -1"):
        CycleGANConfig(blocks=-1)  # built in code, not from flags: __post_init__ checks it


def _contrast(x: torch.Tensor, s: float) -> torch.Tensor:
    """The same image at s times the contrast against a -1 background: -1 + s (x + 1)."""
    return -1.0 + s * (x + 1.0)


def test_the_reference_generator_is_blind_to_its_inputs_contrast_and_input_norm_off_is_not():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    reference = cyclegan.cyclegan_init_(cyclegan.resnet_generator(1, 1, ngf=8, n_blocks=2))
    seeing = cyclegan.resnet_generator(1, 1, ngf=8, n_blocks=2, input_norm=False)
    seeing.load_state_dict(reference.state_dict())  # the same keys and weights: only the first norm differs
    with torch.no_grad():
        # closed form: the first conv's output moves by s per channel (plus a constant), which its norm divides out
        # (to the norm's eps of 1e-5 against variances of about 1e-3 at the reference's init)
        blind = (reference(x) - reference(_contrast(x, 0.6))).abs().mean()
        seen = (seeing(x) - seeing(_contrast(x, 0.6))).abs().mean()
        assert blind < 1e-3 and seen > 100 * blind
        assert not torch.allclose(reference(x), seeing(x))
    assert isinstance(seeing[0][2], nn.Identity) and isinstance(reference[0][2], nn.InstanceNorm2d)


def test_a_saved_config_without_input_norm_builds_the_reference_generator():
    from darkroom.cyclegan.nets import build_generator

    saved = {"ngf": 8, "generator": "resnet_6blocks", "blocks": 2, "upsample": "deconv"}  # a run saved before the field
    assert isinstance(build_generator(saved, 1, 1)[0][2], nn.InstanceNorm2d)
    assert isinstance(build_generator({**saved, "input_norm": False}, 1, 1)[0][2], nn.Identity)


@pytest.mark.parametrize("padding,mode", [("reflect", "reflect"), ("zero", "constant")])
def test_residual_block_is_x_plus_its_branch_written_out_with_that_padding(padding, mode):
    torch.manual_seed(0)
    block = cyclegan.cyclegan_init_(cyclegan.ResidualBlock(3, padding=padding))
    conv_1, conv_2 = (m for m in block.modules() if isinstance(m, nn.Conv2d))
    x = torch.randn(2, 3, 7, 7)
    norm = lambda h: (h - h.mean((2, 3), keepdim=True)) / (h.var((2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()  # noqa: E731
    pad = lambda h: nn.functional.pad(h, (1, 1, 1, 1), mode=mode)  # noqa: E731
    by_hand = x + norm(nn.functional.conv2d(pad(torch.relu(norm(nn.functional.conv2d(pad(x), conv_1.weight, conv_1.bias)))),
                                            conv_2.weight, conv_2.bias))
    with torch.no_grad():
        torch.testing.assert_close(block(x), by_hand, rtol=1e-4, atol=1e-5)


def test_zero_padding_keeps_the_reference_keys_and_reflects_only_the_image():
    reference = cyclegan.cyclegan_init_(cyclegan.resnet_generator(1, 1, ngf=4, n_blocks=2))
    zero = cyclegan.resnet_generator(1, 1, ngf=4, n_blocks=2, padding="zero")
    zero.load_state_dict(reference.state_dict())  # the same keys and shapes: a checkpoint moves between the two
    assert [p.padding[0] for p in zero.modules() if isinstance(p, nn.ReflectionPad2d)] == [3]  # the image's pad
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        assert zero(x).shape == reference(x).shape == (2, 1, 28, 28)
        assert not torch.allclose(zero(x), reference(x))  # the borders differ, so the option does something
    with pytest.raises(UserError):
        cyclegan.resnet_generator(1, 1, padding="replicate")


def test_a_saved_config_without_padding_builds_the_reflecting_generator():
    from darkroom.cyclegan.nets import build_generator

    saved = {"ngf": 8, "generator": "resnet_6blocks", "blocks": 2, "upsample": "deconv"}  # a run saved before the field
    pads = lambda net: sum(isinstance(m, nn.ReflectionPad2d) for m in net.modules())  # noqa: E731
    assert pads(build_generator(saved, 1, 1)) == 6 and pads(build_generator({**saved, "padding": "zero"}, 1, 1)) == 1
