"""Write prediction tables (FITS, CSV, ECSV) atomically, never replacing a file unless asked.

:func:`check_output` tells, before any work, whether a table can be written to a path;
:func:`write_table` writes it. Files are created with the permissions of any new file
(``0666`` less the process umask, typically ``0644``), whatever the format.

The same machinery serves other writers (:mod:`specvit.io.pfs_star`): :func:`check_writable`
(the checks of :func:`check_output` but the suffix), :func:`check_folder`, and
:func:`stage_file` / :func:`commit_file` (write a hidden temporary file beside the target, then
rename it into place), so that a set of files can be written first and published last.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from astropy.io.fits.verify import VerifyWarning
from astropy.table import Table

__all__ = [
    "TABLE_FORMATS",
    "OutputError",
    "check_folder",
    "check_output",
    "check_writable",
    "commit_file",
    "stage_file",
    "table_format",
    "write_table",
]


class OutputError(OSError):
    """The output path cannot be written: no such folder, not writable, or one of the inputs."""


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


def check_output(
    path: str | Path, inputs: Iterable[str | Path] = (), *, overwrite: bool = False
) -> None:
    """Check that a table can be written to ``path``, before any work is done: its suffix
    names a table format, and :func:`check_writable` (same parameters) passes.

    Raises
    ------
    ValueError
        For a suffix not in :data:`TABLE_FORMATS`.
    OutputError, FileExistsError
        As :func:`check_writable` raises them.
    """
    table_format(path)
    check_writable(path, inputs, overwrite=overwrite)


def check_writable(
    path: str | Path, inputs: Iterable[str | Path] = (), *, overwrite: bool = False
) -> None:
    """Check that a file of any format can be written to ``path`` (as :func:`check_output`,
    without the suffix check).

    Parameters
    ----------
    path : str or pathlib.Path
        The output file.
    inputs : iterable of path-like
        Files the run reads: ``path`` must not be one of them, even with ``overwrite``.
    overwrite : bool
        Whether an existing ``path`` may be replaced.

    Raises
    ------
    OutputError
        If the folder does not exist, is not writable, ``path`` is a folder, a dangling
        symbolic link, a name longer than the file system allows, or one of ``inputs``.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: no such folder {str(folder)!r}")
    name_max = _name_max(folder)
    if len(os.fsencode(path.name)) > name_max:
        raise OutputError(
            f"cannot write {path}: file name too long ({len(os.fsencode(path.name))} bytes; "
            f"this file system allows {name_max})"
        )
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    if path.is_symlink() and not path.exists():
        raise OutputError(
            f"cannot write {path}: it is a dangling symbolic link to {os.readlink(path)!r}; "
            "remove it or name another output"
        )
    for source in inputs:
        if _same_file(path, Path(source)):
            raise OutputError(f"cannot write {path}: it is the input file {source}")
    _check_temp(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")


def check_folder(folder: str | Path) -> None:
    """Check that ``folder`` is an existing folder this process can create files in.

    Parameters
    ----------
    folder : str or pathlib.Path
        The output folder.

    Raises
    ------
    OutputError
        If ``folder`` does not exist, is not a folder, or is not writable.
    """
    folder = Path(folder)
    if not folder.exists():
        raise OutputError(f"cannot write to {folder}: no such folder")
    if not folder.is_dir():
        raise OutputError(f"cannot write to {folder}: not a folder")
    try:
        _check_temp(folder / "x")
    except OutputError as exc:
        raise OutputError(f"cannot write to {folder}: the folder is not writable") from exc


def _check_temp(path: Path) -> None:
    """Create and remove the very temporary file :func:`stage_file` would make for ``path``."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=_TMP_SUFFIX)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(
            f"cannot write {path}: folder {str(path.parent)!r} is not writable"
        ) from exc


#: Suffix of the hidden temporary file a table is written to before it is renamed into place.
_TMP_SUFFIX = ".tmp"
#: Characters ``tempfile.mkstemp`` adds between the prefix and the suffix.
_TMP_RANDOM = 8


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` allows."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no answer
        return 255


def _temp_prefix(path: Path) -> str:
    """``.<name>.``, the name cut so that the whole temporary name fits the file system."""
    room = _name_max(path.parent) - len(".") - len(".") - _TMP_RANDOM - len(_TMP_SUFFIX)
    name = os.fsencode(path.name)[:room].decode(errors="ignore")
    return f".{name}."


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return a.resolve() == b.resolve()


def write_table(table: Table, path: str | Path, *, overwrite: bool = False) -> None:
    """Write ``table`` to ``path`` atomically.

    The table goes to a temporary file in the same folder, which is then renamed onto
    ``path``, so a reader never sees a partial file and an interrupted run leaves ``path``
    as it was (a killed process may leave the hidden ``.<name>.*.tmp`` file behind; for a
    name near the file system's limit, ``<name>`` is cut so that the whole name fits).

    Parameters
    ----------
    table : astropy.table.Table
        The table. float32 columns are written in text with the digits of a float32 (the
        shortest text that reads back as the same value). For FITS, nested metadata (dicts)
        is written as ``KEY_SUBKEY`` cards, a unit FITS cannot store (``dex``) as a
        ``UNIT_<COLUMN>`` card instead of ``TUNIT``, text columns with non-ASCII characters
        as UTF-8 bytes, and non-ASCII characters in metadata as ``\\uXXXX`` escapes (FITS
        holds only ASCII text).
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
        for name in out.colnames:
            if out[name].dtype.kind == "U" and not _ascii(out[name]):
                out[name] = np.char.encode(np.asarray(out[name]), "utf-8")
    elif fmt == "ascii.csv":  # ECSV writes float32 with its own digits already
        out = table.copy(copy_data=False)
        for col in out.itercols():
            if col.dtype == np.float32 and col.info.format is None:
                col.info.format = _float32_text  # not the 17 digits of a float64

    def write(name: str) -> None:
        with warnings.catch_warnings():
            # Long metadata keys become HIERARCH cards; that is expected, not worth a warning.
            warnings.simplefilter("ignore", VerifyWarning)
            out.write(name, format=fmt, overwrite=True)

    commit_file(stage_file(path, write), path, overwrite=overwrite)


def stage_file(path: str | Path, write: Callable[[str], None]) -> str:
    """Write a file for ``path`` to a hidden temporary file beside it; :func:`commit_file`
    renames it into place.

    Parameters
    ----------
    path : str or pathlib.Path
        Where the file will go: the temporary file ``.<name>.*.tmp`` is made in its folder
        (``<name>`` cut so that the whole name fits the file system).
    write : callable
        ``write(temporary_path)`` writes the file's content (it may replace the empty file).

    Returns
    -------
    str
        The temporary file, with the permissions of any new file (``0666`` less the umask).
        It is removed if ``write`` fails or is interrupted.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=_TMP_SUFFIX)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; an output is an ordinary file
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # in case ``write`` made a new file
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    return tmp


def commit_file(tmp: str | Path, path: str | Path, *, overwrite: bool = False) -> None:
    """Rename a file :func:`stage_file` wrote onto ``path``; ``tmp`` is gone afterwards.

    Parameters
    ----------
    tmp : str or pathlib.Path
        The temporary file.
    path : str or pathlib.Path
        The destination.
    overwrite : bool
        Replace an existing ``path``. Without it an existing ``path`` is never touched, even
        if it appeared after the checks (atomically where the file system has hard links).

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False (``tmp`` is removed).
    """
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(str(tmp), Path(path))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _float32_text(value: float) -> str:
    """The shortest text that reads back as the same float32 (``1.0977033``)."""
    return str(np.float32(value))


def _umask() -> int:
    """The process umask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _ascii(column) -> bool:
    return all(str(v).isascii() for v in np.asarray(column).ravel())


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
    return {
        key: value.encode("ascii", "backslashreplace").decode() if isinstance(value, str) else value
        for key, value in flat.items()
    }
