"""`open_spectra`: open any supported file of spectra by its suffix."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from astropy.table import Table

from specvit.io.columns import ColumnChoice
from specvit.io.fits import open_fits
from specvit.io.hdf5 import ShardInfo, iter_shard, read_shard_info
from specvit.io.npz import open_npz
from specvit.io.spectra import RaggedSpectrumSet, SpectrumSet

__all__ = ["SPECTRUM_SUFFIXES", "ShardSpectra", "open_spectra"]

#: Input suffixes :func:`open_spectra` understands.
SPECTRUM_SUFFIXES = (".fits", ".fit", ".fits.gz", ".npz", ".h5", ".hdf5")


_SHARD_SOURCE = {"flux": "flux", "error": "error (1σ)", "wavelength": "wavelength [Angstrom]"}


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
            source=_SHARD_SOURCE,
        )

    def blocks(self, start: int, stop: int) -> Iterator[tuple[int, SpectrumSet]]:
        """Rows ``start:stop`` as one ``(first row, set)`` pair."""
        yield start, self.rows(start, stop)


@contextmanager
def _open_shard(path: str | Path) -> Iterator[ShardSpectra]:
    try:
        info = read_shard_info(path)
    except (OSError, KeyError) as exc:  # h5py: not HDF5, truncated; a missing dataset
        raise ValueError(f"{path}: not a readable specvit shard ({exc})") from exc
    yield ShardSpectra(info)


def open_spectra(
    path: str | Path,
    columns: ColumnChoice | None = None,
    mask_bits: Sequence[str] | None = None,
) -> AbstractContextManager[SpectrumSet | RaggedSpectrumSet | ShardSpectra]:
    """Open a file of spectra, choosing the reader by the file's suffix.

    Parameters
    ----------
    path : str or pathlib.Path
        A FITS (:func:`~specvit.io.fits.open_fits`), NPZ (:func:`~specvit.io.npz.open_npz`)
        or HDF5 shard (``.h5`` / ``.hdf5``, :mod:`specvit.io.hdf5`) file.
    columns : ColumnChoice, optional
        Names of the flux, error and wavelength (FITS and NPZ).
    mask_bits : sequence of str, optional
        Mask planes that make a pixel bad, for FITS files that name them (PFS).

    Returns
    -------
    contextlib.AbstractContextManager
        Yields a :class:`~specvit.io.spectra.SpectrumSet` (arrays may stay on disk until the
        context closes), a :class:`~specvit.io.spectra.RaggedSpectrumSet` (spectra of
        different lengths) or, for a shard, a :class:`ShardSpectra`; all have ``len()`` and
        ``blocks(start, stop)``.

    Raises
    ------
    ValueError
        For an unknown suffix, a path that is not a regular file (a device such as
        ``/dev/zero``, a FIFO, a folder), and (from the readers, naming the file) for a file
        that is not readable or holds no spectra in a known layout.
    OSError
        When the file cannot be opened.
    """
    if Path(path).exists() and not Path(path).is_file():
        raise ValueError(f"{path}: not a regular file (a device, a FIFO or a folder)")
    name = Path(path).name.lower()
    if name.endswith((".fits", ".fit", ".fits.gz")):
        return open_fits(path, columns, mask_bits)
    if name.endswith(".npz"):
        return open_npz(path, columns)
    if name.endswith((".h5", ".hdf5")):
        return _open_shard(path)
    raise ValueError(f"{path}: unknown spectrum file type; supported: {SPECTRUM_SUFFIXES}")
