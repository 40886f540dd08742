"""Every metrics line and every new sample grid is mirrored to TensorBoard event files when tensorboard is installed."""
import pytest
import torch

from darkroom.report.grid import save_grid
from darkroom.runs import RunFolder


def test_scalars_and_grids_reach_tensorboard(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    folder = RunFolder(tmp_path / "run", "gan")
    save_grid(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), folder.samples_dir / "iter_000010.png")
    folder.log({"iteration": 10, "critic_loss": -1.5, "note": "text is skipped"})
    folder.log({"iteration": 20, "critic_loss": -2.5})
    folder.close()
    events = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("critic_loss")] == [(10, -1.5), (20, -2.5)]
    assert events.Tags()["images"] == ["samples/iter_000010"]
