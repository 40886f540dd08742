# darkroom: the README's commands. Each target creates .venv and installs what it needs on first use.
# PyTorch is installed explicitly (the CPU wheel 2.13.0 here); with a GPU, install your CUDA build of torch
# into .venv first (or set VENV to an environment that has it) and nothing here replaces it.
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.darkroom-installed
SMOKE ?=

.PHONY: install demo demo-quick test test-fast bench fastai-env bench-gpu bench-gpu-prepare clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# the demo's first step finds Fashion-MNIST ($DARKROOM_DATA, ~/.cache/darkroom, /usr/share/datasets), else downloads it,
# else on Debian (as root or with passwordless sudo) runs apt-get install dataset-fashion-mnist (darkroom/data/provision.py)
demo: $(STAMP)
	$(VENV)/bin/darkroom demo

demo-quick: $(STAMP)
	$(VENV)/bin/darkroom demo --quick

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) -m benchmarks.run_cpu

# fastai needs torchvision, which has no build beside torch 2.13 CPU: a second environment (about 6 GB) that
# `make bench` uses for the fastai comparison when it exists
fastai-env:
	test -x .fastai-env/bin/python || $(PYTHON) -m venv .fastai-env
	.fastai-env/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	.fastai-env/bin/pip install -q fastai -e .

bench-gpu-prepare: $(STAMP)
	$(PY) -m benchmarks.gpu_prepare

# on the GPU box darkroom is not installed: the script puts the checkout on sys.path and installs .whl/ itself
bench-gpu:
	$(if $(SMOKE),$(PY),python3) -m benchmarks.gpu $(if $(SMOKE),--smoke,)

clean:
	rm -rf $(VENV) .pytest_cache
