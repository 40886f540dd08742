"""Every CPU recipe in README.md's "## Recipes" section runs, briefly, and no library warning reaches the user.

Each `darkroom` line runs in README order in one fresh process (a user's default warning filters, reset between
lines so that each line shows its own), with its placeholders (runs/gan-..., path/to/folder, shoe.jpg, ...) mapped
to tiny data made here and flags appended that cut it short (--epochs 3 of a 1% sample, --iterations 2, --stop-after 2, small
crops). A line passes when it exits 0 and its stderr holds no "Warning". Lines that cannot run here are skipped with
the reason: CIFAR-10 absent, a GPU preset, Inception weights absent, a placeholder this file does not map (add it
to `places`).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, needs_fashion

README = (REPO / "README.md").read_text()
SECTION = README.split("\n## Recipes", 1)[1].split("\n## ", 1)[0]
# warnings known and not yet fixed, each with where the fix belongs: the line is an expected failure while they show
KNOWN_WARNINGS = {
    "`broadcast_buffers` is deprecated": "torch >= 2.13 deprecates DistributedDataParallel(broadcast_buffers=False), "
                                         "which darkroom/classifier/train.py passes (--processes 2, torchrun)",
}
PATHLIKE = re.compile(r"/|\.(png|jpe?g|csv|toml|json|pth|zip|mdb)$", re.I)
OUTPUT_FLAGS = ("--out", "--json")

DRIVER = """
import json, sys, traceback, warnings
from darkroom import cli

defaults = list(warnings.filters)
for index, argv in json.load(open(sys.argv[1])):
    warnings.filters[:] = defaults
    warnings._filters_mutated()  # forget which warnings were shown: each line shows its own, as in its own process
    print(f"@@@ start {index}", file=sys.stderr, flush=True)
    try:
        code = cli.main(argv)
    except BaseException:  # noqa: BLE001 - reported as the line's failure
        traceback.print_exc()
        code = "exception"
    sys.stdout.flush()
    print(f"@@@ exit {index} {code}", file=sys.stderr, flush=True)
"""


def recipe_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```\n(.*?)```", SECTION, flags=re.S):
        for line in block.splitlines():
            command = line.split("#")[0].strip()
            if command.startswith("darkroom "):
                lines.append(command)
    return lines


LINES = recipe_lines()


def pictures(folder: Path, count: int, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
        path = folder / f"{index:03d}.png"
        Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(path)
        paths.append(path)
    return paths


def make_places(root: Path) -> dict[str, str]:
    """README placeholder -> tiny stand-in made under `root`."""
    from darkroom.data.lsun import write_lsun_lmdb

    classes = root / "classes"
    for label in range(2):
        pictures(classes / f"class{label}", 16, (20, 20), seed=label)
    rows = [f"{path.relative_to(classes)},{path.parent.name}" for path in sorted(classes.rglob("*.png"))]
    (classes / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    images = pictures(root / "images", 12, (132, 132), seed=3)  # the lesson preset loads at 128 px
    (root / "images" / "bedrooms.csv").write_text("\n".join(path.name for path in images) + "\n")
    write_lsun_lmdb(root / "bedroom_train_lmdb", [Image.open(path) for path in images])
    unpaired = root / "horse2zebra"
    for split, count in (("train", 8), ("test", 2)):
        for domain, seed in (("A", 4), ("B", 5)):
            pictures(unpaired / f"{split}{domain}", count, (36, 36), seed=seed + 10 * (split == "test"))
    pictures(root / "samples", 20, (28, 28), "L", seed=6)
    Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(root / "shoe.jpg")
    Image.fromarray(np.full((25, 33), 90, np.uint8), "L").save(root / "coat.png")
    runs = root / "runs"
    return {"path/to/folder": str(classes), "big/": str(classes), "labels.csv": str(classes / "labels.csv"),
            "bedrooms.csv": str(root / "images" / "bedrooms.csv"), "bedroom_train_lmdb": str(root / "bedroom_train_lmdb"),
            "path/to/images": str(root / "images"), "horse2zebra": str(unpaired), "photos/": str(unpaired / "trainA"),
            "paintings/": str(unpaired / "trainB"), "in/": str(unpaired / "testA"), "out/": str(root / "translated"),
            "shoe.jpg": str(root / "shoe.jpg"), "coat.png": str(root / "coat.png"), "samples/": str(root / "samples"),
            "runs/": str(runs), "grid.png": str(root / "grid.png"), "strip.png": str(root / "strip.png"),
            "lr.png": str(root / "lr.png"), "held-out/": str(root / "samples")}


def cifar10_here() -> bool:
    from darkroom.data.cifar import locate
    from darkroom.errors import UserError

    try:
        locate("train", None, download=False)
        return True
    except UserError:
        return False


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv[:-1] else None


def brief(argv: list[str], index: int, places: dict[str, str]) -> tuple[list[str] | None, str]:
    """The recipe's argv cut short and mapped onto the stand-ins, or (None, why it cannot run here)."""
    args = [places.get(token, token) for token in argv]
    if "gpu" in (flag(args, "--preset") or ""):
        return None, "a GPU preset"
    if flag(args, "--data") == "cifar10" and not cifar10_here():
        return None, "CIFAR-10 is not on this machine"
    weights = flag(args, "--inception-weights")
    if weights is not None and not Path(weights).is_file():
        return None, "the FID Inception weights are not on this machine"
    for position, token in enumerate(argv):
        output = position > 0 and argv[position - 1] in OUTPUT_FLAGS
        if token not in places and ("..." in token or (PATHLIKE.search(token) and not output and not Path(token).exists())):
            return None, f"{token} is a placeholder this test does not map (add it to make_places)"
    judge = places.get("runs/classifier-...", "")
    data = flag(args, "--data") or "fashion-mnist"
    builtin = data.split(":")[0] in ("fashion-mnist", "mnist", "cifar10")
    out = ["--out", str(Path(places["runs/"]) / f"{args[1]}-{index}")] if "--out" not in args else []
    if args[:2] == ["train", "classifier"]:
        more = ["--sample", "0.01", "--test-sample", "0.02"] if builtin else ["--batch-size", "2"]
        return [*args, "--epochs", "3", "--quiet", *more, *out], ""  # 3: past the presets' progressive stages
    if args[:2] == ["train", "gan"]:
        more = ["--sample", "0.002"] if builtin else []
        return [*args, "--iterations", "2", "--batch-size", "4", "--n-samples", "4", "--nz", "8", "--ngf", "8",
                "--ndf", "8", "--n-critic", "1", "--warmup-critic", "off", "--sample-every", "2", "--checkpoint-every",
                "2", "--log-every", "1", "--quiet", *more, *out], ""
    if args[:2] == ["train", "cyclegan"]:
        batch = [] if "--batch-size" in args else ["--batch-size", "2"]
        return [*args, "--stop-after", "2", "--ngf", "4", "--ndf", "4", "--load-size", "32", "--crop-size", "32",
                "--quiet", *batch, *out], ""
    if args[0] == "lr-find":
        return [*args, "--steps", "5"], ""
    if args[:2] == ["eval", "gan"]:
        return [*args, "--n", "50", *([] if "--features" in args else ["--features", judge])], ""
    if args[:2] in (["eval", "cyclegan"], ["eval", "images"]):
        more = ["--json", str(Path(places["runs/"]).parent / "eval-images.json")] if args[1] == "images" else []
        return [*args, *([] if "--features" in args else ["--features", judge]), *more], ""
    return args, ""


