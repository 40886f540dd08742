"""`darkroom train classifier` that dies (os._exit, like a SIGKILL: nothing flushed or closed) as it starts step N.

    python tests/scripts/classifier_exit_at.py N train classifier --out RUN ...
A deterministic point of death for exact-resume tests (tests/test_airbench_recipe.py).
"""
import os
import sys

from darkroom import cli
from darkroom.classifier import train

stop_at, calls = int(sys.argv[1]), 0
original = train.train_step


def train_step(*args, **kwargs):
    global calls
    if calls == stop_at:
        os._exit(3)
    calls += 1
    return original(*args, **kwargs)


train.train_step = train_step
sys.exit(cli.main(sys.argv[2:]))
