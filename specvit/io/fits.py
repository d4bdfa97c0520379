"""Read spectra from FITS: PFS data-model files, image HDUs and binary tables.

Layouts, tried in this order:

1. **PFS data-model files** (``DAMD_VER`` in the primary or the ``FLUX`` header): the
   single-spectrum ``pfsObject`` / ``pfsSingle`` and the multi-spectrum ``pfsCoadd`` /
   ``pfsCalibrated`` containers. Flux from ``FLUX``; the variance from row 0 of ``COVAR`` (an
   image, or a binary table with ``row_0..row_2`` columns); wavelengths from a ``WAVELENGTH``
   HDU (nm unless ``BUNIT`` says otherwise) or the ``FLUX`` header's WCS; ``FLUX``,
   ``WAVELENGTH`` and ``MASK`` may be images or binary tables with one variable-length
   ``value`` column (spectra of different lengths). Identifiers ``catId``, ``tract``,
   ``patch``, ``objId``, ``ra``, ``dec`` from the ``TARGET`` table's rows (multi-spectrum
   files) or its header (single spectra). Mask bits are chosen by name
   (:data:`DEFAULT_BAD_MASK_BITS`, or the ``mask_bits`` argument) from the ``MP_*`` keys of
   the ``MASK`` header or, in the multi-spectrum files, of each row of the ``METADATA`` table.
2. **Images** with a flux name (:mod:`specvit.io.columns`), (L,) or (N, L).
3. **Binary table** with a flux column. An array column (one spectrum per row) gives N
   spectra, a variable-length array column spectra of different lengths; every other scalar
   column is kept as an identifier. A scalar column (one pixel per row) gives one spectrum.
   Uncertainty, wavelength and mask columns are found by their roles' names; the wavelength
   unit comes from the column's ``TUNIT`` (default Å).
4. **An unnamed primary image** (flux in the primary HDU, no other image that could hold it).

The flux is never guessed: when no HDU or column has a flux name and the primary image is not
the only candidate, the reader lists the image HDUs and asks for ``--flux-col``. For images,
uncertainty, wavelength and mask come from image HDUs with those roles' names (``COVAR``: row
0 is the variance); a ``MASK`` counts every non-zero value as bad. Wavelengths come from an
image HDU (unit from ``BUNIT``, else Å) or from the flux header's WCS on axis 1 (``CRVAL1``,
``CRPIX1``, the step ``CD1_1``, else ``CDELT1`` × ``PC1_1``, and ``CUNIT1``): ``CTYPE1`` is
``WAVE`` or ``AWAV`` (air), linear or ``-LOG`` (FITS WCS paper III; default unit m), IRAF's
``LINEAR`` or none (default unit Å); ``AIRORVAC = 'air'`` also means air and ``DC-FLAG = 1``
log10 Å. Images with ``BZERO`` / ``BSCALE`` / ``BLANK`` (e.g. uint16) are read scaled, into
memory, with ``BLANK`` pixels masked.

The flux unit comes from the flux's ``BUNIT`` / ``TUNIT`` (:func:`~specvit.io.columns.parse_unit`;
absent or not understood: plain numbers), the uncertainty's from its own card, else the flux
unit to the power its kind implies; :func:`specvit.predict` converts a flux per unit
wavelength to f_ν.

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
    parse_unit,
    wavelength_in_angstrom,
    wavelength_unit_text,
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
_PFS_TARGET_KEYS = ("CATID", "TRACT", "PATCH", "OBJID", "RA", "DEC")
_PFS_ID_NAMES = ("catId", "tract", "patch", "objId", "ra", "dec")
_PLANE = re.compile(r"MP_(\w+?):\s*(\d+)")
_LOOKS_LIKE_ERROR = re.compile(r"ERR|SIG|VAR|UNC|NOISE", re.IGNORECASE)
#: Header cards that make astropy scale an image (it cannot then memory-map it).
_SCALING_CARDS = ("BZERO", "BSCALE", "BLANK")
#: CTYPE1 axis types read as wavelengths, with their default unit: the FITS WCS spectral
#: types (metres) and IRAF's LINEAR or no CTYPE1 (Å).
_WAVE_CTYPES = {"WAVE": "m", "AWAV": "m", "LINEAR": "Angstrom", "": "Angstrom"}


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
        if _has_scaled_images(hdul):  # astropy scales those only in memory
            hdul.close()
            hdul = fits.open(path, memmap=False)
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


def _has_scaled_images(hdul: fits.HDUList) -> bool:
    """Whether an uncompressed image HDU has ``BZERO``, ``BSCALE`` or ``BLANK`` cards."""
    plain = (fits.PrimaryHDU, fits.ImageHDU)
    images = (h for h in hdul if isinstance(h, plain) and not isinstance(h, fits.CompImageHDU))
    return any(card in h.header for h in images for card in _SCALING_CARDS)


def _read(
    hdul: fits.HDUList, columns: ColumnChoice, mask_bits: Sequence[str] | None
) -> SpectrumSet | RaggedSpectrumSet:
    chosen = any(v is not None for v in (columns.flux, columns.error, columns.wavelength))
    if not chosen and "FLUX" in hdul and _is_pfs(hdul):
        return _from_pfs(hdul, mask_bits)
    images = {h.name.upper(): h for h in hdul if h.is_image and h.data is not None}
    if columns.flux is None and find_name(images, FLUX_NAMES) is not None:
        return _from_images(images, columns)
    tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
    for hdu in tables:
        try:
            flux_name = find_name(hdu.columns.names, FLUX_NAMES, columns.flux)
        except KeyError:
            continue
        if flux_name is not None:
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


def _unnamed_flux(images: dict[str, Any], columns: ColumnChoice) -> str:
    """The primary image when it is the only image that could hold the flux; else an error
    listing the candidates (the flux is never guessed)."""
    roles = {n.upper() for n in (columns.error, columns.wavelength) if n is not None}
    roles |= {*ERROR_NAMES, *WAVE_NAMES, *MASK_NAMES}
    candidates = [n for n in images if n not in roles] or list(images)
    if candidates == ["PRIMARY"]:
        return "PRIMARY"
    raise ValueError(missing_message("flux HDU", "--flux-col", candidates, FLUX_NAMES))


def _from_images(images: dict[str, Any], columns: ColumnChoice) -> SpectrumSet:
    flux_name = choose_name(images, FLUX_NAMES, columns.flux, "--flux-col")
    flux_name = flux_name or _unnamed_flux(images, columns)
    flux_hdu = images[flux_name]
    flux = flux_hdu.data
    single = flux.ndim == 1

    def as_rows(arr: np.ndarray) -> np.ndarray:
        return arr[None] if single else arr

    unit = parse_unit(flux_hdu.header.get("BUNIT"))
    error, kind, error_unit = None, "std", None
    err_name = choose_name(images, ERROR_NAMES, columns.error, "--error-col")
    if err_name is not None:
        error, kind = images[err_name].data, _kind(err_name, columns)
        error_unit = parse_unit(images[err_name].header.get("BUNIT"))
        if err_name.upper() == "COVAR":  # near-diagonal covariance: row 0 is the variance
            error = error[0] if single else error[:, 0]
    mask_name = find_name(images, MASK_NAMES)
    mask = images[mask_name].data if mask_name else None
    if mask is not None and mask.dtype.kind == "f":  # BLANK pixels of a scaled image: NaN
        mask = mask != 0
    medium = "vacuum"
    wave = None
    wave_name = choose_name(images, WAVE_NAMES, columns.wavelength, "--wave-col")
    source = _flux_source(flux_name, unit)
    if wave_name is not None:
        hdu = images[wave_name]
        wave = wavelength_in_angstrom(hdu.data, hdu.header.get("BUNIT"), wave_name)
        bunit = wavelength_unit_text(wave_name, hdu.header.get("BUNIT"))
        source["wavelength"] = f"{wave_name} [{bunit}]"
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
        unit=unit,
        error_unit=error_unit if unit is not None else None,
    )


def _flux_source(name: str, unit: Any) -> dict[str, str]:
    """The summary's entry for the flux: its name, and its unit when the file gives one."""
    return {"flux": name if unit is None else f"{name} [{unit}]"}


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
    unit = parse_unit(hdul["FLUX"].header.get("BUNIT"))
    source = _flux_source("FLUX", unit)
    error = None
    if "COVAR" in hdul:
        error = _pfs_variance(hdul["COVAR"], single)
        source["error"] = "COVAR row 0 (σ²)"
    if "WAVELENGTH" in hdul:
        hdu = hdul["WAVELENGTH"]
        wave_unit = hdu.header.get("BUNIT", "nm")
        raw = _pfs_array(hdu)
        if isinstance(raw, list):
            wave = [wavelength_in_angstrom(w, wave_unit) for w in raw]
        else:
            wave = wavelength_in_angstrom(raw, wave_unit)
        source["wavelength"] = f"WAVELENGTH [{wave_unit}]"
    else:
        length = (flux if single else flux[0]).shape[-1]
        wave, _ = _wcs_wavelength(hdul["FLUX"].header, length, pfs=True)
        if wave is None:
            raise ValueError("a PFS FLUX HDU with neither a WAVELENGTH HDU nor a wavelength WCS")
        source["wavelength"] = "FLUX WCS"
    sky = None
    if "SKY" in hdul:
        sky = _pfs_array(hdul["SKY"])
        source["sky"] = "SKY"
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
    if single:
        flux, error, mask, sky = (None if a is None else a[None] for a in (flux, error, mask, sky))
    return _assemble(
        flux,
        error,
        wave,
        mask,
        sky=sky,
        uncertainty="var",
        ids=_pfs_ids(hdul, n, single),
        mask_bits=bits,
        source=source,
        unit=unit,
    )


