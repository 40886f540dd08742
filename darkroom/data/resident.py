"""Device-resident image sets: uint8 tensors on the training device, augmented there per batch.

No DataLoader, no worker processes, no host->device copy per step: the record holders' (airbench) way
for sets that fit in device memory. Augmentation draws are made for the whole global batch on every
rank and each rank keeps its slice, so results do not depend on the number of ranks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from darkroom.data.arrays import ImageArrays


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 (N, C, H, W) in [0, 1] units, one vectorised float64 pass."""
    n, c = images.shape[0], images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, 8192):  # chunks bound the float64 copy's memory
        chunk = images[start:start + 8192].to(torch.float64).div_(255).transpose(0, 1).reshape(c, -1)
        total += chunk.sum(1)
        total_sq += chunk.square().sum(1)
    count = images[0].numel() // c * n
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return mean.float(), std.float()


@dataclass(frozen=True)
class Augment:
    pad: int = 4  # reflection padding before a random crop back to size; 0 = no crop
    flip: bool = True  # random horizontal flip; off where a flip changes the label (digits, text)
    alternating_flip: bool = False  # airbench: flip exactly the samples not flipped last epoch

    def draw(self, global_index: torch.Tensor, epoch: int, generator: torch.Generator,
             flip_bits: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(crop offsets (2, B), flips (B,)) for the global batch `global_index`, drawn the same on every rank, on the
        generator's device (no host draw, no copy: the training loop makes no host sync here);
        flip_bits: the set's fixed per-image bits (alternating_flip_bits), used when alternating_flip is on."""
        b = global_index.shape[0]
        crop_offsets = torch.randint(0, 2 * self.pad + 1, (2, b), generator=generator, device=generator.device)
        flips = torch.rand(b, generator=generator, device=generator.device) < 0.5
        if self.alternating_flip:  # flip_bits live where the set does (alternating_flip_bits(n, device))
            flips = _on(_on(flip_bits, global_index.device)[global_index] ^ bool(epoch % 2), flips.device)
        return crop_offsets, flips

    def apply(self, x: torch.Tensor, crop_offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        """Crop and flip x (b, C, H, W) float, a rank's share of the batch, by its share of `draw`'s figures."""
        if self.pad > 0:
            x = _crop_at(x, self.pad, _on(crop_offsets, x.device))
        if self.flip:
            x = torch.where(_on(flips, x.device)[:, None, None, None], x.flip(3), x)
        return x


def _on(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`, copied only when it lives elsewhere (in the trainers it never does)."""
    return tensor if tensor.device == device else tensor.to(device)


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """x (B, C, H, W) float scaled to size x size (bilinear, antialiased), keeping its memory format: progressive
    resizing trains early epochs on smaller, cheaper images."""
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.contiguous(memory_format=memory_format)


def alternating_flip_bits(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Each image's fixed flip bit of airbench's alternating flip (seeded on the CPU, so every rank, device and resume
    agree), (n,) bool on `device`: drawn and copied once, not at every step."""
    bits = torch.rand(n, generator=torch.Generator().manual_seed(0)) < 0.5
    return bits if device is None else bits.to(device)


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Reflection-pad by `pad`, then crop each image at its own random offset. x: (B, C, H, W) float."""
    offsets = torch.randint(0, 2 * pad + 1, (2, x.shape[0]), generator=generator, device=generator.device)
    return _crop_at(x, pad, _on(offsets, x.device))


class ResidentImages:
    """An ImageArrays on `device`, yielding normalised float batches (this rank's slice of each global batch)."""

    def __init__(self, arrays: ImageArrays, device: torch.device, mean: torch.Tensor, std: torch.Tensor,
                 batch_size: int, rank: int = 0, world_size: int = 1, channels_last: bool = False) -> None:
        self.images = arrays.images.to(device)
        self.labels = arrays.labels.to(device)
        self.device = device
        self.mean = (mean * 255).to(device).view(1, -1, 1, 1)
        self.std = (std * 255).to(device).view(1, -1, 1, 1)
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.channels_last = channels_last
        self.flip_bits: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def steps_per_epoch(self, drop_last: bool = True) -> int:
        n = len(self)
        return n // self.batch_size if drop_last else -(-n // self.batch_size)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _rank_slice(self, global_index: torch.Tensor) -> slice:
        per_rank = -(-global_index.shape[0] // self.world_size)
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        """The epoch's permutation, identical on every rank (same generator state)."""
        return torch.randperm(len(self), generator=generator, device=generator.device).to(self.device)

    def train_batch(self, order: torch.Tensor, step: int, epoch: int, augment: Augment,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `step` of the epoch whose permutation is `order`; augmentation drawn for the global batch."""
        global_index = order[step * self.batch_size:(step + 1) * self.batch_size]
        if augment.alternating_flip and self.flip_bits is None:
            self.flip_bits = alternating_flip_bits(len(self), self.device)
        crop_offsets, flips = augment.draw(global_index, epoch, generator, self.flip_bits)
        mine = self._rank_slice(global_index)
        x = self.images[global_index[mine]].float()
        x = augment.apply((x - self.mean) / self.std, crop_offsets[:, mine], flips[mine])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[global_index[mine]]

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of the set in order, un-augmented (ranks take interleaved chunks)."""
        for start in range(self.rank * batch_size, len(self), batch_size * self.world_size):
            images = self.images[start:start + batch_size]
            yield self.normalise(images), self.labels[start:start + batch_size]


def _crop_at(x: torch.Tensor, pad: int, offsets: torch.Tensor) -> torch.Tensor:
    """Crop image i of the reflection-padded batch at (offsets[0, i], offsets[1, i]); offsets: (2, B)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = offsets[0][:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[1][:, None] + torch.arange(w, device=x.device)  # (B, W)
    batch_index = torch.arange(b, device=x.device)[:, None, None, None]
    channel_index = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]
