"""darkroom demo: the main job on the embedded default data (Fashion-MNIST), at a CPU-sized budget.

    darkroom demo            # about 5 minutes on 2 CPU cores
    darkroom demo --quick    # a first look in about a minute
"""
from __future__ import annotations

from pathlib import Path

from darkroom import config
from darkroom.train import classifier


def run_demo(out: Path, quick: bool) -> dict:
    settings = dict(classifier.PRESETS["fashion-mnist-cpu"])
    if quick:
        settings.update(epochs=1.0, sample=0.25)
    settings.update(out=str(out / "classifier"))
    print(f"darkroom demo: a Fashion-MNIST classifier ({settings['arch']}, {settings['epochs']:g} epochs"
          f"{', a quarter of the data' if quick else ''}); results in {out}")
    result = classifier.run(config.build(classifier.CONFIG, settings), ["demo"] + (["--quick"] if quick else []))
    print(f"demo classifier: test accuracy {result['test_acc']:.4f}; run folder {result['run_dir']}")
    return result
