"""DiffAugment and PacGAN packing: gradients, identities, planted shifts and squares, ranges, reproducible streams."""
import pytest
import torch

from darkroom.errors import UserError
from darkroom.gan import augment as A

FULL = "color,translation,cutout"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fixed_draws(batch: int = 2) -> A.AugmentDraws:
    return A.AugmentDraws(
        A.OPS, brightness=torch.tensor([0.3, -0.2]), saturation=torch.tensor([1.7, 0.4]),
        contrast=torch.tensor([0.6, 1.3]), shift=torch.tensor([[1, -2], [0, 1]]),
        cutout_top_left=torch.tensor([[-1, 2], [3, 1]]), cutout_size=torch.tensor([[3, 2], [3, 2]])).rows(0, batch)


@pytest.mark.parametrize("op", ["brightness", "saturation", "contrast", "translate", "cutout", "all"])
def test_every_op_is_differentiable(op):
    # float64 finite differences against autograd at fixed draws, on a small non-square input
    draws = fixed_draws()
    functions = {
        "brightness": lambda x: A.brightness(x, draws.brightness),
        "saturation": lambda x: A.saturation(x, draws.saturation),
        "contrast": lambda x: A.contrast(x, draws.contrast),
        "translate": lambda x: A.translate(x, draws.shift),
        "cutout": lambda x: A.cutout(x, draws.cutout_top_left, draws.cutout_size),
        "all": lambda x: A.apply_augment(x, draws),
    }
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(functions[op], (x,))


def test_colour_ops_closed_forms():
    x = torch.tensor([[[[1.0]], [[2.0]], [[6.0]]]])  # (1, 3, 1, 1): channel mean 3
    assert torch.allclose(A.brightness(x, torch.tensor([0.5])).flatten(), torch.tensor([1.5, 2.5, 6.5]))
    assert torch.allclose(A.saturation(x, torch.tensor([2.0])).flatten(), torch.tensor([-1.0, 1.0, 9.0]))
    y = torch.tensor([[[[0.0, 4.0]]]])  # (1, 1, 1, 2): image mean 2
    assert torch.allclose(A.contrast(y, torch.tensor([0.5])).flatten(), torch.tensor([1.0, 3.0]))
    assert torch.equal(A.saturation(y, torch.tensor([0.0])), y)  # one channel: no colour to change


@pytest.mark.parametrize("channels,height,width", [(1, 28, 28), (3, 32, 32), (3, 17, 12), (1, 8, 9)])
def test_zero_strength_or_probability_is_the_identity(channels, height, width):
    x = torch.randn(5, channels, height, width)
    for strength, probability in [(0.0, 1.0), (1.0, 0.0)]:
        out = A.diff_augment(x, FULL, gen(), strength, probability)
        assert out.shape == x.shape
        assert torch.allclose(out, x, atol=1e-6)  # colour ops compute (x - mean) * 1 + mean: rounding only
        assert torch.equal(A.diff_augment(x, "translation,cutout", gen(), strength, probability), x)
    assert A.diff_augment(x, "", gen()) is x and A.diff_augment(x, "none", gen()) is x


@pytest.mark.parametrize("dy,dx", [(2, -3), (-1, 0), (0, 4), (3, 3)])
def test_translation_moves_content_by_the_shift_with_zero_padding(dy, dx):
    height, width = 8, 10
    x = torch.rand(1, 2, height, width) + 1  # no zeros of its own
    out = A.translate(x, torch.tensor([[dy, dx]]))
    for i in range(height):
        for j in range(width):
            source_i, source_j = i - dy, j - dx
            inside = 0 <= source_i < height and 0 <= source_j < width
            expected = x[0, :, source_i, source_j] if inside else torch.zeros(2)
            assert torch.equal(out[0, :, i, j], expected), (i, j)


def test_drawn_translations_match_their_draws_and_the_papers_range():
    # 28 px: shifts in {-3, ..., 3} (28 // 8), each extreme drawn; out equals translate with the drawn shifts
    x = torch.rand(400, 1, 28, 28) + 1
    draws = A.draw_augment("translation", 400, 28, 28, gen(1))
    assert draws.shift.dtype == torch.int64 and draws.shift.abs().max() == 3
    assert set(draws.shift[:, 0].tolist()) == set(range(-3, 4)) == set(draws.shift[:, 1].tolist())
    out = A.apply_augment(x, draws)
    for b in range(0, 400, 37):
        dy, dx = draws.shift[b].tolist()
        shifted = torch.roll(x[b], (dy, dx), (1, 2))
        kept = out[b] != 0
        assert torch.equal(out[b][kept], shifted[kept])
        assert (~kept).sum() == 28 * 28 - (28 - abs(dy)) * (28 - abs(dx))  # exactly the vacated rows and columns


