"""Times FID, KID and precision/recall/density/coverage on N vs N random D-dim features and checks the
values against torch-fidelity and prdc when importable. Run: python benchmarks/eval_cpu.py [--n 10000]
Writes benchmarks/results/eval_cpu.json (machine, versions, commit, settings, timings, agreement).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.abc
import importlib.machinery
import io
import json
import os
import platform
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import scipy
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from darkroom.metrics.fid import fid_from_features, kid  # noqa: E402
from darkroom.metrics.manifold import prdc  # noqa: E402


class _StubMeta(type):
    def __getattr__(cls, attr: str) -> type:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _StubMeta(attr, (), {})


class _TorchvisionStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Empty torchvision modules: torch-fidelity imports torchvision at top level, its metric maths does not use it."""

    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__, module.__version__ = [], "0.0"
        module.__getattr__ = lambda attr: _StubMeta(attr, (), {})
        return module

    def exec_module(self, module) -> None:
        pass


def import_reference(name: str) -> types.ModuleType | None:
    """`name` imported with torchvision stubbed (and the stub forgotten afterwards), or None."""
    before, stub = set(sys.modules), _TorchvisionStub()
    sys.meta_path.insert(0, stub)
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
    finally:
        sys.meta_path.remove(stub)
        for key in set(sys.modules) - before:
            del sys.modules[key]


