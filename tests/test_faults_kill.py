"""SIGKILL at many seeded random points of one tiny run per trainer, resumed with --resume until it finishes.

After every kill: checkpoints/last.pt loads (never half-written), never goes back in time, and the only temp
files in the run folder belong to killed processes. At the end: weights and optimizer state equal an uninterrupted
run's exactly (deterministic CPU mode) and metrics.jsonl equals its lines, none duplicated or torn.
Kill points, in seeded rounds of four: early (loading, restoring, truncating the log, the first step), a random
moment a step or two in, the instant a checkpoint temp file appears (mid-write), and just before an evaluation
point (epoch-end evaluation, GAN sample grid, CycleGAN validation).
Each life is forked from a "zygote" that imported torch and darkroom once, in one thread, and ran no torch op:
a fork is a fresh process for files, locks and signals, and saves ~4 s of imports per kill.
Counts go to <tmp>/kills.json and are printed (the README's reliability table).
"""
from __future__ import annotations

import json
import os
import random
import re
import resource
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from conftest import REPO, assert_same, have_fashion_mnist
from darkroom import checkpoint
from test_cyclegan_train import unpaired_layout

pytestmark = pytest.mark.slow

WANTED_KILLS = 22  # per trainer; the README promises >= 20
TIMING = {"train_time", "elapsed", "images_per_s", "it_per_s", "critic_steps_per_s"}
VARIABLE = TIMING | {"train_loss"}  # the classifier's after a mid-epoch resume: see test_logged_averages_survive_a_resume
TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")  # darkroom's atomic-write temp files

ZYGOTE = r"""
import json, os, sys, traceback
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
import torch
import torch._inductor.config  # what torch.use_deterministic_algorithms imports (--deterministic): seconds
from darkroom import cli
from darkroom.report import html
from darkroom.classifier import train as classifier
from darkroom.cyclegan import train as cyclegan
from darkroom.gan import train as gan
try:
    import torch.utils.tensorboard  # RunFolder.log mirrors metrics to TensorBoard when it is installed
except ImportError:
    pass
while True:
    line = sys.stdin.readline()
    if not line:
        break
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        for fd, path in ((1, request["log"]), (2, request["log"] + ".err")):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        code = 1
        try:
            code = cli.main(request["argv"])
        except BaseException:
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    _, status, usage = os.wait4(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status), "cpu": usage.ru_utime + usage.ru_stime}), flush=True)
"""


