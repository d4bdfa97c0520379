"""The trainer's data sources: the data engine on the fly, or HDF5 shards with fresh noise.

Both give rank ``r``'s batch of step ``s`` as a pure function of ``(seed, s, r)``: the engine
draws global batch ``b = s·W + r`` of ``W`` ranks from generator
:func:`training.engine.seeding.step_generator` ``(seed, b)``, the shards read a block and draw its
noise the same way, so a resumed run rebuilds the batches it would have seen. Their validation sets
are fixed: independent of the run seed, one noise draw.
"""

from __future__ import annotations

import glob
import json
import math
from pathlib import Path

import h5py
import numpy as np
import torch

from specvit.config import ModelDomain
from specvit.instrument import PFSNoiseModel
from specvit.io.hdf5 import iter_shard, read_shard_info
from specvit.labels import LABEL_NAMES
from training.engine.effects import Effects
from training.engine.seeding import LABEL_STATS_STREAM, VALIDATION_SEED, step_generator
from training.engine.simulate import Prior, Simulator
from training.paths import resolve_path
from training.trainer.config import RunConfig

__all__ = ["EngineSource", "ShardBlocks", "ShardSource", "build_source"]

#: Labels drawn from the engine's prior to measure the normalisation statistics.
_LABEL_SAMPLE = 200_000


class EngineSource:
    """Fresh simulated spectra and fresh noise for every step (:class:`Simulator`).

    Parameters
    ----------
    config : RunConfig
        Uses ``seed`` and ``data.{n_train, n_val, etc_dir, n_exposures, prior, effects}``
        (``effects``: :meth:`training.engine.effects.Effects.from_dict`; none when the config
        has no such key).

    Notes
    -----
    The validation set is the one :mod:`training.engine.datasets` writes to ``validation.h5``
    (its fixed seed, first batch) for ``n_val`` ≤ 4096 and the same prior and noise.
    """

    def __init__(self, config: RunConfig) -> None:
        d = config.data
        etc_dir = None if d.etc_dir is None else resolve_path(d.etc_dir)
        if etc_dir is None:
            noise = PFSNoiseModel.default(n_exposures=d.n_exposures)
        elif etc_dir.is_dir():
            noise = PFSNoiseModel.from_etc(etc_dir, n_exposures=d.n_exposures)
        else:
            raise FileNotFoundError(
                f"data.etc_dir={d.etc_dir!r} ({etc_dir}) is not a folder of PFS ETC tables; point "
                "it at ../shared/data/pfs_etc or set data.etc_dir=null for the approximate noise "
                "model"
            )
        self.seed, self.n_train, self.n_val = config.seed, d.n_train, d.n_val
        effects = Effects.from_dict(getattr(d, "effects", None))
        self.simulator = Simulator(noise=noise, prior=Prior(**d.prior), effects=effects)
        self.prior = self.simulator.prior
        self.effects = effects
        self.wavelength = self.simulator.wavelength

    def domain(self) -> ModelDomain:
        """The domain of a model trained on these spectra: the prior's, with what the
        effects widen (:meth:`training.engine.effects.Effects.widen`)."""
        return self.effects.widen(self.prior.domain())

    def steps_per_epoch(self, size: int, world_size: int) -> int:
        """Steps of ``size`` spectra on each of ``world_size`` ranks that make ``n_train``."""
        return math.ceil(self.n_train / (size * world_size))

    def train_batch(self, step: int, rank: int, world_size: int, size: int) -> dict:
        """Rank ``rank``'s ``size`` fresh noisy spectra of step ``step``."""
        return self.simulator.sample(size, step_generator(self.seed, step * world_size + rank))

    def validation_set(self) -> dict:
        """The fixed validation spectra."""
        return self.simulator.sample(self.n_val, step_generator(VALIDATION_SEED, 0))

    def train_labels(self) -> torch.Tensor:
        """Labels drawn from the prior, (N, 3), for the normalisation statistics."""
        generator = step_generator(self.seed, 0, 0, LABEL_STATS_STREAM)
        return self.simulator.prior.sample(_LABEL_SAMPLE, generator)["labels"]


