"""darkroom eval gan | cyclegan | images: load what is judged, score it, print a table, write eval.json and figures.

    darkroom eval gan runs/gan-...  --n 10000
    darkroom eval cyclegan runs/cyclegan-...
    darkroom eval images --fake samples/ --real fashion-mnist:test --train fashion-mnist:train
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from darkroom.data import sources
from darkroom.data.images import list_images
from darkroom.errors import UserError
from darkroom.evaluate.features import DomainFeatures, builtin_feature_run
from darkroom.evaluate.score import Judges, print_table, score_images, write_json
from darkroom.metrics.fid import fid_from_features
from darkroom.metrics.translation import translation_scores


def make_judges(features_run: str | None, dataset: str, inception_weights: str | None, device: torch.device) -> Judges:
    """The domain classifier (`--features RUN`, else the built-in one for `dataset`) and optional Inception."""
    run_dir = Path(features_run) if features_run else builtin_feature_run(sources.parse_spec(dataset)[0])
    if not (run_dir / "checkpoints" / "last.pt").exists():
        raise UserError(f"--features {run_dir} is not a classifier run folder (no checkpoints/last.pt)")
    inception = None
    if inception_weights is not None:
        from darkroom.metrics.features import load_inception
        inception = load_inception(Path(inception_weights) if inception_weights != "cache" else None)
    return Judges(DomainFeatures(run_dir, device), inception, device)


def real_split(spec: str, n: int | None, seed: int) -> torch.Tensor:
    """'fashion-mnist:test', 'cifar10:train', 'fashion-mnist:sneaker:test' or a folder -> uint8 images."""
    name, _, split = spec.rpartition(":")
    if split not in ("train", "test") or not name:
        name, split = spec, "test"
    if Path(name).is_dir() and not (Path(name) / "train").is_dir():
        images = folder_images(Path(name))
    else:
        images = sources.load(name, split, seed=seed).images
    if n is not None and n < len(images):
        images = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]
    return images


def folder_images(folder: Path) -> torch.Tensor:
    from darkroom.data.folders import decode_files

    if not Path(folder).is_dir():
        raise UserError(f"image folder {folder} does not exist" if not Path(folder).exists() else f"{folder} is not a folder")
    paths = list_images(folder)
    if not paths:
        raise UserError(f"image folder {folder} holds no images")
    return decode_files(paths, None, None)


def eval_images(fake_dir: str, real: str, train: str | None, features_run: str | None, inception_weights: str | None,
                n: int | None, seed: int, out: Path | None, device: torch.device) -> dict:
    started = time.time()
    fake = folder_images(Path(fake_dir))
    if n is not None:
        fake = fake[:n]
    reference = real_split(real, len(fake), seed)
    judges = make_judges(features_run, real, inception_weights, device)
    train_images = real_split(train, 10000, seed) if train else None
    if train_images is None:
        raise UserError("pass --train (the real images the model learned from) so memorization and the floor can be measured")
    result = score_images(fake, reference, train_images, judges, seed, out.parent if out else None)
    result["seconds"] = time.time() - started
    if out:
        write_json(result, out)
    print_table(result)
    return result


def eval_gan(run_dir: str, n: int, features_run: str | None, inception_weights: str | None, seed: int,
             device: torch.device) -> dict:
    """n samples from the run's generator vs its data's test split; memorization against 10k training images."""
    from darkroom.runs import read_config
    from darkroom.gan import generate

    started = time.time()
    config = read_config(Path(run_dir))["config"]
    if str(config["data"]).startswith("toy:"):
        raise UserError(f"{run_dir} is a toy run: its mode coverage is in its metrics.jsonl, not scored on images")
    fake = generate(run_dir, n, seed, device)
    reference = real_split(f"{config['data']}:test", n, seed)
    train = real_split(f"{config['data']}:train", 10000, seed + 7)
    judges = make_judges(features_run, config["data"], inception_weights, device)
    result = score_images(fake, reference, train, judges, seed, Path(run_dir))
    result.update(seconds=time.time() - started, heldout_is_unseen=float(sources.parse_spec(config["data"])[0] in sources.BUILTIN))
    write_json(result, Path(run_dir) / "eval.json")
    print_table(result)
    return result


def eval_cyclegan(run_dir: str, features_run: str | None, inception_weights: str | None, seed: int,
                  device: torch.device) -> dict:
    """Translate every held-out test image of each domain; target-class accuracy, FID to the real target, cycle L1."""
    from darkroom.data.idx import CLASSES
    from darkroom.runs import read_config
    from darkroom.cyclegan import load_generators, translate_images

    started = time.time()
    saved = read_config(Path(run_dir))
    if saved.get("task", "cyclegan") != "cyclegan":
        raise UserError(f"{run_dir} holds a {saved['task']} run, not a CycleGAN run")
    data = saved["config"]["data"]
    name, classes = sources.parse_spec(data)
    if name not in ("fashion-mnist", "mnist") or len(classes) != 2:
        raise UserError(f"darkroom eval cyclegan judges class pairs of fashion-mnist or mnist; {run_dir} trained on "
                        f"{data}: use darkroom eval images on translated folders")
    g_ab, g_ba, meta = load_generators(run_dir, device)
    test, train = sources.load(data, "test"), sources.load(data, "train")
    judges = make_judges(features_run, name, inception_weights, device)
    result: dict = {"feature_network": judges.name, "classifier": judges.domain.name}
    for direction, source, target, forward, backward in (("a2b", 0, 1, g_ab, g_ba), ("b2a", 1, 0, g_ba, g_ab)):
        x = test.images[test.labels == source]
        fake = translate_images(forward, x, device, scale_to=meta["load_size"])
        back = translate_images(backward, fake, device, scale_to=meta["load_size"])
        f_fake, p_fake = judges(fake)
        f_real, _ = judges(test.images[test.labels == target])
        f_floor, _ = judges(train.images[train.labels == target][:len(x)])
        target_class = CLASSES[name].index(classes[target])
        cycle = (x.float() - back.float()) / 127.5  # residuals on the [-1, 1] scale
        scores = translation_scores(p_fake, target_class, f_fake, f_real, cycle)
        result.update({f"{key}_{direction}": value for key, value in scores.items()})
        result[f"translation_fid_{direction}_floor"] = fid_from_features(f_floor, f_real)  # real train vs real test
        result[f"n_{direction}"] = float(len(x))
    result["seconds"] = time.time() - started
    write_json(result, Path(run_dir) / "eval.json")
    print_table(result)
    return result


def read_eval_json(path: str) -> dict:
    """A run folder's eval.json (or an eval.json file itself), or one sentence saying why not."""
    import json

    file = Path(path) / "eval.json" if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise UserError(f"{path} holds no eval.json: run darkroom eval on it first")
    try:
        return json.loads(file.read_text())
    except ValueError as error:
        raise UserError(f"{file} is not valid JSON ({error})") from error


