"""DataLoader workers never exceed the usable cores: on a machine with 2 of them (os.sched_getaffinity, which
both darkroom.launch.usable_cores and PyTorch's check read, is planted), the trainers' default 4 workers become
2, and building and reading the classifier's and the GAN's streamed loaders raises no warning (PyTorch's
"This DataLoader will create 4 worker processes in total. Our suggested max ... is 2" used to print)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from darkroom import dist, launch
from darkroom.classifier import data as classifier_data
from darkroom.classifier.config import ClassifierConfig
from darkroom.cyclegan.config import CycleGANConfig
from darkroom.data.loaders import worker_count
from darkroom.gan import data as gan_data
from darkroom.gan.config import GanConfig


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert launch.usable_cores() == 2


def write_classes(root: Path, classes: int = 2, per_class: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for label in range(classes):
        (root / f"class{label}").mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 200, (16, 16, 3)).astype(np.uint8) + 20 * label
            Image.fromarray(pixels, "RGB").save(root / f"class{label}" / f"{index:03d}.png")
    return root


def test_the_worker_count_chosen_on_two_usable_cores(two_cores, monkeypatch):
    for config in (ClassifierConfig(), GanConfig(), CycleGANConfig()):
        assert config.workers == 4 and worker_count(config.workers) == 2
    assert worker_count(0) == 0 and worker_count(1) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two ranks on this machine: one worker each
    assert worker_count(4) == 1
    monkeypatch.setattr(launch, "usable_cores", lambda: 8)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert worker_count(4) == 4  # a bigger machine keeps what was asked for


def test_streamed_loaders_with_default_workers_raise_no_warning(two_cores, tmp_path):
    folder = write_classes(tmp_path / "classes")
    info = dist.DistInfo(0, 1, 0, torch.device("cpu"))
    workers = ClassifierConfig().workers
    settings = classifier_data.DataSettings(str(folder), None, 1.0, 1.0, 0, 16, "always", workers, 8, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = classifier_data.load(settings, info)
        assert data.streamed and data.train.loader.num_workers == 2
        batches = list(data.test.eval_batches(8))
        assert sum(len(labels) for _, labels in batches) == len(data.test)
        gan = gan_data.DataSettings(str(folder), None, 1.0, 16, 16, 3, False, "always", GanConfig().workers, "fail",
                                    False, 0)
        stream = gan_data.build_batches(gan, 4, 0, 1, torch.device("cpu"))
        assert stream.kind == "stream" and stream.next_batch().shape == (4, 3, 16, 16)
        assert stream._iterator._num_workers == 2
    del data, stream
