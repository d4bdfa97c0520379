"""The fixed evaluation sets: engine spectra with their Bayes-optimal answers and CRLB.

Written by ``python -m training make-eval-sets`` (:mod:`training.cli.make_eval_sets`).

Each set is drawn by the data engine's :class:`~training.engine.simulate.Simulator` (default label
prior, HSC-i uniform in ``--mag``, PFS ETC noise from ``--etc-dir``, 12 × 900 s) in blocks of
4 096 spectra with the generators of :mod:`training.engine.datasets` (block ``b`` of a set with
seed ``s`` uses :func:`~training.engine.seeding.step_generator` ``(s, b)``; the seeds are its
``TEST_SEED`` and ``VALIDATION_SEED``), so at the default magnitudes the test set is the first
10 000 spectra of make_dataset's ``test.h5`` and the validation set is the trainer's engine
validation set for ``data.n_val = 1000``. Beside each spectrum the file holds (layout:
:mod:`specvit.io.hdf5`, its optional datasets) the Bayes-optimal posterior mean and σ of
T_eff, log g and [M/H] (:class:`specvit.bounds.PosteriorMean` under the same prior, told neither
the magnitude nor the flux scale; importance samples from ``step_generator(POSTERIOR_SEED, b)``)
and the per-star unbiased CRLB of log g at the star's magnitude (nuisances T_eff, [M/H] and the
flux amplitude, :func:`specvit.bounds.crlb_ceilings`).

Files are cached: ``<out>/<split>-i<low>-<high>-<hash>.h5``, ``<hash>`` a digest of every setting
(sizes, seeds, magnitudes, exposures, posterior grid and samples, the emulator and ETC files, and
:data:`EVAL_SET_VERSION`); an existing file with the same name is used as it is. ``<out>`` is
``--out``, else ``$SPECVIT_EVAL_SET_DIR``, else ``runs/eval_sets`` in the repository (ignored by
git). The same settings give the same bytes (for the same torch build and thread count).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from specvit.bounds import PosteriorMean, crlb_ceilings
from specvit.emulator import Emulator
from specvit.instrument import DEFAULT_N_EXPOSURES, PFSNoiseModel
from specvit.io.hdf5 import OPTIONAL_DATASETS, iter_shard, read_shard_info
from specvit.labels import LABEL_NAMES
from training.engine.seeding import DRAW_BLOCK, TEST_SEED, VALIDATION_SEED, step_generator
from training.engine.shards import ShardWriter
from training.engine.simulate import DEFAULT_MAG, Prior, Simulator
from training.paths import DEFAULT_ETC_DIR as DEFAULT_ETC
from training.paths import REPO_ROOT

__all__ = [
    "DEFAULT_N",
    "EVAL_SET_VERSION",
    "POSTERIOR_SEED",
    "EvalSetSettings",
    "convergence",
    "eval_set_dir",
    "eval_set_path",
    "generate",
    "read_eval_set",
]

#: Bumped whenever the generation changes what a file with the same settings would hold.
EVAL_SET_VERSION = 1
#: Seed of the posterior's importance samples (block ``b``: ``step_generator(seed, b)``).
POSTERIOR_SEED = 20_240_003
#: The file attribute holding the settings (its name predates the word "evaluation set";
#: kept so that files written before stay readable).
EVAL_SET_ATTR = "benchmark"
#: Spectra in each split of the fixed evaluation sets.
DEFAULT_N = {"test": 10_000, "validation": 1_000}
_ETC_FILES = ("noise_mr.dat", "snc_mr.dat")
_EMULATOR_FILE = REPO_ROOT / "specvit" / "emulator" / "data" / "doppler_coolstars.npz"


@dataclass(frozen=True)
class EvalSetSettings:
    """Everything that determines an evaluation-set file.

    Parameters
    ----------
    split : {"test", "validation"}
        Which set (fixes the seed).
    n : int
        Number of spectra.
    mag : tuple of float
        HSC-i range of the uniform magnitude prior.
    n_exposures : int
        900 s exposures.
    grid : tuple of int
        :class:`~specvit.bounds.PosteriorMean` grid cells per label.
    n_samples, n_rounds : int
        Importance samples per round and spectrum, and rounds.
    """

    split: str
    n: int
    mag: tuple[float, float] = DEFAULT_MAG
    n_exposures: int = DEFAULT_N_EXPOSURES
    grid: tuple[int, int, int] = (24, 24, 20)
    n_samples: int = 256
    n_rounds: int = 3

    def __post_init__(self) -> None:
        if self.split not in ("test", "validation"):
            raise ValueError(f"split must be 'test' or 'validation', got {self.split!r}")
        if self.n < 1 or not self.mag[0] < self.mag[1]:
            raise ValueError(f"need n >= 1 and mag low < high, got n={self.n}, mag={self.mag}")

    @property
    def seed(self) -> int:
        """Seed of the spectra (make_dataset's test or validation seed)."""
        return TEST_SEED if self.split == "test" else VALIDATION_SEED

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings, with the seeds."""
        out = dataclasses.asdict(self)
        out.update(seed=self.seed, posterior_seed=POSTERIOR_SEED, block=DRAW_BLOCK)
        out.update(mag=list(self.mag), grid=list(self.grid), version=EVAL_SET_VERSION)
        return out

    def digest(self, etc_dir: str | Path) -> str:
        """SHA-256 of the settings and of the emulator and ETC files (hex, 12 characters)."""
        h = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode())
        for path in (_EMULATOR_FILE, *(Path(etc_dir) / f for f in _ETC_FILES)):
            h.update(Path(path).read_bytes())
        return h.hexdigest()[:12]


def eval_set_dir(out: str | Path | None = None) -> Path:
    """``out``, else ``$SPECVIT_EVAL_SET_DIR``, else ``runs/eval_sets`` in the repository."""
    if out is not None:
        return Path(out)
    return Path(os.environ.get("SPECVIT_EVAL_SET_DIR", REPO_ROOT / "runs" / "eval_sets"))


def eval_set_path(
    settings: EvalSetSettings, etc_dir: str | Path = DEFAULT_ETC, out: str | Path | None = None
) -> Path:
    """The cache file of ``settings``: ``<out>/<split>-i<low>-<high>-<hash>.h5``."""
    low, high = settings.mag
    name = f"{settings.split}-i{low:g}-{high:g}-{settings.digest(etc_dir)}.h5"
    return eval_set_dir(out) / name


def _setup(settings: EvalSetSettings, etc_dir: str | Path):
    etc_dir = Path(etc_dir)
    if not etc_dir.is_dir():
        raise FileNotFoundError(f"{etc_dir} is not a folder of PFS ETC tables")
    noise = PFSNoiseModel.from_etc(etc_dir, n_exposures=settings.n_exposures)
    prior = Prior(mag=settings.mag)
    return Simulator(emulator=Emulator.load(), noise=noise, prior=prior)


def _estimator(sim: Simulator, grid, n_samples: int, n_rounds: int) -> PosteriorMean:
    return PosteriorMean(
        sim.emulator,
        sim.prior.label_prior,
        grid_shape=grid,
        n_samples=n_samples,
        n_rounds=n_rounds,
        dtype=torch.float32,
    )


def generate(
    settings: EvalSetSettings,
    path: str | Path,
    etc_dir: str | Path = DEFAULT_ETC,
    log: Callable[[str], None] = print,
) -> Path:
    """Draw the set, compute its posteriors and CRLB, and write it to ``path`` (a new file).

    Returns
    -------
    pathlib.Path
        The written file (it appears only when complete).
    """
    sim = _setup(settings, etc_dir)
    estimator = _estimator(sim, settings.grid, settings.n_samples, settings.n_rounds)
    attrs = {
        "description": "specvit evaluation set: engine spectra with Bayes-optimal posteriors "
        "and the per-star CRLB of log g",
        "prior": json.dumps(sim.prior.to_dict()),
        "noise": f"PFS ETC tables; {settings.n_exposures} x 900 s",
        EVAL_SET_ATTR: json.dumps(settings.to_dict()),
        "nuisance": "T_eff, M_H, ln_A",
        "created_by": "training/evaluation/eval_sets.py",
    }
    start = time.perf_counter()
    with (
        torch.no_grad(),
        ShardWriter(
            path,
            sim.wavelength,
            n_spectra=settings.n,
            datasets=tuple(OPTIONAL_DATASETS),
            attrs=attrs,
        ) as writer,
    ):
        for b, lo in enumerate(range(0, settings.n, DRAW_BLOCK)):
            draw = sim.sample(min(DRAW_BLOCK, settings.n - lo), step_generator(settings.seed, b))
            post = estimator(draw["flux"], draw["error"], step_generator(POSTERIOR_SEED, b))
            crlb = crlb_ceilings(
                draw["labels"].double(),
                mag=draw["mag"].double(),
                emulator=sim.emulator,
                noise_model=sim.noise,
                prior=sim.prior.label_prior,
            )
            writer.append(
                {
                    **draw,
                    "posterior_mean": post.mean,
                    "posterior_std": post.std,
                    "posterior_ess": post.ess,
                    "crlb_log_g": crlb.crlb,
                }
            )
            log(
                f"{Path(path).name}: {lo + len(draw['flux'])}/{settings.n} spectra, "
                f"{time.perf_counter() - start:.0f} s"
            )
    return Path(path)


def read_eval_set(path: str | Path, spectra: bool = True) -> dict[str, np.ndarray]:
    """Every per-spectrum array of an evaluation-set file (one read).

    Parameters
    ----------
    path : str or Path
        A file written by :func:`generate`.
    spectra : bool
        Also read ``flux`` and ``error`` (``N × 4096`` float32 each).

    Returns
    -------
    dict
        ``labels`` (N, 3), ``snr``, ``mag``, ``posterior_mean``, ``posterior_std`` (N, 3),
        ``posterior_ess``, ``crlb_log_g`` (N,), ``wavelength`` (L,), ``settings`` (dict) and,
        with ``spectra``, ``flux`` and ``error``.

    Raises
    ------
    ValueError
        If the file lacks the evaluation-set datasets.
    """
    info = read_shard_info(path)
    if EVAL_SET_ATTR not in info.attrs:
        raise ValueError(f"{path} is a shard but not an evaluation set (no posterior datasets)")
    if spectra:
        batch = next(iter_shard(path, max(info.n_spectra, 1)))
    else:
        with h5py.File(path, "r") as f:
            rows = f["labels"][()]
            batch = {k: rows[k] for k in rows.dtype.names}
            batch["labels"] = np.stack([rows[k] for k in LABEL_NAMES], axis=-1)
            batch.update({k: f[k][()] for k in OPTIONAL_DATASETS if k in f})
    missing = [k for k in OPTIONAL_DATASETS if k not in batch]
    if missing:
        raise ValueError(f"{path} lacks the evaluation-set datasets {missing}")
    batch["wavelength"] = info.wavelength
    batch["settings"] = json.loads(info.attrs[EVAL_SET_ATTR])
    return batch


def ensure(
    settings: EvalSetSettings,
    etc_dir: str | Path = DEFAULT_ETC,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """The cached file of ``settings``, generated first if it is not there."""
    path = eval_set_path(settings, etc_dir, out)
    if path.exists():
        log(f"{path}: cached")
        return path
    start = time.perf_counter()
    generate(settings, path, etc_dir, log)
    log(f"{path}: written in {time.perf_counter() - start:.1f} s")
    return path


def convergence(
    path: str | Path,
    n: int,
    etc_dir: str | Path = DEFAULT_ETC,
    grid: tuple[int, int, int] = (36, 36, 30),
    n_samples: int = 512,
) -> dict[str, Any]:
    """Recompute the posterior of the first ``n`` stars of an evaluation-set file with finer
    settings.

    Returns
    -------
    dict
        ``r2_stored`` and ``r2_fine`` (log g R² of the stored and the recomputed posterior
        means on those stars), ``delta`` (their difference), the settings and the time.
    """
    from training.evaluation.scoring import score

    data = read_eval_set(path)
    stored = data["settings"]
    settings = EvalSetSettings(
        split=stored["split"],
        n=stored["n"],
        mag=tuple(stored["mag"]),
        n_exposures=stored["n_exposures"],
        grid=tuple(stored["grid"]),
        n_samples=stored["n_samples"],
        n_rounds=stored["n_rounds"],
    )
    sim = _setup(settings, etc_dir)
    estimator = _estimator(sim, grid, n_samples, settings.n_rounds)
    n = min(n, len(data["labels"]))
    start = time.perf_counter()
    with torch.no_grad():
        post = estimator(
            torch.from_numpy(data["flux"][:n]),
            torch.from_numpy(data["error"][:n]),
            step_generator(POSTERIOR_SEED + 1, 0),
        )
    seconds = time.perf_counter() - start
    true, snr = data["labels"][:n], data["snr"][:n]
    names = ("T_eff", "log_g", "M_H")
    r2 = {
        key: score(true, pred, snr, names)["overall"]["metrics"]["log_g"]["r2"]
        for key, pred in (("stored", data["posterior_mean"][:n]), ("fine", post.mean.numpy()))
    }
    return {
        "n": n,
        "stored": {"grid": list(settings.grid), "n_samples": settings.n_samples},
        "fine": {"grid": list(grid), "n_samples": n_samples},
        "rounds": settings.n_rounds,
        "r2_stored": r2["stored"],
        "r2_fine": r2["fine"],
        "delta": r2["fine"] - r2["stored"],
        "median_ess_stored": float(np.median(data["posterior_ess"][:n])),
        "median_ess_fine": float(post.ess.median()),
        "seconds": seconds,
    }
