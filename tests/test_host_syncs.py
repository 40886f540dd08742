"""Host syncs per training step: none outside logging, evaluation and checkpoint steps, in all three trainers.

A host sync is darkroom code waiting for the device: a tensor read into Python (`item`, `tolist`, `cpu`, `numpy`,
`bool`/`float`/`int`/index of a tensor, a tensor formatted into the progress bar) or a blocking copy (`.to(device)`
without non_blocking, `torch.tensor(..., device=...)`). Each is recorded with its darkroom call site while a trainer
runs in this process on the CPU, and with the step it falls in (the count of step-function calls so far). Every
interval - log, sample grid, checkpoint, host read - is set beyond the steps run, so each step but the last (its
epoch end) must record nothing.

On a CPU every device is the host, so a copy cannot be told from a no-op: every blocking `.to(device)` in a step
counts, and the step code carries none (data, generators and draws live on the training device from the start).
Calls made inside torch (an optimizer reading its CPU step counter) are torch's and not counted; fp16's GradScaler
syncs there each step by design, so these runs use the default precision (fp32 on CPU, where bf16 on a GPU takes
the same path). Streamed data (CycleGAN) is copied with non_blocking=True, counted apart and allowed.
"""
from __future__ import annotations

import os
import sys
from collections import Counter

import pytest
import torch

from conftest import REPO, needs_fashion
from darkroom import cli
from darkroom.classifier import train as classifier_train
from darkroom.cyclegan import train as cyclegan_train
from darkroom.gan import train as gan_train

TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
DARKROOM_DIR = str(REPO / "darkroom") + os.sep
# torch's tensor protocol (formatting, printing, __array__): the call is made for the code above it
PASS_THROUGH = {os.path.join(TORCH_DIR, name) for name in ("_tensor.py", "_tensor_str.py", "overrides.py")}
DATA_LOADING = os.path.join(TORCH_DIR, "utils", "data") + os.sep  # a Dataset or Sampler read by a DataLoader
# functions whose tensors are host tensors on every device, by design: reading them waits for nothing
HOST_VALUES = {
    ("darkroom/cyclegan/losses.py", "query"): "the history pool's choices, drawn from its own CPU generator",
}
READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "__array__")
STEPS = 8  # steps per run; every interval is set beyond them


class Recorder:
    """Counts host syncs by (kind, darkroom call site) and by step; `step` is bumped by the step function's wrapper."""

    def __init__(self) -> None:
        self.step = 0
        self.calls: list[tuple[int, str, str]] = []  # (step, kind, "path:line function")
        self.transfers: list[tuple[int, str]] = []  # non-blocking copies (streamed batches): allowed

    def site(self) -> str | None:
        """The darkroom frame on whose behalf the call is made; None for calls made inside torch itself."""
        frame = sys._getframe(3)  # above record() and the wrapper
        while frame is not None and frame.f_code.co_filename in PASS_THROUGH:
            frame = frame.f_back
        if frame is None or frame.f_code.co_filename.startswith(TORCH_DIR):
            return None
        outer = frame
        while outer is not None:  # data loading: host work, in DataLoader worker processes on a real run
            if outer.f_code.co_filename.startswith(DATA_LOADING):
                return None
            outer = outer.f_back
        while frame is not None and not frame.f_code.co_filename.startswith(DARKROOM_DIR):
            frame = frame.f_back  # a library (tqdm, math) reading a tensor darkroom handed it
        if frame is None:
            return None
        path = os.path.relpath(frame.f_code.co_filename, REPO)
        if (path, frame.f_code.co_name) in HOST_VALUES:
            return None
        return f"{path}:{frame.f_lineno} {frame.f_code.co_name}"

    def record(self, kind: str, blocking: bool = True) -> None:
        site = self.site()
        if site is not None:
            (self.calls.append((self.step, kind, site)) if blocking else self.transfers.append((self.step, site)))

    def per_step(self, steps: int) -> Counter:
        """Syncs from the start of step 1's step function to the start of the last one's: steps 1 .. steps-2 whole,
        the tail of step 0 and the batch of the last step (what comes before step 0 is setup; after the last, its
        epoch end or final log)."""
        return Counter(f"{kind} at {site}" for step, kind, site in self.calls if 1 <= step < steps)


def _device_of(args: tuple, kwargs: dict) -> tuple[bool, bool]:
    """(names a device, non_blocking) for Tensor.to's signatures: to(device, dtype, non_blocking), to(other), ..."""
    device = kwargs.get("device") is not None or any(isinstance(a, (torch.device, str, torch.Tensor)) for a in args)
    non_blocking = bool(kwargs.get("non_blocking")) or any(isinstance(a, bool) and a for a in args)
    return device, non_blocking


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small nets, one torch thread


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    rec = Recorder()
    for name in READS:
        original = getattr(torch.Tensor, name)

        def read(self, *args, _original=original, _name=name, **kwargs):
            rec.record(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, read)
    original_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        device, non_blocking = _device_of(args, kwargs)
        if device:
            rec.record("to(device)", blocking=not non_blocking)
        return original_to(self, *args, **kwargs)
    monkeypatch.setattr(torch.Tensor, "to", to)
    for name in ("tensor", "as_tensor"):
        original = getattr(torch, name)

        def create(*args, _original=original, _name=name, **kwargs):
            if kwargs.get("device") is not None:
                rec.record(f"torch.{_name}(device=)")
            return _original(*args, **kwargs)
        monkeypatch.setattr(torch, name, create)
    return rec


