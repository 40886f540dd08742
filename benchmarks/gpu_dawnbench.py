"""The dawnbench section of `make bench-gpu`: fast.ai's two DAWNBench presets (wrn_22-dawnbench, wrn_22-dawnbench-8gpu)
on one GPU at a short fixed budget: seconds per epoch, projected to their full runs, and accuracy at that budget.
"""
from __future__ import annotations

from pathlib import Path

from benchmarks import common
from benchmarks.gpu_sections import classifier_values, epoch_times, guarded_run, with_maths
from darkroom.config import build

# fast.ai's DAWNBench entries (classifier.PRESETS) on one GPU: the 1-GPU entry for DAWNBENCH_EPOCHS of its 30 epochs
# (one-cycle compressed to them), the 8-GPU entry once for one epoch at its global batch (1024) on one GPU, a check
# that it runs; their full runs do not fit the command's 8 minutes
DAWNBENCH = {"wrn_22-dawnbench": 3.0, "wrn_22-dawnbench-8gpu": 1.0}


def dawnbench(ctx, budget: common.Budget) -> Path:
    """Seconds per epoch of the DAWNBench presets' WRN-22 (after the first epoch, which takes cuDNN's autotuning),
    projected to the preset's whole run, and the accuracy at the short budget."""
    from darkroom import classifier

    figures, rows = {}, []
    for preset, epochs in DAWNBENCH.items():
        if budget.left() <= 0:
            figures[preset] = {"failed": "skipped: out of the section's time"}
            continue
        if ctx.smoke:  # WRN-22 is 9.7 M parameters: a handful of CPU images, one epoch
            epochs = 1.0
        values = classifier_values(ctx, preset, epochs=epochs, seed=0, out=str(ctx.work / preset))
        if ctx.smoke:
            values.update(sample=0.0005, test_sample=0.002, batch_size=10)
        full_epochs = classifier.PRESETS[preset]["epochs"]

        def run() -> dict:
            result = classifier.run(build(classifier.CONFIG, values))
            per_epoch = epoch_times(result["run_dir"])
            steady = per_epoch[1:] or per_epoch
            seconds = sum(steady) / max(1, len(steady))
            print(f"  {preset}: {epochs:g} epochs, acc {result['test_acc']:.4f}, {seconds:.2f} s per epoch", flush=True)
            return {"epochs": epochs, "test_acc": result["test_acc"], "train_time": result["train_time"],
                    "epoch_train_s": per_epoch, "seconds_per_epoch": seconds,
                    "projected_full_run_s": seconds * full_epochs, "full_epochs": full_epochs,
                    "images_per_s": result.get("images_per_s")}
        figures[preset] = guarded_run(preset, run)()
        done = figures[preset]
        rows.append(common.comparison_row(
            f"{preset} on 1 GPU: seconds per epoch, WRN-22 batch {values['batch_size']} ({ctx.device})",
            done.get("seconds_per_epoch"), None, "s", "-",
            note=(f"FAILED: {done['failed']}" if "failed" in done else
                  f"{epochs:g} of {full_epochs:g} epochs (one-cycle compressed to them): acc {done['test_acc']:.4f}; "
                  f"the full {full_epochs:g} epochs would take about {done['projected_full_run_s']:.0f} s")))
    settings = {"smoke": ctx.smoke, "presets": {preset: {**classifier.PRESETS[preset], "epochs_run": epochs}
                                                for preset, epochs in DAWNBENCH.items()},
                "data": "Fashion-MNIST (28 px grey; the entries trained CIFAR-10)",
                "gpus": "1 (the 8-GPU entry's global batch on one card: a check that the preset runs, not its time)",
                "timing": "darkroom's train_time per epoch from metrics.jsonl, the first epoch (cuDNN autotuning) left "
                          "out of seconds_per_epoch"}
    return common.write_result(ctx.name("gpu_classifier_dawnbench"), with_maths(settings), figures, rows=rows,
                               device=ctx.device)