def _assemble(
    flux: Any, error: Any, wave: Any, mask: Any, sky: Any = None, **fields: Any
) -> SpectrumSet | RaggedSpectrumSet:
    """A set from (N, L) arrays or lists of one array per row (variable-length columns): a
    :class:`~specvit.io.spectra.RaggedSpectrumSet` when the rows differ in length.

    ``wave`` is (L,), (N, L) or a list; ``fields`` are the other attributes of the set.
    """
    arrays = (flux, error, mask, wave, sky)
    lengths = {len(a) for arr in arrays if isinstance(arr, list) for a in arr}
    if len(lengths) > 1:
        if wave is None:
            raise ValueError(
                f"spectra of different lengths ({min(lengths)}–{max(lengths)} pixels) need a "
                "wavelength: pass --wave-col NAME"
            )
        return RaggedSpectrumSet(
            flux=list(flux),
            error=None if error is None else list(error),
            wavelength=wave if isinstance(wave, list) else [wave] * len(flux),
            mask=None if mask is None else list(mask),
            sky=None if sky is None else list(sky),
            **fields,
        )
    flux, error, mask, wave, sky = (np.stack(a) if isinstance(a, list) else a for a in arrays)
    if isinstance(wave, np.ndarray) and wave.ndim == 2 and np.all(wave == wave[:1]):
        wave = wave[0]
    return SpectrumSet(flux=flux, error=error, wavelength=wave, mask=mask, sky=sky, **fields)


