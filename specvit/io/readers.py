"""`open_spectra`: open any supported file of spectra by its suffix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from astropy.table import Table

from specvit.io.fits import open_fits
from specvit.io.hdf5 import ShardInfo, iter_shard, read_shard_info
from specvit.io.npz import open_npz
from specvit.io.spectra import SpectrumSet

__all__ = ["SPECTRUM_SUFFIXES", "ShardSpectra", "open_spectra"]

#: Input suffixes :func:`open_spectra` understands.
SPECTRUM_SUFFIXES = (".fits", ".fit", ".fits.gz", ".npz", ".h5", ".hdf5")


class ShardSpectra:
    """An HDF5 shard (:mod:`specvit.io.hdf5` layout) read a block of rows at a time.

    Parameters
    ----------
    info : ShardInfo
        The shard's metadata, from :func:`~specvit.io.hdf5.read_shard_info`.
    """

    def __init__(self, info: ShardInfo) -> None:
        self.info = info

    def __len__(self) -> int:
        return self.info.n_spectra

    def rows(self, start: int, stop: int) -> SpectrumSet:
        """Rows ``start:stop`` (through :func:`~specvit.io.hdf5.iter_shard`), with the
        shard's labels table (true labels, magnitude, S/N …) as identifiers."""
        batch = next(iter_shard(self.info.path, max(stop - start, 1), start, stop))
        ids = Table({name: batch[name] for name in self.info.fields})
        return SpectrumSet(
            flux=batch["flux"],
            error=batch["error"],
            wavelength=self.info.wavelength,
            medium=self.info.medium,
            ids=ids,
        )


@contextmanager
def _open_shard(path: str | Path) -> Iterator[ShardSpectra]:
    yield ShardSpectra(read_shard_info(path))


def open_spectra(path: str | Path) -> AbstractContextManager[SpectrumSet | ShardSpectra]:
    """Open a file of spectra, choosing the reader by the file's suffix.

    Parameters
    ----------
    path : str or pathlib.Path
        A FITS (:func:`~specvit.io.fits.open_fits`), NPZ (:func:`~specvit.io.npz.open_npz`)
        or HDF5 shard (``.h5`` / ``.hdf5``, :mod:`specvit.io.hdf5`) file.

    Returns
    -------
    contextlib.AbstractContextManager
        Yields a :class:`~specvit.io.spectra.SpectrumSet` (arrays may stay on disk until the
        context closes) or, for a shard, a :class:`ShardSpectra`; both have ``len()`` and
        ``rows(start, stop)``.

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
    if name.endswith((".h5", ".hdf5")):
        return _open_shard(path)
    raise ValueError(f"{path}: unknown spectrum file type; supported: {SPECTRUM_SUFFIXES}")