def point_runs(places: dict[str, str], plans: list[tuple[int, list[str]]]) -> None:
    """runs/<task>-... (and the resume recipe's runs/x) -> the run folder of the task's first runnable train line."""
    for index, argv in plans:
        key = f"runs/{argv[1]}-..." if argv[0] == "train" else None
        if key and key not in places and "--out" not in argv and brief(argv, index, places)[0] is not None:
            places[key] = str(Path(places["runs/"]) / f"{argv[1]}-{index}")
            if argv[1] == "classifier":
                places["runs/x"] = places[key]
            if argv[1] == "gan":  # `eval compare runs/gan-a runs/gan-b`: the one evaluated GAN run, twice
                places["runs/gan-a"] = places["runs/gan-b"] = places[key]


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("recipes")
    places = make_places(root)
    plans = [(index, shlex.split(line)[1:]) for index, line in enumerate(LINES)]
    point_runs(places, plans)
    runnable, skipped = [], {}
    for index, argv in plans:
        args, why = brief(argv, index, places)
        if args is None:
            skipped[index] = why
        else:
            runnable.append((index, args))
    (root / "plan.json").write_text(json.dumps(runnable))
    (root / "driver.py").write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    env.pop("PYTHONWARNINGS", None)
    result = subprocess.run([sys.executable, str(root / "driver.py"), str(root / "plan.json")], cwd=root, env=env,
                            capture_output=True, text=True, timeout=1500)
    segments: dict[int, str] = {}
    codes: dict[int, str] = {}
    for chunk in result.stderr.split("@@@ start ")[1:]:
        head, _, rest = chunk.partition("\n")
        body, _, tail = rest.partition(f"@@@ exit {head} ")
        segments[int(head)] = body
        codes[int(head)] = tail.split("\n", 1)[0].strip() if tail else "no exit (the process died)"
    return {"segments": segments, "codes": codes, "skipped": skipped, "plans": dict(runnable),
            "stderr": result.stderr[-3000:]}


@needs_fashion
@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(LINES)), ids=[line[9:60] for line in LINES])
def test_recipe_runs_without_a_warning(ran, index):
    if index in ran["skipped"]:
        pytest.skip(ran["skipped"][index])
    line = LINES[index]
    assert index in ran["codes"], f"{line}: never ran; the driver's stderr ends: {ran['stderr']}"
    stderr = ran["segments"][index]
    assert ran["codes"][index] == "0", f"{line} (as {shlex.join(ran['plans'][index])}) failed:\n{stderr[-3000:]}"
    warned = [text for text in stderr.splitlines() if "Warning" in text]
    known = [why for pattern, why in KNOWN_WARNINGS.items() if any(pattern in text for text in warned)]
    if warned and all(any(pattern in text for pattern in KNOWN_WARNINGS) for text in warned):
        pytest.xfail("a known warning: " + "; ".join(known))
    assert not warned, f"{line} let a warning through to the user:\n" + "\n".join(warned)