def _pfs_ids(hdul: fits.HDUList, n: int, single: bool) -> Table:
    """catId, tract, patch, objId, ra, dec of each spectrum, from the TARGET table or header."""
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


def _wcs_wavelength(
    header: fits.Header, length: int, pfs: bool = False
) -> tuple[np.ndarray | None, str]:
    """Wavelengths (Å) and medium from a 1-D WCS on axis 1, or (None, "vacuum").

    PFS files place array element 0 at FITS pixel 2 (the datamodel's ``WavelengthArray``
    writes ``CRPIX1 = L/2 + 1.5`` for the central wavelength and reads pixel 1, 0-based, as
    the first element); ``pfs=True`` follows that convention so wavelengths match the PFS
    reader's.

    Raises
    ------
    ValueError
        For a ``CTYPE1`` that is not a wavelength axis read here (frequency, velocity, sky,
        tabulated or non-linear algorithms).
    """
    if "CRVAL1" not in header:
        return None, "vacuum"
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    axis, _, algorithm = ctype.partition("-")
    algorithm = algorithm.strip("-")
    if axis not in _WAVE_CTYPES or algorithm not in ("", "LOG") or (algorithm and axis == ""):
        raise ValueError(
            f"CTYPE1 = {ctype!r} is not a wavelength axis read here (WAVE, AWAV, their -LOG "
            "forms, IRAF's LINEAR): pass --wave-col NAME, or --wave-col none if the spectra "
            "are on the model's grid"
        )
    medium = "air" if axis == "AWAV" else "vacuum"
    if "CD1_1" in header:  # the FITS standard: CDi_j replaces CDELTi and PCi_j
        step = float(header["CD1_1"])
    elif "CDELT1" in header:
        step = float(header["CDELT1"]) * float(header.get("PC1_1", 1.0))
    else:
        return None, medium
    first = 2.0 if pfs else 1.0  # FITS pixel of array element 0
    offset = (np.arange(length, dtype=np.float64) + first - float(header.get("CRPIX1", 1.0))) * step
    crval = float(header["CRVAL1"])
    if algorithm == "LOG":  # FITS WCS paper III: λ = λ_r exp(w / λ_r)
        values = crval * np.exp(offset / crval)
    else:
        values = crval + offset
    if header.get("DC-FLAG") == 1:  # IRAF / SDSS convention: log10 of the wavelength in Å
        return 10.0**values, medium
    return wavelength_in_angstrom(values, header.get("CUNIT1", _WAVE_CTYPES[axis])), medium


