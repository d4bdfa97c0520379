"""`SpectrumSet`: spectra read from a file, with their identifiers, as `specvit.predict` takes them.

Readers (:func:`specvit.io.open_spectra` and the format modules) return a :class:`SpectrumSet`
whose arrays may still be on disk (memory maps, HDF5 datasets); :meth:`SpectrumSet.rows` reads
a range of rows into memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from astropy.table import Table

from specvit.io.columns import UNCERTAINTY_POWER

__all__ = ["RaggedSpectrumSet", "SpectrumSet", "stack_sets"]

Uncertainty = Literal["std", "var", "ivar"]


@dataclass
class SpectrumSet:
    """N spectra on one or several wavelength grids, with one row of identifiers each.

    Attributes
    ----------
    flux : array-like
        (N, L) flux, any unit; may be a memory map or an HDF5 dataset.
    error : array-like or None
        (N, L) uncertainty, meaning given by ``uncertainty``.
    uncertainty : {"std", "var", "ivar"}
        ``error`` holds 1σ, the variance or the inverse variance.
    wavelength : numpy.ndarray or None
        (L,) shared or (N, L) per-spectrum wavelengths in Å; None = already on the model grid.
    mask : array-like or None
        (N, L) or (L,); non-zero = bad pixel (after ``mask_bits``).
    medium : {"vacuum", "air"}
        Medium of ``wavelength``.
    ids : astropy.table.Table
        N rows of identifiers from the file (may have no columns).
    mask_bits : int, numpy.ndarray or None
        Bits of ``mask`` that mark a bad pixel, for all spectra or (N,) one value each;
        :meth:`rows` applies them. None: every non-zero value is bad.
    source : dict
        Where each array came from (``{"flux": "FLUX", "error": "IVAR (1/σ²)", …}``), for
        the CLI's summary.
    unit : astropy.units.UnitBase or None
        Unit of ``flux`` (e.g. from ``BUNIT``); None: plain numbers.
    error_unit : astropy.units.UnitBase or None
        Unit of ``error`` as stored; None: ``unit`` to the power its kind implies (σ, σ²,
        1/σ²). Ignored when ``unit`` is None.
    sky : array-like or None
        (N, L) the sky subtracted from ``flux``, in its unit (PFS files: ``SKY``), for exact
        mode.
    """

    flux: Any
    error: Any = None
    uncertainty: Uncertainty = "std"
    wavelength: np.ndarray | None = None
    mask: Any = None
    medium: Literal["vacuum", "air"] = "vacuum"
    ids: Table = field(default_factory=Table)
    mask_bits: Any = None
    source: dict[str, str] = field(default_factory=dict)
    unit: Any = None
    error_unit: Any = None
    sky: Any = None

    def __post_init__(self) -> None:
        shape = tuple(self.flux.shape)
        if len(shape) != 2:
            raise ValueError(f"flux has shape {shape}; expected (N, L)")
        for name in ("error", "wavelength", "mask", "sky"):
            arr = getattr(self, name)
            if arr is None:
                continue
            allowed = [shape] if name in ("error", "sky") else [shape, shape[1:]]
            if tuple(arr.shape) not in allowed:
                raise ValueError(
                    f"{name} has shape {tuple(arr.shape)} for flux of shape {shape}; expected "
                    + " or ".join(map(str, allowed))
                )
        if len(self.ids.colnames) == 0:
            self.ids = Table()
        elif len(self.ids) != len(self):
            raise ValueError(f"{len(self.ids)} identifier rows for {len(self)} spectra")

    def __len__(self) -> int:
        return int(self.flux.shape[0])

    def rows(self, start: int, stop: int) -> SpectrumSet:
        """Rows ``start:stop`` read into memory (numpy arrays)."""

        def take(arr: Any) -> Any:
            if arr is None:
                return None
            if arr.ndim == 1:  # a shared wavelength or mask
                return np.asarray(arr)
            return np.asarray(arr[start:stop])

        ids = self.ids[start:stop] if self.ids.colnames else Table()
        mask = take(self.mask)
        if mask is not None and self.mask_bits is not None:
            bits = _row_bits(self.mask_bits, start, stop)
            mask = mask & (bits[:, None] if bits.ndim else bits)
        return replace(
            self,
            flux=take(self.flux),
            error=take(self.error),
            sky=take(self.sky),
            wavelength=take(self.wavelength),
            mask=mask,
            mask_bits=None,
            ids=ids,
        )

    def blocks(self, start: int, stop: int) -> Iterator[tuple[int, SpectrumSet]]:
        """Rows ``start:stop`` in memory as ``(first row, set)`` pairs (here one pair)."""
        yield start, self.rows(start, stop)

    def predict_kwargs(self, sky: bool = False) -> dict[str, Any]:
        """Keyword arguments for :func:`specvit.predict` / :meth:`specvit.Predictor.predict`
        (flux and error as astropy Quantities when the file gives the flux unit); with
        ``sky``, the subtracted sky too where the file has it (exact mode reads it)."""
        flux, error = self.flux, self.error
        sky_arr = self.sky if sky else None
        if self.unit is not None:
            from astropy import units as u

            flux = u.Quantity(flux, self.unit, copy=False)
            if sky_arr is not None:
                sky_arr = u.Quantity(sky_arr, self.unit, copy=False)
            if error is not None:
                power = UNCERTAINTY_POWER[self.uncertainty]
                unit = self.unit**power if self.error_unit is None else self.error_unit
                error = u.Quantity(error, unit, copy=False)
        return {
            "flux": flux,
            "error": error,
            "wavelength": self.wavelength,
            "mask": self.mask,
            "medium": self.medium,
            "uncertainty": self.uncertainty,
            "sky": sky_arr,
        }


@dataclass
class RaggedSpectrumSet:
    """Spectra of different lengths (PFS variable-length table columns), one array per row.

    Attributes
    ----------
    flux, error, wavelength, mask, sky : list of numpy.ndarray (or None for error, mask, sky)
        One (L_i,) array per spectrum; wavelengths in Å.
    uncertainty, medium, ids, mask_bits, source, unit, error_unit
        As in :class:`SpectrumSet`.
    """

    flux: list
    error: list | None
    wavelength: list
    mask: list | None
    uncertainty: Uncertainty = "std"
    medium: Literal["vacuum", "air"] = "vacuum"
    ids: Table = field(default_factory=Table)
    mask_bits: Any = None
    source: dict[str, str] = field(default_factory=dict)
    unit: Any = None
    error_unit: Any = None
    sky: list | None = None

    def __len__(self) -> int:
        return len(self.flux)

    def blocks(self, start: int, stop: int) -> Iterator[tuple[int, SpectrumSet]]:
        """Rows ``start:stop`` as runs of equal-length spectra, ``(first row, set)`` each."""
        first = start
        for i in range(start, stop + 1):
            if i == stop or len(self.flux[i]) != len(self.flux[first]):
                if i > first:
                    yield first, self._rows(first, i)
                first = i

    def _rows(self, start: int, stop: int) -> SpectrumSet:
        def stack(arrays: list | None) -> np.ndarray | None:
            return None if arrays is None else np.stack([np.asarray(a) for a in arrays[start:stop]])

        wave = stack(self.wavelength)
        if np.all(wave == wave[:1]):
            wave = wave[0]
        return SpectrumSet(
            flux=stack(self.flux),
            error=stack(self.error),
            uncertainty=self.uncertainty,
            wavelength=wave,
            mask=stack(self.mask),
            medium=self.medium,
            ids=self.ids[start:stop] if self.ids.colnames else Table(),
            mask_bits=_row_bits(self.mask_bits, start, stop),
            source=self.source,
            unit=self.unit,
            error_unit=self.error_unit,
            sky=stack(self.sky),
        ).rows(0, stop - start)


def _row_bits(bits: Any, start: int, stop: int) -> Any:
    """The mask bits of rows ``start:stop`` (one value for all, or one per row)."""
    if bits is None:
        return None
    bits = np.asarray(bits)
    return bits[start:stop] if bits.ndim else bits


def _compatible(a: SpectrumSet, b: SpectrumSet) -> bool:
    return (
        a.flux.shape[1] == b.flux.shape[1]
        and (a.error is None) == (b.error is None)
        and a.uncertainty == b.uncertainty
        and (a.wavelength is None) == (b.wavelength is None)
        and (a.mask is None) == (b.mask is None)
        and (a.sky is None) == (b.sky is None)
        and a.medium == b.medium
        and a.unit == b.unit
        and a.error_unit == b.error_unit
    )


def stack_sets(sets: list[SpectrumSet]) -> list[SpectrumSet]:
    """Concatenate consecutive in-memory sets that can share one batch.

    Sets are joined when they have the same number of pixels, the same uncertainty kind, the
    same medium and the same units; their wavelengths become one (N, L) per-spectrum array
    unless all are equal. Order is preserved.

    Parameters
    ----------
    sets : list of SpectrumSet
        In-memory sets (from :meth:`SpectrumSet.rows`).

    Returns
    -------
    list of SpectrumSet
    """
    out: list[SpectrumSet] = []
    group: list[SpectrumSet] = []
    for s in [*sets, None]:
        if group and (s is None or not _compatible(group[0], s)):
            out.append(group[0] if len(group) == 1 else _concat(group))
            group = []
        if s is not None:
            group.append(s)
    return out


def _concat(group: list[SpectrumSet]) -> SpectrumSet:
    from astropy.table import vstack

    def cat(name: str) -> np.ndarray | None:
        arrays = [getattr(s, name) for s in group]
        if arrays[0] is None:
            return None
        if name in ("wavelength", "mask") and all(a.ndim == 1 for a in arrays):
            if all(np.array_equal(arrays[0], a) for a in arrays[1:]):
                return arrays[0]
        shapes = [s.flux.shape for s in group]
        return np.concatenate(
            [np.broadcast_to(a, shape) for a, shape in zip(arrays, shapes, strict=True)]
        )

    with_ids = [s.ids for s in group if s.ids.colnames]
    ids = Table()
    if len(with_ids) == len(group):
        ids = vstack(with_ids, join_type="outer", metadata_conflicts="silent")
    return replace(
        group[0],
        flux=cat("flux"),
        error=cat("error"),
        wavelength=cat("wavelength"),
        mask=cat("mask"),
        sky=cat("sky"),
        ids=ids,
    )
