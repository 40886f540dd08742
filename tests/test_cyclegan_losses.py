"""CycleGAN maths: closed-form losses, the history pool, the LR rule, and one step against a by-hand reference."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from darkroom.nets.cyclegan import cyclegan_init_, patchgan_discriminator, resnet_generator
from darkroom.cyclegan.train import lr_factor
from darkroom.cyclegan.losses import (LOSS_TERMS, CycleGANNets, CycleWeightControl, GeneratorPair, ImagePool,
                                      LossWeights, cycle_loss, discriminator_loss, gan_loss, train_step)

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small nets, one torch thread


def test_identity_generators_have_exactly_zero_cycle_and_identity_loss():
    real_a, real_b = torch.rand(3, 1, 12, 12) * 2 - 1, torch.rand(3, 1, 12, 12) * 2 - 1
    images = GeneratorPair(nn.Identity(), nn.Identity())(real_a, real_b, identity=True)
    assert cycle_loss(real_a, images["rec_a"]).item() == 0.0
    assert cycle_loss(real_b, images["rec_b"]).item() == 0.0
    assert cycle_loss(real_a, images["idt_a"]).item() == 0.0 and cycle_loss(real_b, images["idt_b"]).item() == 0.0
    assert cycle_loss(real_a, -real_a).item() > 0  # and a generator that changes the image does pay


def test_gan_losses_closed_form():
    logits = torch.full((2, 1, 3, 3), 0.5)
    assert gan_loss(logits, True, "lsgan").item() == pytest.approx(0.25)  # (0.5 - 1)^2
    assert gan_loss(logits, False, "lsgan").item() == pytest.approx(0.25)  # (0.5 - 0)^2
    zeros = torch.zeros(2, 1, 3, 3)
    assert gan_loss(zeros, True, "vanilla").item() == pytest.approx(math.log(2))
    real, fake = torch.full((1, 1, 2, 2), 0.9), torch.full((1, 1, 2, 2), 0.2)
    assert discriminator_loss(real, fake, "lsgan").item() == pytest.approx(0.5 * (0.1 ** 2 + 0.2 ** 2))
    with pytest.raises(ValueError):
        gan_loss(zeros, True, "wasserstein")


def test_pool_returns_inputs_until_full():
    pool = ImagePool(50, seed=0)
    batches = [torch.randn(5, 1, 4, 4) for _ in range(10)]
    for batch in batches:
        assert torch.equal(pool.query(batch), batch)
    assert len(pool.images) == 50


def test_full_pool_swaps_half_of_the_images():
    pool = ImagePool(50, seed=1)
    history = set()
    for i in range(50):
        pool.query(torch.full((1, 1, 1, 1), float(i)))
        history.add(float(i))
    n, from_history = 4000, 0
    for i in range(50, 50 + n):
        out = float(pool.query(torch.full((1, 1, 1, 1), float(i))))
        if out != float(i):
            assert out in history  # an older fake, never something invented
            from_history += 1
        history.add(float(i))
    # binomial(4000, 1/2): standard deviation 31.6, so +-5 sigma is 158
    assert abs(from_history - n / 2) < 158
    assert len(pool.images) == 50


def test_pool_state_round_trip_continues_exactly():
    pool = ImagePool(4, seed=3)
    for _ in range(6):
        pool.query(torch.randn(2, 1, 3, 3))
    state = copy.deepcopy(pool.state_dict())
    probe = torch.randn(8, 1, 3, 3)
    expected = pool.query(probe)
    restored = ImagePool(50, seed=99)
    restored.load_state_dict(state, CPU)
    assert torch.equal(restored.query(probe), expected)
    assert torch.equal(ImagePool(0).query(probe), probe)  # size 0: no history, the inputs pass through


def test_lr_factor_constant_then_linear_to_zero():
    constant, decay = 30, 20
    assert all(lr_factor(step, constant, decay) == 1.0 for step in range(constant))
    values = [lr_factor(step, constant, decay) for step in range(constant, constant + decay + 1)]
    assert all(later < earlier for earlier, later in zip(values, values[1:]))
    assert lr_factor(constant + decay // 2, constant, decay) == pytest.approx(0.5)
    assert lr_factor(constant + decay, constant, decay) == 0.0
    assert lr_factor(constant + decay + 5, constant, decay) == 0.0


class Capture(torch.optim.SGD):
    """An optimizer that records the gradients it is given and leaves the parameters alone."""

    def __init__(self, params):
        super().__init__(params, lr=0.0)
        self.grads = None

    def step(self, closure=None):
        self.grads = [p.grad.detach().clone() for group in self.param_groups for p in group["params"]]


def tiny_nets(seed=0, channels=(1, 1)):
    torch.manual_seed(seed)
    return {"g_ab": cyclegan_init_(resnet_generator(channels[0], channels[1], ngf=4, n_blocks=1)),
            "g_ba": cyclegan_init_(resnet_generator(channels[1], channels[0], ngf=4, n_blocks=1)),
            "d_a": cyclegan_init_(patchgan_discriminator(channels[0], ndf=4, n_layers=2)),
            "d_b": cyclegan_init_(patchgan_discriminator(channels[1], ndf=4, n_layers=2))}


def by_hand(nets, real_a, real_b, pooled_a=None, pooled_b=None):
    """The reference's backward_G and backward_D_A/B written out plainly, two D forwards each."""
    g_ab, g_ba, d_a, d_b = nets["g_ab"], nets["g_ba"], nets["d_a"], nets["d_b"]
    fake_b, fake_a = g_ab(real_a), g_ba(real_b)
    mse = lambda logits, value: F.mse_loss(logits, torch.full_like(logits, value))  # noqa: E731
    loss_g = (mse(d_b(fake_b), 1.0) + mse(d_a(fake_a), 1.0)
              + 10 * F.l1_loss(g_ba(fake_b), real_a) + 10 * F.l1_loss(g_ab(fake_a), real_b)
              + 5 * F.l1_loss(g_ba(real_a), real_a) + 5 * F.l1_loss(g_ab(real_b), real_b))
    grads_g = torch.autograd.grad(loss_g, [*g_ab.parameters(), *g_ba.parameters()])
    fake_a = (fake_a if pooled_a is None else pooled_a).detach()
    fake_b = (fake_b if pooled_b is None else pooled_b).detach()
    loss_d = (0.5 * (mse(d_a(real_a), 1.0) + mse(d_a(fake_a), 0.0))
              + 0.5 * (mse(d_b(real_b), 1.0) + mse(d_b(fake_b), 0.0)))
    grads_d = torch.autograd.grad(loss_d, [*d_a.parameters(), *d_b.parameters()])
    return float(loss_g.detach()), grads_g, grads_d