class Zygote:
    """Forks one darkroom CLI process at a time; the test kills it through a pidfd (no pid-reuse race)."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        self.cpu = 0.0  # CPU seconds of every life so far
        self.current: Life | None = None

    def start(self, argv: list[str], log: Path) -> "Life":
        if self.current is not None:  # left running by a failed test
            self.current.kill()
            self.current.wait()
        self.process.stdin.write(json.dumps({"argv": argv, "log": str(log)}) + "\n")
        self.process.stdin.flush()
        pid = json.loads(self.process.stdout.readline())["pid"]
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # it has ended already
            pidfd = None
        self.current = Life(self, pid, pidfd, log)
        return self.current

    def run(self, argv: list[str], log: Path, expect: int = 0) -> tuple[str, str]:
        """Run to the end; returns (stdout, stderr)."""
        life = self.start(argv, log)
        code = life.wait()
        assert code == expect, life.output()[-3000:]
        return log.read_text(), Path(f"{log}.err").read_text()

    def close(self) -> None:
        if self.current is not None:
            self.current.kill()
            self.current.wait()
        self.process.stdin.close()
        self.process.wait(timeout=60)


@dataclass
class Life:
    zygote: Zygote
    pid: int
    pidfd: int | None
    log: Path

    def output(self) -> str:
        return self.log.read_text() + Path(f"{self.log}.err").read_text()

    def alive(self) -> bool:
        return self.pidfd is not None and not select.select([self.pidfd], [], [], 0)[0]

    def kill(self) -> None:
        if self.alive():
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def wait(self, timeout: float = 600.0) -> int:
        """The exit code (negative: killed by that signal); a life still running after `timeout` s is killed."""
        hung = self.pidfd is not None and not select.select([self.pidfd], [], [], timeout)[0]
        if hung:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        reply = json.loads(self.zygote.process.stdout.readline())
        self.zygote.cpu += reply["cpu"]
        self.zygote.current = None
        if self.pidfd is not None:
            os.close(self.pidfd)
        assert not hung, f"still running after {timeout} s: {self.output()[-2000:]}"
        return reply["code"]


@pytest.fixture(scope="module")
def zygote():
    process = Zygote()
    yield process
    process.close()


@dataclass
class Trainer:
    args: list[str]
    step_key: str  # the checkpoint state's step counter
    eval_steps: list[int]  # steps that end in an evaluation, a sample grid or a validation
    compare: tuple[str, ...]  # checkpoint entries that must equal the uninterrupted run's
    total: int


def trainer(name: str, tmp: Path) -> Trainer:
    if name == "classifier":  # 600 images, batch 100: 6 steps an epoch, 6 epochs; flip-TTA evaluation at epoch ends
        return Trainer(["train", "classifier", "--data", "fashion-mnist", "--sample", "0.01", "--test-sample", "0.02",
                        "--batch-size", "100", "--epochs", "6", "--checkpoint-every", "1", "--deterministic", "--quiet"],
                       "step", list(range(6, 37, 6)), ("model", "optimizer", "scaler", "data_generator", "order"), 36)
    if name == "gan":  # WGAN-GP, 5 critic steps per generator iteration, a sample grid every 4 iterations
        return Trainer(["train", "gan", "--data", "fashion-mnist", "--sample", "0.01", "--image-size", "16", "--nz",
                        "8", "--ngf", "8", "--ndf", "8", "--batch-size", "8", "--n-samples", "4", "--iterations", "160",
                        "--warmup-critic", "off", "--log-every", "1", "--sample-every", "4", "--checkpoint-every", "1",
                        "--deterministic", "--quiet", "--seed", "3"],
                       "iteration", list(range(4, 161, 4)),
                       ("generator", "critic", "opt_g", "opt_d", "noise", "batches", "fixed_z"), 160)
    # 12 images a domain, batch 2: 6 steps an epoch, 6 + 6 epochs, validation at epoch ends, pools of 3 (3 + 3 epochs
    # once finished before 20 kills on a fast CPU)
    # small-images' loss and net settings (adaptive cycle weights within 10x, decoder 4, no input norm, zero padding)
    data = tmp / "unpaired"
    if not data.exists():
        unpaired_layout(data, "L", count=12)
    return Trainer(["train", "cyclegan", "--data", str(data), "--preset", "reference", "--cycle-target", "0.1",
                    "--cycle-fall", "4", "--cycle-span", "10", "--cycle-span-down", "10", "--cycle-decoder", "4",
                    "--no-input-norm", "--padding", "zero", "--ngf", "8", "--ndf", "8", "--generator",
                    "resnet_6blocks", "--d-layers", "2", "--workers", "0", "--quiet", "--val-images", "0",
                    "--load-size", "20", "--crop-size", "16",
                    "--batch-size", "2", "--epochs", "6", "--epochs-decay", "6", "--pool-size", "3", "--log-every",
                    "1", "--sample-every", "5", "--checkpoint-every", "1", "--deterministic"],
                   "step", list(range(6, 73, 6)),
                   ("g_ab", "g_ba", "d_a", "d_b", "opt_g", "opt_d", "scaler", "cycle_weights", "ranks"), 72)


def short_args(name: str, tmp: Path, steps: int = 6) -> list[str]:
    """The tiny run cut to `steps` steps (whole epochs of 6 steps for the classifier and the CycleGAN)."""
    args = trainer(name, tmp).args
    if name == "gan":
        return [*args, "--iterations", str(steps)]
    return [*args, "--epochs", str(steps // 6), *(["--epochs-decay", "0"] if name == "cyclegan" else [])]


def needs_data(name: str):
    return pytest.param(name, marks=pytest.mark.skipif(name != "cyclegan" and not have_fashion_mnist(),
                                                       reason="Fashion-MNIST not installed"))


TRAINERS = [needs_data(name) for name in ("classifier", "gan", "cyclegan")]


def metric_lines(run: Path, drop=VARIABLE) -> list[dict]:
    """Every line parsed (a torn or glued line fails here), the fields that vary run to run dropped."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


def temp_files(run: Path) -> list[tuple[str, int]]:
    """(target name, writer pid) of every atomic-write temp file in the run folder and its checkpoints/."""
    found = []
    for folder in (run, run / "checkpoints"):
        for entry in os.listdir(folder) if folder.is_dir() else []:
            match = TEMP.match(entry)
            if match:
                found.append((match["name"], int(match["pid"])))
    return found


class Watch:
    """Cheap polling of a run folder: completed checkpoint writes (a new inode, mtime or size) and a life's temp file."""

    def __init__(self, run: Path, pid: int) -> None:
        self.last = run / "checkpoints" / "last.pt"
        self.temp = run / "checkpoints" / f".last.pt.tmp-{pid}"
        self.identity, self.writes, self.temp_seen = self._identity(), 0, False

    def _identity(self):
        try:
            stat = os.stat(self.last)
            return stat.st_ino, stat.st_mtime_ns, stat.st_size
        except FileNotFoundError:
            return None

    def poll(self) -> None:
        identity = self._identity()
        self.writes += identity is not None and identity != self.identity
        self.identity = identity
        self.temp_seen = self.temp_seen or os.path.exists(self.temp)


