"""A training run's folder: the one place that knows its layout.

A run folder (``out_dir`` of the run config) holds::

    config.yaml        the run config, as trained (written at every start and resume)
    metrics.jsonl      one JSON record per line: training steps ("kind": "train") and
                       validations ("kind": "val"), each with step, epoch, time, cpu_seconds
    checkpoints/       step_XXXXXXXX.pt (:mod:`training.trainer.checkpoint`)

The :class:`~training.trainer.loop.Trainer` writes it through :class:`RunDir`; the learning
curve, the design study and ``--resume`` read it through the same class.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from training.evaluation.scoring import strict_json
from training.trainer.checkpoint import latest_checkpoint

__all__ = ["RunDir"]


class RunDir:
    """A run folder: its config, its metrics log and its checkpoints.

    Parameters
    ----------
    path : str or pathlib.Path
        The folder (need not exist yet).
    """

    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    CHECKPOINTS = "checkpoints"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config_path(self) -> Path:
        """``config.yaml``."""
        return self.path / self.CONFIG

    @property
    def metrics_path(self) -> Path:
        """``metrics.jsonl``."""
        return self.path / self.METRICS

    @property
    def checkpoint_dir(self) -> Path:
        """``checkpoints/``."""
        return self.path / self.CHECKPOINTS

    # ------------------------------------------------------------------ writing
    def check_writable(self) -> None:
        """Check, before a run starts, that the folder can be created or written to.

        Raises
        ------
        ValueError
            If the folder, or one of its parts (``config.yaml``, ``metrics.jsonl``,
            ``checkpoints/``) or of its parent folders, is a file where a folder belongs (or
            the other way round), or the nearest existing folder cannot be written to.
        """
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"run folder {self.path} is a file, not a folder")
        for part in (self.config_path, self.metrics_path):
            if part.is_dir():
                raise ValueError(f"{part} in the run folder is a folder, not a file")
        if self.checkpoint_dir.exists() and not self.checkpoint_dir.is_dir():
            raise ValueError(f"{self.checkpoint_dir} in the run folder is a file, not a folder")
        existing = self.path
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise ValueError(f"run folder {self.path} cannot be made: {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"run folder {self.path} cannot be written: {existing} is read-only")

    def write_config(self, config: dict[str, Any]) -> None:
        """Write the run config (a nested dict) as ``config.yaml``, creating the folder."""
        self.path.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(config, sort_keys=False)
        self.config_path.write_text(text, encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        """Append one record to ``metrics.jsonl`` (strict JSON: NaN and ±inf as ``null``)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(strict_json(record)) + "\n")

    # ------------------------------------------------------------------ reading
    def _read(self, path: Path) -> str:
        if not path.is_file():
            raise FileNotFoundError(f"no {path.name} in {self.path}")
        return path.read_text(encoding="utf-8")

    def config(self) -> dict[str, Any]:
        """The run config as written (a nested dict).

        Raises
        ------
        FileNotFoundError
            Without ``config.yaml``.
        """
        return yaml.safe_load(self._read(self.config_path))

    def records(self) -> list[dict[str, Any]]:
        """Every record of ``metrics.jsonl``, in order.

        An unterminated last line (a run still writing it, or killed mid-line) is left out.

        Raises
        ------
        FileNotFoundError
            Without ``metrics.jsonl``.
        """
        text = self._read(self.metrics_path)
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            lines.pop()
        return [json.loads(line) for line in lines if line.strip()]

    def validations(self) -> list[dict[str, Any]]:
        """The validation records, one per step, by step.

        A validation logged twice (a run resumed from an earlier checkpoint repeats the steps
        after it) counts once: the later record.
        """
        by_step = {r["step"]: r for r in self.records() if r.get("kind") == "val"}
        return [by_step[s] for s in sorted(by_step)]

    def steps_per_epoch(self) -> int | None:
        """Optimizer steps per epoch, as the trainer counted them (None before a record)."""
        for record in self.records():
            if record.get("epoch"):
                return round(record["step"] / record["epoch"])
        return None

    def total_steps(self) -> int | None:
        """Steps of the run's whole schedule (None before the first record)."""
        per_epoch = self.steps_per_epoch()
        return None if per_epoch is None else per_epoch * self.config()["train"]["epochs"]

    def spectra(self, step: int) -> int:
        """Training spectra seen after ``step`` steps (``step × train.batch_size``)."""
        return step * self.config()["train"]["batch_size"]

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint in ``checkpoints/`` (None when there is none)."""
        return latest_checkpoint(self.checkpoint_dir)

    def checkpoints(self) -> list[Path]:
        """Every checkpoint in ``checkpoints/``, oldest first."""
        return sorted(self.checkpoint_dir.glob("step_*.pt"))
