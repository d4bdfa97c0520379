"""The training spectra every method of ``training/evaluation/compare.py`` learns from.

One fixed stream: block ``b`` of 4 096 spectra is drawn by the data engine (default prior, the
evaluation sets' magnitudes and noise) with :func:`~training.engine.seeding.step_generator`
``(TRAIN_SEED, b)``, so the first ``n`` spectra are the same for every ``n`` (the sets of the
scaling curve are nested) and for every method. The baselines see one noise draw per spectrum;
SpecViT trains on the same noiseless spectra with fresh noise every epoch (:func:`write_shard`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from specvit.preprocessing import expected_snr
from training.engine.seeding import DRAW_BLOCK, step_generator
from training.engine.shards import ShardWriter
from training.engine.simulate import Simulator
from training.evaluation.baselines.features import Features, features

__all__ = ["TRAIN_SEED", "draw_features", "write_shard"]

#: Seed of the training stream (distinct from make_dataset's and the evaluation sets' seeds).
TRAIN_SEED = 20_240_004


def draw_features(sim: Simulator, sizes: Mapping[int, int]) -> dict[int, Features]:
    """Features of the first ``sizes[block]`` training spectra at each pixel ``block``.

    Parameters
    ----------
    sim : Simulator
        The engine (its prior and noise fix the spectra).
    sizes : mapping
        ``{block: n}``: e.g. ``{1: 50_000, 16: 500_000}`` keeps full resolution for the first
        50 000 spectra only (memory), 16-pixel averages for all 500 000.
    """
    total = max(sizes.values())
    parts: dict[int, list[Features]] = {b: [] for b in sizes}
    with torch.no_grad():
        for b, lo in enumerate(range(0, total, DRAW_BLOCK)):
            draw = sim.sample(DRAW_BLOCK, step_generator(TRAIN_SEED, b))  # whole blocks: nested
            for block, n in sizes.items():
                if lo < n:
                    k = min(n - lo, len(draw["flux"]))
                    parts[block].append(
                        features(draw["flux"][:k], draw["error"][:k], draw["labels"][:k], block)
                    )
    out = {}
    for block, chunks in parts.items():
        out[block] = Features(
            x=_cat([c.x for c in chunks]),
            ivar=_cat([c.ivar for c in chunks]),
            labels=_cat([c.labels for c in chunks]),
            block=block,
        )
    return out


def _cat(arrays):
    return np.concatenate(arrays)


def write_shard(sim: Simulator, path: str | Path, n: int) -> Path:
    """The first ``n`` training spectra, noiseless, with their expected σ, as a shard.

    The labels and magnitudes are those :func:`draw_features` sees (the same generators draw
    them first); ``training/train.py`` with ``data.source=hdf5`` and ``data.noise_level=1``
    adds fresh noise ``ε⊙σ`` every step.
    """
    with (
        torch.no_grad(),
        ShardWriter(path, sim.wavelength, n_spectra=n, attrs={"seed": TRAIN_SEED}) as writer,
    ):
        for b, lo in enumerate(range(0, n, DRAW_BLOCK)):
            k = min(DRAW_BLOCK, n - lo)
            draw = sim.prior.sample(DRAW_BLOCK, step_generator(TRAIN_SEED, b))
            draw = {key: v[:k] for key, v in draw.items()}
            clean = sim.noiseless(draw["labels"], draw["mag"])
            error = sim.noise.expected_sigma(clean)
            snr = expected_snr(clean, error)  # noiseless flux: the expected S/N
            writer.append(
                {"flux": clean, "error": error, "labels": draw["labels"], "mag": draw["mag"]}
                | {"snr": snr}
            )
    return Path(path)
