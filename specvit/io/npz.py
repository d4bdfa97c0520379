"""Read spectra from NumPy ``.npz`` archives.

Keys (any case; the names of each role are those of :mod:`specvit.io.columns`): the flux, e.g.
``flux`` (N, L) or (L,) (required); the uncertainty, e.g. ``error`` or ``sigma`` (1σ),
``variance`` (σ²) or ``ivar`` (1/σ²); the wavelength, e.g. ``wavelength`` or ``wave``, in Å
(``loglam``: log10 Å), (L,) or (N, L); ``mask`` (non-zero = bad); ``medium`` (``"vacuum"``, the
default, or ``"air"``, any case).
Any other 1-D array with one entry per spectrum (e.g. ``id``, ``objid``) is kept as an
identifier. NPZ members are compressed or not, but never memory-mapped: each array is read
whole. Archives are opened with ``allow_pickle=False``: object arrays are refused.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.table import Table

from specvit.io.columns import (
    ERROR_NAMES,
    FLUX_NAMES,
    MASK_NAMES,
    UNCERTAINTY_TEXT,
    WAVE_NAMES,
    ColumnChoice,
    choose_name,
    find_name,
    missing_message,
    wavelength_in_angstrom,
    wavelength_unit_text,
)
from specvit.io.spectra import SpectrumSet

__all__ = ["open_npz"]


@contextmanager
def open_npz(path: str | Path, columns: ColumnChoice | None = None) -> Iterator[SpectrumSet]:
    """Open an ``.npz`` archive of spectra (see the module docstring for the keys).

    Parameters
    ----------
    path : str or pathlib.Path
        The archive.
    columns : ColumnChoice, optional
        Keys of the flux, error and wavelength chosen by the user.

    Yields
    ------
    SpectrumSet

    Raises
    ------
    ValueError
        If the archive is empty, truncated or corrupted (bad CRC), holds pickled objects, or
        has no flux array; the message names the file.
    """
    try:
        spectra = _read(path, columns or ColumnChoice())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    except (EOFError, zipfile.BadZipFile, zlib.error, OSError) as exc:
        why = "empty" if isinstance(exc, EOFError) else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{path}: not a readable .npz archive ({why})") from exc
    yield spectra


def _read(path: str | Path, columns: ColumnChoice) -> SpectrumSet:
    with np.load(path, allow_pickle=False) as archive:
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        arrays = {k: archive[k] for k in archive.files}  # reads (and CRC-checks) every member
    keys = list(arrays)
    flux_key = choose_name(keys, FLUX_NAMES, columns.flux, "--flux-col")
    if flux_key is None:
        raise ValueError(missing_message("flux array", "--flux-col", keys, FLUX_NAMES))
    err_key = choose_name(keys, ERROR_NAMES, columns.error, "--error-col")
    wave_key = choose_name(keys, WAVE_NAMES, columns.wavelength, "--wave-col")
    mask_key = find_name(keys, MASK_NAMES)
    flux = arrays[flux_key]
    flux = flux[None] if flux.ndim == 1 else flux
    if flux.ndim != 2:
        raise ValueError(f"{flux_key!r} has shape {flux.shape}; expected (L,) or (N, L)")

    def rows(key: str | None) -> np.ndarray | None:
        if key is None:
            return None
        arr = arrays[key]
        return arr[None] if arr.ndim == 1 and flux.shape[0] == 1 else arr

    source = {"flux": flux_key}
    kind = "std"
    if err_key is not None:
        kind = columns.uncertainty or ERROR_NAMES.get(err_key.upper(), "std")
        source["error"] = f"{err_key} ({UNCERTAINTY_TEXT[kind]})"
    wave = None
    if wave_key is not None:
        wave = wavelength_in_angstrom(arrays[wave_key], None, wave_key)
        source["wavelength"] = f"{wave_key} [{wavelength_unit_text(wave_key, None)}]"
    if mask_key is not None:
        source["mask"] = f"{mask_key} (non-zero)"
    medium = str(arrays["medium"]).lower() if "medium" in arrays else "vacuum"
    used = {flux_key, "medium", mask_key, err_key, wave_key}
    pixel_sized = [k for k in keys if k not in used and arrays[k].shape[-1:] == flux.shape[-1:]]
    if wave_key is None and columns.wavelength is None and pixel_sized:
        raise ValueError(
            f"no wavelength found, yet the archive holds other pixel arrays {sorted(pixel_sized)}: "
            "pass --wave-col NAME, or --wave-col none if the spectra are on the model's grid"
        )
    ids = Table(
        {
            k: arrays[k]
            for k in sorted(set(keys) - used)
            if arrays[k].ndim == 1 and len(arrays[k]) == flux.shape[0]
        }
    )
    return SpectrumSet(
        flux=flux,
        error=rows(err_key),
        uncertainty=kind,
        wavelength=wave,
        mask=rows(mask_key),
        medium=medium,
        ids=ids,
        source=source,
    )
