"""The one-cycle schedule pinned to REFERENCE.md's worked example (fast.ai 0.7 CircularLR_beta)."""
import math

import pytest

from darkroom.schedule import (linear_decay_factor, one_cycle_c, one_cycle_lr, one_cycle_momentum, parse_sizes,
                               size_at, warmup_cosine, warmup_linear_decay)

N, DIV, PCT, LR = 1960, 50, 12.5, 2.0


def test_worked_example_cycle_length():
    assert one_cycle_c(N, PCT) == 857


@pytest.mark.parametrize("step,expected", [(0, 0.04), (857, 2.0), (1714, 0.04)])
def test_worked_example_lr_anchors(step, expected):
    assert one_cycle_lr(step, N, LR, DIV, PCT) == pytest.approx(expected, rel=1e-12)


def test_worked_example_final_lr():
    # last iteration t = N - 1: 0.04 * (1 - (245/246) * 0.99) = 0.000561...
    assert one_cycle_lr(N - 1, N, LR, DIV, PCT) == pytest.approx(0.00056, abs=5e-6)
    assert one_cycle_lr(N, N, LR, DIV, PCT) == pytest.approx(LR / (100 * DIV))


def test_lr_is_triangular_then_annealed():
    lrs = [one_cycle_lr(t, N, LR, DIV, PCT) for t in range(N)]
    assert all(a < b for a, b in zip(lrs[:857], lrs[1:858]))  # rising
    assert all(a > b for a, b in zip(lrs[857:1714], lrs[858:1715]))  # falling
    assert all(a > b for a, b in zip(lrs[1714:-1], lrs[1715:]))  # annealing below lr/div
    assert max(lrs) == pytest.approx(LR)


def test_momentum_mirrors_lr():
    mom = [one_cycle_momentum(t, N, 0.95, 0.85, PCT) for t in range(N)]
    assert mom[0] == pytest.approx(0.95)
    assert mom[857] == pytest.approx(0.85)
    assert mom[1714] == pytest.approx(0.95)
    assert set(mom[1715:]) == {0.95}
    assert min(mom) == pytest.approx(0.85)


def test_modern_shapes():
    assert warmup_linear_decay(0, 100, 1.0, 0.2) == pytest.approx(1 / 20)
    assert warmup_linear_decay(19, 100, 1.0, 0.2) == pytest.approx(1.0)
    assert warmup_linear_decay(100, 100, 1.0, 0.2) == pytest.approx(0.0)
    assert warmup_cosine(20, 100, 1.0, 0.2) == pytest.approx(1.0)
    assert warmup_cosine(60, 100, 1.0, 0.2) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 1.0, 0.2) == pytest.approx(0.0, abs=1e-12)


def test_cyclegan_linear_decay():
    assert [linear_decay_factor(e, 100, 100) for e in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert linear_decay_factor(150, 100, 100) == pytest.approx(0.5)
    assert linear_decay_factor(200, 100, 100) == 0.0
    assert not math.isnan(linear_decay_factor(0, 0, 0))


def test_progressive_sizes_parse_and_switch_at_their_steps():
    stages = parse_sizes("16:1, 22:2.5")
    assert stages == [(16, 1.0), (22, 2.5)]
    per_epoch = 10
    sizes = [size_at(stages, step, per_epoch) for step in range(40)]
    assert sizes == [16] * 10 + [22] * 15 + [None] * 15
    assert parse_sizes("") == [] and size_at([], 0, per_epoch) is None


@pytest.mark.parametrize("spec", ["16", "16:x", "0:1", "16:0", "16:2,20:2", "a:b"])
def test_progressive_sizes_refuse_malformed_stages(spec):
    with pytest.raises(ValueError, match="'"):
        parse_sizes(spec)
