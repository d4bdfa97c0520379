"""The names readers look for: which column, HDU or array key holds the flux, σ, wavelength, mask.

Names are matched case-insensitively, in the order listed; the first match wins. A name given
explicitly (:class:`ColumnChoice`, the CLI's ``--flux-col``, ``--error-col``, ``--wave-col``)
replaces the search for that role; ``"none"`` for the error or the wavelength says the file has
none (the wavelength: the spectra are on the model's grid).

- **flux**: `flux`, `fl`, `spectrum`, `spec`
- **error, 1σ**: `error`, `err`, `sigma`, `stddev`, `flux_err`, `fluxerr`, `flux_error`,
  `e_flux`, `err_flux`, `eflux`, `uncertainty`, `unc`
- **error, σ²**: `variance`, `var`, `flux_var`, `covar` (PFS: row 0)
- **error, 1/σ²**: `ivar`, `invvar`, `inv_var`, `flux_ivar`
- **wavelength**: `wavelength`, `wave`, `wav`, `wl`, `lambda`, `lam`, `loglam` (log10 Å)
- **mask**: `mask`, `pixel_mask`, `pixmask`, `and_mask`

Units (FITS ``BUNIT`` / ``TUNIT``) are read with :func:`parse_unit`; wavelengths are brought
to Å by :func:`wavelength_in_angstrom` (``loglam`` holds log10 Å).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from astropy import units as u

__all__ = [
    "ERROR_NAMES",
    "FLUX_NAMES",
    "MASK_NAMES",
    "UNCERTAINTY_POWER",
    "UNCERTAINTY_TEXT",
    "WAVE_NAMES",
    "ColumnChoice",
    "choose_name",
    "find_name",
    "missing_message",
    "parse_unit",
    "wavelength_in_angstrom",
    "wavelength_unit_text",
]

Uncertainty = Literal["std", "var", "ivar"]

FLUX_NAMES = ("FLUX", "FL", "SPECTRUM", "SPEC")
#: Error names and what each holds: 1σ (``std``), the variance or the inverse variance.
ERROR_NAMES: dict[str, Uncertainty] = {
    **dict.fromkeys(
        (
            "ERROR",
            "ERR",
            "SIGMA",
            "STDDEV",
            "FLUX_ERR",
            "FLUXERR",
            "FLUX_ERROR",
            "E_FLUX",
            "ERR_FLUX",
            "EFLUX",
            "UNCERTAINTY",
            "UNC",
        ),
        "std",
    ),
    **dict.fromkeys(("VARIANCE", "VAR", "FLUX_VAR", "COVAR"), "var"),
    **dict.fromkeys(("IVAR", "INVVAR", "INV_VAR", "FLUX_IVAR"), "ivar"),
}
#: How each kind of uncertainty is written in messages and the CLI's summary.
UNCERTAINTY_TEXT = {"std": "1σ", "var": "σ²", "ivar": "1/σ²"}
#: The power of the flux unit each kind of uncertainty is in (σ, σ², 1/σ²).
UNCERTAINTY_POWER = {"std": 1, "var": 2, "ivar": -2}
WAVE_NAMES = ("WAVELENGTH", "WAVE", "WAV", "WL", "LAMBDA", "LAM", "LOGLAM")
MASK_NAMES = ("MASK", "PIXEL_MASK", "PIXMASK", "AND_MASK")


@dataclass(frozen=True)
class ColumnChoice:
    """Names the user chose for the flux, error and wavelength (None: search the known names).

    Attributes
    ----------
    flux, error, wavelength : str or None
        A column / HDU / array name (any case). ``"none"`` for ``error`` or ``wavelength``
        means the file has none.
    uncertainty : {"std", "var", "ivar"} or None
        What the chosen error holds; None: from its name if it is a known one, else 1σ.
    """

    flux: str | None = None
    error: str | None = None
    wavelength: str | None = None
    uncertainty: Uncertainty | None = None


def find_name(names: Iterable[str], wanted: Iterable[str], chosen: str | None = None) -> str | None:
    """The name among ``names`` to use for one role.

    Parameters
    ----------
    names : iterable of str
        What the file holds.
    wanted : iterable of str
        The role's known names, upper case, in order of preference.
    chosen : str, optional
        The user's choice: returned as spelled in the file, or ``KeyError`` if absent.

    Returns
    -------
    str or None
        The file's spelling of the first match, or None.
    """
    upper = {n.upper(): n for n in names}
    if chosen is not None:
        if chosen.lower() == "none":
            return None
        if chosen.upper() not in upper:
            raise KeyError(chosen)
        return upper[chosen.upper()]
    return next((upper[w] for w in wanted if w in upper), None)


def choose_name(
    names: Iterable[str], wanted: Iterable[str], chosen: str | None, option: str
) -> str | None:
    """:func:`find_name`, with a ``ValueError`` listing ``names`` when ``chosen`` is absent.

    ``option`` is the CLI option that made the choice (named in the message).
    """
    names = list(names)
    try:
        return find_name(names, wanted, chosen)
    except KeyError:
        raise ValueError(f"no {chosen!r} for {option} (found: {sorted(names)})") from None


def missing_message(role: str, option: str, found: Iterable[str], known: Iterable[str]) -> str:
    """The error for a role no known name matches, listing what the file holds."""
    return (
        f"no {role} among {sorted(found)} (known names: {', '.join(n.lower() for n in known)}); "
        f"name it with {option} NAME"
    )


def parse_unit(text: Any) -> u.UnitBase | None:
    """The astropy unit of a ``BUNIT`` / ``TUNIT`` card, or None.

    Parameters
    ----------
    text : str or None
        The card's value.

    Returns
    -------
    astropy.units.UnitBase or None
        None when the card is absent, blank or not understood (``ADU``, ``counts``): the
        values are then plain numbers. ``A`` in a unit string is read as Ångström (as in
        ``erg/s/cm2/A``), not as ampere.
    """
    if text is None or not str(text).strip():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        unit = u.Unit(str(text).strip(), parse_strict="silent")
    if isinstance(unit, u.UnrecognizedUnit):
        return None
    bases = getattr(unit, "bases", [unit])
    if u.A in bases:
        unit = u.CompositeUnit(
            getattr(unit, "scale", 1.0),
            [u.AA if b == u.A else b for b in bases],
            getattr(unit, "powers", [1]),
        )
    return unit


def wavelength_in_angstrom(values: Any, unit: str | None, name: str = "") -> np.ndarray:
    """Wavelengths in Å from a column, HDU or array.

    Parameters
    ----------
    values : array-like
        The stored values.
    unit : str or None
        Their unit (``TUNIT``, ``BUNIT``); None: Å.
    name : str
        The column's name: ``loglam`` (any case) holds log10 of the wavelength in Å.

    Returns
    -------
    numpy.ndarray
        float64 wavelengths in Å.

    Raises
    ------
    ValueError
        For a unit that is not understood or not a length.
    """
    values = np.asarray(values, dtype=np.float64)
    if name.upper() == "LOGLAM":
        return 10.0**values
    parsed = parse_unit(unit)
    if parsed is None and unit is not None and str(unit).strip():
        raise ValueError(f"wavelength unit {unit!r} is not understood; Å, nm or µm are")
    parsed = parsed or u.AA
    if not parsed.is_equivalent(u.AA):
        raise ValueError(f"wavelength unit {unit!r} is not a length")
    return values * parsed.to(u.AA)


def wavelength_unit_text(name: str, unit: str | None) -> str:
    """How a wavelength column's unit is shown in the CLI's summary."""
    return "log10 Angstrom" if name.upper() == "LOGLAM" else unit or "Angstrom"
