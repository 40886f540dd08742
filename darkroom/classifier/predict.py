"""Classifier evaluation: loss and accuracy over a resident or streamed set, with flip or multi-view TTA, summed over ranks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from darkroom import dist, precision
from darkroom.data.resident import ResidentImages
from darkroom.classifier.data import Images


def tta_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """none: x; flip: x and its mirror; multi and weighted: those plus 1-pixel shifts both ways (up-left, down-right,
    reflection-padded) and their mirrors (airbench's 6 views), in that order."""
    views = [x]
    if tta in ("flip", "multi", "weighted"):
        views.append(x.flip(3))
    if tta in ("multi", "weighted"):
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        h, w = x.shape[2], x.shape[3]
        for shifted in (padded[:, :, :h, :w], padded[:, :, 2:, 2:]):
            views += [shifted, shifted.flip(3)]
    return views


def tta_weights(tta: str) -> list[float] | None:
    """Each view's weight in the average (None: equal). weighted is airbench94's tta_level 2: the mean of the image's
    and its mirror's logits, averaged half and half with the mean over the 4 shifted views."""
    return [0.25, 0.25, 0.125, 0.125, 0.125, 0.125] if tta == "weighted" else None


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, device: torch.device, precision_name: str, tta: str) -> torch.Tensor:
    """Logits averaged over the TTA views (tta_weights), float32. x: (B, C, H, W) normalised."""
    with precision.autocast(device, precision_name):
        # a copy of each view's logits: a CUDA-graphed net (--compile-mode max-autotune) reuses its output memory
        logits = torch.stack([model(view).to(torch.float32, copy=True) for view in tta_views(x, tta)])
    weights = tta_weights(tta)
    if weights is None:
        return logits.mean(0)
    return (logits * torch.tensor(weights, device=logits.device).view(-1, 1, 1)).sum(0)


@torch.no_grad()
def evaluate(model: nn.Module, data: Images, device: torch.device, precision_name: str,
             tta: str) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over the whole set, ranks' shares summed."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    for x, y in data.eval_batches(1000):
        logits = predict_logits(model, x, device, precision_name, tta)
        totals[0] += F.cross_entropy(logits, y, reduction="sum").double()
        totals[1] += (logits.argmax(1) == y).sum()
        totals[2] += y.numel()
    dist.all_reduce_sum(totals)
    model.train(was_training)
    return float(totals[0] / totals[2]), float(totals[1] / totals[2])


@torch.no_grad()
def confusion(model: nn.Module, data: Images, device: torch.device, precision_name: str, tta: str,
              n_classes: int) -> torch.Tensor:
    """(n_classes, n_classes) counts, rows true class, columns predicted."""
    model.eval()
    matrix = torch.zeros(n_classes, n_classes, dtype=torch.long, device=device)
    for x, y in data.eval_batches(1000):
        predicted = predict_logits(model, x, device, precision_name, tta).argmax(1)
        matrix.index_put_((y, predicted), torch.ones_like(y), accumulate=True)
    return matrix.cpu()


def load_run(run_dir: str, device: torch.device) -> tuple[nn.Module, dict, dict]:
    """(model in eval mode with the evaluation weights, config dict, meta) from a classifier run folder."""
    from pathlib import Path

    from darkroom import checkpoint
    from darkroom.classifier.recipe import build_net
    from darkroom.errors import UserError

    path = Path(run_dir)
    saved = checkpoint.load(path / "checkpoints" / "last.pt" if path.is_dir() else path)
    if saved.get("task") != "classifier":
        raise UserError(f"{run_dir} is a {saved.get('task', 'unknown')} run, not a classifier run")
    meta = saved["meta"]
    config = saved["config"]
    model = build_net(config["arch"], meta["channels"], len(meta["classes"]), config.get("norm_eps"),
                      config.get("logit_scale", 0.0))
    model.load_state_dict(saved["ema"] if saved.get("ema") is not None else saved["model"])
    return model.to(device).eval(), saved["config"], meta


def preprocess(path: str, channels: int, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """An image file of any size and mode -> normalised (1, C, size, size): shorter side resized, centre crop."""
    from PIL import Image

    from darkroom.data.images import open_image, to_uint8_tensor

    image = open_image(path, "L" if channels == 1 else "RGB")
    scale = size / min(image.size)
    resized = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))), Image.BILINEAR)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    x = to_uint8_tensor(resized.crop((left, top, left + size, top + size))).float().unsqueeze(0)
    return (x / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def predict_files(run_dir: str, paths: list[str], top_k: int, device: torch.device) -> list[list[tuple[str, float]]]:
    """Top-k (class, probability) for each image file."""
    model, config, meta = load_run(run_dir, device)
    tta = config.get("tta", "none") if config.get("flip", True) else "none"
    results = []
    for path in paths:
        x = preprocess(path, meta["channels"], meta["image_size"], meta["mean"], meta["std"]).to(device)
        probabilities = predict_logits(model, x, device, "fp32", tta).softmax(1)[0]
        values, indices = probabilities.topk(min(top_k, probabilities.numel()))
        results.append([(meta["classes"][i], float(v)) for v, i in zip(values.tolist(), indices.tolist())])
    return results


def evaluate_run(run_dir: str, device: torch.device, data_root: str | None = None) -> dict:
    """Test loss, accuracy and per-class accuracy of a classifier run on its data's test split."""
    from darkroom.data import sources

    model, config, meta = load_run(run_dir, device)
    test = sources.load(config["data"], "test", data_root or config.get("data_root"), 1.0, config["seed"], config.get("image_size"))
    data = ResidentImages(test, device, meta["mean"], meta["std"], 1000)
    tta = config.get("tta", "none") if config.get("flip", True) else "none"
    loss, accuracy = evaluate(model, data, device, "fp32", tta)
    matrix = confusion(model, data, device, "fp32", tta, len(meta["classes"]))
    per_class = (matrix.diag().double() / matrix.sum(1).clamp_min(1)).tolist()
    return {"test_loss": loss, "test_acc": accuracy, "n": len(test),
            **{f"acc_{name}": value for name, value in zip(meta["classes"], per_class)}}
