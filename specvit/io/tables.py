"""Write prediction tables (FITS, CSV, ECSV) atomically, never replacing a file unless asked."""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path

from astropy.io.fits.verify import VerifyWarning
from astropy.table import Table

__all__ = ["TABLE_FORMATS", "table_format", "write_table"]

#: Output file suffixes and the astropy format each is written in.
TABLE_FORMATS = {
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".csv": "ascii.csv",
    ".ecsv": "ascii.ecsv",
}


def table_format(path: str | Path) -> str:
    """The astropy format name for ``path``'s suffix.

    Raises
    ------
    ValueError
        For a suffix not in :data:`TABLE_FORMATS`.
    """
    name = Path(path).name.lower()
    for suffix, fmt in sorted(TABLE_FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise ValueError(
        f"cannot tell the output format of {str(path)!r}: use one of {sorted(TABLE_FORMATS)}"
    )


def write_table(table: Table, path: str | Path, *, overwrite: bool = False) -> None:
    """Write ``table`` to ``path`` atomically.

    The table goes to a temporary file in the same folder, which is then renamed onto
    ``path``, so a reader never sees a partial file and an interrupted run leaves ``path``
    as it was (a killed process may leave the hidden ``.<name>.*.tmp`` file behind).

    Parameters
    ----------
    table : astropy.table.Table
        The table. For FITS, nested metadata (dicts) is written as ``KEY_SUBKEY`` cards, and
        a unit FITS cannot store (``dex``) as a ``UNIT_<COLUMN>`` card instead of ``TUNIT``.
    path : str or pathlib.Path
        Output file; its suffix selects the format (:func:`table_format`).
    overwrite : bool
        Replace an existing file. Without it an existing ``path`` is never touched, even if
        it appears while the table is being written.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    fmt = table_format(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    out = table
    if fmt == "fits":
        out = table.copy(copy_data=False)
        out.meta = _flat_meta(table.meta)
        for col in out.itercols():
            if col.unit is not None and not _fits_unit(col.unit):
                out.meta[f"UNIT_{col.name}".upper()] = str(col.unit)
                col.unit = None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            # Long metadata keys become HIERARCH cards; that is expected, not worth a warning.
            warnings.simplefilter("ignore", VerifyWarning)
            out.write(tmp, format=fmt, overwrite=True)
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _link_no_clobber(tmp: str, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (atomically where hard links work)."""
    try:
        os.link(tmp, path)  # raises FileExistsError if path appeared meanwhile
    except FileExistsError:
        raise FileExistsError(f"{path} appeared while writing; it was left untouched") from None
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise FileExistsError(f"{path} appeared while writing; it was left untouched") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _fits_unit(unit) -> bool:
    """Whether FITS can store ``unit`` as a TUNIT card (``dex`` cannot)."""
    try:
        unit.to_string("fits")
    except ValueError:
        return False
    return True


def _flat_meta(meta: dict) -> dict:
    """Nested metadata flattened to FITS-friendly upper-case keys."""
    flat = {}
    for key, value in meta.items():
        if isinstance(value, dict):
            for sub, item in value.items():
                flat[f"{key}_{sub}".upper()] = item
        else:
            flat[str(key).upper()] = value
    return flat
