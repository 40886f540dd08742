"""darkroom demo: the main job on Fashion-MNIST: a classifier, a GAN and a sneaker <-> ankle-boot CycleGAN,
each at a CPU-sized budget (larger on a GPU), judged by the demo's own classifier, on one index page.

    darkroom demo            # 198 s on 2 AMX CPU cores, 238 s with make's set-up (benchmarks/results/demo_cpu.json)
    darkroom demo --quick    # a first look: 42 s measured
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from darkroom import config
from darkroom.report.html import build_index, build_report

# per phase: (settings on top of the task's preset) for full / quick / GPU
BUDGETS = {
    # full: about 45 s a phase on 2 cores (benchmarks/results/demo_cpu.json); quick: about 10 s a phase
    "classifier": {"full": dict(epochs=2.0), "quick": dict(epochs=1.0, sample=0.25, test_sample=0.5),
                   "gpu": dict(epochs=10.0)},
    # fashion-mnist-dcgan-cpu cut to 3,000 iterations (about 60 s with bf16 on 2 AMX cores)
    "gan": {"full": dict(iterations=3000, max_minutes=0.0, sample_every=250, checkpoint_every=500),
            "quick": dict(iterations=300, max_minutes=0.0, sample_every=100, log_every=25, checkpoint_every=150),
            "gpu": dict(iterations=6000, max_minutes=0.0, sample_every=500, checkpoint_every=1000, batch_size=128)},
    # small-images, the default for 28 px images, cut to 0.7 epochs of its 5.8 (about 35 s on 2 AMX cores)
    "cyclegan": {"full": dict(epochs=0.3, epochs_decay=0.4), "quick": dict(epochs=0.04, epochs_decay=0.04, sample_every=25,
                                                                          log_every=10, checkpoint_every=50),
                 "gpu": dict(epochs=2.0, epochs_decay=2.0)},
}
PRESETS = {"classifier": "fashion-mnist-cpunet", "gan": "fashion-mnist-dcgan-cpu", "cyclegan": "small-images"}
EVAL_SAMPLES = {"full": 10000, "quick": 1000, "gpu": 10000}


def train_phase(task: str, budget: str, out: Path) -> dict:
    import importlib

    module = importlib.import_module(f"darkroom.{task}")
    return module.run(config.layered(module.CONFIG, module.PRESETS, PRESETS[task], None,
                                     {**BUDGETS[task][budget], "out": str(out / task)}))


def classifier_picture(run_dir: Path, device: torch.device) -> torch.Tensor:
    """confusion.png in the classifier's run folder, the front page's picture of it: its evaluation weights on the test
    images its last epoch was scored on (same --test-sample, seed and TTA); returns the (K, K) counts."""
    from darkroom.classifier.predict import confusion, load_run
    from darkroom.data import sources
    from darkroom.data.resident import ResidentImages
    from darkroom.report.figures import CONFUSION_FILE, save_confusion

    model, saved, meta = load_run(str(run_dir), device)
    test = sources.load(saved["data"], "test", saved.get("data_root"), saved.get("test_sample", 1.0), saved["seed"],
                        saved.get("image_size"))
    tta = saved.get("tta", "none") if saved.get("flip", True) else "none"
    matrix = confusion(model, ResidentImages(test, device, meta["mean"], meta["std"], 1000), device, "fp32", tta,
                       len(meta["classes"]))
    save_confusion(matrix.numpy(), list(meta["classes"]), Path(run_dir) / CONFUSION_FILE)
    return matrix


def run_demo(out: Path, quick: bool) -> dict:
    from darkroom.data.provision import ensure_idx_dataset
    from darkroom.evaluate import commands as evaluate

    ensure_idx_dataset("fashion-mnist")  # found, downloaded, or apt-installed; else one sentence naming the routes
    budget = "quick" if quick else ("gpu" if torch.cuda.is_available() else "full")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out.mkdir(parents=True, exist_ok=True)
    print(f"darkroom demo ({budget} budget) on Fashion-MNIST, results in {out}:")
    for task in ("classifier", "gan", "cyclegan"):
        print(f"  {task:10s} preset {PRESETS[task]} with " + ", ".join(f"{k}={v}" for k, v in BUDGETS[task][budget].items()))
    print(f"  then eval: {EVAL_SAMPLES[budget]} GAN samples and every held-out shoe, judged by the demo's classifier")
    phases, started = {}, time.time()
    for task in ("classifier", "gan", "cyclegan"):
        print(f"\n== {task} ==")
        phase_start = time.time()
        train_phase(task, budget, out)
        phases[task] = time.time() - phase_start
    print("\n== evaluation ==")
    phase_start = time.time()
    judge = str(out / "classifier")
    gan = evaluate.eval_gan(str(out / "gan"), EVAL_SAMPLES[budget], judge, None, 0, device)
    cyclegan = evaluate.eval_cyclegan(str(out / "cyclegan"), judge, None, 0, device)
    classifier_picture(out / "classifier", device)
    phases["evaluation"] = time.time() - phase_start
    for task in ("classifier", "gan", "cyclegan"):
        build_report(out / task)
    from darkroom.runs import read_metrics
    accuracy = read_metrics(out / "classifier")[-1]["test_acc"]
    summary = [
        ("classifier test accuracy", f"{accuracy:.4f}"),
        ("GAN classes covered (>= 1% of samples)", f"{gan['modes_hit']:.0f} of 10 (real test: {gan['modes_hit_real']:.0f})"),
        ("GAN class-histogram KL(samples || real)", f"{gan['mode_kl_fake_real']:.4f}"),
        ("GAN domain FID (floor: real train vs real test)",
         f"{gan['frechet_inception_distance']:.3f} (floor {gan['frechet_inception_distance_floor']:.3f})"),
        ("GAN nearest-train distance ratio (1 = no copying)", f"{gan['memo_nn_ratio']:.3f}"),
        ("CycleGAN sneaker -> ankle boot accuracy", f"{cyclegan['translation_target_accuracy_a2b']:.4f}"),
        ("CycleGAN ankle boot -> sneaker accuracy", f"{cyclegan['translation_target_accuracy_b2a']:.4f}"),
        ("CycleGAN cycle L1 (a2b, b2a) on [-1, 1]",
         f"{cyclegan['translation_cycle_l1_a2b']:.4f}, {cyclegan['translation_cycle_l1_b2a']:.4f}"),
        *[(f"time: {phase}", f"{seconds:.0f} s") for phase, seconds in phases.items()],
        ("time: total", f"{time.time() - started:.0f} s"),
    ]
    # the front page: each task's picture, curves and numbers (with floors and meanings); this summary last
    index = build_index(out, "darkroom demo", summary, showcase=True)
    print("\n" + "\n".join(f"{name:52s} {value}" for name, value in summary))
    print(f"\ndemo page: {index}")
    return {"classifier_acc": accuracy, "gan": gan, "cyclegan": cyclegan, "phases": phases, "index": str(index),
            "seconds": time.time() - started}
