"""CycleGAN under torchrun on CPU (gloo): a 2-process step gives the gradients of one process on the union batch
(instance norm is per image, so this holds exactly up to float rounding), --on-nan skip decides for every rank at
once, and the trainer runs and resumes."""
import json
import os
import runpy
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import REPO, run_cli
from darkroom import cli
from test_cyclegan_train import TINY, unpaired_layout

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

STEP_SCRIPT = textwrap.dedent('''
    """One CycleGAN step on a fixed batch of 4, split over however many ranks torchrun started; saves the gradients."""
    import sys
    import torch
    from torch import nn
    from darkroom import dist
    from darkroom.nets.cyclegan import cyclegan_init_, patchgan_discriminator, resnet_generator
    from darkroom.cyclegan.losses import CycleGANNets, GeneratorPair, ImagePool, LossWeights, train_step

    class Capture(torch.optim.SGD):
        def __init__(self, params):
            super().__init__(params, lr=0.0)
        def step(self, closure=None):
            self.grads = [p.grad.detach().clone() for group in self.param_groups for p in group["params"]]

    def main(out):
        info = dist.setup("cpu")
        torch.manual_seed(0)
        g_ab = cyclegan_init_(resnet_generator(3, 3, ngf=4, n_blocks=2))
        g_ba = cyclegan_init_(resnet_generator(3, 3, ngf=4, n_blocks=2))
        d_a = cyclegan_init_(patchgan_discriminator(3, ndf=4, n_layers=2))
        d_b = cyclegan_init_(patchgan_discriminator(3, ndf=4, n_layers=2))
        data = torch.Generator().manual_seed(1)
        real_a = torch.rand(4, 3, 16, 16, generator=data) * 2 - 1
        real_b = torch.rand(4, 3, 16, 16, generator=data) * 2 - 1
        local = 4 // info.world_size
        mine = slice(info.rank * local, (info.rank + 1) * local)
        wrap = nn.parallel.DistributedDataParallel if info.distributed else (lambda net: net)
        nets = CycleGANNets(wrap(GeneratorPair(g_ab, g_ba)), wrap(d_a), wrap(d_b))
        opt_g = Capture([*g_ab.parameters(), *g_ba.parameters()])
        opt_d = Capture([*d_a.parameters(), *d_b.parameters()])
        losses, _ = train_step(nets, real_a[mine], real_b[mine], opt_g, opt_d, ImagePool(50), ImagePool(50),
                               LossWeights(), torch.device("cpu"), "fp32", torch.amp.GradScaler("cpu", enabled=False))
        if info.is_main:
            torch.save({"g": opt_g.grads, "d": opt_d.grads, "world_size": info.world_size}, out)
        del nets  # the DDP wrappers, before dist.cleanup
        dist.cleanup()

    if __name__ == "__main__":
        main(sys.argv[1])
''')


SKIP_SCRIPT = textwrap.dedent('''
    """--on-nan skip under DDP: a NaN batch on rank 1 only. Every rank must skip (one that ran D's backward while another
    did not would hang), leave its parameters alone, then take the next finite step in step. Each rank saves a report."""
    import sys
    import torch
    from torch import nn
    from darkroom import dist
    from darkroom.nets.cyclegan import cyclegan_init_, patchgan_discriminator, resnet_generator
    from darkroom.cyclegan.losses import CycleGANNets, GeneratorPair, ImagePool, LossWeights, train_step

    def main(out):
        info = dist.setup("cpu")
        torch.manual_seed(0)
        g_ab, g_ba = (cyclegan_init_(resnet_generator(1, 1, ngf=4, n_blocks=1)) for _ in range(2))
        d_a, d_b = (cyclegan_init_(patchgan_discriminator(1, ndf=4, n_layers=2)) for _ in range(2))
        nets = CycleGANNets(*(nn.parallel.DistributedDataParallel(net) for net in (GeneratorPair(g_ab, g_ba), d_a, d_b)))
        opt_g = torch.optim.Adam([*g_ab.parameters(), *g_ba.parameters()], lr=2e-4)
        opt_d = torch.optim.Adam([*d_a.parameters(), *d_b.parameters()], lr=2e-4)
        pools = ImagePool(3, seed=info.rank), ImagePool(3, seed=10 + info.rank)
        parameters = lambda: [p.detach().clone() for net in (g_ab, g_ba, d_a, d_b) for p in net.parameters()]
        start, skipped, data = parameters(), [], torch.Generator().manual_seed(info.rank)
        for step in range(2):
            real_a, real_b = (torch.rand(2, 1, 16, 16, generator=data) * 2 - 1 for _ in range(2))
            if step == 0 and info.rank == 1:
                real_a[0, 0, 0, 0] = float("nan")
            losses, _ = train_step(nets, real_a, real_b, opt_g, opt_d, pools[0], pools[1], LossWeights(),
                                   torch.device("cpu"), "fp32", torch.amp.GradScaler("cpu", enabled=False), True)
            skipped.append(bool(losses.get("skipped")))
            if step == 0:
                unchanged = all(torch.equal(a, b) for a, b in zip(start, parameters()))
        torch.save({"skipped": skipped, "unchanged": unchanged, "parameters": parameters()}, f"{out}-{info.rank}.pt")
        del nets  # the DDP wrappers, before dist.cleanup
        dist.cleanup()

    if __name__ == "__main__":
        main(sys.argv[1])
''')


