"""Net families as explicit name -> constructor dicts, used at the CLI edge (no import-time registration)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from darkroom.nets import classifier

# constructor(in_channels, num_classes) -> nn.Module
CLASSIFIERS: dict[str, Callable[[int, int], nn.Module]] = {
    "darknet": lambda c, k: classifier.darknet([1, 2, 4, 6, 3], k, nf=32, in_channels=c),
    "darknet_small": lambda c, k: classifier.darknet([1, 2, 2], k, nf=16, in_channels=c),
    "wrn_22": lambda c, k: classifier.wide_resnet(22, 6, k, in_channels=c),
    "fastnet": lambda c, k: classifier.fastnet((64, 256, 256), k, in_channels=c),
    "cpunet": lambda c, k: classifier.cpunet(k, in_channels=c),
}
