"""Read spectra from FITS: PFS data-model files, image HDUs and binary tables.

Layouts, tried in this order:

1. **PFS data-model files** (``DAMD_VER`` in the primary or the ``FLUX`` header): the
   single-spectrum ``pfsObject`` / ``pfsSingle`` and the multi-spectrum ``pfsCoadd`` /
   ``pfsCalibrated`` containers. Flux from ``FLUX``; the variance from row 0 of ``COVAR`` (an
   image, or a binary table with ``row_0..row_2`` columns); wavelengths from a ``WAVELENGTH``
   HDU (nm unless ``BUNIT`` says otherwise) or the ``FLUX`` header's WCS; ``FLUX``,
   ``WAVELENGTH`` and ``MASK`` may be images or binary tables with one variable-length
   ``value`` column (spectra of different lengths). Identifiers ``catId``, ``tract``,
   ``patch``, ``objId`` from the ``TARGET`` table's rows (multi-spectrum files) or its header
   (single spectra). Mask bits are chosen by name (:data:`DEFAULT_BAD_MASK_BITS`, or the
   ``mask_bits`` argument) from the ``MP_*`` keys of the ``MASK`` header or, in the
   multi-spectrum files, of each row of the ``METADATA`` table.
2. **Images**: flux in an image HDU with a flux name (:mod:`specvit.io.columns`, else the first
   image HDU with data), (L,) or (N, L). Uncertainty, wavelength and mask from image HDUs with
   those roles' names (``COVAR``: row 0 is the variance); a ``MASK`` counts every non-zero
   value as bad. Wavelengths from an image HDU (unit from ``BUNIT``, else Å) or from the flux
   header's linear WCS on axis 1 (``CRVAL1``, ``CRPIX1``, ``CDELT1`` or ``CD1_1``,
   ``CUNIT1``; ``CTYPE1 = AWAV`` or ``AIRORVAC = 'air'`` means air; ``DC-FLAG = 1`` means log10
   Å).
3. **Binary table** with a flux column. An array column (one spectrum per row) gives N
   spectra; every other scalar column is kept as an identifier. A scalar column (one pixel per
   row) gives one spectrum. Uncertainty, wavelength and mask columns are found by their roles'
   names; the wavelength unit comes from the column's ``TUNIT`` (default Å).

Without a wavelength the spectra must already be on the model grid; when the file holds
other pixel-sized arrays that a wavelength could hide in, the reader refuses to guess and lists
them (name the wavelength, or ``none``, with :class:`~specvit.io.columns.ColumnChoice`). It
does the same for an unrecognised array whose name suggests an uncertainty.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
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
)
from specvit.io.spectra import RaggedSpectrumSet, SpectrumSet

__all__ = ["DEFAULT_BAD_MASK_BITS", "open_fits"]

#: PFS mask planes that make a pixel bad by default: the DRP's own rejection list for coadds
#: (``NO_DATA``, ``CR``, ``BAD_SKY``, ``BAD_FLUXCAL``, ``INTRP``, ``SAT``) plus the detector
#: defects ``BAD``, ``BAD_FLAT`` and ``UNMASKEDNAN``. Informational planes (``FIBERTRACE``,
#: ``DETECTED``, ``EDGE``, ``OVERLAP``, ``SUSPECT`` …) do not.
DEFAULT_BAD_MASK_BITS = (
    "NO_DATA",
    "CR",
    "BAD_SKY",
    "BAD_FLUXCAL",
    "INTRP",
    "SAT",
    "BAD",
    "BAD_FLAT",
    "UNMASKEDNAN",
)
_PFS_TARGET_KEYS = ("CATID", "TRACT", "PATCH", "OBJID")
_PFS_ID_NAMES = ("catId", "tract", "patch", "objId")
_PLANE = re.compile(r"MP_(\w+?):\s*(\d+)")
_LOOKS_LIKE_ERROR = re.compile(r"ERR|SIG|VAR|UNC|NOISE", re.IGNORECASE)


@contextmanager
def open_fits(
    path: str | Path,
    columns: ColumnChoice | None = None,
    mask_bits: Sequence[str] | None = None,
) -> Iterator[SpectrumSet | RaggedSpectrumSet]:
    """Open a FITS file of spectra (see the module docstring for the layouts).

    Parameters
    ----------
    path : str or pathlib.Path
        The file.
    columns : ColumnChoice, optional
        Names of the flux, error and wavelength chosen by the user.
    mask_bits : sequence of str, optional
        Names of the mask planes that make a pixel bad in files that name their planes
        (``MP_*`` keys); ``("ALL",)`` for every non-zero bit. Default
        :data:`DEFAULT_BAD_MASK_BITS`.

    Yields
    ------
    SpectrumSet or RaggedSpectrumSet
        Image and table data stay memory-mapped while the context is open; spectra of
        different lengths come as a :class:`~specvit.io.spectra.RaggedSpectrumSet`.

    Raises
    ------
    ValueError
        If the file is not readable FITS or no layout matches (the message names the file).
    """
    columns = columns or ColumnChoice()
    try:
        hdul = fits.open(path, memmap=True)
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError … on bad bytes
        raise ValueError(f"{path}: not a readable FITS file ({exc})") from exc
    try:
        try:
            spectra = _read(hdul, columns, mask_bits)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        except Exception as exc:  # a truncated or corrupted HDU surfaces when its data is read
            raise ValueError(f"{path}: cannot read its data ({type(exc).__name__}: {exc})") from exc
        yield spectra
    finally:
        hdul.close()


def _read(
    hdul: fits.HDUList, columns: ColumnChoice, mask_bits: Sequence[str] | None
) -> SpectrumSet | RaggedSpectrumSet:
    chosen = any(v is not None for v in (columns.flux, columns.error, columns.wavelength))
    if not chosen and "FLUX" in hdul and _is_pfs(hdul):
        return _from_pfs(hdul, mask_bits)
    images = {h.name.upper(): h for h in hdul if h.is_image and h.data is not None}
    tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
    for hdu in tables:
        try:
            flux_name = find_name(hdu.columns.names, FLUX_NAMES, columns.flux)
        except KeyError:
            continue
        if flux_name is not None and (columns.flux is not None or not images):
            return _from_table(hdu, columns)
    if images:
        return _from_images(images, columns)
    found = [n for h in tables for n in h.columns.names]
    if columns.flux is not None:
        raise ValueError(f"no HDU or table column named {columns.flux!r} (found: {sorted(found)})")
    raise ValueError(
        "no image HDU with data and no binary table with a flux column; "
        + missing_message("flux column", "--flux-col", found, FLUX_NAMES)
    )


def _is_pfs(hdul: fits.HDUList) -> bool:
    return "DAMD_VER" in hdul[0].header or "DAMD_VER" in hdul["FLUX"].header


def _kind(name: str, columns: ColumnChoice) -> str:
    if columns.uncertainty is not None:
        return columns.uncertainty
    return ERROR_NAMES.get(name.upper(), "std")


def _check_unused(
    names: dict[str, Any], used: set[str], wave: Any, error: Any, columns: ColumnChoice
) -> None:
    """Refuse to guess when pixel-sized arrays could hold the wavelength or the uncertainty."""
    unused = sorted(n for n in names if n not in used)
    if wave is None and columns.wavelength is None and unused:
        raise ValueError(
            f"no wavelength found, yet the file holds other pixel arrays {unused}: pass "
            f"--wave-col NAME (known names: {', '.join(n.lower() for n in WAVE_NAMES)}), or "
            "--wave-col none if the spectra are on the model's grid"
        )
    suspects = [n for n in unused if _LOOKS_LIKE_ERROR.search(n)]
    if error is None and columns.error is None and suspects:
        raise ValueError(
            f"no uncertainty found, yet {suspects} looks like one: pass --error-col NAME "
            "(with --error-kind if it is not 1σ), or --error-col none"
        )


def _from_images(images: dict[str, Any], columns: ColumnChoice) -> SpectrumSet:
    flux_name = choose_name(images, FLUX_NAMES, columns.flux, "--flux-col")
    flux_name = flux_name or next(iter(images))
    flux_hdu = images[flux_name]
    flux = flux_hdu.data
    single = flux.ndim == 1

    def as_rows(arr: np.ndarray) -> np.ndarray:
        return arr[None] if single else arr

    error, kind = None, "std"
    err_name = choose_name(images, ERROR_NAMES, columns.error, "--error-col")
    if err_name is not None:
        error, kind = images[err_name].data, _kind(err_name, columns)
        if err_name.upper() == "COVAR":  # near-diagonal covariance: row 0 is the variance
            error = error[0] if single else error[:, 0]
    mask_name = find_name(images, MASK_NAMES)
    mask = images[mask_name].data if mask_name else None
    medium = "vacuum"
    wave = None
    wave_name = choose_name(images, WAVE_NAMES, columns.wavelength, "--wave-col")
    source = {"flux": flux_name}
    if wave_name is not None:
        hdu = images[wave_name]
        wave = _to_angstrom(hdu.data, hdu.header.get("BUNIT"), wave_name)
        source["wavelength"] = f"{wave_name} [{hdu.header.get('BUNIT', 'Angstrom')}]"
    elif columns.wavelength is None:
        wave, medium = _wcs_wavelength(flux_hdu.header, flux.shape[-1])
        if wave is not None:
            source["wavelength"] = "WCS"
    if wave is not None and wave.ndim == 2 and single:
        wave = wave[0]
    if _says_air(flux_hdu.header):
        medium = "air"
    pixel_sized = {n: h for n, h in images.items() if h.data.shape[-1] == flux.shape[-1]}
    used = {flux_name, err_name, wave_name, mask_name}
    _check_unused(pixel_sized, used, wave, err_name, columns)
    if err_name is not None:
        source["error"] = f"{err_name} ({UNCERTAINTY_TEXT[kind]})"
    if mask_name is not None:
        source["mask"] = f"{mask_name} (non-zero)"
    return SpectrumSet(
        flux=as_rows(flux),
        error=None if error is None else as_rows(error),
        uncertainty=kind,
        wavelength=wave,
        mask=None if mask is None else as_rows(mask),
        medium=medium,
        source=source,
    )


def _pfs_array(hdu: Any) -> np.ndarray | list:
    """An image HDU's data, or the rows of a binary table's first (variable-length) column."""
    if hdu.is_image:
        return hdu.data
    return list(hdu.data[hdu.columns.names[0]])


def _pfs_variance(hdu: Any, single: bool) -> np.ndarray | list:
    """Row 0 of the PFS near-diagonal covariance: the variance."""
    if hdu.is_image:
        return hdu.data[0] if single else hdu.data[:, 0]
    return list(hdu.data["row_0"])


def _mask_planes(hdul: fits.HDUList, n: int) -> list[dict[str, int]] | None:
    """Mask-plane names → bit, from the MASK header or per row from the METADATA table."""
    header = hdul["MASK"].header
    planes = {k[3:]: int(v) for k, v in header.items() if k.startswith("MP_")}
    if planes:
        return [planes] * n
    if "METADATA" in hdul and "metadata" in hdul["METADATA"].columns.names:
        rows = []
        for entry in hdul["METADATA"].data["metadata"]:
            text = entry if isinstance(entry, str) else "".join(np.asarray(entry).astype(str))
            rows.append({name: int(bit) for name, bit in _PLANE.findall(text)})
        if len(rows) == n and all(rows):
            return rows
    return None


def _bad_bits(planes: dict[str, int], names: Sequence[str] | None) -> int:
    if names is not None and [n.upper() for n in names] == ["ALL"]:
        return ~0
    wanted = DEFAULT_BAD_MASK_BITS if names is None else tuple(n.upper() for n in names)
    unknown = sorted(set(wanted) - set(planes)) if names is not None else []
    if unknown:
        raise ValueError(
            f"mask planes {unknown} are not in the file; it has {sorted(planes)} (or ALL)"
        )
    return sum(1 << planes[name] for name in wanted if name in planes)


def _from_pfs(
    hdul: fits.HDUList, mask_bits: Sequence[str] | None
) -> SpectrumSet | RaggedSpectrumSet:
    flux = _pfs_array(hdul["FLUX"])
    single = isinstance(flux, np.ndarray) and flux.ndim == 1
    n = 1 if single else len(flux)
    source = {"flux": "FLUX"}
    error = None
    if "COVAR" in hdul:
        error = _pfs_variance(hdul["COVAR"], single)
        source["error"] = "COVAR row 0 (σ²)"
    if "WAVELENGTH" in hdul:
        hdu = hdul["WAVELENGTH"]
        unit = hdu.header.get("BUNIT", "nm")
        raw = _pfs_array(hdu)
        if isinstance(raw, list):
            wave = [_to_angstrom(w, unit) for w in raw]
        else:
            wave = _to_angstrom(raw, unit)
        source["wavelength"] = f"WAVELENGTH [{unit}]"
    else:
        length = (flux if single else flux[0]).shape[-1]
        wave, _ = _wcs_wavelength(hdul["FLUX"].header, length, pfs=True)
        if wave is None:
            raise ValueError("a PFS FLUX HDU with neither a WAVELENGTH HDU nor a wavelength WCS")
        source["wavelength"] = "FLUX WCS"
    mask, bits = None, None
    if "MASK" in hdul:
        mask = _pfs_array(hdul["MASK"])
        planes = _mask_planes(hdul, n)
        if planes is None:
            source["mask"] = "MASK (non-zero: no MP_* plane names)"
        else:
            values = [_bad_bits(p, mask_bits) for p in planes]
            bits = np.array(values, dtype=np.int64)
            names = DEFAULT_BAD_MASK_BITS if mask_bits is None else [m.upper() for m in mask_bits]
            shown = [m for m in names if m in planes[0] or m == "ALL"]
            source["mask"] = "MASK bits " + ",".join(shown)
    ids = _pfs_ids(hdul, n, single)
    lengths = {len(a) for arr in (flux, error, mask, wave) if isinstance(arr, list) for a in arr}
    if len(lengths) > 1:  # variable-length table columns of different lengths
        wave_rows = wave if isinstance(wave, list) else [wave] * n
        return RaggedSpectrumSet(
            flux=list(flux),
            error=None if error is None else list(error),
            wavelength=wave_rows,
            mask=None if mask is None else list(mask),
            uncertainty="var",
            ids=ids,
            mask_bits=bits,
            source=source,
        )
    flux, error, mask, wave = (
        np.stack(arr) if isinstance(arr, list) else arr for arr in (flux, error, mask, wave)
    )
    if isinstance(wave, np.ndarray) and wave.ndim == 2 and np.all(wave == wave[:1]):
        wave = wave[0]

    def as_rows(arr: Any) -> Any:
        return None if arr is None else (arr[None] if single else arr)

    return SpectrumSet(
        flux=as_rows(flux),
        error=as_rows(error),
        uncertainty="var",
        wavelength=wave,
        mask=as_rows(mask),
        ids=ids,
        mask_bits=bits,
        source=source,
    )


def _pfs_ids(hdul: fits.HDUList, n: int, single: bool) -> Table:
    """catId, tract, patch, objId of each spectrum, from the TARGET table or its header."""
    if "TARGET" not in hdul:
        return Table()
    target = hdul["TARGET"]
    names = target.columns.names if isinstance(target, fits.BinTableHDU) else []
    if not single and len(target.data) == n and "objId" in names:
        cols = {}
        for name in _PFS_ID_NAMES:
            if name in names:
                values = target.data[name]
                if values.dtype == object or getattr(values[0], "ndim", 0):  # variable-length chars
                    values = ["".join(np.asarray(v).astype(str)) for v in values]
                cols[name] = np.asarray(values)
        return Table(cols)
    header = target.header
    return Table(
        {
            name: [header[key]]
            for key, name in zip(_PFS_TARGET_KEYS, _PFS_ID_NAMES, strict=True)
            if key in header
        }
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


def _from_table(hdu: fits.BinTableHDU, columns: ColumnChoice) -> SpectrumSet:
    data, names = hdu.data, hdu.columns.names
    flux_name = choose_name(names, FLUX_NAMES, columns.flux, "--flux-col")
    flux = data[flux_name]
    err_name = choose_name(names, ERROR_NAMES, columns.error, "--error-col")
    wave_name = choose_name(names, WAVE_NAMES, columns.wavelength, "--wave-col")
    mask_name = find_name(names, MASK_NAMES)
    per_row = flux.ndim == 2

    def rows(arr: np.ndarray) -> np.ndarray:
        return arr if per_row else arr[None]

    error = None if err_name is None else rows(data[err_name])
    kind = "std" if err_name is None else _kind(err_name, columns)
    source = {"flux": flux_name}
    wave = None
    if wave_name is not None:
        unit = hdu.columns[wave_name].unit
        wave = _to_angstrom(data[wave_name], unit, wave_name)
        if per_row and wave.ndim == 2 and np.all(wave == wave[:1]):
            wave = wave[0]
        source["wavelength"] = f"{wave_name} [{unit or 'Angstrom'}]"
    mask = None if mask_name is None else rows(data[mask_name])
    used = {flux_name, err_name, wave_name, mask_name}
    if per_row:
        pixel_sized = {n: 0 for n in names if data[n].shape == flux.shape}
    else:
        pixel_sized = {n: 0 for n in names if data[n].ndim == 1 and data[n].dtype.kind in "fiu"}
    _check_unused(pixel_sized, used, wave, err_name, columns)
    if err_name is not None:
        source["error"] = f"{err_name} ({UNCERTAINTY_TEXT[kind]})"
    if mask_name is not None:
        source["mask"] = f"{mask_name} (non-zero)"
    ids = Table()
    if per_row:
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
        source=source,
    )
