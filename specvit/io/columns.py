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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ERROR_NAMES",
    "FLUX_NAMES",
    "MASK_NAMES",
    "UNCERTAINTY_TEXT",
    "WAVE_NAMES",
    "ColumnChoice",
    "choose_name",
    "find_name",
    "missing_message",
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
