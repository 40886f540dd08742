"""The Fashion-MNIST floor table: 10k real training images scored as if generated, against the 10k test images,
with `darkroom eval images` and the built-in judge. What a perfect generator would score at n = 10k.

    python -m benchmarks.fashion_mnist_floor
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

from benchmarks.common import write_result
from darkroom.data.idx import load_idx_dataset


def main() -> None:
    train = load_idx_dataset("fashion-mnist", "train")
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(123))[:10000]
    with tempfile.TemporaryDirectory() as tmp:
        fake = Path(tmp) / "train10k"
        fake.mkdir()
        for i, index in enumerate(pick.tolist()):
            Image.fromarray(train.images[index, 0].numpy()).save(fake / f"{i:05d}.png")
        out = Path(tmp) / "eval.json"
        command = [sys.executable, "-m", "darkroom", "eval", "images", "--fake", str(fake), "--real", "fashion-mnist:test",
                   "--train", "fashion-mnist:train", "--json", str(out)]
        subprocess.run(command, check=True)
        scores = json.loads(out.read_text())
    settings = {"fake": "10,000 Fashion-MNIST training images (seed 123)", "real": "fashion-mnist:test (10,000)",
                "train_reference": "10,000 training images (seed 7 subsample)",
                "command": "darkroom eval images --fake TRAIN10K --real fashion-mnist:test --train fashion-mnist:train"}
    path = write_result("fashion_mnist_floor", settings, scores,
                        notes="The memorization numbers are not a floor here: the 'fake' images are training images.")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
