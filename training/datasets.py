"""Torch datasets for training: fresh simulated spectra every step, or HDF5 shards.

Both are ``IterableDataset`` s yielding whole batches (``DataLoader(dataset, batch_size=None)``).
Batches are numbered globally; batch ``b`` is drawn from a generator seeded by ``(seed, b)``, and
rank ``r`` of ``W`` ranks with ``K`` loader workers takes batches ``b = (j·K + k)·W + r`` in its
``j``-th round from worker ``k``. So a run is reproducible for a given (seed, world size, workers),
no two ranks or workers ever draw the same batch, and the union over ranks does not depend on how
the work is split.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from specvit.io.hdf5 import iter_shard, read_shard_info
from training.simulate import Simulator

__all__ = ["ShardDataset", "SimulatedSpectra", "batch_generator"]


def batch_generator(seed: int, batch: int) -> torch.Generator:
    """CPU generator of global batch ``batch`` of a run seeded ``seed`` (independent streams)."""
    state = np.random.SeedSequence([int(seed), int(batch)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _layout(rank: int, world_size: int) -> tuple[int, int, int, int]:
    if not 0 <= rank < world_size:
        raise ValueError(f"need 0 ≤ rank < world_size, got rank={rank}, world_size={world_size}")
    info = get_worker_info()
    worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
    return rank, world_size, worker, workers


class SimulatedSpectra(IterableDataset):
    """Fresh noiseless spectra and fresh noise for every batch, from a :class:`Simulator`.

    Parameters
    ----------
    simulator : Simulator
        The engine (prior, emulator, noise model).
    batch_size : int
        Spectra per batch on this rank.
    seed : int
        Run seed.
    num_batches : int or None
        Batches per rank (None: endless).
    rank, world_size : int
        This process's rank in a distributed run, and the number of ranks.
    """

    def __init__(
        self,
        simulator: Simulator,
        batch_size: int,
        seed: int = 0,
        num_batches: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        _layout(rank, world_size)
        self.simulator, self.batch_size, self.seed = simulator, int(batch_size), int(seed)
        self.num_batches, self.rank, self.world_size = num_batches, rank, world_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rank, world, worker, workers = _layout(self.rank, self.world_size)
        j = worker
        while self.num_batches is None or j < self.num_batches:
            b = j * world + rank
            yield self.simulator.sample(self.batch_size, batch_generator(self.seed, b))
            j += workers


class ShardDataset(IterableDataset):
    """Batches streamed from HDF5 shards (:mod:`specvit.io.hdf5`), optionally re-noised.

    Each shard is cut into blocks of ``batch_size`` consecutive spectra; blocks are dealt to
    ranks and workers as in the module docstring, in an order shuffled per epoch (``seed``,
    ``epoch``). Only one block is in memory at a time.

    Parameters
    ----------
    paths : str or sequence of str
        Shard files, or a glob pattern.
    batch_size : int
        Spectra per batch.
    seed, epoch : int
        Shuffle (and noise) seed and epoch; call :meth:`set_epoch` between epochs.
    shuffle : bool
        Shuffle block order (spectra within a block keep their order).
    noise_level : float
        If > 0, add fresh noise ``noise_level · ε · error`` to the stored flux every time a batch
        is read (the paper's recipe; its shards hold noisy flux). 0 returns the stored flux.
    rank, world_size : int
        Distributed layout.
    """

    def __init__(
        self,
        paths: str | Sequence[str | Path],
        batch_size: int,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        noise_level: float = 0.0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        files = sorted(glob.glob(paths)) if isinstance(paths, str) else [str(p) for p in paths]
        if not files:
            raise FileNotFoundError(f"no shards match {paths!r}")
        if batch_size < 1 or noise_level < 0:
            raise ValueError("batch_size must be ≥ 1 and noise_level ≥ 0")
        _layout(rank, world_size)
        self.files = files
        self.sizes = [read_shard_info(f).n_spectra for f in files]
        self.batch_size, self.seed, self.epoch = int(batch_size), int(seed), int(epoch)
        self.shuffle, self.noise_level = shuffle, float(noise_level)
        self.rank, self.world_size = rank, world_size

    @property
    def num_spectra(self) -> int:
        """Spectra over all shards."""
        return sum(self.sizes)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch``."""
        self.epoch = int(epoch)

    def blocks(self) -> list[tuple[int, int, int]]:
        """``(file index, start, stop)`` of every block, in this epoch's order."""
        out = [
            (i, lo, min(lo + self.batch_size, n))
            for i, n in enumerate(self.sizes)
            for lo in range(0, n, self.batch_size)
        ]
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            out = [out[k] for k in rng.permutation(len(out))]
        return out

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rank, world, worker, workers = _layout(self.rank, self.world_size)
        blocks = self.blocks()
        for b in range(rank + world * worker, len(blocks), world * workers):
            i, lo, hi = blocks[b]
            batch = next(iter_shard(self.files[i], hi - lo, start=lo, stop=hi))
            out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
            if self.noise_level > 0:
                gen = batch_generator(self.seed, self.epoch * len(blocks) + b)
                eps = torch.randn(out["flux"].shape, generator=gen, dtype=out["flux"].dtype)
                out["flux"] = out["flux"] + self.noise_level * eps * out["error"]
            yield out