def wait_for(life: Life, done, timeout: float = 300.0) -> bool:
    """Poll every millisecond until done() (True) or the life ends (False)."""
    deadline = time.monotonic() + timeout
    while life.alive():
        if done():
            return True
        assert time.monotonic() < deadline, f"no progress in {timeout} s: {life.output()[-2000:]}"
        time.sleep(0.001)
    return False


STRATEGIES = ("early", "steps", "mid-write", "eval")


def strike(how: str, life: Life, run: Path, spec: Trainer, step: int, step_seconds: float, rng: random.Random) -> None:
    """Kill `life` at a point chosen by `how`; `step` is the checkpointed step it resumes from, `step_seconds` the
    uninterrupted run's training seconds per step."""
    watch = Watch(run, life.pid)
    if how == "early":  # loading data, building nets, restoring, truncating the log, the first step
        time.sleep(rng.uniform(0.0, 1.0))
    elif how == "steps":  # a random moment (some very short) after this life's first or second checkpoint
        n = rng.randint(1, 2)
        if not wait_for(life, lambda: watch.poll() or watch.writes >= n):
            return
        time.sleep(rng.uniform(0.0, 2 * step_seconds) if rng.random() < 0.5 else rng.uniform(0.0, 0.01))
    elif how == "mid-write":  # the instant this life's first checkpoint temp file appears
        if not wait_for(life, lambda: watch.poll() or watch.temp_seen):
            return
    elif how == "eval":  # after the checkpoint of the step before an evaluation point, within the next two steps
        target = next((s for s in spec.eval_steps if s - 1 > step), None)
        if target is None or not wait_for(life, lambda: watch.poll() or watch.writes >= target - 1 - step):
            return
        time.sleep(rng.uniform(0.0, 2 * step_seconds))
    life.kill()


def inspect_after_kill(run: Path, spec: Trainer, previous_step: int, killed: set[int]) -> tuple[int, int]:
    """The invariants that hold after any kill; returns (checkpointed step, metric lines it accounts for)."""
    last = run / "checkpoints" / "last.pt"
    if last.exists():
        state = checkpoint.load(last)["state"]  # raises on a half-written or unreadable file
        step, log_lines = state[spec.step_key], state["log_lines"]
    else:
        assert previous_step < 0, "last.pt vanished after a kill"
        step, log_lines = -1, 0
    assert step >= previous_step, f"the checkpoint went back from step {previous_step} to {step}"
    for name, pid in temp_files(run):
        assert pid in killed, f"temp file .{name}.tmp-{pid} of a process that was not killed"
    if (run / "status.json").exists():
        json.loads((run / "status.json").read_text())  # written atomically: never torn
    return step, log_lines


def landing(run: Path, pid: int, step: int, start_step: int, log_lines: int) -> str:
    """Where a kill landed, from what it left behind."""
    temps = [name for name, writer in temp_files(run) if writer == pid]
    if "last.pt" in temps:
        return "mid checkpoint write"
    if temps:
        return "mid metrics.jsonl or status.json rewrite"
    logged = len((run / "metrics.jsonl").read_text().splitlines()) if (run / "metrics.jsonl").exists() else 0
    if logged > log_lines:
        return "after a metrics line, before its checkpoint"
    if step == start_step:
        return "before the life's first checkpoint"
    return "mid step, evaluation or sampling"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Tally:
    kills: int = 0
    lives: int = 0
    aimed: Counter = field(default_factory=Counter)
    landed: Counter = field(default_factory=Counter)


def kill_until_finished(zygote: Zygote, spec: Trainer, run: Path, logs: Path, step_seconds: float, seed: str) -> Tally:
    rng, tally, killed, plan, step = random.Random(seed), Tally(), set(), [], -1
    while True:
        tally.lives += 1
        assert tally.lives < 200, "the run never finished"
        life = zygote.start([*spec.args, "--out", str(run), "--resume"], logs / f"life-{tally.lives:03d}.log")
        if not plan:  # each kind of kill point once in every round of four, in a seeded order
            plan = rng.sample(STRATEGIES, len(STRATEGIES))
        how = plan.pop() if tally.kills < WANTED_KILLS else None
        if tally.lives == 1:
            how = "steps"  # let the first life checkpoint (see test_restart_before_the_first_checkpoint_logs_once)
        elif how and spec.total - max(step, 0) <= WANTED_KILLS - tally.kills + 2:
            how = "mid-write"  # behind schedule (a fast machine): a kill in the next write loses that step
        if how:
            strike(how, life, run, spec, max(step, 0), step_seconds, rng)
        code = life.wait()
        if code == 0:
            return tally
        assert code == -signal.SIGKILL, f"life {tally.lives} exited with {code}: {life.output()[-3000:]}"
        killed.add(life.pid)
        start_step = step
        step, log_lines = inspect_after_kill(run, spec, step, killed)
        tally.kills += 1
        tally.aimed[how] += 1
        tally.landed[landing(run, life.pid, step, start_step, log_lines)] += 1