def compare_runs(run_dirs: list[str]) -> list[str]:
    """For every metric with an interval in each run's eval.json and every pair of runs, one line: both values
    with their 95% intervals, and whether the difference is beyond them (the intervals do not overlap: for two
    equal-width intervals a two-sided test at about p < 0.006) or within them.

    Scores from different feature networks or sample counts do not compare: such runs get one line saying so.
    """
    from itertools import combinations

    from darkroom.metrics.intervals import separated

    if len(run_dirs) < 2:
        raise UserError("darkroom eval compare needs at least two evaluated runs")
    results = {name: read_eval_json(name) for name in run_dirs}
    lines = []
    reference = run_dirs[0]
    for name in run_dirs[1:]:
        for key in ("feature_network", "n_fake"):
            if results[name].get(key) != results[reference].get(key):
                lines.append(f"{name} and {reference} differ in {key} ({results[name].get(key)} vs "
                             f"{results[reference].get(key)}): their scores do not compare")
    if lines:
        return lines
    first = results[reference]
    metrics = [key for key in first if f"{key}_ci_low" in first and not key.endswith("_floor")
               and all(f"{key}_ci_low" in result for result in results.values())]
    if not metrics:
        return ["no metric has an interval in every eval.json (evaluated before intervals were added?): "
                "run darkroom eval again"]

    def shown(result: dict, key: str) -> str:
        return f"{result[key]:.5g} [{result[f'{key}_ci_low']:.4g}, {result[f'{key}_ci_high']:.4g}]"

    for key in metrics:
        for a, b in combinations(run_dirs, 2):
            ra, rb = results[a], results[b]
            if not all(isinstance(ra.get(k), (int, float)) and isinstance(rb.get(k), (int, float))
                       for k in (key, f"{key}_ci_low", f"{key}_ci_high")):
                lines.append(f"{key}: {a} vs {b}: no interval (not finite)")
                continue
            beyond = separated(ra[f"{key}_ci_low"], ra[f"{key}_ci_high"], rb[f"{key}_ci_low"], rb[f"{key}_ci_high"])
            verdict = (f"{b} {'higher' if rb[key] > ra[key] else 'lower'}, beyond the intervals" if beyond
                       else "within the intervals")
            lines.append(f"{key}: {a} {shown(ra, key)} vs {b} {shown(rb, key)}: {verdict}")
    return lines
