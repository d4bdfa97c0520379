"""Read spectra from NumPy ``.npz`` archives.

Keys: ``flux`` (N, L) or (L,) (required); the uncertainty as ``error`` or ``sigma`` (1σ),
``variance`` (σ²) or ``ivar`` (1/σ²); ``wavelength`` or ``wave`` in Å, (L,) or (N, L);
``mask`` (non-zero = bad); ``medium`` (``"vacuum"``, the default, or ``"air"``). Any other 1-D
array with one entry per spectrum (e.g. ``id``, ``objid``) is kept as an identifier. NPZ
members are compressed or not, but never memory-mapped: each array is read whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.table import Table

from specvit.io.spectra import SpectrumSet

__all__ = ["open_npz"]

_ERROR_KEYS = {"error": "std", "sigma": "std", "variance": "var", "ivar": "ivar"}
_WAVE_KEYS = ("wavelength", "wave")


@contextmanager
def open_npz(path: str | Path) -> Iterator[SpectrumSet]:
    """Open an ``.npz`` archive of spectra (see the module docstring for the keys).

    Parameters
    ----------
    path : str or pathlib.Path
        The archive.

    Yields
    ------
    SpectrumSet

    Raises
    ------
    ValueError
        If the archive has no ``flux`` array.
    """
    with np.load(path, allow_pickle=False) as archive:
        keys = set(archive.files)
        if "flux" not in keys:
            raise ValueError(f"{path}: no 'flux' array (found: {sorted(keys)})")
        flux = archive["flux"]
        flux = flux[None] if flux.ndim == 1 else flux
        err_key = next((k for k in _ERROR_KEYS if k in keys), None)
        wave_key = next((k for k in _WAVE_KEYS if k in keys), None)

        def rows(key: str | None) -> np.ndarray | None:
            if key is None:
                return None
            arr = archive[key]
            return arr[None] if arr.ndim == 1 and flux.shape[0] == 1 else arr

        wave = None if wave_key is None else archive[wave_key]
        medium = str(archive["medium"]) if "medium" in keys else "vacuum"
        used = {"flux", "medium", "mask", err_key, wave_key}
        ids = Table(
            {
                k: archive[k]
                for k in sorted(keys - used)
                if archive[k].ndim == 1 and len(archive[k]) == flux.shape[0]
            }
        )
        yield SpectrumSet(
            flux=flux,
            error=rows(err_key),
            uncertainty=_ERROR_KEYS[err_key] if err_key else "std",
            wavelength=wave,
            mask=rows("mask" if "mask" in keys else None),
            medium=medium,
            ids=ids,
        )