def test_step_matches_the_reference_written_by_hand():
    nets = tiny_nets()
    reference = copy.deepcopy(nets)
    real_a, real_b = torch.rand(3, 1, 16, 16) * 2 - 1, torch.rand(3, 1, 16, 16) * 2 - 1
    opt_g = Capture([*nets["g_ab"].parameters(), *nets["g_ba"].parameters()])
    opt_d = Capture([*nets["d_a"].parameters(), *nets["d_b"].parameters()])
    step_nets = CycleGANNets(GeneratorPair(nets["g_ab"], nets["g_ba"]), nets["d_a"], nets["d_b"])
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    losses, _ = train_step(step_nets, real_a, real_b, opt_g, opt_d, ImagePool(50), ImagePool(50), LossWeights(), CPU,
                           "fp32", scaler)
    loss_g, grads_g, grads_d = by_hand(reference, real_a, real_b)
    assert set(losses) == set(LOSS_TERMS)
    assert losses["g"] == pytest.approx(loss_g, rel=1e-5)
    for mine, theirs in zip(opt_g.grads + opt_d.grads, list(grads_g) + list(grads_d)):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
    assert all(p.requires_grad for name in ("d_a", "d_b") for p in nets[name].parameters())


def test_cycle_decoder_multiplies_only_the_reconstructing_generators_cycle_gradient():
    """decoder k: each cycle term's gradient reaches the generator that reconstructs k times, and the one that
    translated exactly as at k = 1. So grads(k) - grads(1) is (k - 1) lambda times the gradient of the cycle L1 through
    the reconstructing generator alone, with the fake held fixed; the logged losses do not change."""
    k, real_a, real_b = 3.0, torch.rand(3, 1, 16, 16) * 2 - 1, torch.rand(3, 1, 16, 16) * 2 - 1

    def step(decoder):
        nets = tiny_nets()
        opt_g = Capture([*nets["g_ab"].parameters(), *nets["g_ba"].parameters()])
        opt_d = Capture([*nets["d_a"].parameters(), *nets["d_b"].parameters()])
        step_nets = CycleGANNets(GeneratorPair(nets["g_ab"], nets["g_ba"]), nets["d_a"], nets["d_b"])
        weights = LossWeights(lambda_a=10.0, lambda_b=7.0, identity=0.0, decoder=decoder)
        losses, _ = train_step(step_nets, real_a, real_b, opt_g, opt_d, ImagePool(50), ImagePool(50), weights, CPU,
                               "fp32", torch.amp.GradScaler("cpu", enabled=False))
        return losses, opt_g.grads

    (losses_1, grads_1), (losses_k, grads_k) = step(1.0), step(k)
    nets = tiny_nets()
    g_ab, g_ba = nets["g_ab"], nets["g_ba"]
    decoding_ab = torch.autograd.grad(7.0 * F.l1_loss(g_ab(g_ba(real_b).detach()), real_b), list(g_ab.parameters()))
    decoding_ba = torch.autograd.grad(10.0 * F.l1_loss(g_ba(g_ab(real_a).detach()), real_a), list(g_ba.parameters()))
    for one, with_k, extra in zip(grads_1, grads_k, [*decoding_ab, *decoding_ba]):
        torch.testing.assert_close(with_k, one + (k - 1) * extra, rtol=1e-4, atol=1e-5)
    assert any(extra.abs().max() > 1e-4 for extra in decoding_ab)  # the difference is not vacuously zero
    assert losses_k == pytest.approx(losses_1, rel=1e-6)


