"""`open_spectra`: open any supported file of spectra by its suffix."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from specvit.io.fits import open_fits
from specvit.io.npz import open_npz
from specvit.io.spectra import SpectrumSet

__all__ = ["SPECTRUM_SUFFIXES", "open_spectra"]

#: Input suffixes :func:`open_spectra` understands.
SPECTRUM_SUFFIXES = (".fits", ".fit", ".fits.gz", ".npz")


def open_spectra(path: str | Path) -> AbstractContextManager[SpectrumSet]:
    """Open a file of spectra, choosing the reader by the file's suffix.

    Parameters
    ----------
    path : str or pathlib.Path
        A FITS (:func:`~specvit.io.fits.open_fits`) or NPZ (:func:`~specvit.io.npz.open_npz`)
        file.

    Returns
    -------
    contextlib.AbstractContextManager
        Yields a :class:`~specvit.io.spectra.SpectrumSet`; arrays may stay on disk until the
        context closes.

    Raises
    ------
    ValueError
        For an unknown suffix.
    """
    name = Path(path).name.lower()
    if name.endswith((".fits", ".fit", ".fits.gz")):
        return open_fits(path)
    if name.endswith(".npz"):
        return open_npz(path)
    raise ValueError(f"{path}: unknown spectrum file type; supported: {SPECTRUM_SUFFIXES}")
