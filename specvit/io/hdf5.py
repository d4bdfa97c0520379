"""HDF5 shards of spectra in the paper's layout, and a streaming reader.

Layout of one shard (one HDF5 file, ``N`` spectra of ``L`` pixels)
------------------------------------------------------------------
=================  ==================  ======================================================
key                shape, dtype        meaning
=================  ==================  ======================================================
``flux``           (N, L) float32      flux density per pixel, nJy (``attrs["unit"]``)
``error``          (N, L) float32      1σ uncertainty of ``flux``, same unit
``wavelength``     (L,) float64        pixel-centre wavelengths, Å, ``attrs["medium"]``
                                       (``"vacuum"`` for PFS MR)
``labels``         (N,) compound       one row per spectrum; fields ``T_eff`` (K),
                                       ``log_g`` (dex), ``M_H`` (dex), ``mag`` (HSC-i AB),
                                       ``snr`` (:func:`specvit.median_snr` of the shard's
                                       ``flux`` and ``error``: the observed S/N in engine
                                       shards, the expected S/N,
                                       :func:`specvit.preprocessing.expected_snr`, in
                                       noiseless ones); optional ``rv`` (km/s) and any
                                       further float fields
=================  ==================  ======================================================

Optional per-spectrum datasets (evaluation sets, written by ``training/evaluation/eval_sets.py``; a
reader that does not know them ignores them):

=================  ==================  ======================================================
key                shape, dtype        meaning
=================  ==================  ======================================================
``posterior_mean`` (N, 3) float32      Bayes-optimal estimate ``E[θ | flux, σ]`` of
                                       ``T_eff, log_g, M_H`` (K, dex, dex) under the set's
                                       prior (:class:`specvit.bounds.PosteriorMean`)
``posterior_std``  (N, 3) float32      posterior standard deviation of the same labels
``posterior_ess``  (N,) float32        effective number of importance samples behind them
``crlb_log_g``     (N,) float32        unbiased Cramér–Rao bound on log g, dex², at the
                                       star's magnitude (nuisances ``attrs["nuisance"]``)
=================  ==================  ======================================================

Root attributes: ``format`` = ``"specvit-shard"``, ``format_version`` = 1, ``n_spectra``,
``label_names`` (the label fields in model order, ``T_eff, log_g, M_H``), and free-form
provenance (``description``, ``prior``, ``noise``, ``seed``, ``created_by``). ``flux`` and
``error`` are chunked by rows (``chunk_rows`` spectra per chunk), so a batch read touches only its
own chunks: :func:`iter_shard` never holds more than one batch (plus HDF5's small chunk cache) in
memory, whatever the shard's size. Writers live in ``training/engine/shards.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np

from specvit.labels import LABEL_NAMES

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "OPTIONAL_DATASETS",
    "REQUIRED_FIELDS",
    "ShardInfo",
    "iter_shard",
    "read_shard_info",
]

FORMAT = "specvit-shard"
FORMAT_VERSION = 1
#: Fields every shard's ``labels`` table holds: the labels, the HSC-i magnitude and the S/N.
REQUIRED_FIELDS = (*LABEL_NAMES, "mag", "snr")
#: Optional per-spectrum datasets: name -> columns (0: shape (N,); 3: (N, 3) in label order).
OPTIONAL_DATASETS = {"posterior_mean": 3, "posterior_std": 3, "posterior_ess": 0, "crlb_log_g": 0}
#: Chunk cache per open dataset (bytes): a few chunks, never a shard.
_CHUNK_CACHE = 4 * 1024 * 1024


@dataclass(frozen=True)
class ShardInfo:
    """What a shard holds, read from its metadata only.

    Attributes
    ----------
    path : str
        The file.
    n_spectra, n_pixels : int
        Number of spectra and of pixels per spectrum.
    wavelength : numpy.ndarray
        ``(n_pixels,)`` Å.
    medium : str
        ``"vacuum"`` or ``"air"``.
    unit : str
        Flux unit.
    fields : tuple of str
        Columns of the ``labels`` table.
    attrs : dict
        Root attributes (format, provenance).
    """

    path: str
    n_spectra: int
    n_pixels: int
    wavelength: np.ndarray
    medium: str
    unit: str
    fields: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


def _open(source: str | Path | IO[bytes]) -> h5py.File:
    try:
        return h5py.File(source, "r", rdcc_nbytes=_CHUNK_CACHE)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such shard: {source}") from None
    except OSError as err:
        raise ValueError(f"{source} is not a readable HDF5 file: {err}") from None


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check(f: h5py.File, source: Any) -> None:
    missing = [k for k in ("flux", "error", "wavelength", "labels") if k not in f]
    if missing:
        raise ValueError(f"{source} is not a specvit shard: missing datasets {missing}")
    names = f["labels"].dtype.names or ()
    absent = [k for k in REQUIRED_FIELDS if k not in names]
    if absent:
        raise ValueError(f"{source}: labels table lacks fields {absent}")
    if f["flux"].ndim != 2:
        raise ValueError(f"{source}: flux has shape {f['flux'].shape}; a shard's is (N, L)")
    n, length = f["flux"].shape
    if f["error"].shape != (n, length) or f["wavelength"].shape != (length,):
        raise ValueError(f"{source}: flux, error and wavelength shapes disagree")
    if f["labels"].shape != (n,):
        raise ValueError(f"{source}: labels has {f['labels'].shape[0]} rows for {n} spectra")
    for key, columns in OPTIONAL_DATASETS.items():
        expected = (n, columns) if columns else (n,)
        if key in f and f[key].shape != expected:
            raise ValueError(f"{source}: {key} has shape {f[key].shape}, expected {expected}")


def read_shard_info(source: str | Path | IO[bytes]) -> ShardInfo:
    """Metadata of a shard (no spectra are read).

    Parameters
    ----------
    source : str, Path or binary file object
        The shard.

    Returns
    -------
    ShardInfo

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file, not HDF5, or not in the shard layout.
    """
    with _open(source) as f:
        _check(f, source)
        wave = f["wavelength"]
        return ShardInfo(
            path=str(source),
            n_spectra=int(f["flux"].shape[0]),
            n_pixels=int(f["flux"].shape[1]),
            wavelength=wave[()],
            medium=str(_attr(wave.attrs.get("medium", "vacuum"))),
            unit=str(_attr(f["flux"].attrs.get("unit", "nJy"))),
            fields=tuple(f["labels"].dtype.names),
            attrs={k: _attr(v) for k, v in f.attrs.items()},
        )


def iter_shard(
    source: str | Path | IO[bytes],
    batch_size: int,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Stream a shard in batches of consecutive spectra, reading only each batch's rows.

    Parameters
    ----------
    source : str, Path or binary file object
        The shard.
    batch_size : int
        Spectra per batch (the last batch may be smaller).
    start, stop : int
        Row range to read (default: all rows).

    Yields
    ------
    dict
        ``flux``, ``error`` (B, L) float32; ``labels`` (B, 3) float32 in the order
        :data:`~specvit.labels.LABEL_NAMES`; every field of the labels table as a (B,) array
        (``mag``, ``snr``, …); every :data:`OPTIONAL_DATASETS` entry the shard holds
        (``posterior_mean`` (B, 3), …); ``index`` (B,) int64 row numbers in the shard.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    with _open(source) as f:
        _check(f, source)
        n = f["flux"].shape[0]
        stop = n if stop is None else min(stop, n)
        if not 0 <= start <= stop:
            raise ValueError(f"need 0 ≤ start ≤ stop ≤ {n}, got start={start}, stop={stop}")
        flux, error, table = f["flux"], f["error"], f["labels"]
        optional = [f[k] for k in OPTIONAL_DATASETS if k in f]
        for lo in range(start, stop, batch_size):
            hi = min(lo + batch_size, stop)
            rows = table[lo:hi]
            batch = {
                "flux": flux[lo:hi],
                "error": error[lo:hi],
                "labels": np.stack([rows[k] for k in LABEL_NAMES], axis=-1).astype(np.float32),
                "index": np.arange(lo, hi, dtype=np.int64),
            }
            for name in rows.dtype.names:
                batch[name] = rows[name]
            for ds in optional:
                batch[ds.name.lstrip("/")] = ds[lo:hi]
            yield batch