def test_identity_weight_zero_turns_identity_off():
    nets = tiny_nets()
    step_nets = CycleGANNets(GeneratorPair(nets["g_ab"], nets["g_ba"]), nets["d_a"], nets["d_b"])
    opt_g = torch.optim.Adam([*nets["g_ab"].parameters(), *nets["g_ba"].parameters()])
    opt_d = torch.optim.Adam([*nets["d_a"].parameters(), *nets["d_b"].parameters()])
    losses, images = train_step(step_nets, torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 16), opt_g, opt_d,
                                ImagePool(2), ImagePool(2), LossWeights(identity=0.0), CPU, "fp32",
                                torch.amp.GradScaler("cpu", enabled=False))
    assert losses["idt_a"] == losses["idt_b"] == 0.0 and "idt_a" not in images
    assert losses["g"] == pytest.approx(sum(losses[k] for k in ("gan_ab", "gan_ba", "cycle_a", "cycle_b")), rel=1e-6)


@pytest.mark.parametrize("precision_name,channels", [("fp32", (1, 3)), ("bf16", (3, 3)), ("fp16", (1, 1))])
def test_step_updates_every_net(precision_name, channels):
    nets = tiny_nets(channels=channels)
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in nets.items()}
    step_nets = CycleGANNets(GeneratorPair(nets["g_ab"], nets["g_ba"]), nets["d_a"], nets["d_b"])
    opt_g = torch.optim.Adam([*nets["g_ab"].parameters(), *nets["g_ba"].parameters()], lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*nets["d_a"].parameters(), *nets["d_b"].parameters()], lr=2e-4, betas=(0.5, 0.999))
    # fp16: a modest first scale, so the two steps are not both skipped as overflows (they would be at 2**16)
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0, enabled=precision_name == "fp16")
    pool_a, pool_b = ImagePool(50), ImagePool(50)
    weights = LossWeights(identity=0.5 if channels[0] == channels[1] else 0.0)
    for _ in range(2):
        losses, _ = train_step(step_nets, torch.rand(2, channels[0], 16, 16) * 2 - 1,
                               torch.rand(2, channels[1], 16, 16) * 2 - 1, opt_g, opt_d, pool_a, pool_b, weights,
                               CPU, precision_name, scaler)
        assert all(math.isfinite(value) for value in losses.values())
    for name, net in nets.items():
        changed = [not torch.equal(old, new) for old, new in zip(before[name], net.parameters())]
        assert sum(changed) >= len(changed) // 2, name  # biases before instance norm get zero gradient
    assert len(pool_a.images) == len(pool_b.images) == 4
    assert pool_a.images[0].shape == (channels[0], 16, 16) and pool_b.images[0].shape == (channels[1], 16, 16)


