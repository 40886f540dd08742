"""Gradients of darkroom's classifier step on this rank's shard, averaged by DDP; rank 0 saves them.

Run alone (one process, the whole batch) or under torchrun (each rank its shard): the test compares.
BN runs in eval mode so per-rank batch statistics do not enter (DDP does not synchronise BN).
"""
import sys

import torch
import torch.nn.functional as F
from torch import nn

from darkroom import dist
from darkroom.data.arrays import ImageArrays
from darkroom.data.resident import Augment, ResidentImages
from darkroom.nets import CLASSIFIERS

out = sys.argv[1]
info = dist.setup("cpu")
torch.manual_seed(0)
images = torch.randint(0, 256, (64, 1, 12, 12), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
arrays = ImageArrays(images, torch.arange(64) % 10, [str(i) for i in range(10)], "planted")
data = ResidentImages(arrays, info.device, torch.tensor([0.5]), torch.tensor([0.25]), 32, info.rank, info.world_size)
model = CLASSIFIERS["darknet_small"](1, 10).eval()
net = nn.parallel.DistributedDataParallel(model) if info.distributed else model
generator = torch.Generator().manual_seed(2)
order = data.epoch_order(generator)
x, y = data.train_batch(order, 1, 0, Augment(pad=2, flip=True), generator)
F.cross_entropy(net(x), y).backward()  # mean over this rank's shard; DDP averages over ranks
if info.is_main:
    torch.save({name: p.grad for name, p in model.named_parameters()}, out)
dist.barrier()  # no rank tears gloo down while another still talks to it (a rank exiting early aborted in CI once)
del net  # the DDP wrapper, before dist.cleanup
dist.cleanup()