def machine() -> dict[str, object]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {"machine": platform.node(), "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1m_at_start": os.getloadavg()[0], "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__, "git_commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def write_result(path: Path, record: dict[str, object]) -> None:
    """The one place results are written: pretty JSON, created atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


CPU_SECONDS: dict[str, float] = {}


def timed(fn, *args, name: str | None = None) -> tuple[object, float]:
    """fn(*args) and its wall-clock seconds; its process CPU seconds go to CPU_SECONDS[name]."""
    start, cpu = time.perf_counter(), time.process_time()
    value = fn(*args)
    if name:
        CPU_SECONDS[name] = time.process_time() - cpu
    return value, time.perf_counter() - start


def references(real: np.ndarray, fake: np.ndarray, seed: int, subsets: int, subset_size: int) -> dict[str, dict]:
    """Reference values on the same features; each entry records the call used and its seconds."""
    out: dict[str, dict] = {}
    fid_module = import_reference("torch_fidelity.metric_fid")
    kid_module = import_reference("torch_fidelity.metric_kid")
    if fid_module is not None:
        stats, seconds = timed(lambda: [fid_module.fid_features_to_statistics(torch.from_numpy(x)) for x in (fake, real)])
        value = fid_module.fid_statistics_to_metric(*stats, False)["frechet_inception_distance"]
        out["fid"] = {"source": "torch_fidelity.metric_fid (float64 features)", "value": value, "seconds": seconds}
    if kid_module is not None:
        # float64 tensors make torch-fidelity compute in float64: the exact reference for our float32 Gram.
        value, seconds = timed(lambda: kid_module.kid_features_to_metric(
            torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=subsets, kid_subset_size=subset_size,
            rng_seed=seed, verbose=False))
        out["kid"] = {"source": "torch_fidelity.metric_kid.kid_features_to_metric (float64 features, same seed)",
                      "mean": value["kernel_inception_distance_mean"], "std": value["kernel_inception_distance_std"],
                      "seconds": seconds}
    try:
        from prdc import compute_prdc
    except ImportError:
        compute_prdc = None
    if compute_prdc is not None:
        start = time.perf_counter()
        # float64 features: on float32 ones sklearn returns float32 distances, whose rounding (6e-8
        # relative) flips the odd borderline sample (seen here: recall off by one sample in 10^4).
        with contextlib.redirect_stdout(io.StringIO()):
            pr, dc = compute_prdc(real, fake, 3), compute_prdc(real, fake, 5)
        out["prdc"] = {"source": "prdc.compute_prdc (float64 features, k=3 for P/R, k=5 for D/C)",
                       "precision": float(pr["precision"]), "recall": float(pr["recall"]),
                       "density": float(dc["density"]), "coverage": float(dc["coverage"]),
                       "seconds": time.perf_counter() - start}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000, help="samples per set")
    parser.add_argument("--dim", type=int, default=2048, help="feature width")
    parser.add_argument("--seed", type=int, default=0, help="seed of features and KID subsets")
    parser.add_argument("--no-reference", action="store_true", help="skip the torch-fidelity / prdc runs")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO / "benchmarks" / "results") /
                        "eval_cpu.json", help="result file (default: eval_cpu.json in $OUT when set, else benchmarks/results/)")
    args = parser.parse_args()
    record: dict[str, object] = machine()
    rng = np.random.default_rng(args.seed)
    # Inception pool features are non-negative and skewed; |N| stand-ins, the fake set slightly off.
    real = np.abs(rng.standard_normal((args.n, args.dim))).astype(np.float32).astype(np.float64)
    fake = (np.abs(rng.standard_normal((args.n, args.dim))) * 1.02 + 0.01).astype(np.float32).astype(np.float64)
    record["settings"] = {"n_real": args.n, "n_fake": args.n, "dim": args.dim, "seed": args.seed,
                          "features": "real |N(0,1)|, fake 1.02 |N(0,1)| + 0.01, rounded to float32",
                          "kid": {"subsets": 100, "subset_size": 1000, "degree": 3, "coef0": 1}, "k_pr": 3, "k_dc": 5}
    threads = torch.get_num_threads()
    for count in sorted({threads, 1}, reverse=True):
        # The 1-thread pass shows the cost free of OpenMP oversubscription on a shared machine.
        torch.set_num_threads(count)
        CPU_SECONDS.clear()
        fid_value, fid_s = timed(fid_from_features, fake, real, name="fid")
        (kid_mean, kid_std), kid_s = timed(kid, fake, real, 100, 1000, 3, None, 1.0, args.seed, name="kid")
        scores, prdc_s = timed(prdc, real, fake, name="prdc")
        record["darkroom" if count == threads else "darkroom_1_thread"] = {
            "torch_threads": count, "fid": fid_value, "kid_mean": kid_mean, "kid_std": kid_std, **scores,
            "seconds": {"fid": fid_s, "kid": kid_s, "prdc": prdc_s, "total": fid_s + kid_s + prdc_s},
            "cpu_seconds": {**CPU_SECONDS, "total": sum(CPU_SECONDS.values())},
            "load_average_1m_after": os.getloadavg()[0]}
    torch.set_num_threads(threads)
    print(json.dumps({key: record[key] for key in ("darkroom", "darkroom_1_thread") if key in record}, indent=2))
    if not args.no_reference:
        refs = references(real, fake, args.seed, 100, min(1000, args.n))  # ours clips; theirs refuses
        ours = record["darkroom"]
        fid_value, kid_mean, kid_std = ours["fid"], ours["kid_mean"], ours["kid_std"]
        checks: dict[str, dict] = {}
        if "fid" in refs:
            rel = abs(fid_value - refs["fid"]["value"]) / abs(refs["fid"]["value"])
            checks["fid"] = {"relative_difference": rel, "tolerance": 1e-3, "ok": rel <= 1e-3}
        if "kid" in refs:
            diff = max(abs(kid_mean - refs["kid"]["mean"]), abs(kid_std - refs["kid"]["std"]))
            checks["kid"] = {"absolute_difference": diff, "tolerance": 1e-6, "ok": diff <= 1e-6}
        if "prdc" in refs:
            diff = max(abs(ours[key] - refs["prdc"][key]) for key in ("precision", "recall", "density", "coverage"))
            checks["prdc"] = {"absolute_difference": diff, "tolerance": 1e-6, "ok": diff <= 1e-6}
        record["references"], record["agreement"] = refs, checks
        print(json.dumps(checks, indent=2))
    write_result(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