@pytest.mark.parametrize("name", TRAINERS)
def test_many_sigkills_then_resume_is_exact(tmp_path, zygote, name):
    spec, started, cpu, own_cpu = trainer(name, tmp_path), time.monotonic(), zygote.cpu, cpu_seconds()
    reference, run = tmp_path / "reference", tmp_path / "killed"
    zygote.run([*spec.args, "--out", str(reference)], tmp_path / "reference.log")
    expected = checkpoint.load(reference / "checkpoints" / "last.pt")
    tally = kill_until_finished(zygote, spec, run, tmp_path, expected["state"]["train_time"] / spec.total,
                                seed=f"darkroom-faults-{name}")

    final = checkpoint.load(run / "checkpoints" / "last.pt")
    assert final["state"][spec.step_key] == spec.total
    for key in spec.compare:
        assert_same(expected[key], final[key], key)
    lines = metric_lines(run)
    assert len({json.dumps(line, sort_keys=True) for line in lines}) == len(lines), "duplicate metrics lines"
    assert lines == metric_lines(reference)
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "finished"
    stale = temp_files(run)  # only killed lives' (test_stale_temp_files_are_removed_on_resume)
    record = {"trainer": name, "kills": tally.kills, "lives": tally.lives, "aimed": dict(tally.aimed),
              "landed": dict(tally.landed), "stale_temp_files_left": len(stale),
              "wall_s": round(time.monotonic() - started, 1), "child_cpu_s": round(zygote.cpu - cpu, 1),
              "test_cpu_s": round(cpu_seconds() - own_cpu, 1),
              "outcome": "finished; weights and optimizer state equal the uninterrupted run's; last.pt loadable after "
                         "every kill; metrics.jsonl equal to the uninterrupted run's, no duplicate or torn line"}
    (tmp_path / "kills.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))
    assert tally.kills >= 20, "the run finished before 20 kills: make it longer"


@pytest.mark.parametrize("name", TRAINERS)
def test_restart_before_the_first_checkpoint_logs_once(tmp_path, zygote, name):
    """A kill after the first metrics line but before the first checkpoint, then a restart with --resume (what
    torchrun --max-restarts does): each line once. The checkpoint is removed to make that state deterministic."""
    short = [*short_args(name, tmp_path), "--out", str(tmp_path / "run")]
    zygote.run(short, tmp_path / "first.log")
    once = metric_lines(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "last.pt").unlink()
    zygote.run([*short, "--resume"], tmp_path / "again.log")
    assert metric_lines(tmp_path / "run") == once


def test_stale_temp_files_are_removed_on_resume(tmp_path, zygote):
    short = [*short_args("cyclegan", tmp_path), "--out", str(tmp_path / "run"), "--stop-after", "2"]
    zygote.run(short, tmp_path / "first.log")
    dead = 2**22 + 1  # above the largest pid_max: a writer that cannot be alive
    (tmp_path / "run" / "checkpoints" / f".last.pt.tmp-{dead}").write_bytes(b"half a checkpoint")
    zygote.run([*short, "--resume", "--stop-after", "4"], tmp_path / "again.log")
    assert temp_files(tmp_path / "run") == []



@pytest.mark.parametrize("name", ["classifier", "gan", "cyclegan"])
def test_logged_averages_survive_a_resume(tmp_path, zygote, name):
    """Killed two steps into a six-step averaging window and resumed: the window's line equals the uninterrupted one."""
    if name != "cyclegan" and not have_fashion_mnist():
        pytest.skip("Fashion-MNIST not installed")
    args = [*short_args(name, tmp_path), *([] if name == "classifier" else ["--log-every", "6"])]
    zygote.run([*args, "--out", str(tmp_path / "reference")], tmp_path / "reference.log")
    run = tmp_path / "killed"
    life = zygote.start([*args, "--out", str(run)], tmp_path / "killed.log")
    watch = Watch(run, life.pid)
    assert wait_for(life, lambda: watch.poll() or watch.writes >= 2), "the run ended before it could be killed"
    life.kill()
    assert life.wait() == -signal.SIGKILL
    assert checkpoint.load(run / "checkpoints" / "last.pt")["state"][trainer(name, tmp_path).step_key] < 6
    zygote.run([*args, "--out", str(run), "--resume"], tmp_path / "resumed.log")
    assert metric_lines(run, TIMING) == metric_lines(tmp_path / "reference", TIMING)
