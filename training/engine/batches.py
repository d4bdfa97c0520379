"""Training batches as a pure function of the step, and the fixed validation set.

A :class:`StepBatches` dataset is indexed by the global step: item ``s`` is rank ``r``'s batch of
step ``s``, drawn from generators seeded by ``(seed, r, s)``. Any ``DataLoader`` worker can
build any step, so loading runs in parallel, and a resumed run rebuilds exactly the batches it
would have seen. Model input is built by :func:`specvit.preprocessing.prepare`, the same
function inference uses (a ``rest_frame`` model's velocities are measured, as in inference,
never taken from the engine); labels stay physical, and the trainer normalises them with
:meth:`specvit.SpecViT.normalize_labels`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from specvit.config import SpecViTConfig
from specvit.labels import LABEL_NAMES
from specvit.preprocessing import prepare

__all__ = ["SpectraSource", "StepBatches", "label_columns", "to_model_batch"]


class SpectraSource(Protocol):
    """What the trainer needs from a data source (the engine or HDF5 shards)."""

    #: Pixel-centre wavelengths (Å) of the spectra; they must be the model's grid.
    wavelength: np.ndarray
    #: The prior the spectra were drawn from (``training.engine.simulate.Prior``), None if unknown.
    prior: Any

    def steps_per_epoch(self, size: int, world_size: int) -> int:
        """Steps of ``size`` spectra per rank in one epoch on ``world_size`` ranks."""

    def train_batch(self, step: int, rank: int, world_size: int, size: int) -> dict:
        """Rank ``rank``'s ``size`` noisy spectra of step ``step``: ``flux``, ``error``, ``labels``.

        ``labels`` is (size, 3) in the order of :data:`specvit.labels.LABEL_NAMES`.
        """

    def validation_set(self) -> dict:
        """The fixed validation spectra (one fixed noise draw), same keys as a batch."""

    def train_labels(self) -> torch.Tensor:
        """A sample of training labels (N, 3) for the label-normalisation statistics."""

    def domain(self) -> Any:
        """The ``specvit.config.ModelDomain`` of a model trained on these spectra (None if
        unknown): it becomes the model's ``config.domain``."""


def label_columns(names: list[str] | tuple[str, ...]) -> list[int]:
    """Column indices of ``names`` in a (N, 3) label array in ``LABEL_NAMES`` order."""
    return [LABEL_NAMES.index(n) for n in names]


def to_model_batch(spectra: dict, config: SpecViTConfig) -> dict[str, torch.Tensor]:
    """Model input ``x`` (B, C, L) and the physical labels ``y`` (B, n_labels) it predicts.

    ``y`` holds the columns of ``config.label_names``, in physical units; the trainer
    normalises them with :meth:`specvit.SpecViT.normalize_labels`. Where ``spectra`` holds a
    teacher's ``target`` (N, 3), its columns come back as ``t``, the mean's target. Spectra
    whose input cannot be normalised (no valid pixel, or a median flux ≤ 0) are left out;
    ``kept`` (B,) marks the rows that remain.
    """
    prepared = prepare(torch.as_tensor(spectra["flux"]), torch.as_tensor(spectra["error"]), config)
    x, scale = prepared.x, prepared.scale
    kept = torch.isfinite(scale)
    cols = label_columns(config.label_names)
    batch = {"x": x[kept], "kept": kept}
    for key, name in (("y", "labels"), ("t", "target")):
        if name in spectra:
            batch[key] = torch.as_tensor(spectra[name], dtype=torch.float32)[kept][:, cols]
    return batch


class StepBatches(Dataset):
    """Map-style dataset whose item ``step`` is this rank's model-ready batch of that step.

    Parameters
    ----------
    source : SpectraSource
        Where spectra come from.
    config : SpecViTConfig
        The model's config (input normalisation, labels and their statistics).
    rank, world_size : int
        This process's rank and the number of ranks.
    size : int
        Spectra per rank and step.
    teacher : callable, optional
        Maps a batch of spectra to the means' targets (N, 3) in ``LABEL_NAMES`` order
        (:class:`training.trainer.teacher.GridTeacher`); they come back as ``t``.
    """

    def __init__(
        self,
        source: SpectraSource,
        config: SpecViTConfig,
        rank: int,
        world_size: int,
        size: int,
        teacher: Callable[[dict], torch.Tensor] | None = None,
    ) -> None:
        self.source, self.config, self.teacher = source, config, teacher
        self.rank, self.world_size, self.size = rank, world_size, size

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        spectra = self.source.train_batch(step, self.rank, self.world_size, self.size)
        if self.teacher is not None:
            spectra["target"] = self.teacher(spectra)
        return to_model_batch(spectra, self.config)
