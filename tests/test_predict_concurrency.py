"""One Predictor, several threads or processes (issue 26, cases 5 and 14).

A model in train mode has its dropout active; predict must give the eval-mode labels from every
thread, whatever the interleaving, and leave the model's mode as it was. Worker processes must be
spawned, not forked (torch's OpenMP threads do not survive a fork): the recipe on the predict
docs page runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import specvit
from specvit.inference import Predictor
from tests.predict_helpers import GRID, spectrum

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dropout_model():
    """A model with heavy dropout, in train mode (as during a training run's validation)."""
    model = specvit.create_model(
        "specvit_tiny", label_names=("log_g",), dropout=0.5, attn_dropout=0.5, **GRID
    )
    with torch.no_grad():
        model.head.fc.bias += 0.1  # not a random initialisation any more: no warning
    return model.train()


def test_threads_share_a_predictor_of_a_train_mode_model(dropout_model):
    """Thread A toggles nothing that thread B can see, in the interleaving that broke it."""
    predictor = Predictor(dropout_model, device="cpu", physics=False)
    flux = spectrum(predictor.wavelength, np.linspace(1, 4, 4))
    with torch.no_grad():
        reference = predictor.predict(flux)  # the labels of the model in eval mode
    a_in, b_in, a_done = threading.Event(), threading.Event(), threading.Event()

    def interleave(module, args):
        # A enters the forward, B starts and enters it too, A finishes, then B runs on.
        if threading.current_thread().name == "A":
            a_in.set()
            assert b_in.wait(10)
        else:
            b_in.set()
            assert a_done.wait(10)

    handle = dropout_model.register_forward_pre_hook(interleave)
    results = {}

    def run(name: str) -> None:
        results[name] = predictor.predict(flux)
        if name == "A":
            a_done.set()

    try:
        a = threading.Thread(target=run, args=("A",), name="A")
        a.start()
        assert a_in.wait(10)
        b = threading.Thread(target=run, args=("B",), name="B")
        b.start()
        a.join(20)
        b.join(20)
    finally:
        handle.remove()
    assert set(results) == {"A", "B"}
    for table in results.values():
        np.testing.assert_array_equal(table["log_g"], reference["log_g"])
    assert all(m.training for m in dropout_model.modules()), "the model's mode was changed"


def test_a_train_mode_model_predicts_its_eval_labels_and_stays_in_train_mode(dropout_model):
    flux = spectrum(dropout_model.wavelength, np.linspace(1, 4, 3))
    first = specvit.predict(flux, model=dropout_model, device="cpu", physics=False)
    again = specvit.predict(flux, model=dropout_model, device="cpu", physics=False)
    np.testing.assert_array_equal(first["log_g"], again["log_g"])
    assert dropout_model.training and dropout_model.head.training
    dropout_model.eval()
    evaluated = specvit.predict(flux, model=dropout_model, device="cpu", physics=False)
    np.testing.assert_array_equal(first["log_g"], evaluated["log_g"])


def _docs_recipe() -> str:
    """The Python block of the "Processes" section of docs/predict.md."""
    text = (ROOT / "docs" / "predict.md").read_text(encoding="utf-8")
    section = re.search(r"^## Threads and processes\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "docs/predict.md has no 'Threads and processes' section"
    assert "fork" in section.group(1) and "spawn" in section.group(1)
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert block, "no Python recipe in the section"
    return block.group(1)


def test_the_documented_spawn_recipe_runs(tmp_path):
    """The recipe of docs/predict.md: predict in the parent with 2 torch threads, then a pool."""
    script = tmp_path / "recipe.py"
    script.write_text(_docs_recipe(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "labels from 2 processes" in done.stdout, done.stdout


@pytest.fixture
def two_torch_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_a_cpu_batch_is_cut_across_worker_threads_each_on_one_torch_thread(
    dropout_model, two_torch_threads
):
    """With two torch threads a batch runs as two slices in two workers, each computing on one
    torch thread; the rows come back in order, with the labels of a one-thread run, and the
    caller's thread count is untouched."""
    predictor = Predictor(dropout_model.eval(), device="cpu", physics=False, batch_size=100)
    flux = spectrum(predictor.wavelength, np.linspace(0.5, 4.5, 164))
    seen, done = [], []

    def record(module, args):
        seen.append((threading.current_thread().name, torch.get_num_threads(), len(args[0])))

    handle = dropout_model.register_forward_pre_hook(record)
    try:
        table = predictor.predict(flux, progress=done.append)
    finally:
        handle.remove()
    assert torch.get_num_threads() == 2
    assert sorted(size for _, _, size in seen) == [32, 32, 50, 50], seen
    assert {threads for _, threads, _ in seen} == {1}, seen
    assert len({name for name, _, _ in seen}) == 2 and all(
        n.startswith("specvit") for n, *_ in seen
    )
    assert done == [50, 50, 32, 32]
    torch.set_num_threads(1)
    single = predictor.predict(flux)
    np.testing.assert_allclose(table["log_g"], single["log_g"], rtol=0, atol=1e-5)
    assert np.all(np.diff(table["log_g"]) > 0), "rows out of input order"


def test_work_inside_a_worker_never_goes_back_to_the_pool(two_torch_threads):
    """A worker computes on one torch thread and runs its own row blocks inline, whatever torch
    thread count it is handed (a nested submission to the pool can deadlock it)."""
    from specvit._threads import cpu_workers, map_in_workers

    def inside(_):
        seen = torch.get_num_threads()
        torch.set_num_threads(2)  # as torch may leave a new thread
        return seen, cpu_workers()

    assert list(map_in_workers(inside, range(4))) == [(1, 1)] * 4
    assert cpu_workers() == 2  # the caller's own count


def test_large_slices_in_workers_finish(dropout_model, two_torch_threads):
    """Slices of 128 spectra, whose preprocessing would cut them again, finish (in a thread
    with a deadline, so that a deadlock fails the test instead of hanging the suite)."""
    predictor = Predictor(dropout_model.eval(), device="cpu", physics=False)
    flux = spectrum(predictor.wavelength, np.linspace(0.5, 4.5, 256))
    done = []
    worker = threading.Thread(target=lambda: done.append(predictor.predict(flux)), daemon=True)
    worker.start()
    worker.join(120)
    assert done and len(done[0]) == 256