def same(left, right) -> bool:
    """Tensors, dicts and lists equal exactly, all the way down."""
    if isinstance(left, torch.Tensor):
        return isinstance(right, torch.Tensor) and torch.equal(left, right)
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[key], right[key]) for key in left)
    if isinstance(left, (list, tuple)):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right))
    return left == right


def test_skip_non_finite_leaves_nets_optimizers_and_pools_as_they_were():
    """--on-nan skip: a NaN image makes the losses NaN; nothing the next steps read changes, so the next finite step
    equals that of a twin run that never saw the NaN batch."""
    runs = []
    for _ in range(2):
        nets = tiny_nets()
        runs.append((nets, CycleGANNets(GeneratorPair(nets["g_ab"], nets["g_ba"]), nets["d_a"], nets["d_b"]),
                     torch.optim.Adam([*nets["g_ab"].parameters(), *nets["g_ba"].parameters()], lr=2e-4, betas=(0.5, 0.999)),
                     torch.optim.Adam([*nets["d_a"].parameters(), *nets["d_b"].parameters()], lr=2e-4, betas=(0.5, 0.999)),
                     ImagePool(3, seed=1), ImagePool(3, seed=2)))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    batches = [torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(i)) * 2 - 1 for i in range(4)]

    def step(run, real_a, real_b):
        _, step_nets, opt_g, opt_d, pool_a, pool_b = run
        return train_step(step_nets, real_a, real_b, opt_g, opt_d, pool_a, pool_b, LossWeights(), CPU, "fp32", scaler,
                          skip_non_finite=True)[0]

    for run in runs:  # one finite step: the pools hold two fakes each (room for one more), Adam has moments
        assert "skipped" not in step(run, batches[0], batches[1])
    mine, twin = runs
    nets, _, opt_g, opt_d, pool_a, pool_b = mine
    before = copy.deepcopy(({name: net.state_dict() for name, net in nets.items()}, opt_g.state_dict(),
                            opt_d.state_dict(), [(pool.images, pool.generator.get_state()) for pool in (pool_a, pool_b)]))
    losses = step(mine, torch.full_like(batches[2], float("nan")), batches[3])
    assert losses["skipped"] == 1.0 and math.isnan(losses["g"]) and math.isnan(losses["d_a"])
    after = ({name: net.state_dict() for name, net in nets.items()}, opt_g.state_dict(), opt_d.state_dict(),
             [(pool.images, pool.generator.get_state()) for pool in (pool_a, pool_b)])
    assert same(before, after)
    assert all(p.grad is None for net in nets.values() for p in net.parameters())  # no NaN gradient left behind

    losses, twin_losses = step(mine, batches[2], batches[3]), step(twin, batches[2], batches[3])
    assert losses == twin_losses and "skipped" not in losses and all(map(math.isfinite, losses.values()))
    assert same({name: net.state_dict() for name, net in nets.items()},
                {name: net.state_dict() for name, net in twin[0].items()})


