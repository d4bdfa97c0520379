# Two commands set up and run everything on a fresh machine:
#   make demo   -- install into .venv and run the main job
#   make test   -- install into .venv (with dev extras), lint, build the docs, run the tests
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch from PyPI is, on Linux, the multi-GB CUDA build. Without a GPU get the CPU-only build:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (empty by default: pip's own configuration, e.g. a local wheel cache, decides).
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
PIP_TORCH = $(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH)

.PHONY: demo test test-slow install install-dev lint docs

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(PIP_TORCH)
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(PIP_TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"

# The main job: labels for the bundled example (48 engine spectra in the PFS pfsCoadd layout)
# with the bundled default model (offline), compared with their true labels.
demo: install
	@mkdir -p build/demo
	$(BIN)/specvit-predict examples/data/pfsCoadd-engine-example.fits -o build/demo/labels.ecsv \
		--overwrite
	$(BIN)/python examples/score_example.py build/demo/labels.ecsv

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: install-dev
	$(BIN)/mkdocs build --strict --site-dir build/site

# The fast suite (under 5 minutes on a shared 2-core machine); tests marked slow (end-to-end
# training, SIGKILL resume, torchrun, the 200 k-spectrum shard) are `make test-slow`.
test: install-dev lint docs
	$(BIN)/python -m pytest

test-slow: install-dev
	$(BIN)/python -m pytest -m slow
