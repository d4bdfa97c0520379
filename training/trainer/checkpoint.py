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
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["latest_checkpoint", "load_checkpoint", "save_checkpoint"]

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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``, on CPU)."""
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"no step_*.pt checkpoint in {path}")
        path = found
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)
