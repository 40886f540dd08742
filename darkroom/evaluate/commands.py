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
from darkroom.evaluate.score import Judges, not_measurable_keys, print_table, score_images, write_json
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


def real_split(spec: str, n: int | None, seed: int, size: int | None = None) -> torch.Tensor:
    """'fashion-mnist:test', 'cifar10:train', 'fashion-mnist:sneaker:test', a folder (every image under it) or a
    .csv list (every row; 'list.csv:test' its seeded hold-out) -> uint8 images; a seeded n of them when n is given.
    `size`: folder and CSV images are resized (shorter side) and centre-cropped to it, as the GAN loads them."""
    name, _, split = spec.rpartition(":")
    explicit = split in ("train", "test") and bool(name)
    if not explicit:
        name, split = spec, "test"
    path = Path(name.removeprefix("folder:").removeprefix("csv:"))
    if path.is_dir() and not (path / "train").is_dir():
        return decoded_subset(image_list(path), n, seed, size)
    if path.suffix.lower() == ".csv" and path.is_file() and not explicit:
        from darkroom.data.folders import read_csv_list
        return decoded_subset(read_csv_list(path)[0], n, seed, size)
    images = sources.load(name, split, seed=seed, size=size).images
    if n is not None and n < len(images):
        images = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]
    return images


def image_list(folder: Path) -> list[Path]:
    if not Path(folder).is_dir():
        raise UserError(f"image folder {folder} does not exist" if not Path(folder).exists() else f"{folder} is not a folder")
    paths = list_images(folder)
    if not paths:
        raise UserError(f"image folder {folder} holds no images")
    return paths


def decoded_subset(paths: list[Path], n: int | None, seed: int, size: int | None) -> torch.Tensor:
    """A seeded n of the files (the same ones real_split picks from decoded images), decoded to uint8 (n, C, H, W)."""
    from darkroom.data.folders import decode_files

    if n is not None and n < len(paths):
        order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed))
        paths = [paths[i] for i in order[:n].tolist()]
    return decode_files(paths, None, size)


def folder_images(folder: Path, size: int | None = None) -> torch.Tensor:
    return decoded_subset(image_list(folder), None, 0, size)


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
             device: torch.device, real: str | None = None) -> dict:
    """n samples from the run's generator vs held-out real images, `real` (a folder, a .csv list or dataset:split)
    or else its data's test split; memorization and the floor against 10k of the images it trained on.

    Data without a test split (a folder, a CSV list, an LSUN lmdb: the GAN trains on every image) and no `real`:
    the samples are compared with the training images themselves; the scores that need held-out images are left
    out and listed in `not_measurable`, and `reference_note` (also printed) says why."""
    from darkroom.runs import read_config
    from darkroom.gan import generate

    started = time.time()
    config = read_config(Path(run_dir))["config"]
    data = str(config["data"])
    if data.startswith("toy:"):
        raise UserError(f"{run_dir} is a toy run: its mode coverage is in its metrics.jsonl, not scored on images")
    if real is not None:
        check_real(real)
    fake = generate(run_dir, n, seed, device)
    judges = make_judges(features_run, real or data, inception_weights, device)
    has_test_split = sources.parse_spec(data)[0] in sources.BUILTIN
    note = None
    if real is not None or has_test_split:
        reference = real_split(real or f"{data}:test", n, seed, fake.shape[-1] if real else None)
        result = score_images(fake, reference, training_images(config, 10000, seed + 7), judges, seed, Path(run_dir))
    else:
        result = score_images(fake, training_images(config, n, seed), None, judges, seed, Path(run_dir))
        note = (f"the reference is the training data ({data} has no held-out test split; pass --real with held-out "
                "images): the memorization scores and the floor are therefore not measurable")
        result.update(reference_note=note, not_measurable=not_measurable_keys(result))
    result.update(reference=real or (f"{data}:test" if has_test_split else f"{data} (the training images)"),
                  seconds=time.time() - started, heldout_is_unseen=float(note is None))
    write_json(result, Path(run_dir) / "eval.json")
    if note:
        print(f"note: {note}")
    print_table(result)
    return result


def check_real(spec: str) -> None:
    """--real names existing images: a folder, a .csv file, or a built-in dataset (optionally :split)."""
    name, _, split = spec.rpartition(":")
    name = name if split in ("train", "test") and name else spec
    path = Path(name.removeprefix("folder:").removeprefix("csv:"))
    if sources.parse_spec(name)[0] not in sources.BUILTIN and not path.exists():
        raise UserError(f"--real {spec} is neither an existing folder or .csv list nor a dataset split such as "
                        "fashion-mnist:test")


def training_images(config: dict, n: int, seed: int) -> torch.Tensor:
    """A seeded n of the images a GAN run trained on (its data's train split; a folder's, CSV's or lmdb's files as
    the trainer loads them: its --sample, --on-bad-image and channels), centre-cropped to its image size."""
    from darkroom.config import from_dict
    from darkroom.gan import CONFIG, build_image_batches, data_settings

    data = str(config["data"])
    if sources.parse_spec(data)[0] in sources.BUILTIN:
        return real_split(f"{data}:train", n, seed)
    settings = data_settings(from_dict(CONFIG, config))
    batches = build_image_batches(settings, 1, 0, 1, torch.device("cpu"))
    pick = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed))[:n]
    if batches.kind == "memory":
        images = batches.images[pick]  # (n, C, L, L), L the load size
        offset = (images.shape[-1] - settings.size) // 2
        return images[..., offset:offset + settings.size, offset:offset + settings.size].contiguous()
    batches.dataset.train = False  # streamed: each item centre-cropped to the image size
    return torch.stack([batches.dataset[index][0] for index in pick.tolist()])


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