def torchrun(args, nproc=2, timeout=300):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           *args], env=ENV, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_two_process_step_matches_one_process_on_the_union_batch(tmp_path):
    script = tmp_path / "step.py"
    script.write_text(STEP_SCRIPT)
    result = torchrun([str(script), str(tmp_path / "ddp.pt")])
    assert result.returncode == 0, result.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runpy.run_path(str(script), run_name="single")["main"](str(tmp_path / "one.pt"))
    finally:
        torch.set_num_threads(threads)
    ddp, one = torch.load(tmp_path / "ddp.pt"), torch.load(tmp_path / "one.pt")
    assert ddp["world_size"] == 2 and one["world_size"] == 1
    for kind in ("g", "d"):  # generator and discriminator gradients, to 1e-5 (relative where they exceed 1: each
        assert len(ddp[kind]) == len(one[kind])  # generator call batches 4 or 8 images, rounded differently)
        for mine, theirs in zip(ddp[kind], one[kind]):
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)
    assert max(grad.abs().max() for grad in one["g"]) > 1e-3  # the gradients compared are not all ~0


def test_on_nan_skip_is_one_decision_for_every_rank(tmp_path):
    script = tmp_path / "skip.py"
    script.write_text(SKIP_SCRIPT)
    result = torchrun([str(script), str(tmp_path / "rank")], timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank-{rank}.pt", weights_only=True) for rank in range(2)]
    assert [rank["skipped"] for rank in ranks] == [[True, False], [True, False]]  # rank 0's own losses were finite
    assert all(rank["unchanged"] for rank in ranks)
    assert all(torch.equal(a, b) for a, b in zip(ranks[0]["parameters"], ranks[1]["parameters"]))


def test_trainer_under_torchrun_shards_the_batch_and_resumes(tmp_path):
    data = unpaired_layout(tmp_path / "set", "RGB", count=8)
    common = ["-m", "darkroom", "train", "cyclegan", "--data", str(data), *TINY, "--val-images", "0", "--load-size",
              "20", "--crop-size", "16", "--batch-size", "4", "--pool-size", "0", "--log-every", "1",
              "--checkpoint-every", "1", "--sample-every", "0"]
    ddp_out, one_out = tmp_path / "ddp", tmp_path / "one"
    result = torchrun([*common, "--stop-after", "1", "--out", str(ddp_out)])
    assert result.returncode == 0, result.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # the one-process reference, in this process (saves a start-up)
        assert cli.main([*common[2:], "--stop-after", "1", "--out", str(one_out)]) == 0
    finally:
        torch.set_num_threads(threads)
    first = [json.loads(line) for line in (ddp_out / "metrics.jsonl").read_text().splitlines()][0]
    expected = [json.loads(line) for line in (one_out / "metrics.jsonl").read_text().splitlines()][0]
    for name in ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "d_a", "d_b"):
        # the rank means of step 1 equal the one-process mean only if the ranks' batches make up its batch
        assert first[name] == pytest.approx(expected[name], abs=1e-5), name
    saved = torch.load(ddp_out / "checkpoints" / "last.pt", weights_only=True)
    assert len(saved["ranks"]) == 2 and saved["meta"]["world_size"] == 2

    flag_out = tmp_path / "flag"  # --processes 2: darkroom spawns the same two ranks itself
    result = run_cli([*common[2:], "--processes", "2", "--stop-after", "1", "--out", str(flag_out)])
    assert result.returncode == 0, result.stderr[-3000:]
    spawned = [json.loads(line) for line in (flag_out / "metrics.jsonl").read_text().splitlines()][0]
    for name in ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "d_a", "d_b"):
        assert spawned[name] == pytest.approx(expected[name], abs=1e-5), name
    assert torch.load(flag_out / "checkpoints" / "last.pt", weights_only=True)["meta"]["world_size"] == 2

    result = torchrun([*common, "--stop-after", "2", "--out", str(ddp_out), "--resume"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed {ddp_out} at step 1" in result.stdout
    assert torch.load(ddp_out / "checkpoints" / "last.pt", weights_only=True)["state"]["step"] == 2
