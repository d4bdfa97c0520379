"""specvit's results as PFS ``pfsStar`` files, the Galactic Archaeology (GA) per-star product.

One file per star, named as the PFS data model names them
(:data:`PFS_STAR_FILENAME`: catId, tract, patch, objId, nVisit, pfsVisitHash), so that the PFS
GA pipeline reads specvit's labels directly. The layout is the one the data model's own
``PfsStar.write`` produces (``Subaru-PFS/datamodel``, GA classes of the branch
``tickets/DAMD-162``; ``tests/data/pfs`` holds a file it wrote, which the tests compare with):

| HDU | name | content |
|---|---|---|
| 0 | PRIMARY | no data; specvit's provenance cards (``SPECVIT``, ``SVMODEL`` …) |
| 1… | FLUX, MASK, [WAVELENGTH], TARGET, SKY, COVAR, COVAR2, OBSERVATIONS, NOTES | the spectrum |
| +1 | STELLARPARAM | binary table, one row per parameter: the labels, then ``v_los`` |
| +2 | STELLARCOVAR | float32 image, n × n, indexed by the rows' ``covarId`` |
| +3 | MEASFLAG | binary table, one row: ``specvit``, its overall flag and status |

The spectrum's HDUs are carried over one by one from a pfsObject or pfsSingle file (not its
``FLUX_TABLE``: a pfsStar's has other columns), and rebuilt as a single-spectrum file holds
them from one row of a pfsCoadd or pfsCalibrated container (with a ``WAVELENGTH`` HDU, as the
data model writes a spectrum whose wavelengths are not a WCS).

``STELLARPARAM`` columns (formats as the data model writes them): ``method`` (``specvit``),
``frame`` (the velocity's reference frame, ``""`` for the other rows), ``param``, ``covarId``
(``B``), ``unit``, ``value`` and ``valueErr`` (``E``), ``flag`` (``L``, True = bad),
``status`` (text). A text column is ``<n>A`` when every row holds the same text and a
variable-length ``PA()`` array otherwise (``PA()`` also when that text is empty), the data
model's rule.

How specvit's table maps onto it (:func:`stellar_params`):

* ``param`` is the label's name (specvit's ``T_eff``, ``log_g``, ``M_H`` are the GA names);
  ``unit`` ``K``, ``dex``, ``dex``, ``km s-1`` (:data:`PARAM_UNITS`); ``value`` the label,
  ``valueErr`` its ``<label>_err`` (NaN for point-head models).
* ``v_los`` is ``v_rad``, the radial velocity of the emulator fit, measured on the input's own
  wavelengths: specvit applies no velocity correction, so its frame is the input's. The PFS
  DRP applies the barycentric correction when it merges arms (``doBarycentricCorr``), so for
  DRP products ``frame`` is ``bary`` (the default; pass another with ``frame``). Without a
  ``v_rad`` column (``physics=False``, a model off the emulator's grid) ``value`` is NaN; its
  error is ``v_rad_err`` where the table has one, else NaN.
* ``STELLARCOVAR`` is (labels + 1) × (labels + 1), ``covarId`` 0, 1, … in row order. The
  labels' block is the exact posterior's covariance (``cov_<a>_<b>``) in exact mode, else
  diagonal (a Gaussian head predicts independent σ); the diagonal is ``valueErr²``; specvit
  gives no label–velocity covariance (0). NaN where the value is missing (the data model's
  default for a missing value).
* ``flag`` (True = bad) and ``status`` come from the ``flags`` bit mask
  (:class:`~specvit.inference.flags.PredictFlag`): a label's row is flagged where specvit has no
  label (:meth:`~specvit.inference.flags.PredictFlag.no_result`) or marks its labels at risk
  (:data:`LABEL_FLAGS`: ``OUT_OF_DOMAIN``, ``OUTSIDE_PRIOR``, ``RV_OUTSIDE_TRAINING``,
  ``LOW_ESS``), and ``log_g``'s also at ``LOW_SNR`` (its value is then mostly the model's
  prior); ``PARTIAL_COVERAGE`` (and ``LOW_SNR`` for the other labels) only inform. The
  ``v_los`` row is flagged where there are no labels or ``OUT_OF_DOMAIN`` (the emulator does
  not fit the spectrum, so its velocity means nothing). Every row whose value is NaN is
  flagged. ``status`` is the space-separated names of the set bits that concern the row (a
  label row: all of them; ``v_los``: the no-result bits, ``OUT_OF_DOMAIN`` and
  ``RV_OUTSIDE_TRAINING``), ``NOT_MEASURED`` for a NaN value no bit explains, ``""`` when fine.
* ``MEASFLAG``: ``flag`` True where any label row is flagged, ``status`` every set bit's name.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from specvit.inference.flags import PredictFlag
from specvit.io.tables import commit_file, stage_file
from specvit.labels import LABEL_UNITS

__all__ = [
    "INFORMATIONAL_FLAGS",
    "LABEL_FLAGS",
    "METHOD",
    "NOT_IN_COVAR",
    "NOT_MEASURED",
    "ONE_LABEL_FLAGS",
    "PARAM_UNITS",
    "PFS_STAR_FILENAME",
    "SPECTRUM_HDUS",
    "VELOCITY",
    "VELOCITY_FLAGS",
    "PfsStarError",
    "PfsStarFile",
    "PfsStarIdentity",
    "StellarParam",
    "build_pfs_star",
    "measflag_hdu",
    "pfs_star_identities",
    "pfs_visit_hash",
    "read_pfs_star",
    "stellar_param_hdu",
    "stellar_params",
    "write_pfs_stars",
]

#: File name of a pfsStar file: catId, tract, patch, objId, nVisit (mod 1000), pfsVisitHash.
PFS_STAR_FILENAME = "pfsStar-%05d-%05d-%s-%016x-%03d-0x%016x.fits"
_FILENAME = re.compile(
    r"^pfsStar-(\d{5})-(\d{5})-(.*)-([0-9a-f]{16})-(\d{3})-0x([0-9a-f]{16})\.fits$"
)
#: ``method`` of specvit's rows in ``STELLARPARAM`` and ``MEASFLAG``.
METHOD = "specvit"
#: ``param`` of the line-of-sight velocity row.
VELOCITY = "v_los"
#: ``unit`` text of each parameter, as the data model's reference file spells them.
PARAM_UNITS = {"T_eff": "K", "log_g": "dex", "M_H": "dex", "v_los": "km s-1"}
#: ``covarId`` of a parameter that is not in ``STELLARCOVAR`` (the largest uint8).
NOT_IN_COVAR = 255
#: Flags that make every label's row bad (besides the no-result bits): the labels are at risk.
LABEL_FLAGS = (
    PredictFlag.OUT_OF_DOMAIN
    | PredictFlag.OUTSIDE_PRIOR
    | PredictFlag.RV_OUTSIDE_TRAINING
    | PredictFlag.LOW_ESS
    | PredictFlag.RV_UNCERTAIN
)
#: Flags that make one label's row bad, on top of :data:`LABEL_FLAGS`.
ONE_LABEL_FLAGS = {"log_g": PredictFlag.LOW_SNR}
#: Flags that only inform (in ``status``, not ``flag``), unless :data:`ONE_LABEL_FLAGS` says so.
INFORMATIONAL_FLAGS = PredictFlag.PARTIAL_COVERAGE | PredictFlag.LOW_SNR
#: Flags that make the ``v_los`` row bad (besides the no-result bits).
VELOCITY_FLAGS = PredictFlag.OUT_OF_DOMAIN | PredictFlag.RV_UNCERTAIN
#: Flags named in the ``v_los`` row's ``status``.
_VELOCITY_STATUS = PredictFlag.no_result() | VELOCITY_FLAGS | PredictFlag.RV_OUTSIDE_TRAINING
#: ``status`` of a row whose value is NaN with no flag to say why.
NOT_MEASURED = "NOT_MEASURED"

#: HDUs of a single-spectrum file that a pfsStar file carries over, in the data model's order.
SPECTRUM_HDUS = (
    "FLUX",
    "MASK",
    "WAVELENGTH",
    "TARGET",
    "SKY",
    "COVAR",
    "COVAR2",
    "OBSERVATIONS",
    "NOTES",
)
#: HDUs an input must have to make a pfsStar file from it (COVAR2 and NOTES may be missing).
_REQUIRED_HDUS = ("FLUX", "MASK", "TARGET", "SKY", "COVAR", "OBSERVATIONS")
#: The STELLARPARAM table: column, FITS format (None: text, by the data model's rule), TDOC.
_PARAM_COLUMNS = (
    ("method", None, "Line-of-sight velocity measurement method"),
    ("frame", None, "Reference frame of velocity: helio, bary"),
    ("param", None, "Stellar parameter: v_los, M_H, T_eff, log_g, a_M"),
    ("covarId", "B", "Param position within covariance matrix"),
    ("unit", None, "Physical unit of parameter"),
    ("value", "E", "Stellar parameter value"),
    ("valueErr", "E", "Stellar parameter error"),
    ("flag", "L", "Measurement flag (true means bad)"),
    ("status", None, "Measurement flags"),
)
_MEASFLAG_COLUMNS = (
    ("method", None, "Measurement method"),
    ("flag", "L", "Measurement flag (true means bad)"),
    ("status", None, "Measurement flags"),
)
#: Data-model versions (``DAMD_VER``) of the HDUs specvit writes, with their header comments.
_STELLARPARAM_VERSION = (2, "StellarParams datamodel version")
_MEASFLAG_VERSION = (2, "MeasurementFlags datamodel version")
_SPECTRUM_VERSION = (2, "PfsSimpleSpectrum datamodel version")
_FIBER_ARRAY_VERSION = (2, "PfsFiberArray datamodel version")
_TARGET_VERSION = (1, "Target datamodel version")
_OBSERVATIONS_VERSION = (2, "Observations datamodel version")
_NOTES_COMMENT = "PfsStarNotes datamodel version"
#: Header cards that describe an HDU's structure (not copied from one HDU's header to another's).
_STRUCTURAL = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|EXTEND|EXTNAME|EXTVER|BSCALE|BZERO|BUNIT"
    r"|T(FORM|TYPE|UNIT|DIM|NULL|SCAL|ZERO|DISP|DOC)\d+|TFIELDS|THEAP|CHECKSUM|DATASUM)$"
)
#: Per-spectrum columns of a container's OBSERVATIONS table, with a single-spectrum file's format
#: (None: text, as wide as the longest value).
_OBSERVATION_FORMATS = {
    "visit": "J",
    "arm": None,
    "spectrograph": "J",
    "fiberId": "J",
    "pfsDesignId": "K",
    "pfiNominal": "2E",
    "pfiCenter": "2E",
    "obsTime": None,
    "expTime": "E",
}


class PfsStarError(ValueError):
    """An input cannot give pfsStar files: not a PFS file, or its identifiers are missing."""


@dataclass(frozen=True)
class PfsStarIdentity:
    """What names a pfsStar file (the data model's identity keys).

    Attributes
    ----------
    catId, tract : int
        Catalogue id and sky tract.
    patch : str
        Sky patch, e.g. ``"3,4"``.
    objId : int
        Object id within the catalogue.
    nVisit : int
        Number of distinct visits, modulo 1000 (what the file name holds).
    pfsVisitHash : int
        :func:`pfs_visit_hash` of the visits.
    """

    catId: int
    tract: int
    patch: str
    objId: int
    nVisit: int
    pfsVisitHash: int

    @property
    def filename(self) -> str:
        """The file name, :data:`PFS_STAR_FILENAME` filled in."""
        values = (self.catId, self.tract, self.patch, self.objId, self.nVisit, self.pfsVisitHash)
        return PFS_STAR_FILENAME % values

    @classmethod
    def from_visits(
        cls, catId: int, tract: int, patch: str, objId: int, visits: Iterable[int]
    ) -> PfsStarIdentity:
        """The identity of a star observed in ``visits`` (repeats count once)."""
        unique = sorted({int(v) for v in visits})
        return cls(
            int(catId),
            int(tract),
            str(patch),
            int(objId),
            len(unique) % 1000,
            pfs_visit_hash(unique),
        )

    @classmethod
    def from_filename(cls, name: str | Path) -> PfsStarIdentity:
        """Parse a pfsStar file name.

        Raises
        ------
        ValueError
            If ``name`` does not match :data:`PFS_STAR_FILENAME`.
        """
        match = _FILENAME.match(Path(name).name)
        if match is None:
            raise ValueError(f"{Path(name).name!r} is not a pfsStar file name")
        cat, tract, patch, obj, n_visit, visit_hash = match.groups()
        return cls(int(cat), int(tract), patch, int(obj, 16), int(n_visit), int(visit_hash, 16))


def pfs_visit_hash(visits: Iterable[int]) -> int:
    """The data model's ``pfsVisitHash`` of a set of visits.

    SHA-1 of the text Python prints for the list of the sorted, distinct visit numbers as byte
    strings (``"[b'123400', b'123401']"``), its 63 low bits: the data model's
    ``calculatePfsVisitHash`` computes exactly this, so file names agree with the PFS
    pipelines'.

    Parameters
    ----------
    visits : iterable of int
        Visit numbers (repeats count once).

    Returns
    -------
    int
    """
    text = repr([str(v).encode() for v in sorted({int(v) for v in visits})])
    return int(hashlib.sha1(text.encode()).hexdigest(), 16) & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class StellarParam:
    """One row of the ``STELLARPARAM`` table (the data model's column names).

    Attributes
    ----------
    param : str
        ``T_eff``, ``log_g``, ``M_H``, ``v_los`` …
    value, valueErr : float
        The value and its 1σ; NaN when missing.
    unit : str
        The unit as text (``K``, ``dex``, ``km s-1``).
    covarId : int
        Row and column in ``STELLARCOVAR``; :data:`NOT_IN_COVAR` if not there.
    frame : str
        The velocity's reference frame (``bary``, ``helio``); ``""`` for other parameters.
    flag : bool
        True = bad.
    status : str
        Space-separated flag names, ``""`` when fine.
    method : str
        The code that measured it.
    """

    param: str
    value: float
    valueErr: float
    unit: str
    covarId: int = NOT_IN_COVAR
    frame: str = ""
    flag: bool = False
    status: str = ""
    method: str = METHOD


# ----------------------------------------------------------------------------- identities
def _is_pfs(hdul: fits.HDUList) -> bool:
    return "FLUX" in hdul and ("DAMD_VER" in hdul[0].header or "DAMD_VER" in hdul["FLUX"].header)


def _is_single(hdul: fits.HDUList) -> bool:
    """A pfsObject / pfsSingle file (one spectrum, FLUX a 1-D image), not a container."""
    flux = hdul["FLUX"]
    return flux.is_image and flux.header.get("NAXIS") == 1


def _text(value: Any) -> str:
    """A table cell as text: fixed-width strings, bytes, or variable-length character arrays
    (joined from the raw characters, so inner blanks survive)."""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    if isinstance(value, str):
        return value
    chars = np.asarray(value).view(np.ndarray)
    if chars.dtype.kind == "S":
        return b"".join(chars.tolist()).decode("ascii", "replace")
    return "".join(chars.astype(str).tolist())


def _check_pfs(hdul: fits.HDUList, where: str) -> None:
    if not _is_pfs(hdul):
        raise PfsStarError(
            f"{where}: not a PFS data-model file (no FLUX HDU with DAMD_VER): pfsStar files are "
            "made from pfsObject, pfsSingle, pfsCoadd or pfsCalibrated files"
        )


def _check_hdus(hdul: fits.HDUList, where: str) -> None:
    missing = [name for name in _REQUIRED_HDUS if name not in hdul]
    if missing:
        raise PfsStarError(f"{where}: a pfsStar file needs its {', '.join(missing)} HDU(s)")


def pfs_star_identities(hdul: fits.HDUList, where: str = "input") -> list[PfsStarIdentity]:
    """The pfsStar identity of every spectrum of an open PFS file, in the file's order.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        A pfsObject or pfsSingle file (identifiers in the TARGET header, visits in the
        OBSERVATIONS table) or a pfsCoadd / pfsCalibrated container (one TARGET row per
        spectrum, OBSERVATIONS rows matched by ``targetId``).
    where : str
        The file's name, for messages.

    Returns
    -------
    list of PfsStarIdentity

    Raises
    ------
    PfsStarError
        If the file is not a PFS file or lacks an identifier the file name needs (the
        message lists them).
    """
    _check_pfs(hdul, where)
    observations = hdul["OBSERVATIONS"] if "OBSERVATIONS" in hdul else None
    visits_table = None if observations is None else observations.data
    names = [] if visits_table is None else observations.columns.names
    target = hdul["TARGET"] if "TARGET" in hdul else None
    if _is_single(hdul):
        header = fits.Header() if target is None else target.header
        keys = {"catId": "CATID", "tract": "TRACT", "patch": "PATCH", "objId": "OBJID"}
        missing = [name for name, key in keys.items() if key not in header]
        if "visit" not in names or len(visits_table) == 0:
            missing.append("visits (OBSERVATIONS)")
        _no_missing(missing, where)
        _check_hdus(hdul, where)
        ids = {name: header[key] for name, key in keys.items()}
        return [PfsStarIdentity.from_visits(**ids, visits=visits_table["visit"])]
    columns = target.columns.names if isinstance(target, fits.BinTableHDU) else []
    missing = [n for n in ("catId", "tract", "patch", "objId", "targetId") if n not in columns]
    if "visit" not in names or "targetId" not in names:
        missing.append("visits per targetId (OBSERVATIONS)")
    _no_missing(missing, where)
    _check_hdus(hdul, where)
    rows = target.data
    by_target: dict[int, list[int]] = {}
    for target_id, visit in zip(visits_table["targetId"], visits_table["visit"], strict=True):
        by_target.setdefault(int(target_id), []).append(int(visit))
    out = []
    for i in range(len(rows)):
        visits = by_target.get(int(rows["targetId"][i]))
        if not visits:
            raise PfsStarError(
                f"{where}: spectrum {i} (targetId {int(rows['targetId'][i])}) has no visits in "
                "OBSERVATIONS, which the pfsStar file name needs"
            )
        out.append(
            PfsStarIdentity.from_visits(
                rows["catId"][i],
                rows["tract"][i],
                _text(rows["patch"][i]),
                rows["objId"][i],
                visits,
            )
        )
    return out


def _no_missing(missing: list[str], where: str) -> None:
    if missing:
        raise PfsStarError(
            f"{where}: no {', '.join(missing)}: the pfsStar file name needs catId, tract, patch, "
            "objId and the visits (pfsStar-catId-tract-patch-objId-nVisit-pfsVisitHash.fits)"
        )


# ------------------------------------------------------------------ the spectrum's HDUs
def _copy(hdu: Any) -> Any:
    """A new HDU with the data and header of ``hdu`` (read into memory)."""
    header = hdu.header.copy()
    if isinstance(hdu, fits.CompImageHDU):
        return fits.CompImageHDU(data=np.array(hdu.data), header=header, name=hdu.name)
    if isinstance(hdu, fits.BinTableHDU):
        return fits.BinTableHDU(data=hdu.data.copy(), header=header, name=hdu.name)
    data = None if hdu.data is None else np.array(hdu.data)
    return fits.ImageHDU(data=data, header=header, name=hdu.name)


def _notes(hdu: Any | None, index: int | None) -> fits.BinTableHDU:
    """The NOTES table of the star (row ``index`` of a container's), as a pfsStar holds it: the
    input's columns, ``DAMD_VER`` commented as the data model's ``PfsStarNotes``."""
    version = 3 if hdu is None else hdu.header.get("DAMD_VER", 3)
    header = fits.Header()
    header["DAMD_VER"] = (version, _NOTES_COMMENT)
    header["INHERIT"] = True
    if hdu is None or hdu.data is None or len(hdu.columns) == 0:
        return fits.BinTableHDU.from_columns([], header=header, name="NOTES")
    if index is None:
        return fits.BinTableHDU.from_columns(hdu.data.copy(), header=header, name="NOTES")
    columns = [  # the column first: a variable-length one needs its heap
        fits.Column(c.name, c.format, unit=c.unit, array=hdu.data[c.name][index : index + 1])
        for c in hdu.columns
    ]
    return fits.BinTableHDU.from_columns(columns, header=header, name="NOTES")


def _spectrum_hdus_single(hdul: fits.HDUList) -> tuple[list[Any], fits.Header]:
    """The carried HDUs of a single-spectrum file, and the header STELLARCOVAR repeats."""
    out = []
    for hdu in hdul[1:]:
        name = hdu.name.upper()
        if name not in SPECTRUM_HDUS or any(h.name == name for h in out):
            continue
        out.append(_notes(hdu, None) if name == "NOTES" else _copy(hdu))
    if not any(h.name == "NOTES" for h in out):
        out.append(_notes(None, None))
    return out, _plain_cards(hdul["SKY"].header)


def _plain_cards(header: fits.Header) -> fits.Header:
    """The cards of ``header`` that do not describe its HDU's structure (WCS, DAMD_VER, …)."""
    out = fits.Header()
    for card in header.cards:
        if not _STRUCTURAL.match(card.keyword):
            out.append(card)
    return out


def _row(hdu: Any, index: int) -> np.ndarray:
    """Spectrum ``index`` of a container HDU: an image's row (or the whole of a 1-D image, shared
    by all), a variable-length ``value`` cell, or the ``row_0..row_k`` cells stacked (COVAR)."""
    if hdu.is_image:
        data = hdu.data
        return np.array(data if data.ndim == 1 else data[index])
    names = hdu.columns.names
    if "row_0" in names:
        rows = sorted((n for n in names if n.startswith("row_")), key=lambda n: int(n[4:]))
        return np.stack([np.asarray(hdu.data[n][index]) for n in rows])
    return np.array(hdu.data[names[0]][index])


def _unit(hdu: Any) -> str | None:
    """A container HDU's unit: its ``BUNIT``, or its first column's ``TUNIT``."""
    if hdu.is_image:
        return hdu.header.get("BUNIT")
    return hdu.columns[0].unit or None


def _metadata(hdul: fits.HDUList, index: int) -> tuple[dict[str, Any], dict[str, int]]:
    """A container row's header metadata (``KEY: value`` lines) and its mask planes."""
    cards: dict[str, Any] = {}
    planes: dict[str, int] = {}
    if "METADATA" not in hdul or "metadata" not in hdul["METADATA"].columns.names:
        return cards, planes
    text = _text(hdul["METADATA"].data["metadata"][index])
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().removeprefix("HIERARCH ").strip()
        if not sep or not key:
            continue
        parsed = _scalar(value.strip())
        if key.startswith("MP_") and isinstance(parsed, int):
            planes[key[3:]] = parsed
        elif not _STRUCTURAL.match(key) and key != "DAMD_VER":
            cards[key] = parsed
    return cards, planes


def _scalar(text: str) -> Any:
    """A metadata value: int, float, bool or text (quotes stripped)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _header(cards: Mapping[str, Any], version: tuple[int, str]) -> fits.Header:
    header = fits.Header()
    header["DAMD_VER"] = version
    for key, value in cards.items():
        header[key if len(key) <= 8 else f"HIERARCH {key}"] = value
    return header


def _image(data: np.ndarray, header: fits.Header, name: str, unit: str | None = None) -> Any:
    header = header.copy()
    if unit:
        header["BUNIT"] = unit
    return fits.ImageHDU(data=data, header=header, name=name)


def _target_hdu(hdul: fits.HDUList, index: int) -> fits.BinTableHDU:
    """TARGET of spectrum ``index`` of a container, as a single-spectrum file holds it."""
    row = hdul["TARGET"].data[index]
    names = hdul["TARGET"].columns.names
    header = fits.Header()
    for key, name in (("CATID", "catId"), ("TRACT", "tract"), ("PATCH", "patch")):
        header[key] = _text(row[name]) if name == "patch" else int(row[name])
    header["OBJID"] = int(row["objId"])
    for key in ("ra", "dec"):
        if key in names and math.isfinite(float(row[key])):
            header[key.upper()] = float(row[key])
    if "targetType" in names:
        header["HIERARCH TARGETTYPE"] = int(row["targetType"])
    header["DAMD_VER"] = _TARGET_VERSION
    filters, fluxes = [], []
    if "TARGETFLUX" in hdul:
        flux_table = hdul["TARGETFLUX"].data
        keep = flux_table["targetId"] == row["targetId"]
        filters = [_text(v) for v in flux_table["filterName"][keep]]
        fluxes = list(flux_table["fiberFlux"][keep])
    width = max((len(f) for f in filters), default=1) or 1
    columns = [
        fits.Column("filterName", f"{width}A", array=np.array(filters, dtype=f"U{width}")),
        fits.Column("fiberFlux", "E", array=np.array(fluxes, dtype=np.float32)),
    ]
    return fits.BinTableHDU.from_columns(columns, header=header, name="TARGET")


def _observations_hdu(hdul: fits.HDUList, index: int) -> fits.BinTableHDU:
    """OBSERVATIONS of spectrum ``index`` of a container, as a single-spectrum file holds them."""
    table = hdul["OBSERVATIONS"].data
    target_id = hdul["TARGET"].data["targetId"][index]
    rows = np.flatnonzero(table["targetId"] == target_id)
    columns = []
    for name, fmt in _OBSERVATION_FORMATS.items():
        if name not in table.columns.names:
            continue
        values = table[name][rows]  # the column first: a variable-length one needs its heap
        if fmt is None:
            texts = [_text(v) for v in values]
            width = max((len(t) for t in texts), default=1) or 1
            columns.append(fits.Column(name, f"{width}A", array=np.array(texts, f"U{width}")))
        else:
            columns.append(fits.Column(name, fmt, array=np.asarray(values)))
    header = fits.Header()
    header["DAMD_VER"] = _OBSERVATIONS_VERSION
    return fits.BinTableHDU.from_columns(columns, header=header, name="OBSERVATIONS")


def _spectrum_hdus_container(hdul: fits.HDUList, index: int) -> tuple[list[Any], fits.Header]:
    """Spectrum ``index`` of a pfsCoadd / pfsCalibrated container as the HDUs of a
    single-spectrum file, and the header STELLARCOVAR repeats."""
    cards, planes = _metadata(hdul, index)
    spectrum = _header(cards, _SPECTRUM_VERSION)
    fiber = _header(cards, _FIBER_ARRAY_VERSION)
    mask_header = fits.Header()
    for name, bit in sorted(planes.items(), key=lambda kv: kv[1]):
        mask_header[f"MP_{name}" if len(name) <= 5 else f"HIERARCH MP_{name}"] = bit
    mask_header.extend(spectrum)
    flux = _row(hdul["FLUX"], index).astype(np.float32)
    mask = _row(hdul["MASK"], index).astype(np.int32)
    out = [
        _image(flux, spectrum, "FLUX", _unit(hdul["FLUX"])),
        fits.CompImageHDU(data=mask, header=mask_header, name="MASK"),
    ]
    if "WAVELENGTH" in hdul:
        wave = _row(hdul["WAVELENGTH"], index).astype(np.float64)
        out.append(_image(wave, spectrum, "WAVELENGTH", _unit(hdul["WAVELENGTH"])))
    out.append(_target_hdu(hdul, index))
    out.append(
        _image(_row(hdul["SKY"], index).astype(np.float32), fiber, "SKY", _unit(hdul["SKY"]))
    )
    out.append(_image(_row(hdul["COVAR"], index).astype(np.float32), fiber, "COVAR"))
    covar2 = _row(hdul["COVAR2"], index).astype(np.float32) if "COVAR2" in hdul else None
    out.append(fits.ImageHDU(data=covar2, name="COVAR2"))
    out.append(_observations_hdu(hdul, index))
    out.append(_notes(hdul["NOTES"] if "NOTES" in hdul else None, index))
    return out, fiber


# ------------------------------------------------------------------- stellar parameters
def _flag_names(bits: int, which: int) -> list[str]:
    return [flag.name for flag in PredictFlag if bits & which & int(flag)]


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _get(row: Any, name: str) -> float:
    """``row[name]`` as a float; NaN where the column is absent or the cell masked."""
    if name not in _names(row):
        return math.nan
    value = row[name]
    if np.ma.is_masked(value):
        return math.nan
    return float(value)


def stellar_params(
    row: Any,
    labels: Sequence[str],
    *,
    frame: str = "bary",
    method: str = METHOD,
) -> tuple[list[StellarParam], np.ndarray, tuple[bool, str]]:
    """One star's ``STELLARPARAM`` rows, ``STELLARCOVAR`` matrix and ``MEASFLAG`` entry.

    Parameters
    ----------
    row : astropy.table.Row or mapping
        The star's row of a :func:`specvit.predict` table: each label and ``<label>_err``,
        ``flags``; where present ``v_rad`` (and ``v_rad_err``) and ``cov_<a>_<b>``.
    labels : sequence of str
        The model's label names, in order.
    frame : str
        Reference frame of ``v_rad`` (the input's wavelengths): ``bary`` for PFS DRP
        products (the module docstring says why), ``helio``, or ``""`` if unknown.
    method : str
        The ``method`` text.

    Returns
    -------
    params : list of StellarParam
        The labels in ``labels`` order, then ``v_los``; ``covarId`` 0, 1, ….
    covar : numpy.ndarray
        float32, (len(labels) + 1, len(labels) + 1).
    measflag : (bool, str)
        ``MEASFLAG``'s flag and status.
    """
    flags = _get(row, "flags")
    bits = int(flags) if _finite(flags) else 0
    no_result = int(PredictFlag.no_result())
    every = _flag_names(bits, ~0)
    params = []
    for k, label in enumerate(labels):
        bad_bits = no_result | int(LABEL_FLAGS) | int(ONE_LABEL_FLAGS.get(label, 0))
        value, error = _get(row, label), _get(row, f"{label}_err")
        params.append(_param(label, value, error, k, "", bool(bits & bad_bits), every, method))
    v, v_err = _get(row, "v_rad"), _get(row, "v_rad_err")
    bad = bool(bits & (no_result | int(VELOCITY_FLAGS)))
    names = _flag_names(bits, int(_VELOCITY_STATUS))
    params.append(_param(VELOCITY, v, v_err, len(labels), frame, bad, names, method))
    n = len(params)
    covar = np.diag([p.valueErr**2 for p in params])
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            covar[i, j] = covar[j, i] = _covariance(row, labels[i], labels[j])
    missing = np.array([not _finite(p.value) for p in params])
    covar[missing, :] = np.nan
    covar[:, missing] = np.nan
    measflag = (any(p.flag for p in params[: len(labels)]), " ".join(every))
    return params, covar.astype(np.float32).reshape(n, n), measflag


def _covariance(row: Any, a: str, b: str) -> float:
    """``cov_<a>_<b>`` (or ``cov_<b>_<a>``) of ``row``; 0 where the table has neither (the
    network's Gaussian head predicts independent labels)."""
    names = _names(row)
    for name in (f"cov_{a}_{b}", f"cov_{b}_{a}"):
        if name in names:
            return _get(row, name)
    return 0.0


def _names(row: Any) -> list[str]:
    return row.colnames if hasattr(row, "colnames") else list(row.keys())


def _param(
    name: str,
    value: float,
    error: float,
    covar_id: int,
    frame: str,
    bad: bool,
    status: list[str],
    method: str,
) -> StellarParam:
    if not _finite(value):
        bad = True
        status = status or [NOT_MEASURED]
    return StellarParam(
        param=name,
        value=value,
        valueErr=error,
        unit=PARAM_UNITS.get(name, LABEL_UNITS.get(name, "")),
        covarId=covar_id,
        frame=frame,
        flag=bad,
        status=" ".join(status),
        method=method,
    )


def _text_format(values: Sequence[str]) -> str:
    """The data model's format of a text column: ``<n>A`` when every row holds the same
    non-empty text, else a variable-length ``PA()`` array."""
    unique = set(values)
    if len(unique) == 1:
        (text,) = unique
        return f"{len(text)}A" if text else "PA()"
    return "PA()"


def _table_hdu(
    name: str,
    schema: Sequence[tuple[str, str | None, str]],
    columns: Mapping[str, np.ndarray],
    version: tuple[int, str],
) -> fits.BinTableHDU:
    header = fits.Header()
    header["DAMD_VER"] = version
    header["INHERIT"] = True
    for i, (_, _, doc) in enumerate(schema, start=1):
        header[f"TDOC{i}"] = doc
    cols = []
    for column, fmt, _ in schema:
        values = columns[column]
        if fmt is None:
            texts = [str(v) for v in values]
            _ascii_only(texts, f"{name}.{column}")
            fmt = _text_format(texts)
            values = np.array(texts, dtype=str) if texts else np.array([], dtype="U1")
        cols.append(fits.Column(name=column, format=fmt, array=values))
    return fits.BinTableHDU.from_columns(cols, name=name, header=header)


def _ascii_only(texts: Sequence[str], where: str) -> None:
    bad = [t for t in texts if not t.isascii()]
    if bad:
        raise ValueError(f"{where}: FITS text must be ASCII, got {bad[0]!r}")


def stellar_param_hdu(params: Sequence[StellarParam]) -> fits.BinTableHDU:
    """The ``STELLARPARAM`` binary table of ``params``, as the data model writes it."""
    columns = {
        "method": [p.method for p in params],
        "frame": [p.frame for p in params],
        "param": [p.param for p in params],
        "covarId": np.array([p.covarId for p in params], dtype=np.uint8),
        "unit": [p.unit for p in params],
        "value": np.array([p.value for p in params], dtype=np.float32),
        "valueErr": np.array([p.valueErr for p in params], dtype=np.float32),
        "flag": np.array([p.flag for p in params], dtype=bool),
        "status": [p.status for p in params],
    }
    return _table_hdu("STELLARPARAM", _PARAM_COLUMNS, columns, _STELLARPARAM_VERSION)


def measflag_hdu(entries: Sequence[tuple[str, bool, str]]) -> fits.BinTableHDU:
    """The ``MEASFLAG`` binary table: one ``(method, flag, status)`` per method."""
    columns = {
        "method": [m for m, _, _ in entries],
        "flag": np.array([f for _, f, _ in entries], dtype=bool),
        "status": [s for _, _, s in entries],
    }
    return _table_hdu("MEASFLAG", _MEASFLAG_COLUMNS, columns, _MEASFLAG_VERSION)


# ------------------------------------------------------------------------ the file
def _provenance(meta: Mapping[str, Any]) -> fits.Header:
    """specvit's provenance cards for the primary header, from a prediction table's ``meta``."""
    header = fits.Header()
    cards = (
        ("SPECVIT", "specvit_version", "specvit version that measured STELLARPARAM"),
        ("SVMODEL", "model", "specvit model as given"),
        ("SVMNAME", "model_name", "folder, bundled name or Hub repo of the weights"),
        ("SVMREV", "model_revision", "Hub commit of the weights ('' if none)"),
        ("SVSHA256", "weights_sha256", "SHA-256 of model.safetensors"),
    )
    for key, name, comment in cards:
        if name in meta and meta[name] is not None:
            text = str(meta[name]).encode("ascii", "backslashreplace").decode()
            # "KEY     = 'text' / comment" in one 80-character card, else the text alone
            fits_in_card = len(text.replace("'", "''")) + len(comment) <= 64
            header[key] = (text, comment) if fits_in_card else text
    if meta:
        header["SVEXACT"] = ("exact" in meta, "labels from the exact posterior (--exact)")
    return header


def build_pfs_star(
    hdul: fits.HDUList,
    index: int,
    row: Any,
    labels: Sequence[str],
    *,
    meta: Mapping[str, Any] | None = None,
    frame: str = "bary",
    method: str = METHOD,
    where: str = "input",
    identities: Sequence[PfsStarIdentity] | None = None,
) -> tuple[PfsStarIdentity, fits.HDUList]:
    """The pfsStar file of spectrum ``index`` of an open PFS file, in memory.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The input: a pfsObject or pfsSingle file (``index`` 0), or a pfsCoadd /
        pfsCalibrated container.
    index : int
        The spectrum's row in the file (the CLI table's ``index`` column).
    row : astropy.table.Row or mapping
        Its row of the prediction table (:func:`stellar_params`).
    labels : sequence of str
        The model's label names.
    meta : mapping, optional
        The prediction table's ``meta``: provenance cards in the primary header.
    frame, method : str
        As in :func:`stellar_params`.
    where : str
        The input's name, for messages.
    identities : sequence of PfsStarIdentity, optional
        :func:`pfs_star_identities` of ``hdul``, when the caller has them already.

    Returns
    -------
    identity : PfsStarIdentity
        Its ``filename`` is the file's name.
    hdus : astropy.io.fits.HDUList
        PRIMARY, the spectrum's HDUs, STELLARPARAM, STELLARCOVAR, MEASFLAG.

    Raises
    ------
    PfsStarError
        If the input is not a PFS file or lacks the identifiers or HDUs a pfsStar needs.
    """
    if identities is None:
        identities = pfs_star_identities(hdul, where)
    if not 0 <= index < len(identities):
        raise PfsStarError(f"{where}: no spectrum {index} (the file has {len(identities)})")
    if _is_single(hdul):
        spectrum, cover_header = _spectrum_hdus_single(hdul)
    else:
        spectrum, cover_header = _spectrum_hdus_container(hdul, index)
    params, covar, (flag, status) = stellar_params(row, labels, frame=frame, method=method)
    primary = fits.PrimaryHDU(header=_provenance(meta or {}))
    hdus = fits.HDUList(
        [
            primary,
            *spectrum,
            stellar_param_hdu(params),
            fits.ImageHDU(data=covar, header=cover_header.copy(), name="STELLARCOVAR"),
            measflag_hdu([(method, flag, status)]),
        ]
    )
    return identities[index], hdus


def write_pfs_stars(
    results: Table,
    folder: str | Path,
    labels: Sequence[str],
    *,
    overwrite: bool = False,
    frame: str = "bary",
    method: str = METHOD,
    opener: Callable[[str], fits.HDUList] | None = None,
) -> list[Path]:
    """Write one pfsStar file per row of a prediction table, all or none.

    Every file is first written to a hidden temporary file in ``folder``; only when all are
    written are they renamed into place, so an error or an interrupt before the renames leaves
    nothing behind.

    Parameters
    ----------
    results : astropy.table.Table
        ``specvit-predict``'s table: ``input`` (the PFS file) and ``index`` (the spectrum's row
        in it) beside the prediction columns.
    folder : str or pathlib.Path
        An existing folder.
    labels : sequence of str
        The model's label names.
    overwrite : bool
        Replace existing files; without it an existing file is never touched.
    frame, method : str
        As in :func:`stellar_params`.
    opener : callable, optional
        Opens an input (default ``astropy.io.fits.open``).

    Returns
    -------
    list of pathlib.Path
        The files written, in row order.

    Raises
    ------
    PfsStarError
        For an input that cannot give a pfsStar file, or two rows naming the same file.
    FileExistsError
        If a file exists and ``overwrite`` is False (nothing is written).
    """
    folder = Path(folder)
    opener = opener or fits.open
    staged: list[tuple[str, Path]] = []
    seen: dict[Path, int] = {}
    by_input: dict[str, list[int]] = {}
    for i, source in enumerate(results["input"]):
        by_input.setdefault(str(source), []).append(i)
    paths: list[Path | None] = [None] * len(results)
    try:
        for source, rows in by_input.items():
            with opener(source) as hdul:
                identities = pfs_star_identities(hdul, source)
                for i in rows:
                    row = results[i]
                    identity, hdus = build_pfs_star(
                        hdul,
                        int(row["index"]),
                        row,
                        labels,
                        meta=results.meta,
                        frame=frame,
                        method=method,
                        where=source,
                        identities=identities,
                    )
                    path = folder / identity.filename
                    if path in seen:
                        raise PfsStarError(
                            f"rows {seen[path]} and {i} are the same star: both would be {path}"
                        )
                    seen[path] = i
                    if path.exists() and not overwrite:
                        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
                    tmp = stage_file(path, _fits_writer(hdus))
                    staged.append((tmp, path))
                    paths[i] = path
        while staged:
            tmp, path = staged.pop(0)
            commit_file(tmp, path, overwrite=overwrite)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    return [p for p in paths if p is not None]


def _fits_writer(hdus: fits.HDUList) -> Callable[[str], None]:
    def write(name: str) -> None:
        hdus.writeto(name, overwrite=True, checksum=False)

    return write


# --------------------------------------------------------------------------- reading
@dataclass
class PfsStarFile:
    """What :func:`read_pfs_star` returns.

    Attributes
    ----------
    identity : PfsStarIdentity
        From the file's contents (TARGET and OBSERVATIONS).
    params : astropy.table.Table
        ``STELLARPARAM``, text read from the raw characters (inner blanks kept: ``km s-1``).
    covar : numpy.ndarray
        ``STELLARCOVAR``.
    measflags : astropy.table.Table
        ``MEASFLAG``.
    hdu_names : list of str
        Every HDU's name, in order.
    primary : astropy.io.fits.Header
        The primary header (specvit's provenance cards).
    """

    identity: PfsStarIdentity
    params: Table
    covar: np.ndarray
    measflags: Table
    hdu_names: list[str] = field(default_factory=list)
    primary: fits.Header = field(default_factory=fits.Header)

    def value(self, param: str, method: str = METHOD) -> tuple[float, float]:
        """``(value, valueErr)`` of one parameter."""
        keep = (self.params["param"] == param) & (self.params["method"] == method)
        if not keep.any():
            raise KeyError(f"no {param!r} of method {method!r}")
        row = self.params[keep][0]
        return float(row["value"]), float(row["valueErr"])


def _read_table(hdu: fits.BinTableHDU) -> Table:
    out = Table()
    for name in hdu.columns.names:
        column = hdu.data[name]
        if column.dtype == object or column.dtype.kind in "SU":
            out[name] = np.array([_text(v) for v in column], dtype=str)
        else:
            out[name] = np.asarray(column)
    return out


def read_pfs_star(path: str | Path) -> PfsStarFile:
    """Read the stellar parameters of a pfsStar file (specvit's or the GA pipeline's).

    Parameters
    ----------
    path : str or pathlib.Path
        The file.

    Returns
    -------
    PfsStarFile
    """
    with fits.open(path) as hdul:
        (identity,) = pfs_star_identities(hdul, str(path))
        return PfsStarFile(
            identity=identity,
            params=_read_table(hdul["STELLARPARAM"]),
            covar=np.array(hdul["STELLARCOVAR"].data),
            measflags=_read_table(hdul["MEASFLAG"]),
            hdu_names=[h.name for h in hdul],
            primary=hdul[0].header.copy(),
        )
