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

.PHONY: demo test install install-dev lint docs

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(PIP_TORCH)
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(PIP_TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"

demo: install
	$(BIN)/specvit-bounds --snr 3 --snr 5 --snr 10 --snr 20

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: install-dev
	$(BIN)/mkdocs build --strict --site-dir build/site

test: install-dev lint docs
	$(BIN)/python -m pytest
