"""A simulated data set on disk: train shards, a validation set and a test set (HDF5).

:func:`write_dataset` writes ``train_000.h5``, ``train_001.h5``, … (``shard_size`` spectra each,
seeds ``seed·1000 + k``), ``validation.h5`` and ``test.h5``; the validation and test sets use the
fixed seeds of :mod:`training.engine.seeding` (independent of ``seed``), so every data set of the
same prior and noise holds the same ones. Layout of each file: :mod:`specvit.io.hdf5`. With
real-data effects (:mod:`training.engine.effects`) each spectrum's effect parameters are
columns of the label table (``ebv``, ``wave_offset``, ``calib_c1`` …) and the effects' settings
the root attribute ``effects`` (JSON).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from training.engine.seeding import DRAW_BLOCK, TEST_SEED, VALIDATION_SEED, step_generator
from training.engine.shards import ShardWriter
from training.engine.simulate import Simulator

__all__ = ["write_dataset", "write_set"]


def write_set(path: Path, sim: Simulator, n: int, seed: int, batch: int, attrs: dict) -> None:
    """Write ``n`` spectra drawn batch by batch with generators ``(seed, batch index)``."""
    extra = ("rv",) if sim.prior.rv is not None else ()
    extra += sim.effects.column_names()
    with ShardWriter(
        path, sim.wavelength, n_spectra=n, extra_fields=extra, attrs={**attrs, "seed": seed}
    ) as writer:
        for b, lo in enumerate(range(0, n, batch)):
            draw = sim.sample(min(batch, n - lo), step_generator(seed, b))
            writer.append({**draw, **sim.effects.columns(draw)})


def write_dataset(
    out: str | Path,
    sim: Simulator,
    *,
    n_train: int,
    shard_size: int,
    n_val: int = 1_000,
    n_test: int = 10_000,
    seed: int = 42,
    batch: int = DRAW_BLOCK,
    overwrite: bool = False,
) -> list[Path]:
    """Write a data set of ``sim``'s spectra into the folder ``out``; return the files.

    Raises
    ------
    FileExistsError
        If a file to write exists and not ``overwrite`` (checked before anything is written).
    """
    out = Path(out)
    noise = sim.noise
    description = (
        "specvit data engine: Doppler Cannon emulator, "
        f"R={sim.emulator.resolution:g} LSF, PFS ETC noise"
    )
    attrs = {
        "description": description,
        "prior": json.dumps(sim.prior.to_dict()),
        "noise": f"{noise.description}; {noise.n_exposures} x 900 s",
        "created_by": "python -m training make-dataset",
    }
    if sim.effects.enabled:  # files without effects stay as they were
        attrs["description"] += f"; real-data effects: {', '.join(sim.effects.effects)}"
        attrs["effects"] = json.dumps(sim.effects.to_dict())
    jobs = [(out / "validation.h5", n_val, VALIDATION_SEED), (out / "test.h5", n_test, TEST_SEED)]
    for k, lo in enumerate(range(0, n_train, shard_size)):
        jobs.append((out / f"train_{k:03d}.h5", min(shard_size, n_train - lo), seed * 1000 + k))
    for path, _, _ in jobs:
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists (use --overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    for path, n, set_seed in jobs:
        t0 = time.perf_counter()
        with torch.no_grad():
            write_set(path, sim, n, set_seed, batch, attrs)
        print(f"{path}: {n} spectra in {time.perf_counter() - t0:.1f} s", flush=True)
    return [path for path, _, _ in jobs]
