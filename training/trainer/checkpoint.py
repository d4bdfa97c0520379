"""Training checkpoints: written atomically, read back with ``weights_only=True``.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python types (so it
loads without unpickling code): the model, optimiser, scheduler, gradient-scaler and EMA state
dicts, the step, the run config and the model config. The step is the complete random and
data state: every random draw of step ``s`` on rank ``r`` (the batch, its noise, dropout) comes
from generators seeded by ``(seed, r, s)`` (:func:`training.engine.seeding.step_seed`), so restoring
the step restores the RNG states and the data position exactly, for any number of ranks.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "STATE_KEYS",
    "CheckpointError",
    "check_weights",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]

#: What every checkpoint the trainer writes holds (``Trainer.state_dict``; ``ema`` may be None).
STATE_KEYS = (
    "step",
    "run_config",
    "model_config",
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "ema",
)


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or does not hold what a training checkpoint holds."""


_NAME = re.compile(r"^step_(\d+)\.pt$")


def save_checkpoint(state: dict[str, Any], folder: str | Path, step: int, keep: int = 2) -> Path:
    """Write ``state`` to ``folder/step_{step:08d}.pt`` atomically; keep the newest ``keep``.

    The file is written to a temporary name in the same folder, flushed to disk and renamed,
    so a run killed at any moment leaves either the old or the new checkpoint, never half of
    one.

    Returns
    -------
    pathlib.Path
        The checkpoint's path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.pt"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for old in _checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def _checkpoints(folder: Path) -> list[Path]:
    found = [p for p in folder.glob("step_*.pt") if _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint with the highest step in ``folder`` (None when there is none)."""
    folder = Path(folder)
    found = _checkpoints(folder) if folder.is_dir() else []
    return found[-1] if found else None


def load_checkpoint(path: str | Path, keys: Iterable[str] = ()) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``, on CPU).

    Parameters
    ----------
    path : str or pathlib.Path
        A checkpoint file, or a folder: its newest ``step_*.pt``.
    keys : iterable of str
        Entries the checkpoint must hold (e.g. :data:`STATE_KEYS` to resume a run).

    Returns
    -------
    dict
        The checkpoint's states.

    Raises
    ------
    FileNotFoundError
        If there is no checkpoint at ``path``.
    CheckpointError
        If the file cannot be read (truncated, damaged, not a torch file), is not a mapping,
        lacks one of ``keys``, holds a ``run_config`` or ``model_config`` that is not a mapping,
        or a ``step`` that is not an integer >= 0.
    """
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"no step_*.pt checkpoint in {path}")
        path = found
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated, damaged or not a torch file ({first})"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path} is not a training checkpoint: it holds a {type(state).__name__}, "
            "not a dict of states"
        )
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a training checkpoint: it has no {missing}")
    for key in ("run_config", "model_config"):
        if key in state and not isinstance(state[key], dict):
            raise CheckpointError(
                f"{path} is damaged: its {key} is a {type(state[key]).__name__}, not a mapping"
            )
    step = state.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{path} is damaged: its step {step!r} is not an integer >= 0")
    return state


def check_weights(model: torch.nn.Module, weights: Any, where: str) -> None:
    """Check that a state dict from a checkpoint fits ``model``, key by key and shape by shape.

    Parameters
    ----------
    model : torch.nn.Module
        The model the checkpoint's ``model_config`` builds.
    weights : Any
        The state dict to load.
    where : str
        Names the weights in the message (``"runs/x/checkpoints/step_00000040.pt: 'model'"``).

    Raises
    ------
    CheckpointError
        Naming the missing and unexpected keys and the shape mismatches (a few of each).
    """
    if not isinstance(weights, dict) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        raise CheckpointError(f"{where} is not a state dict of tensors")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shapes = [
        f"{k} {tuple(weights[k].shape)} vs {tuple(expected[k].shape)}"
        for k in sorted(set(weights) & set(expected))
        if weights[k].shape != expected[k].shape
    ]
    problems = [
        f"{len(items)} {what} ({', '.join(items[:3])}{', …' if len(items) > 3 else ''})"
        for what, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
        )
        if items
    ]
    if problems:
        raise CheckpointError(
            f"{where} holds another model's weights than its model_config describes: "
            + "; ".join(problems)
        )