def test_adaptive_cycle_weights_scale_the_cycle_gradient_and_follow_the_error():
    """--cycle-target: the step's cycle terms use the controller's weights, so with weights w the generators' gradient
    equals the fixed-lambda step's at lambda = w (pinned against LossWeights), and afterwards each log-weight moved by
    RATE * clamp(log(L1 / target), -1, 1) of that step's own cycle L1: up where the reconstruction was worse than the
    target, down where it was better, within its span of the configured lambda."""
    real_a, real_b = torch.rand(3, 1, 16, 16) * 2 - 1, torch.rand(3, 1, 16, 16) * 2 - 1

    def step(weights, control=None):
        nets = tiny_nets()
        opt_g = Capture([*nets["g_ab"].parameters(), *nets["g_ba"].parameters()])
        opt_d = Capture([*nets["d_a"].parameters(), *nets["d_b"].parameters()])
        step_nets = CycleGANNets(GeneratorPair(nets["g_ab"], nets["g_ba"]), nets["d_a"], nets["d_b"])
        losses, _ = train_step(step_nets, real_a, real_b, opt_g, opt_d, ImagePool(50), ImagePool(50), weights, CPU,
                               "fp32", torch.amp.GradScaler("cpu", enabled=False), control=control)
        return losses, opt_g.grads

    control = CycleWeightControl(10.0, 4.0, target=0.5, device=CPU)
    control.log_factor = torch.tensor([math.log(2.0), math.log(0.5)])  # weights 20 and 2 for this step
    adaptive, grads_adaptive = step(LossWeights(lambda_a=10.0, lambda_b=4.0, identity=0.3), control)
    fixed, grads_fixed = step(LossWeights(lambda_a=20.0, lambda_b=2.0, identity=0.3))
    for one, other in zip(grads_adaptive, grads_fixed):
        torch.testing.assert_close(one, other, rtol=1e-5, atol=1e-7)
    assert adaptive == pytest.approx(fixed, rel=1e-6)  # every term, the logged weights 20 and 2 included
    assert (adaptive["lambda_a"], adaptive["lambda_b"]) == pytest.approx((20.0, 2.0))
    l1 = torch.tensor([fixed["cycle_a"] / 20.0, fixed["cycle_b"] / 2.0])  # the step's own cycle L1s
    expected = (torch.tensor([math.log(2.0), math.log(0.5)])
                + CycleWeightControl.RATE * (l1 / 0.5).log().clamp(-1.0, 1.0))
    torch.testing.assert_close(control.log_factor, expected)
    assert (control.log_factor > torch.tensor([math.log(2.0), math.log(0.5)])).tolist() == (l1 > 0.5).tolist()

    # an unreachable target: the weights stop at the spans (3 both ways, the default; --cycle-span, --cycle-span-down)
    for span, span_down in ((3.0, None), (10.0, None), (3.0, 10.0)):
        far = CycleWeightControl(10.0, 10.0, target=1e-6, device=CPU, span=span, span_down=span_down)
        steps = int(math.log(max(span, span_down or span)) / CycleWeightControl.RATE) + 5
        for _ in range(steps):
            far.update(torch.tensor([1.0, 1e-9]))  # A far above the target, B below it: each by more than the clamp
        assert far.weights().tolist() == pytest.approx([10.0 * span, 10.0 / (span_down or span)])
    near = CycleWeightControl(10.0, 10.0, target=0.1, device=CPU)
    near.update(torch.tensor([0.1 * math.e ** 0.5, 0.1]))  # within the clamp: moved by RATE * log(ratio); on target: not
    assert near.weights().tolist() == pytest.approx([10.0 * math.exp(0.5 * CycleWeightControl.RATE), 10.0])
    # --cycle-fall 4: a step below the target moves the weight down 4 times as far as the same ratio above moves it
    # up; the clamp still bounds the ratio first
    falling = CycleWeightControl(10.0, 10.0, target=0.1, device=CPU, span=10.0, fall=4.0)
    falling.update(torch.tensor([0.1 * math.e ** 0.2, 0.1 * math.e ** -0.2]))
    assert falling.weights().tolist() == pytest.approx([10.0 * math.exp(0.2 * CycleWeightControl.RATE),
                                                        10.0 * math.exp(-0.8 * CycleWeightControl.RATE)])
    falling.update(torch.tensor([0.1, 1e-9]))
    assert falling.weights()[1].item() == pytest.approx(10.0 * math.exp(-4.8 * CycleWeightControl.RATE))
    restored = CycleWeightControl(10.0, 10.0, target=1e-6, device=CPU)
    restored.load_state_dict(far.state_dict())
    assert torch.equal(restored.weights(), far.weights())