def test_cutout_zeroes_exactly_the_drawn_square():
    size = 28
    x = torch.rand(300, 3, size, size) + 1
    draws = A.draw_augment("cutout", 300, size, size, gen(2))
    assert torch.equal(draws.cutout_size, torch.full((300, 2), size // 2))
    out = A.apply_augment(x, draws)
    inside_count = 0
    for b in range(300):
        top, left = draws.cutout_top_left[b].tolist()
        zero = (out[b] == 0).all(0)  # (H, W): every channel zeroed together
        assert torch.equal((out[b] == 0).any(0), zero)
        rows = range(max(top, 0), min(top + 14, size))
        cols = range(max(left, 0), min(left + 14, size))
        expected = torch.zeros(size, size, dtype=torch.bool)
        expected[rows.start:rows.stop, cols.start:cols.stop] = True
        assert torch.equal(zero, expected), b  # the square, clipped to the image
        assert torch.equal(out[b][:, ~zero], x[b][:, ~zero])  # everything else untouched
        inside_count += int(zero.sum()) == 14 * 14
    assert inside_count > 50  # many squares lie wholly inside: exactly 14 x 14 pixels
    # the paper's centres: [0, size] for an even square, so clipping is symmetric (top from -7 to 21)
    assert draws.cutout_top_left.min() == -7 and draws.cutout_top_left.max() == size - 7


def test_colour_draws_follow_the_papers_ranges():
    draws = A.draw_augment("color", 20_000, 16, 16, gen(3))
    for values, low, high in [(draws.brightness, -0.5, 0.5), (draws.saturation, 0.0, 2.0), (draws.contrast, 0.5, 1.5)]:
        assert low <= values.min() < low + 0.01 and high - 0.01 < values.max() < high
        assert values.mean().item() == pytest.approx((low + high) / 2, abs=0.02)
    half = A.draw_augment("color", 20_000, 16, 16, gen(3), strength=0.5)
    assert torch.allclose(half.brightness, draws.brightness * 0.5)
    assert torch.allclose(half.saturation - 1, (draws.saturation - 1) * 0.5, atol=1e-6)
    sometimes = A.draw_augment("color", 20_000, 16, 16, gen(4), probability=0.3)
    assert (sometimes.brightness != 0).float().mean().item() == pytest.approx(0.3, abs=0.02)


def test_same_generator_state_gives_the_same_output_and_no_global_rng_is_used():
    x = torch.randn(8, 3, 16, 16)
    g = gen(5)
    A.diff_augment(x, FULL, g)
    state = g.get_state()  # a checkpoint mid-stream
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    first = A.diff_augment(x, FULL, g)
    assert torch.equal(torch.get_rng_state(), global_state)
    resumed = torch.Generator()
    resumed.set_state(state)
    assert torch.equal(A.diff_augment(x, FULL, resumed), first)
    assert not torch.equal(A.diff_augment(x, FULL, g), first)  # the stream moved on


def test_a_ranks_slice_of_a_global_draw_augments_its_slice():
    x = torch.randn(8, 3, 16, 16)
    draws = A.draw_augment(FULL, 8, 16, 16, gen(6))
    assert torch.equal(A.apply_augment(x[4:], draws.rows(4, 8)), A.apply_augment(x, draws)[4:])


def test_channels_last_is_kept():
    x = torch.randn(4, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    out = A.diff_augment(x, FULL, gen())
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, A.diff_augment(x.contiguous(), FULL, gen()), atol=1e-6)  # means reduce in another order


def test_unknown_policy_is_a_user_error():
    assert A.parse_policy(" color, cutout ") == ("color", "cutout")
    with pytest.raises(UserError, match="'flip'"):
        A.parse_policy("color,flip")


@pytest.mark.parametrize("shape", [(12, 2), (12, 3, 4, 5), (12, 1, 6, 6)])
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_pack_groups_m_consecutive_samples_along_the_channels(shape, m):
    x = torch.randn(*shape)
    packed = A.pack(x, m)
    channels = shape[1]
    assert packed.shape == (12 // m, m * channels, *shape[2:])
    seen = []
    for row in range(12 // m):
        for j in range(m):
            sample = row * m + j  # the documented order
            assert torch.equal(packed[row, j * channels:(j + 1) * channels], x[sample])
            seen.append(sample)
    assert sorted(seen) == list(range(12))  # every batch item once, never two copies in one row


def test_pack_keeps_gradients_and_refuses_uneven_batches():
    x = torch.randn(6, 1, 4, 4, requires_grad=True)
    A.pack(x, 3).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    assert A.pack(x, 1) is x
    with pytest.raises(ValueError, match="groups of 4"):
        A.pack(x, 4)
    packed_channels_last = A.pack(torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last), 2)
    assert packed_channels_last.shape == (2, 6, 5, 5)
