"""Device-resident data: exact channel statistics, crops are windows of the padded image, shards tile the batch."""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from darkroom.data.arrays import ImageArrays
from darkroom.data.resident import Augment, ResidentImages, channel_stats, random_crop, resize_batch


def planted(n=64, c=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)
    return ImageArrays(images, torch.arange(n) % 10, [str(i) for i in range(10)], "planted")


def test_channel_stats_match_numpy():
    arrays = planted(n=20000, size=4)  # crosses the 8192-image chunk boundary
    mean, std = channel_stats(arrays.images)
    data = arrays.images.numpy().astype(np.float64) / 255
    assert np.allclose(mean.numpy(), data.mean(axis=(0, 2, 3)), atol=1e-6)
    assert np.allclose(std.numpy(), data.std(axis=(0, 2, 3)), atol=1e-6)


def test_random_crop_is_a_window_of_the_reflection_padded_image():
    x = torch.randn(16, 2, 6, 6)
    out = random_crop(x, 2, torch.Generator().manual_seed(1))
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(16):
        windows = [padded[i, :, r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert not all(torch.equal(out[i], x[i]) for i in range(16))  # some crops moved


def test_train_batches_cover_epoch_and_flip_only_mirrors():
    arrays = planted(n=40, c=1, size=6)
    data = ResidentImages(arrays, torch.device("cpu"), torch.zeros(1), torch.ones(1) / 255, batch_size=8)
    g = torch.Generator().manual_seed(0)
    order = data.epoch_order(g)
    seen = []
    for step in range(data.steps_per_epoch()):
        x, y = data.train_batch(order, step, 0, Augment(pad=0, flip=True), g)
        for image, label in zip(x, y):
            index = int(label)  # labels are i % 10: find the source image among candidates
            candidates = arrays.images[arrays.labels == index].float()
            assert any(torch.equal(image, c) or torch.equal(image, c.flip(2)) for c in candidates)
        seen += y.tolist()
    assert sorted(seen) == sorted(arrays.labels.tolist())


def test_alternating_flip_flips_each_image_every_other_epoch():
    arrays = planted(n=16, c=1, size=4)
    data = ResidentImages(arrays, torch.device("cpu"), torch.zeros(1), torch.ones(1) / 255, batch_size=16)
    order = torch.arange(16)
    aug = Augment(pad=0, flip=True, alternating_flip=True)
    x0, _ = data.train_batch(order, 0, 0, aug, torch.Generator().manual_seed(0))
    x1, _ = data.train_batch(order, 0, 1, aug, torch.Generator().manual_seed(5))
    source = arrays.images.float()
    flipped0 = torch.tensor([not torch.equal(x0[i], source[i]) for i in range(16)])
    flipped1 = torch.tensor([not torch.equal(x1[i], source[i]) for i in range(16)])
    assert torch.equal(flipped0, ~flipped1)


def test_rank_shards_tile_the_global_batch():
    arrays = planted(n=32, c=1, size=5)
    args = (torch.device("cpu"), torch.zeros(1), torch.ones(1) / 255)
    aug = Augment(pad=1, flip=True)
    order = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    whole, labels = ResidentImages(arrays, *args, batch_size=8).train_batch(order, 1, 0, aug, torch.Generator().manual_seed(7))
    parts = [ResidentImages(arrays, *args, batch_size=8, rank=r, world_size=2).train_batch(order, 1, 0, aug,
                                                                                          torch.Generator().manual_seed(7))
             for r in range(2)]
    assert torch.equal(torch.cat([p[0] for p in parts]), whole)
    assert torch.equal(torch.cat([p[1] for p in parts]), labels)


def test_resize_batch_matches_pillow_and_keeps_the_memory_format():
    x = torch.rand(4, 3, 28, 28).contiguous(memory_format=torch.channels_last)
    small = resize_batch(x, 20)
    assert small.shape == (4, 3, 20, 20) and small.is_contiguous(memory_format=torch.channels_last)
    for image, resized in zip(x.reshape(12, 28, 28), small.reshape(12, 20, 20)):  # what resizing the files would give
        expected = np.asarray(Image.fromarray(image.numpy(), mode="F").resize((20, 20), Image.BILINEAR))
        assert np.allclose(resized.numpy(), expected, atol=1e-5)
    constant = torch.full((2, 1, 28, 28), 0.7)
    assert torch.allclose(resize_batch(constant, 20), torch.full((2, 1, 20, 20), 0.7))
