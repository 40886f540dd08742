"""GPU code paths that a CPU can still check: what each would do on CUDA/NCCL, read through recording wrappers and
fake CUDA DistInfos (nothing here needs a GPU). Each test fails on the code that had the crash it names."""
from __future__ import annotations

import os

import pytest
import torch

from darkroom import checkpoint, config, dist, lifecycle
from darkroom import gan
from darkroom.classifier import ClassifierConfig
from darkroom.errors import UserError
from darkroom.gan import train as gan_train

CUDA = dist.DistInfo(0, 1, 0, torch.device("cuda"))
META = dist.DistInfo(0, 2, 0, torch.device("meta"))  # a device that is not the CPU, as CUDA is to NCCL


class Bar:
    def set_postfix(self, **values):
        self.values = values


def test_gan_log_means_are_all_reduced_on_the_training_device(monkeypatch):
    """NCCL all-reduces device tensors only: the GAN log line's means must reach the all-reduce on the training
    device (they were built and reduced on the CPU)."""
    seen = []

    def recording_all_reduce_mean(tensor):
        seen.append(tensor.device)
        return torch.zeros(tensor.shape, dtype=tensor.dtype)  # what the ranks' mean would give back, on the CPU

    monkeypatch.setattr(gan_train.dist, "all_reduce_mean", recording_all_reduce_mean)
    cfg = gan.GanConfig(data="toy:ring8")
    sums = {"critic_loss": torch.tensor(2.0), "critic_loss#n": torch.tensor(2.0),
            "generator_loss": torch.tensor(1.0), "generator_loss#n": torch.tensor(1.0)}
    state = {"iteration": 4, "critic_iterations": 20, "skipped": 0, "train_time": 1.0,
             "interval": {"sums": sums, "count": 4, "critic_steps": 20, "time": 1.0}}
    record = gan_train.log_interval(cfg, META, state, None, Bar(), 0)
    assert seen == [torch.device("meta")]
    assert record["critic_loss"] == 0.0 and record["iteration"] == 4


def test_compile_with_wgan_gp_leaves_the_critic_uncompiled():
    """The gradient penalty differentiates the critic twice, which inductor's compiled backward refuses
    (pytorch#183603): --compile compiles the generator only there, both nets for the other losses."""
    compiled = torch._dynamo.eval_frame.OptimizedModule

    def wrapped(loss):
        loop = gan.Loop(cfg=gan.GanConfig(loss=loss), settings=None, info=dist.DistInfo(0, 1, 0, torch.device("cpu")),
                        precision_name="fp32", G=torch.nn.Linear(2, 2), D=torch.nn.Linear(2, 1), g_net=None,
                        d_net=None, opt_g=None, opt_d=None, scaler_g=None, scaler_d=None, noise=None, batches=None,
                        memory_format=torch.contiguous_format)
        loop.wrap(distributed=False, compile_nets=True)
        return isinstance(loop.g_net, compiled), isinstance(loop.d_net, compiled)

    assert wrapped("wgan-gp") == (True, False)
    assert wrapped("wgan") == (True, True)
    assert wrapped("hinge") == (True, True)


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_deterministic_sets_the_cublas_workspace_and_warns_on_cuda_only(monkeypatch, device):
    """--deterministic on CUDA: cuBLAS raises in the Linear head unless CUBLAS_WORKSPACE_CONFIG is set before its
    first call, and adaptive pooling's backward has no deterministic CUDA kernel (warn, don't raise, there)."""
    calls = []
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(lifecycle.dist, "setup", lambda name: dist.DistInfo(0, 1, 0, torch.device(device)))
    monkeypatch.setattr(lifecycle.torch, "use_deterministic_algorithms",
                        lambda mode, warn_only=False: calls.append((mode, warn_only)))
    monkeypatch.setattr(lifecycle.torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(lifecycle.precision, "resolve", lambda flag, device: "fp32")
    info, _ = lifecycle.setup_runtime(device, seed=0, deterministic=True, batch_size=8, precision_flag="fp32")
    assert info.device.type == device
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert calls == [(True, device == "cuda")]


def plant(run_dir, device_type: str, ranks: int) -> ClassifierConfig:
    cfg = ClassifierConfig(out=str(run_dir), resume=True)
    checkpoint.save({"task": "classifier", "config": config.to_dict(cfg),
                     "state": {"log_lines": 0, "step": 3}, "device_type": device_type,
                     "ranks": [{"rng": checkpoint.rng_state()} for _ in range(ranks)]},
                    run_dir / "checkpoints" / "last.pt")
    return cfg


def test_resume_across_device_types_is_one_sentence_both_ways(tmp_path):
    """A CUDA generator's state does not fit a CPU generator (nor the reverse): refused before anything loads."""
    cfg = plant(tmp_path / "gpu-run", "cuda", 1)
    with pytest.raises(UserError, match=r"trained on cuda and cannot go on on cpu.*--device cuda"):
        lifecycle.open_run("classifier", cfg, dist.DistInfo(0, 1, 0, torch.device("cpu")))
    cfg = plant(tmp_path / "cpu-run", "cpu", 1)
    with pytest.raises(UserError, match=r"trained on cpu and cannot go on on cuda.*--device cpu"):
        lifecycle.open_run("classifier", cfg, CUDA)


def test_resume_on_more_ranks_is_refused_and_on_fewer_goes_on(tmp_path):
    """Each rank restores its own random state: a rank the checkpoint has none for is refused in one sentence; a
    run saved on 4 ranks resumes on 2 (ranks 0 and 1 take their own saved states)."""
    cfg = plant(tmp_path / "run", "cpu", 2)
    with pytest.raises(UserError, match=r"trained on 2 rank\(s\) and holds no random state for rank 2; resume it "
                                        r"on at most 2"):
        lifecycle.open_run("classifier", cfg, dist.DistInfo(2, 4, 2, torch.device("cpu")))
    cfg = plant(tmp_path / "wide", "cpu", 4)
    assert lifecycle.open_run("classifier", cfg, dist.DistInfo(1, 2, 1, torch.device("cpu"))).saved["state"]["step"] == 3
