"""One rank's batch is non-finite: every rank must skip the step alike (no hang, no rank stepping alone).

Under torchrun with 2 ranks, rank 1 feeds NaN images to darkroom's classifier train_step; each rank writes
whether it stepped and whether its weights and BatchNorm statistics are unchanged to OUT.rank<N>.json.
"""
import json
import sys

import torch

from darkroom import dist
from darkroom.nets import CLASSIFIERS
from darkroom.optim import param_groups
from darkroom.precision import make_scaler
from darkroom.classifier.train import ClassifierConfig, train_step

out = sys.argv[1]
info = dist.setup("cpu")
torch.manual_seed(0)
model = CLASSIFIERS["darknet_small"](1, 10)
net = torch.nn.parallel.DistributedDataParallel(model)
cfg = ClassifierConfig(arch="darknet_small")
optimizer = torch.optim.SGD(param_groups(model, cfg.weight_decay, True, 1.0), lr=0.1, momentum=0.9)
x = torch.randn(8, 1, 12, 12, generator=torch.Generator().manual_seed(info.rank))
if info.rank == 1:
    x[0, 0, 0, 0] = float("nan")
y = torch.arange(8) % 10
weights = {name: p.detach().clone() for name, p in model.named_parameters()}
buffers = tuple(model.buffers())
kept = [b.clone() for b in buffers]
_, stepped = train_step(net, x, y, cfg, info, "fp32", optimizer, make_scaler("fp32", info.device), buffers)
same_weights = all(torch.equal(weights[name], p) for name, p in model.named_parameters())
same_buffers = all(torch.equal(a, b) for a, b in zip(kept, buffers))
with open(f"{out}.rank{info.rank}.json", "w") as file:
    json.dump({"stepped": stepped, "same_weights": same_weights, "same_buffers": same_buffers}, file)
dist.barrier()
del net  # the DDP wrapper, before dist.cleanup
dist.cleanup()
