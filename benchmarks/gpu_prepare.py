"""Fill .data/ and .whl/ so that `make bench-gpu` runs on a GPU box with no network (run where PyPI is reachable).

    python -m benchmarks.gpu_prepare        # make bench-gpu-prepare
.data/fashion-mnist/: the four Fashion-MNIST .gz files, from darkroom's usual places or a download, read back.
.whl/: airbench (built into a wheel from its sdist) and every pure-Python package darkroom imports at module level
on the classifier, GAN and CycleGAN paths that a box with only torch, torchvision and triton may lack.
.data/source.json: the commit prepared, for result files on machines that get no .git.
"""
from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402

DATA, WHEELS = REPO / ".data", REPO / ".whl"
AIRBENCH = "airbench==0.1.8"  # airbench94 as the README's anchor table quotes it (REFERENCE.md section 1)
# what a box with torch, torchvision and triton has anyway (their own requirements)
ON_GPU_BOX = {"torch", "torchvision", "triton", "numpy", "pillow", "typing-extensions", "sympy", "mpmath", "networkx",
              "jinja2", "markupsafe", "fsspec", "filelock", "setuptools", "darkroom"}
PATHS = ("darkroom.classifier.train", "darkroom.classifier.predict", "darkroom.gan.train", "darkroom.cyclegan.train",
         "darkroom.cyclegan.losses", "darkroom.gan.data")
LIMIT_BYTES = 64 * 2**20  # what travels to the GPU box with the working tree


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check"], capture_output=True,
                          text=True)


def copy_fashion_mnist() -> list[Path]:
    """The four .gz files into .data/fashion-mnist/, from where darkroom looks (or its checked download), then read
    back through darkroom's own loader (60,000 + 10,000 images). The Debian package's files are recompressed, so
    their md5 differs from the published one; the content is what is checked."""
    from darkroom.data import idx, sources

    target = DATA / "fashion-mnist"
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for split in ("train", "test"):
        images, labels = idx.locate("fashion-mnist", split, None, download=True)
        for found, (gz_name, _) in zip((images, labels), idx.FILES["fashion-mnist"][split]):
            if found.suffix != ".gz":
                raise SystemExit(f"{found} is not gzipped; put the official {gz_name} in {target} by hand")
            destination = target / gz_name
            if not destination.is_file() or destination.stat().st_size != found.stat().st_size:
                shutil.copyfile(found, destination)
            copied.append(destination)
    for split, count in (("train", 60000), ("test", 10000)):
        arrays = sources.load("fashion-mnist", split, str(DATA))
        if len(arrays) != count or tuple(arrays.images.shape[1:]) != (1, 28, 28):
            raise SystemExit(f"{target} {split}: expected {count} 28x28 images, read {tuple(arrays.images.shape)}")
    return copied


def build_airbench_wheel() -> Path:
    """airbench ships only an sdist: build a (pure-Python) wheel of it, so the box needs no build step."""
    _remove_wheels("airbench")
    result = pip("wheel", "--no-deps", "-q", "-w", str(WHEELS), AIRBENCH)
    if result.returncode != 0:  # no build isolation: the setuptools already here does the build
        result = pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(WHEELS), AIRBENCH)
    if result.returncode != 0:
        raise SystemExit(f"could not build a wheel of {AIRBENCH}:\n{result.stderr[-2000:]}")
    return next(WHEELS.glob("airbench-*.whl"))


def imported_distributions() -> dict[str, str]:
    """{distribution: version} of the third-party packages darkroom's training paths import at module level."""
    code = ("import sys, json, importlib, importlib.metadata as md\n"
            f"for name in {list(PATHS)!r}: importlib.import_module(name)\n"
            "tops = {m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)\n"
            "owners = md.packages_distributions()\n"
            "print(json.dumps(sorted({d for t in tops for d in owners.get(t, [])})))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"importing darkroom's training modules failed:\n{result.stderr[-2000:]}")
    names = requirement_closure(json.loads(result.stdout.strip().splitlines()[-1]))
    return {name: importlib.metadata.version(name) for name in sorted(names) if _normal(name) not in ON_GPU_BOX}


def requirement_closure(names: list[str]) -> set[str]:
    """`names` and everything they require (not extras) that is installed here, for the box's Python 3.12."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [name for name in names if _normal(name) not in ON_GPU_BOX]
    while todo:
        name = todo.pop()
        if _normal(name) in {_normal(done) for done in seen}:
            continue
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: not needed on this platform
        seen.add(name)
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": "", "python_version": "3.12",
                                                                        "python_full_version": "3.12.3"}):
                continue
            if _normal(requirement.name) not in ON_GPU_BOX:
                todo.append(requirement.name)
    return seen


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def download_wheel(name: str, version: str) -> Path:
    """A wheel of name==version usable by the box's Python 3.12 on x86-64: pure Python first, else manylinux."""
    _remove_wheels(name)
    result = pip("download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(WHEELS), f"{name}=={version}",
                 "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                 "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "--platform", "any")
    if result.returncode != 0:
        raise SystemExit(f"could not download a wheel of {name}=={version}:\n{result.stderr[-2000:]}")
    return next(path for path in WHEELS.glob("*.whl") if _normal(path.name.split("-")[0]) == _normal(name))


def _remove_wheels(name: str) -> None:
    """Keep one version of each package: two would stop the install on the box."""
    for path in WHEELS.glob("*.whl"):
        if _normal(path.name.split("-")[0]) == _normal(name):
            path.unlink()


def folder_bytes(*folders: Path) -> int:
    return sum(path.stat().st_size for folder in folders if folder.exists() for path in folder.rglob("*") if path.is_file())


def main() -> int:
    WHEELS.mkdir(exist_ok=True)
    files = copy_fashion_mnist()
    print(f".data/fashion-mnist: {', '.join(path.name for path in files)}")
    wheels = [build_airbench_wheel()]
    extra = imported_distributions()
    wheels += [download_wheel(name, version) for name, version in sorted(extra.items())]
    print(f".whl: {', '.join(path.name for path in wheels)} (darkroom needs beyond torch/torchvision: "
          f"{', '.join(f'{k}=={v}' for k, v in sorted(extra.items())) or 'nothing'})")
    with tempfile.TemporaryDirectory() as scratch:  # the wheels must install the way the box installs them
        result = pip("install", "-q", "--no-index", "--no-deps", "--target", scratch, "--only-binary=:all:",
                     "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                     "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", *map(str, wheels))
        if result.returncode != 0:
            raise SystemExit(f"the wheels in .whl/ do not install offline:\n{result.stderr[-2000:]}")
    git = common.git_state()
    DATA.mkdir(exist_ok=True)
    (DATA / "source.json").write_text(json.dumps({"commit": git["commit"], "dirty": git["dirty"],
                                                  "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}) + "\n")
    total = folder_bytes(DATA, WHEELS)
    print(f".data + .whl: {total / 2**20:.1f} MiB (limit for what travels with the tree: {LIMIT_BYTES / 2**20:.0f} MiB)")
    if total > LIMIT_BYTES:
        print("warning: too large to travel with the working tree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
