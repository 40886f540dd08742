"""The benchmark harness: result records, the alternating runner, the table, airbench's data format, and the two
scripts run end to end at tiny sizes (gpu.py --smoke on CPU, classifier_cpu.py --quick) so they cannot rot."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import common, table
from conftest import needs_fashion
from benchmarks.classifier_cpu import first_reaching, time_row
from benchmarks import gpu
from benchmarks.gpu_airbench import cifar_format, parse_final_row

REPO = Path(__file__).resolve().parent.parent
REQUIRED = ("device", "torch", "commit", "date", "settings", "figures", "ratio", "rows", "environment")


def run_module(module: str, args: list[str], out: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def check_record(path: Path) -> dict:
    record = json.loads(path.read_text())
    for key in REQUIRED:
        assert key in record, f"{path.name} lacks {key}"
    assert record["torch"] == torch.__version__
    assert record["environment"]["cpu_cores"] >= 1 and record["environment"]["python"]
    assert record["rows"] and all("ratio" in row and "comparison" in row for row in record["rows"])
    return record


# ---------------------------------------------------------------------------------------------- fast unit checks
def test_comparison_row_ratio_and_target_direction():
    faster = common.comparison_row("speed", 260.0, 200.0, "images/s", "plain", target=1.3)
    assert faster["ratio"] == pytest.approx(1.3) and faster["met"] is True
    slower = common.comparison_row("time", 80.0, 100.0, "s", "plain", target=0.7, higher_is_better=False)
    assert slower["ratio"] == pytest.approx(0.8) and slower["met"] is False and slower["target"] == "<= 0.7x"
    missing = common.comparison_row("time", 80.0, None, "s", "plain", target=0.7, higher_is_better=False)
    assert missing["ratio"] is None and missing["met"] is None


def test_pareto_front_check_and_time_to_target_on_planted_points():
    from benchmarks.classifier_cpu_pareto import best_at, front_check, time_to

    mk = lambda budget, seconds, accuracy: {"budget": budget, "train_time_s": seconds, "test_acc_mean": accuracy}
    points = {"darkroom": [mk(1, 10, 0.90), mk(2, 20, 0.93), mk(5, 50, 0.936)],
              "plain": [mk(1, 12, 0.89), mk(2, 24, 0.925), mk(5, 60, 0.937)],
              "fastai": [mk(1, 9, 0.85), mk(5, 100, 0.935)]}
    assert best_at(points["darkroom"], 49) == 0.93 and best_at(points["darkroom"], 9) is None
    assert time_to(points["darkroom"], 0.935) == 50 and time_to(points["plain"], 0.935) == 60
    assert time_to(points["darkroom"], 0.94) is None
    verdicts = {(c["side"], c["budget"]): c["holds"] for c in front_check(points)}
    # plain's 5 epochs beat every darkroom point that took no longer; fastai's 1 epoch came before darkroom's first
    assert verdicts == {("plain", 1): True, ("plain", 2): True, ("plain", 5): False, ("fastai", 1): False,
                        ("fastai", 5): True}


def test_alternate_runs_sides_in_abba_order_and_stops_on_budget():
    order: list[str] = []
    results = common.alternate({"a": lambda: order.append("a") or 1, "b": lambda: order.append("b") or 2}, 4)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert results == {"a": [1, 1, 1, 1], "b": [2, 2, 2, 2]}
    calls = {"n": 0}
    stopped = common.alternate({"a": lambda: calls.__setitem__("n", calls["n"] + 1)}, 5, keep_going=lambda: calls["n"] < 2)
    assert len(stopped["a"]) == 2


def test_summary_and_strict_json(tmp_path, monkeypatch):
    stats = common.summary([1.0, 2.0, 3.0, float("nan")])
    assert stats["n"] == 3 and stats["mean"] == 2.0 and stats["std"] == pytest.approx(1.0) and stats["min"] == 1.0
    monkeypatch.setenv("OUT", str(tmp_path))
    path = common.write_result("probe", {"a": (1, 2)}, {"bad": float("inf")})
    assert path.parent == tmp_path
    record = json.loads(path.read_text())  # strict JSON: no NaN/Infinity tokens
    assert record["figures"]["bad"] is None and record["settings"]["a"] == [1, 2] and record["ratio"] is None


def test_time_to_accuracy_rule_and_bounds():
    reaching = [[{"test_acc": 0.90, "train_time": 10.0}, {"test_acc": 0.93, "train_time": 20.0}],
                [{"test_acc": 0.91, "train_time": 12.0}, {"test_acc": 0.92, "train_time": 22.0}]]
    ours = first_reaching(reaching, 0.92)
    assert ours == {"reached": True, "epoch": 2, "mean_acc": pytest.approx(0.925), "seconds": pytest.approx(21.0)}
    never = first_reaching([[{"test_acc": 0.90, "train_time": 30.0}]], 0.92)
    assert never["reached"] is False and never["seconds"] == 30.0
    row = time_row(ours, never, 1, "plain", 0.7)
    assert row["ratio"] == pytest.approx(0.7) and row["ratio_bound"] == "<=" and row["met"] is True
    failed = time_row(never, ours, 1, "plain", 0.7)
    assert failed["ratio"] is None and failed["met"] is False and "darkroom did not reach" in failed["note"]


def test_airbench_format_pads_and_replicates():
    images = torch.randint(1, 256, (3, 1, 28, 28), dtype=torch.uint8)
    data = cifar_format(images, torch.tensor([0, 5, 9]), ["a"] * 10)
    assert data["images"].shape == (3, 32, 32, 3) and data["images"].dtype == torch.uint8
    assert torch.equal(data["images"][:, 2:30, 2:30, 1], images[:, 0])
    assert int(data["images"][:, :2].sum()) == 0 and int(data["images"][:, :, 30:].sum()) == 0
    assert torch.equal(data["images"][..., 0], data["images"][..., 2]) and data["labels"].dtype == torch.int64


def test_parse_airbench_final_row():
    # airbench.utils.print_columns: '|  %s  ' per column, right-justified to the header widths
    header = ["run   ", "epoch", "train_loss", "train_acc", "val_acc", "tta_val_acc", "total_time_seconds"]
    values = ["", "eval", "", "", "", "0.9412", "3.1234"]
    line = "".join(f"|  {value.rjust(len(name))}  " for value, name in zip(values, header)) + "|"
    printed = "|  run     |  epoch  |\n" + line + "\n" + "-" * len(line)
    assert parse_final_row(printed) == {"tta_val_acc": 0.9412, "total_time_seconds": 3.1234}
    with pytest.raises(ValueError):
        parse_final_row("nothing printed")


def test_table_renders_rows_and_skips_trial_runs(tmp_path, monkeypatch):
    results = tmp_path / "results"
    monkeypatch.setenv("OUT", str(results))
    common.write_result("classifier_cpu_throughput", {}, {}, rows=[
        common.comparison_row("throughput", 1300.0, 1000.0, "images/s", "plain loop", target=1.3)])
    common.write_result("gpu_gan_throughput-smoke", {}, {}, rows=[common.comparison_row("smoke row", 1.0, 1.0, "it/s", "x")])
    common.write_result("legacy", {}, {"darkroom": 2.0, "baseline": 4.0, "ratio": 0.5})
    kept = common.comparison_row("kept from an earlier run", 2.0, 1.0, "it/s", "y")
    kept["measured"] = {"date": "2026-01-02T03:04:05", "commit": "abcdef12345678", "dirty": False}
    common.write_result("merged", {}, {}, rows=[kept])
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{table.BEGIN}\nold table\n{table.END}\n\nafter\n")
    assert table.main(["--results", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# title") and text.rstrip().endswith("after")
    assert "| throughput | 1300 images/s | 1000 images/s (plain loop) | 1.30x | >= 1.3x | yes |" in text
    assert "| legacy | 2 | 4 | 0.50x |" in text
    assert "smoke row" not in text
    kept_line = next(line for line in text.splitlines() if line.startswith("| kept from an earlier run"))
    assert kept_line.endswith("| 2026-01-02, abcdef1234 |")  # the row's own date and commit, not the file's


def test_gpu_sections_are_guarded(tmp_path, monkeypatch):
    monkeypatch.setenv("OUT", str(tmp_path))
    ctx = gpu.Context(smoke=True, device="cpu", data_root=None, work=tmp_path)

    def overran(ctx, budget):
        raise gpu.OutOfTime("interrupted")
    gpu.guarded(ctx, "gan", 10, overran)
    gpu.guarded(ctx, "cyclegan", 10, lambda ctx, budget: 1 / 0)
    errors = [json.loads(path.read_text())["figures"]["error"] for path in ctx.written]
    assert errors == ["OutOfTime: interrupted", "ZeroDivisionError: division by zero"]
    assert all(json.loads(path.read_text())["rows"][0]["note"].startswith("FAILED") for path in ctx.written)
    assert all("cudnn_allow_tf32" in json.loads(path.read_text())["settings"]["float32_maths"] for path in ctx.written)


def test_float32_maths_records_the_tf32_switches():
    from benchmarks import gpu_sections

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = False, True
        maths, matmul_precision = gpu_sections.float32_maths(), torch.get_float32_matmul_precision()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
    assert maths["cudnn_allow_tf32"] is False and maths["cuda_matmul_allow_tf32"] is True
    assert maths["float32_matmul_precision"] == matmul_precision == "high"  # allow_tf32 on cuBLAS is precision "high"
    assert gpu_sections.with_maths({"smoke": True}) == {"smoke": True, "float32_maths": gpu_sections.float32_maths()}


def test_a_failing_airbench_run_keeps_the_finished_runs(capsys):
    from benchmarks import gpu_sections

    calls = {"n": 0}

    def airbench_run():
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("cuDNN error")
        return {"test_acc": 0.95, "train_time": 2.5}
    sides = {"darkroom": gpu_sections.guarded_run("darkroom", lambda: {"test_acc": 0.94, "train_time": 2.0}),
             "airbench94": gpu_sections.guarded_run("airbench94", airbench_run)}
    figures = {name: gpu_sections.run_figures(runs) for name, runs in common.alternate(sides, 3).items()}
    assert figures["darkroom"]["test_acc"]["n"] == 3 and figures["darkroom"]["failed_runs"] == 0
    assert figures["airbench94"]["test_acc"]["n"] == 2 and figures["airbench94"]["failures"] == ["RuntimeError: cuDNN error"]
    row = gpu_sections._time_row(figures["darkroom"], figures["airbench94"], "", "cuda")
    assert row["ratio"] == pytest.approx(0.8) and "airbench94: 1 run(s) failed (RuntimeError: cuDNN error)" in row["note"]
    assert "run FAILED: RuntimeError: cuDNN error" in capsys.readouterr().out


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file()
                    and not os.environ.get("DARKROOM_DATA"), reason="Fashion-MNIST not installed")
def test_gan_correctness_fails_when_the_grad_scaler_skips_every_step(tmp_path, monkeypatch):
    from benchmarks import gpu_sections
    from darkroom.gan import train as gan_train

    monkeypatch.setattr(gan_train.Loop, "_step", lambda self, objective, optimizer, scaler, inputs, stats:
                        {"skipped": torch.ones(())})  # every overflow skipped: the weights never move, all finite
    ctx = gpu.Context(smoke=True, device="cpu", data_root=None, work=tmp_path)
    checks = {check["name"].split()[1]: check for check in gpu_sections.gan_checks(ctx)}
    assert checks["fp16"]["passed"] is False and checks["fp16"]["taken_fraction"] == 0.0
    assert checks["fp16"]["skipped_steps"] == checks["fp16"]["steps"] == 8 * 3  # 8 iterations of 2 critic steps + G


def test_tee_copies_stdout_and_stderr_to_the_log_in_order(tmp_path, capfd):
    child = "import sys; print('one', flush=True); print('two', file=sys.stderr, flush=True); sys.exit(3)"
    code = gpu.tee([sys.executable, "-c", child], tmp_path / "out" / gpu.LOG_NAME, dict(os.environ))
    assert code == 3
    assert (tmp_path / "out" / gpu.LOG_NAME).read_text() == "one\ntwo\n"
    assert capfd.readouterr().out == "one\ntwo\n"


def test_wheels_install_offline_into_a_target(tmp_path, monkeypatch):
    import importlib.util
    import zipfile

    wheels = tmp_path / "whl"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "darkroom_probe_wheel-0.1-py3-none-any.whl", "w") as archive:
        archive.writestr("darkroom_probe_wheel/__init__.py", "VALUE = 42\n")
        info = "darkroom_probe_wheel-0.1.dist-info/"
        archive.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: darkroom-probe-wheel\nVersion: 0.1\n")
        archive.writestr(info + "WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(info + "RECORD", "")
    monkeypatch.setattr(gpu, "WHEELS", wheels)
    monkeypatch.setattr(sys, "path", list(sys.path))
    note = gpu.install_wheels(tmp_path / "site")
    assert "darkroom_probe_wheel" in note
    assert importlib.util.find_spec("darkroom_probe_wheel") is not None
    assert "none needed" in gpu.install_wheels(tmp_path / "site2")  # already importable: left alone


# ---------------------------------------------------------------------------------------------- the scripts
@pytest.mark.slow
def test_gpu_script_smoke_on_cpu(tmp_path):
    result = run_module("benchmarks.gpu", ["--smoke"], tmp_path, timeout=900)
    names = {path.name for path in tmp_path.glob("*.json")}
    assert names == {"gpu_correctness-smoke.json", "gpu_classifier_time_to_94-smoke.json",
                     "gpu_gan_throughput-smoke.json", "gpu_cyclegan_throughput-smoke.json",
                     "gpu_classifier_dawnbench-smoke.json"}
    records = {name: check_record(tmp_path / name) for name in names}
    for record in records.values():
        assert "error" not in record["figures"], record["figures"].get("error")
        assert record["environment"]["device_type"] == "cpu"
    correctness = records["gpu_correctness-smoke.json"]["figures"]
    assert correctness["passed"] == correctness["total"] >= 6, correctness["checks"]
    assert records["gpu_gan_throughput-smoke.json"]["ratio"] > 0
    assert any(check["name"].startswith("classifier airbench94_muon fp16") and check["passed"]
               for check in correctness["checks"])
    time_to_94 = records["gpu_classifier_time_to_94-smoke.json"]
    assert time_to_94["settings"]["darkroom"]["optimizer"] == "muon"  # the airbench94_muon preset heads the section
    assert {"darkroom", "fastnet-gpu"} <= set(time_to_94["figures"]) and len(time_to_94["rows"]) == 2
    assert all(time_to_94["figures"][side]["test_acc"]["n"] == 1 for side in ("darkroom", "fastnet-gpu"))
    dawnbench = records["gpu_classifier_dawnbench-smoke.json"]["figures"]
    assert all(dawnbench[preset]["seconds_per_epoch"] > 0 for preset in ("wrn_22-dawnbench", "wrn_22-dawnbench-8gpu"))
    assert len(records["gpu_cyclegan_throughput-smoke.json"]["rows"]) == 4  # 2 batch sizes x (channels_last, default)
    assert all("cudnn_allow_tf32" in record["settings"]["float32_maths"] for record in records.values())
    assert result.stdout.rindex("comparison") > result.stdout.rindex("s in all")  # the table is printed last
    assert (tmp_path / gpu.LOG_NAME).read_text() == result.stdout  # the whole log, in $OUT


@pytest.mark.slow
def test_classifier_cpu_quick(tmp_path):
    run_module("benchmarks.classifier_cpu", ["--quick"], tmp_path, timeout=900)
    throughput = check_record(tmp_path / "classifier_cpu_throughput-quick.json")
    assert throughput["ratio"] > 0 and throughput["figures"]["darkroom"]["n"] == throughput["figures"]["plain"]["n"] == 2
    accuracy = check_record(tmp_path / "classifier_cpu_time_to_92-quick.json")
    assert accuracy["figures"]["darkroom"]["test_acc"]["n"] == 2 and len(accuracy["figures"]["plain"]["curves"]) == 1
    assert accuracy["settings"]["quick"] is True
    fastai = check_record(tmp_path / "classifier_cpu_fastai-quick.json")
    assert fastai["figures"]["status"] in ("run", "not run")
    recipe = check_record(tmp_path / "classifier_cpu_airbench_recipe-quick.json")
    techniques = recipe["figures"]["techniques"]
    names = [technique["name"] for technique in techniques]
    assert any(name.startswith("Muon") for name in names) and any(name.startswith("TTA: 6 views, airbench") for name in names)
    assert all({"name", "test_acc_mean", "baseline_acc_mean", "seeds"} <= set(t) and t["seeds"] == 1 for t in techniques)
    summed = next(t for t in techniques if t["name"].startswith("summed loss"))  # the same SGD update as the baseline
    assert abs(summed["test_acc_mean"] - summed["baseline_acc_mean"]) <= 0.01
    assert len(recipe["rows"]) == len(techniques) and recipe["figures"]["seconds"] > 0
    front = check_record(tmp_path / "classifier_cpu_pareto-quick.json")
    points = front["figures"]["points"]
    assert set(points) == {"darkroom", "plain"}  # fastai is not importable in this environment
    assert all({"budget", "train_time_s", "test_acc_mean", "test_acc_std", "seeds"} <= set(p) for p in points["plain"])
    assert [p["budget"] for p in points["darkroom"]] == [1, front["settings"]["record_preset"]]
    assert set(front["figures"]["time_to_93_5_s"]) == {"darkroom", "plain"}
    assert {"test_acc_mean", "train_time_s", "seeds"} <= set(front["figures"]["record_300s"])
    assert (tmp_path / "classifier_cpu_pareto-quick.png").stat().st_size > 1000


@pytest.mark.slow
def test_cyclegan_cpu_quality_quick_judges_the_worst_seed(tmp_path):
    """Two tiny seeds trained side by side and scored by `darkroom eval cyclegan`: the acceptance reads the worst; where
    the CPU multiplies bf16 in hardware, seed 0 again with --precision bf16 (its time beside fp32's, its scores)."""
    run_module("benchmarks.cyclegan_cpu", ["--quick", "--only", "quality", "--seeds", "2"], tmp_path, timeout=900)
    record = check_record(tmp_path / "cyclegan_cpu-quick.json")
    quality = record["figures"]["quality"]
    seeds = quality["seeds"]
    assert [seed["seed"] for seed in seeds] == [0, 1]
    assert seeds[0]["training"]["runs_side_by_side"] == seeds[1]["training"]["runs_side_by_side"] == 1
    assert seeds[0]["translation_cycle_l1_b2a"] == quality["darkroom_eval"]["translation_cycle_l1_b2a"]
    assert "--seed 1" in seeds[1]["training"]["command"]
    for d in ("a2b", "b2a"):
        assert quality["worst_seed"][f"translation_cycle_l1_{d}"] == max(s[f"translation_cycle_l1_{d}"] for s in seeds)
        assert quality["worst_seed"][f"translation_target_accuracy_{d}"] == min(
            s[f"translation_target_accuracy_{d}"] for s in seeds)
    assert seeds[0]["translation_cycle_l1_b2a"] != seeds[1]["translation_cycle_l1_b2a"]  # two seeds, two runs
    assert quality["acceptance"]["judged on"] == "the worst of 2 seed(s)"
    assert quality["acceptance"]["cycle_l1_b2a <= 0.1"] is False  # 4 iterations of 4-filter nets
    from darkroom import precision
    bf16 = ["fashion-mnist-shoes trained with --precision bf16, seed 0"] if precision.cpu_has_native_bf16() else []
    assert [row["comparison"].split(":")[0] for row in record["rows"]] == (
        ["fashion-mnist-shoes a2b", "fashion-mnist-shoes b2a"] + bf16 + ["fashion-mnist-shoes a2b", "fashion-mnist-shoes b2a"])
    if bf16:  # the same seed again with bf16 autocast, scored the same way
        assert "--precision bf16 --seed 0" in quality["bf16_seed0"]["training"]["command"]
        assert quality["bf16_seed0"]["translation_cycle_l1_b2a"] != seeds[0]["translation_cycle_l1_b2a"]


def test_flops_per_call_counts_forward_and_backward_of_a_matrix_product():
    """(8, 16) @ (16, 4): 2*8*16*4 = 1024 FLOPs forward; backward adds the weight gradient (1024) and, when the input
    needs one, the input gradient (1024)."""
    layer = torch.nn.Linear(16, 4, bias=False)
    frozen_input, input_with_grad = torch.randn(8, 16), torch.randn(8, 16, requires_grad=True)
    assert common.flops_per_call(lambda: layer(frozen_input).sum().backward()) == 2048
    assert common.flops_per_call(lambda: layer(input_with_grad).sum().backward()) == 3072
    assert common.matmul_gflops(size=64, repeats=2) > 0


@pytest.mark.slow
@needs_fashion
def test_gan_cpu_best_quick_scores_the_preset_against_issue_25s_bars(tmp_path):
    """The best preset through the CLI as is, `darkroom eval gan`, each bar judged from the measured value, in its own
    file (the earlier parts' speed rows keep the machine they were measured on)."""
    run_module("benchmarks.gan_cpu", ["--quick", "--only", "best"], tmp_path, timeout=600)
    record = check_record(tmp_path / "gan_cpu_best-quick.json")
    assert not (tmp_path / "gan_cpu-quick.json").exists()
    figures = record["figures"]
    assert figures["training"]["preset"] == "fashion-mnist-dcgan-cpu" and "--preset fashion-mnist-dcgan-cpu" in \
        figures["training"]["command"]
    measured, bars = figures["measured"], figures["bars"]
    assert measured["frechet_inception_distance"] == figures["darkroom_eval"]["frechet_inception_distance"]
    assert figures["met"]["frechet_inception_distance"] == (measured["frechet_inception_distance"] <= 25.0)
    assert figures["met"]["modes_hit"] == (measured["modes_hit"] >= 10)
    assert figures["all_met"] == all(figures["met"].values())
    assert set(bars) == set(measured) and (tmp_path / "gan_cpu_best-quick.png").stat().st_size > 100


@pytest.mark.slow
@needs_fashion
def test_cyclegan_cpu_pairs_quick_trains_each_pair_with_the_default_and_names_the_worst(tmp_path):
    """Each pair through `darkroom train cyclegan --data fashion-mnist:A,B` with no preset (the small-images default
    chosen for 28 px images), scored by `darkroom eval cyclegan`; the worst pair and the acceptance read every pair."""
    run_module("benchmarks.cyclegan_cpu", ["--quick", "--only", "pairs", "--pairs", "sneaker,ankle-boot",
                                           "--pairs", "trouser,bag"], tmp_path, timeout=600)
    record = check_record(tmp_path / "cyclegan_cpu_pairs-quick.json")
    pairs = record["figures"]["pairs"]
    assert [(p["a"], p["b"]) for p in pairs] == [("sneaker", "ankle-boot"), ("trouser", "bag")]
    keys = {"a", "b", "accuracy_a2b", "accuracy_b2a", "cycle_l1_a2b", "cycle_l1_b2a", "fid_a2b", "fid_b2a", "seconds"}
    assert all(keys <= set(p) for p in pairs)
    assert all("small-images" in p["default_chosen"] and "--preset" not in p["command"] for p in pairs)
    assert pairs[0]["accuracy_a2b"] != pairs[1]["accuracy_a2b"] or pairs[0]["fid_a2b"] != pairs[1]["fid_a2b"]
    # the lowest worse-direction accuracy; a tie (tiny quick nets) goes to the higher cycle error
    worst = min(pairs, key=lambda p: (min(p["accuracy_a2b"], p["accuracy_b2a"]), -max(p["cycle_l1_a2b"], p["cycle_l1_b2a"])))
    assert record["figures"]["worst_pair"] == f"{worst['a']},{worst['b']}"
    assert record["figures"]["worst"]["accuracy"] == min(min(p["accuracy_a2b"], p["accuracy_b2a"]) for p in pairs)
    assert record["figures"]["acceptance"]["pairs"] == 2 and len(record["rows"]) == 2
    assert 0.9 <= pairs[1]["real_judged_a"] <= 1.0  # the judge on real trousers
    assert (tmp_path / "cyclegan_cpu_pairs-quick.png").stat().st_size > 1000


@pytest.mark.slow
def test_cyclegan_cpu_speed_quick_does_the_plain_loops_work(tmp_path):
    """darkroom's step makes fewer, batched generator calls but the same convolutions as the plain loop: its FLOPs per
    iteration are the plain loop's to within 2% (the first convolution's input gradient over the batched real images);
    a bf16 side is measured exactly when this CPU has hardware bf16."""
    from darkroom import precision
    run_module("benchmarks.cyclegan_cpu", ["--quick", "--only", "speed"], tmp_path, timeout=600)
    record = check_record(tmp_path / "cyclegan_cpu-quick.json")
    speed = record["figures"]["speed"]
    assert speed["darkroom"]["gflop_per_it"] == pytest.approx(speed["reference"]["gflop_per_it"], rel=0.02)
    assert speed["darkroom"]["gflop_per_it"] != speed["reference"]["gflop_per_it"]  # counted per side, not copied
    assert 0 < speed["reference"]["fraction_of_fp32_matmul_peak"] < 1.5
    sides = [row["comparison"].split("darkroom ")[-1] for row in record["rows"]]
    assert sides == ["fp32 (CPU)"] + (["bf16 autocast (CPU)"] if precision.cpu_has_native_bf16() else [])


def test_a_benchmarks_own_outputs_do_not_mark_its_record_dirty(tmp_path, monkeypatch):
    """A benchmark copies its grid into benchmarks/results/ before it writes its JSON: that is not a dirty checkout,
    but a changed tracked file anywhere else is."""
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "grid.png").write_bytes(b"old")
    (tmp_path / "train.py").write_text("lr = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    monkeypatch.setattr(common, "REPO", tmp_path)
    (tmp_path / "benchmarks" / "results" / "grid.png").write_bytes(b"new")
    assert common.git_state()["dirty"] is False
    (tmp_path / "train.py").write_text("lr = 2\n")
    assert common.git_state()["dirty"] is True


def test_cpu_vector_extension_names_the_widest_unit():
    """Planted /proc/cpuinfo texts: the record tells an AVX2 machine from an AVX-512 one with hardware bf16."""
    avx2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx fma avx2\n"
    zen4 = "model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
    assert common.cpu_vector_extension(avx2) == "AVX2"
    assert common.cpu_vector_extension(zen4) == "AVX-512 BF16"
    assert common.cpu_vector_extension(zen4.replace(" avx512_bf16", "")) == "AVX-512"
    assert common.cpu_vector_extension("model name\t: ARM\n") == ""


def test_make_bench_sends_the_fastai_part_to_the_fastai_python_when_it_exists(tmp_path):
    """`make bench` runs classifier_cpu's fastai part in the environment that has fastai, the rest in this one; with no
    such environment the script runs whole here (and records the part as not run)."""
    from benchmarks import run_cpu

    args = lambda python: run_cpu.argparse.Namespace(only=["classifier_cpu", "gan_cpu"], fastai_python=str(python))
    fastai_python = tmp_path / "bin" / "python"
    assert run_cpu.planned_runs(args(fastai_python)) == [("classifier_cpu", sys.executable, []),
                                                         ("gan_cpu", sys.executable, [])]
    fastai_python.parent.mkdir()
    fastai_python.write_text("")
    assert run_cpu.planned_runs(args(fastai_python)) == [
        ("classifier_cpu", sys.executable, ["--only", "throughput", "--only", "accuracy", "--only", "airbench-recipe"]),
        ("classifier_cpu", str(fastai_python), ["--only", "fastai", "--only", "pareto"]),
        ("gan_cpu", sys.executable, [])]


def test_an_evaluation_record_without_the_reference_libraries_is_tabled_without_a_ratio(tmp_path):
    """eval_cpu.py run where torch-fidelity and prdc are absent writes no references: the table says so, no ratio."""
    record = {"settings": {"n_real": 10, "n_fake": 10, "dim": 4}, "darkroom": {"seconds": {"total": 2.0}},
              "references": {}, "agreement": {}, "date": "2026-11-29", "git_commit": "abc"}
    (tmp_path / "eval_cpu.json").write_text(json.dumps(record))
    [row] = table.load_rows([tmp_path / "eval_cpu.json"])
    assert row["darkroom"] == 2.0 and row["baseline"] is None and row["ratio"] is None and row["met"] is True
    assert "no agreement checked" in row["note"]


@pytest.mark.slow
def test_gan_cpu_speed_quick_measures_a_bf16_side_exactly_where_the_cpu_has_bf16(tmp_path):
    from darkroom import precision
    run_module("benchmarks.gan_cpu", ["--quick", "--only", "speed"], tmp_path, timeout=600)
    record = check_record(tmp_path / "gan_cpu-quick.json")
    bf16 = precision.cpu_has_native_bf16()
    for setting, sides in record["figures"]["speed"].items():
        assert set(sides) == {"darkroom", "reference"} | ({"darkroom_bf16"} if bf16 else set())
    assert [row["comparison"] for row in record["rows"]] == [
        name for setting in ("wgan-32", "fashion-mnist-cpu")
        for name in [f"GAN generator iteration, {setting} setting: it/s (CPU)"]
        + ([f"GAN generator iteration, {setting} setting: it/s, darkroom bf16 autocast (CPU)"] if bf16 else [])]


def test_a_pairs_sweep_at_another_seed_writes_beside_seed_0s_record():
    """Seed 0's record is the issue's table; a sweep at seed N writes its own, so the worst of the seeds can be read."""
    import argparse
    from benchmarks.cyclegan_cpu_pairs import record_name
    names = {(seed, quick): record_name(argparse.Namespace(pair_seed=seed, quick=quick))
             for seed in (0, 1, 2) for quick in (False, True)}
    assert names[(0, False)] == "cyclegan_cpu_pairs" and names[(0, True)] == "cyclegan_cpu_pairs-quick"
    assert names[(1, False)] == "cyclegan_cpu_pairs-seed1" and names[(2, True)] == "cyclegan_cpu_pairs-seed2-quick"
    assert len(set(names.values())) == len(names)
