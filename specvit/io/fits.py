"""Read spectra from FITS: PFS ``pfsObject`` files, image HDUs and binary tables.

Layouts, tried in this order:

1. **Images** (this covers ``pfsObject``): flux in an image HDU named ``FLUX`` (else the first
   image HDU with data), (L,) or (N, L). Uncertainty from an image HDU named ``ERROR``, ``ERR``,
   ``SIGMA`` or ``STDDEV`` (1σ), ``VARIANCE`` or ``VAR`` (σ²), ``IVAR`` or ``INVVAR`` (1/σ²),
   or ``COVAR`` (PFS: row 0 of the near-diagonal covariance is the variance). Mask from ``MASK``
   (non-zero = bad, so every PFS mask bit counts as bad). Wavelengths from an image HDU
   ``WAVELENGTH`` / ``WAVE`` (unit from ``BUNIT``; nm for PFS files, else Å), or from the
   flux header's linear WCS on axis 1 (``CRVAL1``, ``CRPIX1``, ``CDELT1`` or ``CD1_1``,
   ``CUNIT1``; ``CTYPE1 = AWAV`` or ``AIRORVAC = 'air'`` means air; ``DC-FLAG = 1`` means log10
   Å); without any, the spectra must already be on the model grid. A PFS ``TARGET`` HDU gives
   the ids (catId, tract, patch, objId).
2. **Binary table** with a ``flux`` column (any case). An array column (one spectrum per row)
   gives N spectra; every scalar column is kept as an identifier. A scalar column (one pixel
   per row) gives one spectrum. Uncertainty, wavelength and mask columns are found by the
   names above (and ``flux_err``, ``fluxerr``, ``lambda``, ``loglam`` = log10 Å); the
   wavelength unit comes from the column's ``TUNIT`` (default Å).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from specvit.io.spectra import SpectrumSet

__all__ = ["open_fits"]

_ERROR_NAMES = {
    "ERROR": "std",
    "ERR": "std",
    "SIGMA": "std",
    "STDDEV": "std",
    "FLUX_ERR": "std",
    "FLUXERR": "std",
    "VARIANCE": "var",
    "VAR": "var",
    "COVAR": "var",
    "IVAR": "ivar",
    "INVVAR": "ivar",
}
_WAVE_NAMES = ("WAVELENGTH", "WAVE", "LAMBDA", "LOGLAM")
_PFS_TARGET_KEYS = ("CATID", "TRACT", "PATCH", "OBJID")
_PFS_ID_NAMES = ("catId", "tract", "patch", "objId")


@contextmanager
def open_fits(path: str | Path) -> Iterator[SpectrumSet]:
    """Open a FITS file of spectra (see the module docstring for the layouts).

    Parameters
    ----------
    path : str or pathlib.Path
        The file.

    Yields
    ------
    SpectrumSet
        Image and table data stay memory-mapped while the context is open.

    Raises
    ------
    ValueError
        If no layout matches.
    """
    with fits.open(path, memmap=True) as hdul:
        images = {h.name.upper(): h for h in hdul if h.is_image and h.data is not None}
        if images:
            yield _from_images(hdul, images)
            return
        for hdu in hdul:
            if isinstance(hdu, fits.BinTableHDU) and _find(hdu.columns.names, ("FLUX",)):
                yield _from_table(hdu)
                return
        raise ValueError(f"{path}: no image HDU with data and no binary table with a 'flux' column")


def _find(names: list[str], wanted: tuple[str, ...] | dict) -> str | None:
    """The first of ``names`` whose upper-case form is in ``wanted`` (in ``wanted``'s order)."""
    upper = {n.upper(): n for n in names}
    return next((upper[w] for w in wanted if w in upper), None)


def _from_images(hdul: fits.HDUList, images: dict[str, Any]) -> SpectrumSet:
    flux_hdu = images.get("FLUX") or next(iter(images.values()))
    flux = flux_hdu.data
    single = flux.ndim == 1
    is_pfs = "TARGET" in hdul and "DAMD_VER" in flux_hdu.header

    def as_rows(arr: np.ndarray) -> np.ndarray:
        return arr[None] if single else arr

    error, kind = None, "std"
    name = _find(list(images), _ERROR_NAMES)
    if name is not None:
        error, kind = images[name].data, _ERROR_NAMES[name.upper()]
        if name.upper() == "COVAR":  # PFS near-diagonal covariance: row 0 is the variance
            error = error[0] if single else error[:, 0]
    mask = images["MASK"].data if "MASK" in images else None
    medium = "vacuum"
    wave = None
    wave_name = _find(list(images), _WAVE_NAMES)
    if wave_name is not None:
        hdu = images[wave_name]
        default = "nm" if is_pfs else "Angstrom"
        wave = _to_angstrom(hdu.data, hdu.header.get("BUNIT", default), wave_name)
    else:
        wave, medium = _wcs_wavelength(flux_hdu.header, flux.shape[-1], pfs=is_pfs)
    if wave is not None and wave.ndim == 2 and single:
        wave = wave[0]
    if _says_air(flux_hdu.header):
        medium = "air"
    ids = Table()
    if is_pfs:
        header = hdul["TARGET"].header
        ids = Table(
            {
                name: [header[key]]
                for key, name in zip(_PFS_TARGET_KEYS, _PFS_ID_NAMES, strict=True)
                if key in header
            }
        )
    return SpectrumSet(
        flux=as_rows(flux),
        error=None if error is None else as_rows(error),
        uncertainty=kind,
        wavelength=wave,
        mask=None if mask is None else as_rows(mask),
        medium=medium,
        ids=ids,
    )


def _says_air(header: fits.Header) -> bool:
    """Whether an ``AIRORVAC`` card (SDSS convention) declares air wavelengths."""
    return str(header.get("AIRORVAC", "")).lower().startswith("air")


def _to_angstrom(values: np.ndarray, unit: str | None, name: str = "") -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if name.upper() == "LOGLAM":
        return 10.0**values
    unit = u.Unit(unit or "Angstrom", parse_strict="silent")
    return values * unit.to(u.AA)


def _wcs_wavelength(
    header: fits.Header, length: int, pfs: bool = False
) -> tuple[np.ndarray | None, str]:
    """Wavelengths (Å) and medium from a 1-D linear WCS on axis 1, or (None, "vacuum").

    PFS files place array element 0 at FITS pixel 2 (the datamodel's ``WavelengthArray``
    writes ``CRPIX1 = L/2 + 1.5`` for the central wavelength and reads pixel 1, 0-based, as
    the first element); ``pfs=True`` follows that convention so wavelengths match the PFS
    reader's.
    """
    ctype = str(header.get("CTYPE1", "")).upper()
    if "CRVAL1" not in header:
        return None, "vacuum"
    medium = "air" if ctype.startswith("AWAV") else "vacuum"
    step = header.get("CDELT1", header.get("CD1_1"))
    if step is None:
        return None, medium
    first = 2.0 if pfs else 1.0  # FITS pixel of array element 0
    pix = np.arange(length, dtype=np.float64) + first - float(header.get("CRPIX1", 1.0))
    values = float(header["CRVAL1"]) + pix * float(step)
    if header.get("DC-FLAG") == 1:  # IRAF / SDSS convention: log10 of the wavelength in Å
        return 10.0**values, medium
    default = "Angstrom" if not ctype else "m"  # the FITS WCS default unit is the metre
    return _to_angstrom(values, header.get("CUNIT1", default)), medium


def _from_table(hdu: fits.BinTableHDU) -> SpectrumSet:
    data, names = hdu.data, hdu.columns.names
    flux = data[_find(names, ("FLUX",))]
    err_name = _find(names, _ERROR_NAMES)
    wave_name = _find(names, _WAVE_NAMES)
    mask_name = _find(names, ("MASK",))
    per_row = flux.ndim == 2

    def rows(arr: np.ndarray) -> np.ndarray:
        return arr if per_row else arr[None]

    error = None if err_name is None else rows(data[err_name])
    kind = "std" if err_name is None else _ERROR_NAMES[err_name.upper()]
    wave = None
    if wave_name is not None:
        unit = hdu.columns[wave_name].unit
        wave = _to_angstrom(data[wave_name], unit, wave_name)
        if per_row and wave.ndim == 2 and np.all(wave == wave[:1]):
            wave = wave[0]
    mask = None if mask_name is None else rows(data[mask_name])
    ids = Table()
    if per_row:
        used = {n for n in (err_name, wave_name, mask_name) if n}
        scalar = [n for n in names if data[n].ndim == 1 and n not in used]
        ids = Table({n: np.asarray(data[n]) for n in scalar})
    medium = "air" if _says_air(hdu.header) else "vacuum"
    return SpectrumSet(
        flux=rows(flux),
        error=error,
        uncertainty=kind,
        wavelength=wave,
        mask=mask,
        medium=medium,
        ids=ids,
    )