def _from_table(hdu: fits.BinTableHDU, columns: ColumnChoice) -> SpectrumSet | RaggedSpectrumSet:
    data, names = hdu.data, hdu.columns.names
    flux_name = choose_name(names, FLUX_NAMES, columns.flux, "--flux-col")
    err_name = choose_name(names, ERROR_NAMES, columns.error, "--error-col")
    wave_name = choose_name(names, WAVE_NAMES, columns.wavelength, "--wave-col")
    mask_name = find_name(names, MASK_NAMES)
    flux = data[flux_name]
    ragged = _is_variable_length(flux)
    per_row = ragged or flux.ndim == 2

    def rows(name: str | None) -> np.ndarray | list | None:
        if name is None:
            return None
        column = data[name]
        if _is_variable_length(column):
            return [np.asarray(cell) for cell in column]
        return column if per_row else column[None]

    kind = "std" if err_name is None else _kind(err_name, columns)
    unit = parse_unit(hdu.columns[flux_name].unit)
    source = _flux_source(flux_name, unit)
    wave = None
    if wave_name is not None:
        wave_unit = hdu.columns[wave_name].unit
        values = data[wave_name]
        if _is_variable_length(values):
            wave = [wavelength_in_angstrom(cell, wave_unit, wave_name) for cell in values]
        else:
            wave = wavelength_in_angstrom(values, wave_unit, wave_name)
        source["wavelength"] = f"{wave_name} [{wavelength_unit_text(wave_name, wave_unit)}]"
    used = {flux_name, err_name, wave_name, mask_name}
    if ragged:
        pixel_sized = {n: 0 for n in names if _is_variable_length(data[n])}
    elif per_row:
        pixel_sized = {n: 0 for n in names if data[n].shape == flux.shape}
    else:
        pixel_sized = {n: 0 for n in names if data[n].ndim == 1 and data[n].dtype.kind in "fiu"}
    _check_unused(pixel_sized, used, wave, err_name, columns)
    error_unit = None
    if err_name is not None:
        source["error"] = f"{err_name} ({UNCERTAINTY_TEXT[kind]})"
        error_unit = parse_unit(hdu.columns[err_name].unit) if unit is not None else None
    if mask_name is not None:
        source["mask"] = f"{mask_name} (non-zero)"
    ids = Table()
    if per_row:
        scalar = [n for n in names if n not in used and data[n].ndim == 1]
        scalar = [n for n in scalar if not _is_variable_length(data[n])]
        ids = Table({n: np.asarray(data[n]) for n in scalar})
    return _assemble(
        rows(flux_name),
        rows(err_name),
        wave,
        rows(mask_name),
        uncertainty=kind,
        medium="air" if _says_air(hdu.header) else "vacuum",
        ids=ids,
        source=source,
        unit=unit,
        error_unit=error_unit,
    )


def _is_variable_length(column: np.ndarray) -> bool:
    """A variable-length array column (``P`` / ``Q`` formats): one array per cell."""
    return column.dtype == object