def count_steps(monkeypatch, rec: Recorder, owner, name: str) -> None:
    original = getattr(owner, name)

    def step(*args, **kwargs):
        rec.step += 1
        return original(*args, **kwargs)
    monkeypatch.setattr(owner, name, step)


def report(name: str, rec: Recorder, steps: int) -> str:
    found = rec.per_step(steps)
    lines = [f"{name}: {sum(found.values())} host syncs in {steps - 1} steps"]
    lines += [f"  {count:3d} x {where}" for where, count in found.most_common()]
    return "\n".join(lines)


def test_the_recorder_sees_reads_and_copies_in_darkroom_code(recorder):
    from darkroom import dist
    from darkroom.data.arrays import ImageArrays
    from darkroom.data.resident import ResidentImages

    dist.finite_on_every_rank(torch.ones(3))  # float(tensor) inside darkroom
    arrays = ImageArrays(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64), ["a", "b"])
    ResidentImages(arrays, torch.device("cpu"), torch.zeros(1), torch.ones(1), 2)  # .to(device) of the set
    f"{torch.ones(())}"  # a read made here, by the test, is not darkroom's
    kinds = Counter((kind, site.split(":")[0]) for _, kind, site in recorder.calls)
    assert kinds[("__float__", "darkroom/dist.py")] == 1
    assert kinds[("to(device)", "darkroom/data/resident.py")] >= 2
    assert all(site.startswith("darkroom/") for _, _, site in recorder.calls)


@needs_fashion
@pytest.mark.parametrize("flags", [["--preset", "fastnet-gpu", "--arch", "cpunet", "--epochs", "1"],
                                   ["--ema", "0.9", "--progressive", "20:0.5"]], ids=["alternating-flip", "ema-progressive"])
def test_classifier_steps_make_no_host_sync(tmp_path, recorder, monkeypatch, flags):
    count_steps(monkeypatch, recorder, classifier_train, "train_step")
    code = cli.main(["train", "classifier", "--data", "fashion-mnist", "--sample", str((STEPS * 40 + 20) / 60000),
                     "--test-sample", "0.005", "--batch-size", "40", "--epochs", "1", *flags, "--tta", "none",
                     "--out", str(tmp_path / "run")])
    assert code == 0
    assert recorder.step == STEPS
    assert not recorder.per_step(STEPS), report("classifier", recorder, STEPS)


# the record-holder options together: spectral norm + TTUR + EMA (ramped; BatchNorm generator) + DiffAugment + packing,
# with the hinge loss and with the penalty on packed, augmented inputs
OPTIONS = ["--spectral-norm", "--lr-d", "4e-4", "--ema", "0.99", "--ema-rampup", "0.05", "--diffaugment",
           "color,translation,cutout", "--packing", "2"]


@needs_fashion
@pytest.mark.parametrize("loss, extra", [("wgan-gp", []), ("wgan", []), ("dcgan", []), ("hinge", OPTIONS),
                                         ("wgan-gp", OPTIONS)],
                         ids=["wgan-gp", "wgan", "dcgan", "hinge-options", "wgan-gp-options"])
def test_gan_iterations_make_no_host_sync(tmp_path, recorder, monkeypatch, loss, extra):
    count_steps(monkeypatch, recorder, gan_train.Loop, "generator_step")
    code = cli.main(["train", "gan", "--data", "fashion-mnist", "--sample", "0.002", "--image-size", "16",
                     "--load-size", "18", "--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "4", "--n-samples",
                     "4", "--iterations", str(STEPS), "--log-every", "100", "--sample-every", "100",
                     "--checkpoint-every", "100", "--warmup-critic", "off", "--n-critic", "2", "--loss", loss, *extra,
                     "--out", str(tmp_path / "run")])
    assert code == 0
    assert recorder.step == STEPS
    assert not recorder.per_step(STEPS), report(f"gan {loss}", recorder, STEPS)


@pytest.mark.parametrize("extra", [[], ["--packing", "4", "--spectral-norm", "--ema", "0.99"]],
                         ids=["plain", "options"])
def test_gan_toy_iterations_make_no_host_sync(tmp_path, recorder, monkeypatch, extra):
    count_steps(monkeypatch, recorder, gan_train.Loop, "generator_step")
    code = cli.main(["train", "gan", "--data", "toy:ring8", "--nz", "2", "--batch-size", "8", "--n-samples", "16",
                     "--iterations", str(STEPS), "--log-every", "100", "--sample-every", "100", "--checkpoint-every",
                     "100", "--warmup-critic", "off", "--n-critic", "2", *extra, "--out", str(tmp_path / "run")])
    assert code == 0
    assert not recorder.per_step(STEPS), report("gan toy", recorder, STEPS)


def test_cyclegan_steps_make_no_host_sync(tmp_path, recorder, monkeypatch):
    from test_cyclegan_train import unpaired_layout

    data = unpaired_layout(tmp_path / "data", "L", count=2 * STEPS)
    count_steps(monkeypatch, recorder, cyclegan_train, "train_step_on_device")
    code = cli.main(["train", "cyclegan", "--data", str(data), "--preset", "reference", "--ngf", "4", "--ndf", "4", "--generator",
                     "resnet_6blocks", "--d-layers", "2", "--workers", "0", "--val-images", "0", "--load-size", "20",
                     "--crop-size", "16", "--batch-size", "2", "--epochs", "1", "--epochs-decay", "0", "--pool-size",
                     "3", "--log-every", "100", "--sample-every", "100", "--out", str(tmp_path / "run")])
    assert code == 0
    assert recorder.step == STEPS
    assert recorder.transfers, "the streamed batches' copies were not seen"
    assert not recorder.per_step(STEPS), report("cyclegan", recorder, STEPS)