class ShardBlocks:
    """The training shards cut into blocks of ``batch_size`` consecutive spectra.

    Parameters
    ----------
    paths : str or sequence of str
        Shard files, or a glob pattern.
    batch_size : int
        Spectra per block (the last block of a shard may be shorter).
    seed : int
        Seed of the per-epoch shuffle of the block order.
    """

    def __init__(self, paths: str | list[str | Path], batch_size: int, seed: int = 0) -> None:
        files = sorted(glob.glob(paths)) if isinstance(paths, str) else [str(p) for p in paths]
        if not files:
            raise FileNotFoundError(f"no shards match {paths!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.files, self.batch_size, self.seed = files, int(batch_size), int(seed)
        self.sizes = [read_shard_info(f).n_spectra for f in files]

    def blocks(self, epoch: int) -> list[tuple[int, int, int]]:
        """``(file index, start, stop)`` of every block, in epoch ``epoch``'s shuffled order."""
        out = [
            (i, lo, min(lo + self.batch_size, n))
            for i, n in enumerate(self.sizes)
            for lo in range(0, n, self.batch_size)
        ]
        rng = np.random.default_rng([self.seed, int(epoch)])
        return [out[k] for k in rng.permutation(len(out))]


class ShardSource:
    """HDF5 shards (:mod:`specvit.io.hdf5`) with fresh noise ``noise_level·ε⊙σ`` every step.

    An epoch visits every block of ``size`` consecutive spectra of the training shards once,
    in the order :meth:`ShardBlocks.blocks` shuffles per epoch; step ``s``
    gives rank ``r`` block ``i·W + r`` of epoch ``s // steps_per_epoch`` (``i`` the step within
    it), wrapping round when the blocks do not divide evenly among ranks. Validation uses the
    first ``n_val`` spectra of ``val_path`` with one fixed noise draw of the same level.

    Parameters
    ----------
    config : RunConfig
        Uses ``seed`` and ``data.{train_path, val_path, n_val, noise_level}``.
    """

    def __init__(self, config: RunConfig) -> None:
        d = config.data
        self.seed, self.noise_level = config.seed, d.noise_level
        self.train_path, self.val_path, self.n_val = d.train_path, d.val_path, d.n_val
        info = read_shard_info(d.val_path)
        self.wavelength = info.wavelength
        # the data set writer records the prior its shards were drawn from
        prior = info.attrs.get("prior")
        self.prior = None if prior is None else Prior(**json.loads(prior))
        self._shards: ShardBlocks | None = None

    def domain(self) -> ModelDomain | None:
        """The domain of a model trained on these shards (their prior's), None if unknown."""
        return None if self.prior is None else self.prior.domain()

    def _blocks(self, size: int) -> ShardBlocks:
        if self._shards is None or self._shards.batch_size != size:
            self._shards = ShardBlocks(self.train_path, size, seed=self.seed)
        return self._shards

    def steps_per_epoch(self, size: int, world_size: int) -> int:
        """Steps for every rank to read its share of all blocks of ``size`` spectra once."""
        return math.ceil(len(self._blocks(size).blocks(0)) / world_size)

    def _noisy(self, batch: dict, generator: torch.Generator) -> dict:
        out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
        eps = torch.randn(out["flux"].shape, generator=generator, dtype=out["flux"].dtype)
        out["flux"] = torch.addcmul(out["flux"], eps, out["error"], value=self.noise_level)
        return out

    def train_batch(self, step: int, rank: int, world_size: int, size: int) -> dict:
        """Rank ``rank``'s block of step ``step``, with fresh noise."""
        shards = self._blocks(size)
        epoch, within = divmod(step, self.steps_per_epoch(size, world_size))
        blocks = shards.blocks(epoch)
        b = (within * world_size + rank) % len(blocks)
        file, lo, hi = blocks[b]
        batch = next(iter_shard(shards.files[file], hi - lo, start=lo, stop=hi))
        return self._noisy(batch, step_generator(self.seed, epoch * len(blocks) + b))

    def validation_set(self) -> dict:
        """The first ``n_val`` validation spectra with one fixed noise draw."""
        batch = next(iter_shard(self.val_path, self.n_val, stop=self.n_val))
        return self._noisy(batch, step_generator(VALIDATION_SEED, 0))

    def train_labels(self) -> torch.Tensor:
        """All training labels (N, 3), read from the shards' label tables only."""
        columns = []
        for path in ShardBlocks(self.train_path, 1).files:
            with h5py.File(path, "r") as f:
                rows = f["labels"][()]
            columns.append(np.stack([rows[k] for k in LABEL_NAMES], axis=-1))
        return torch.from_numpy(np.concatenate(columns).astype(np.float32))


def build_source(config: RunConfig) -> EngineSource | ShardSource:
    """The data source that ``config.data.source`` names."""
    return EngineSource(config) if config.data.source == "engine" else ShardSource(config)
