# Two commands set up and run everything on a fresh machine:
#   make demo   -- install into .venv and run the main job
#   make test   -- install into .venv (with dev extras), lint, build the docs, run the tests
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The torch release the project is tested with. PyPI's Linux wheel bundles the CUDA libraries
# (several GB); the CPU-only wheel is on https://download.pytorch.org/whl/cpu.
TORCH ?= torch==2.13.0

.PHONY: demo test install install-dev lint docs

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"

demo: install
	$(BIN)/specvit-bounds --snr 3 --snr 5 --snr 10 --snr 20

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: install-dev
	$(BIN)/mkdocs build --strict --quiet --site-dir build/site

test: install-dev lint docs
	$(BIN)/python -m pytest
