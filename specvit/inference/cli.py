"""``specvit-predict``: stellar labels for files of spectra, for survey pipelines.

Without ``--model`` the bundled default model (:data:`~specvit.inference.DEFAULT_MODEL`) is used,
offline.

Exit codes: 0 success; 1 unexpected error (a bug: please report it); 2 usage error (bad option,
unknown output suffix, a device this torch cannot use, an option a file would ignore, an input
``--format pfsStar`` cannot name a file for); 3 an input file cannot be read or holds invalid
spectra; 4 the output exists and ``--overwrite`` was not given; 5 the model cannot be loaded; 6
the output cannot be written (no such folder, not writable, a dangling symbolic link, a name too
long, or the same file as an input); 130
interrupted (SIGINT); 143 terminated (SIGTERM). Every failure is one ``Error: …`` line on stderr
naming the file, and no output (not even a partial hidden one) is left behind; every warning is
one ``Warning: …`` line.
"""

from __future__ import annotations

import signal
import sys
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from astropy.io import fits
from astropy.table import Table, hstack, vstack

from specvit._hub import PRETRAINED_DIR, list_pretrained
from specvit.config import SpecViTConfig
from specvit.inference.exact import ExactModeError
from specvit.inference.flags import PredictFlag
from specvit.inference.predictor import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_EXACT,
    DEFAULT_EXACT_SAMPLES,
    DEFAULT_MODEL,
    DEFAULT_PHYSICS,
    DEFAULT_PRECISION,
    PRECISIONS,
    Predictor,
    resolve_device,
)
from specvit.io.columns import UNCERTAINTY_TEXT, ColumnChoice
from specvit.io.pfs_star import PfsStarError, pfs_star_identities, write_pfs_stars
from specvit.io.readers import open_spectra
from specvit.io.spectra import SpectrumSet, stack_sets
from specvit.io.tables import (
    OutputError,
    check_folder,
    check_output,
    check_writable,
    write_table,
)
from specvit.velocity import RV_SEARCH_KMS

__all__ = ["EXIT_CODES", "main"]

#: Exit codes of ``specvit-predict``.
EXIT_CODES = {
    "ok": 0,
    "error": 1,
    "usage": 2,
    "input": 3,
    "output_exists": 4,
    "model": 5,
    "output": 6,
    "interrupted": 130,
    "terminated": 143,
}

#: ``--format`` choices: one table (its format from OUTPUT's suffix) or one pfsStar file per star.
OUTPUT_FORMATS = ("table", "pfsStar")
#: Input suffixes ``--format pfsStar`` reads (PFS data-model files are FITS).
_FITS_SUFFIXES = (".fits", ".fit", ".fits.gz")

#: The CLI's own columns, first in every output table; identifier columns of the inputs with
#: these names (or a prediction column's) are written as ``input_<name>``.
OWN_COLUMNS = ("input", "index")


class _Failure(click.ClickException):
    """An error reported as ``Error: …`` on stderr with a specific exit code."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.exit_code = EXIT_CODES[kind]


class _Terminated(BaseException):
    """SIGTERM arrived (Slurm's time limit or preemption): stop like Ctrl-C."""


@contextmanager
def _warnings_as_lines():
    """Show each warning once as one ``Warning: …`` line on stderr (no source line)."""

    def show(message, category, filename, lineno, file=None, line=None):
        click.echo(f"Warning: {message}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)
        warnings.showwarning = show
        yield


@contextmanager
def _sigterm_raises():
    """Turn SIGTERM into :class:`_Terminated` so that every ``finally`` / cleanup runs."""

    def handler(signum, frame):
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parse_shard(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    try:
        index, count = (int(v) for v in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected i/n with integers, got {value!r}") from None
    if count < 1 or not 0 <= index < count:
        raise click.BadParameter(f"need 0 <= i < n, got {value!r}")
    return index, count


def _parse_mask_bits(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    names = tuple(n.strip().upper() for n in value.split(",") if n.strip())
    if not names:
        raise click.BadParameter("give comma-separated mask-plane names, or ALL")
    return names


def _check_device(ctx: click.Context, param: click.Parameter, value: str):
    try:
        resolve_device(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _list_models(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--list-models``: print the bundled trained models, one a line, and exit."""
    if not value or ctx.resilient_parsing:
        return
    for name in list_pretrained():
        config = SpecViTConfig.from_json(PRETRAINED_DIR / name / "config.json")  # no weights
        default = " (default)" if name == DEFAULT_MODEL.name else ""
        click.echo(
            f"{name}{default}: {', '.join(config.label_names)}; {config.input_length} pixels, "
            f"{config.wave_start:g}–{config.wave_stop:g} Å ({config.wave_medium}), "
            f"{config.head} head"
        )
    click.echo(
        "--model also takes a model folder (save_pretrained, python -m training publish) or a "
        "Hub repo id 'owner/name' with --revision."
    )
    ctx.exit(0)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument(
    "inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Output table: .fits, .fit, .fits.gz, .csv or .ecsv; with --format pfsStar, a folder.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(OUTPUT_FORMATS, case_sensitive=False),
    default="table",
    show_default=True,
    help="table: one table, its format from OUTPUT's suffix. pfsStar: one PFS GA pfsStar file "
    "per star (PFS inputs: pfsObject, pfsSingle, pfsCoadd, pfsCalibrated) in the folder OUTPUT.",
)
@click.option(
    "--model",
    default=None,
    help="Model folder (save_pretrained) or Hub repo id [default: the bundled specvit-tiny-pfs].",
)
@click.option("--revision", default=None, help="Hub revision of --model (pin a commit hash).")
@click.option(
    "--list-models",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_list_models,
    help="List the bundled trained models (names for --model) and exit.",
)
@click.option(
    "--device",
    default=DEFAULT_DEVICE,
    show_default=True,
    callback=_check_device,
    help="auto, cpu, cuda, cuda:1, …",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Spectra per forward pass.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=DEFAULT_PRECISION,
    show_default=True,
    help="Autocast of the forward pass; auto: fp32 on CPU, bf16 on CUDA.",
)
@click.option(
    "--shard",
    callback=_parse_shard,
    metavar="I/N",
    help="Process only block I (0-based) of N equal blocks of the input spectra, in input order.",
)
@click.option("--flux-col", default=None, help="Flux column / HDU / array name (any case).")
@click.option(
    "--error-col", default=None, help="Uncertainty column / HDU / array name; 'none' for none."
)
@click.option(
    "--error-kind",
    type=click.Choice(["std", "var", "ivar"]),
    default=None,
    help="What --error-col holds: 1σ, σ² or 1/σ² (default: from its name, else 1σ). "
    "Refused for files whose uncertainty it would not change (PFS files: COVAR is σ²).",
)
@click.option(
    "--wave-col",
    default=None,
    help="Wavelength column / HDU / array name; 'none' if the spectra are on the model grid.",
)
@click.option(
    "--mask-bits",
    callback=_parse_mask_bits,
    metavar="NAMES",
    help="Comma-separated mask planes that make a pixel bad in files that name them (PFS MP_* "
    "keys), or ALL. Default: NO_DATA,CR,BAD_SKY,BAD_FLUXCAL,INTRP,SAT,BAD,BAD_FLAT,UNMASKEDNAN.",
)
@click.option(
    "--physics/--no-physics",
    default=DEFAULT_PHYSICS,
    show_default=True,
    help="Per-star CRLB, emulator fit (v_rad, chi2) and domain flags (models on the PFS MR grid).",
)
@click.option(
    "--exact/--no-exact",
    default=DEFAULT_EXACT,
    show_default=True,
    help="Labels and σ from the exact posterior under the emulator (importance sampling from the "
    "network's answer); adds ess, cov_<a>_<b> and the LOW_ESS flag.",
)
@click.option(
    "--exact-samples",
    type=click.IntRange(min=2),
    default=DEFAULT_EXACT_SAMPLES,
    show_default=True,
    help="Importance samples per spectrum in exact mode.",
)
@click.option(
    "--rv",
    type=click.FloatRange(-RV_SEARCH_KMS, RV_SEARCH_KMS),
    default=None,
    help="Radial velocity (km/s) of every spectrum, for a model that takes observed-frame "
    "spectra [default: measured per spectrum].",
)
@click.option(
    "--rv-col",
    default=None,
    help="Per-spectrum column (table or NPZ inputs) with each spectrum's radial velocity (km/s).",
)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.version_option(package_name="specvit", prog_name="specvit-predict")
def main(
    inputs: tuple[Path, ...],
    output: Path,
    output_format: str,
    model: str | None,
    revision: str | None,
    device: str,
    batch_size: int,
    precision: str,
    shard: tuple[int, int] | None,
    flux_col: str | None,
    error_col: str | None,
    error_kind: str | None,
    wave_col: str | None,
    mask_bits: tuple[str, ...] | None,
    physics: bool,
    exact: bool,
    exact_samples: int,
    rv: float | None,
    rv_col: str | None,
    overwrite: bool,
) -> None:
    """Predict stellar labels for the spectra in INPUT... and write one table to OUTPUT.

    Inputs are FITS (PFS pfsObject, pfsSingle, pfsCoadd, pfsCalibrated; image HDUs; binary
    tables with a flux column) or NPZ files, or specvit HDF5 shards. The output has one row per
    spectrum, in input order: ``input`` (the file), ``index`` (the spectrum's row in it), the
    file's identifiers, then the predictions. With ``--format pfsStar`` OUTPUT is a folder that
    gets one PFS ``pfsStar`` file per star instead (:mod:`specvit.io.pfs_star`). A one-line
    summary goes to stderr at the end.
    """
    pfs_star = output_format.lower() == "pfsstar"
    if rv is not None and rv_col is not None:
        raise click.UsageError(
            "--rv gives every spectrum one velocity, --rv-col one each: drop one"
        )
    if error_kind is not None and error_col is not None and error_col.lower() == "none":
        raise click.UsageError(
            f"--error-kind {error_kind} describes the uncertainty column, and --error-col none "
            "says there is none: drop one of them"
        )
    if pfs_star:
        _check_pfs_star_options(output, flux_col, error_col, wave_col)
    else:
        try:
            check_output(output, inputs, overwrite=overwrite)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        except FileExistsError as exc:
            raise _Failure(str(exc), "output_exists") from exc
        except OutputError as exc:
            raise _Failure(str(exc), "output") from exc
    columns = ColumnChoice(flux_col, error_col, wave_col, error_kind)
    try:
        with _sigterm_raises(), _warnings_as_lines():
            counts = [_count(path, columns, mask_bits) for path in inputs]
            lo, hi = 0, sum(counts)
            if shard is not None:
                lo, hi = shard[0] * hi // shard[1], (shard[0] + 1) * hi // shard[1]
            if pfs_star:
                _plan_pfs_stars(inputs, counts, lo, hi, output, overwrite)
            try:
                predictor = Predictor(
                    model,
                    revision=revision,
                    device=device,
                    batch_size=batch_size,
                    precision=precision,
                    physics=physics,
                    exact=exact,
                    exact_samples=exact_samples,
                )
            except ExactModeError as exc:
                raise click.UsageError(f"--exact: {exc}") from None
            except (OSError, ValueError, RuntimeError) as exc:
                raise _Failure(
                    f"cannot load model {model or '(the bundled default)'!r}: {exc}", "model"
                ) from exc
            if (rv is not None or rv_col is not None) and not predictor.config.rest_frame:
                raise click.UsageError(
                    f"--rv/--rv-col: {model or 'the bundled default model'} takes rest-frame "
                    "spectra; shift them to the rest frame instead"
                )
            velocity = rv if rv_col is None else _VelocityColumn(rv_col)
            table, sources = _run(predictor, inputs, counts, lo, hi, columns, mask_bits, velocity)
            destination = str(output)
            try:
                if pfs_star:
                    written = write_pfs_stars(
                        table, output, predictor.label_names, overwrite=overwrite
                    )
                    destination = f"{len(written)} pfsStar file(s) in {output}"
                else:
                    write_table(table, output, overwrite=overwrite)
            except PfsStarError as exc:
                raise _Failure(f"--format pfsStar: {exc}", "usage") from exc
            except FileExistsError as exc:
                raise _Failure(str(exc), "output_exists") from exc
            except OSError as exc:
                raise _Failure(f"cannot write {output}: {exc}", "output") from exc
    except KeyboardInterrupt:
        click.echo("interrupted: no output written", err=True)
        sys.exit(EXIT_CODES["interrupted"])
    except _Terminated:
        click.echo("terminated (SIGTERM): no output written", err=True)
        sys.exit(EXIT_CODES["terminated"])
    click.echo(_summary(table, len(inputs), sources, destination), err=True)


def _check_pfs_star_options(
    output: Path, flux_col: str | None, error_col: str | None, wave_col: str | None
) -> None:
    """``--format pfsStar``: the folder OUTPUT is writable and no column is chosen by hand (a
    pfsStar file carries the PFS file's own FLUX, COVAR and wavelengths)."""
    chosen = [
        name
        for name, value in (
            ("--flux-col", flux_col),
            ("--error-col", error_col),
            ("--wave-col", wave_col),
        )
        if value is not None
    ]
    if chosen:
        raise click.UsageError(
            f"--format pfsStar reads PFS files by their data model (FLUX, COVAR, the "
            f"wavelengths): drop {', '.join(chosen)}"
        )
    try:
        check_folder(output)
    except OutputError as exc:
        raise _Failure(
            f"--format pfsStar: {exc} (OUTPUT is the folder for the files)", "output"
        ) from exc


def _plan_pfs_stars(
    inputs: tuple[Path, ...], counts: list[int], lo: int, hi: int, folder: Path, overwrite: bool
) -> None:
    """Before any work: every spectrum ``lo:hi`` names its pfsStar file (PFS inputs with their
    identifiers), no two name the same file, and each can be written."""
    seen: dict[Path, str] = {}
    offset = 0
    for path, n in zip(inputs, counts, strict=True):
        start, stop = max(lo, offset) - offset, min(hi, offset + n) - offset
        offset += n
        if start >= stop:
            continue
        if not path.name.lower().endswith(_FITS_SUFFIXES):
            raise _Failure(
                f"--format pfsStar: {path} is not a PFS data-model file (pfsObject, pfsSingle, "
                "pfsCoadd, pfsCalibrated): write a table instead (--format table)",
                "usage",
            )
        try:
            with fits.open(path) as hdul:
                identities = pfs_star_identities(hdul, str(path))
        except PfsStarError as exc:
            raise _Failure(f"--format pfsStar: {exc}", "usage") from exc
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise _Failure(_read_error(path, exc), "input") from exc
        if len(identities) != n:
            raise _Failure(
                f"--format pfsStar: {path} holds {n} spectra but {len(identities)} targets",
                "usage",
            )
        for index in range(start, stop):
            target = folder / identities[index].filename
            here = f"{path} spectrum {index}"
            if target in seen:
                raise _Failure(
                    f"--format pfsStar: {seen[target]} and {here} are the same star (catId, "
                    f"tract, patch, objId and visits): both would be {target.name}",
                    "usage",
                )
            seen[target] = here
            try:
                check_writable(target, inputs, overwrite=overwrite)
            except FileExistsError as exc:
                raise _Failure(str(exc), "output_exists") from exc
            except OutputError as exc:
                raise _Failure(str(exc), "output") from exc


def _count(path: Path, columns: ColumnChoice, mask_bits) -> int:
    """The number of spectra in ``path``; checks that every chosen option applies to it."""
    try:
        with open_spectra(path, columns, mask_bits) as spectra:
            ignored = _ignored_error_kind(spectra, columns.uncertainty)
            n = len(spectra)
    except (OSError, ValueError, TypeError, KeyError, EOFError) as exc:
        raise _Failure(_read_error(path, exc), "input") from exc
    if ignored:
        raise _Failure(
            f"{path}: --error-kind {columns.uncertainty} would be ignored: {ignored}; "
            "--error-kind describes a column chosen with --error-col NAME",
            "usage",
        )
    return n


def _ignored_error_kind(spectra: Any, kind: str | None) -> str | None:
    """Why ``--error-kind kind`` would not apply to an opened file, or None when it does."""
    if kind is None:
        return None
    if getattr(spectra, "error", "shard") is None:
        return "the file has no uncertainty"
    read_as = getattr(spectra, "uncertainty", "std")
    if read_as == kind:
        return None
    where = getattr(spectra, "source", {}).get("error")
    what = "the file's uncertainty" + (f", {where}," if where else "")
    return f"{what} is read as {UNCERTAINTY_TEXT[read_as]}"


def _read_error(path: Path, exc: BaseException) -> str:
    text = str(exc)
    return text if text.startswith(str(path)) else f"cannot read {path}: {text}"


@dataclass(frozen=True)
class _VelocityColumn:
    """``--rv-col``: the per-spectrum column holding each spectrum's velocity."""

    name: str

    def values(self, ids: Table, where: str) -> np.ndarray:
        """The column of ``ids`` (any case) as float64 km/s, or a ``ValueError``."""
        found = [n for n in ids.colnames if n.lower() == self.name.lower()]
        if not found:
            own = [n for n in ids.colnames if n not in ("input", "index")]
            raise ValueError(
                f"--rv-col {self.name}: no such per-spectrum column in {where} (its "
                f"per-spectrum columns: {', '.join(own) or 'none'})"
            )
        return np.asarray(ids[found[0]], dtype=np.float64)


def _run(
    predictor: Predictor,
    inputs,
    counts,
    lo: int,
    hi: int,
    columns: ColumnChoice,
    mask_bits,
    velocity: float | _VelocityColumn | None = None,
) -> tuple[Table, list[dict[str, str]]]:
    """Predict rows ``lo:hi`` of the concatenated inputs, batching across small files
    (``velocity``: ``--rv`` or ``--rv-col``)."""
    from tqdm import tqdm

    tables: list[Table] = []
    pending: list[SpectrumSet] = []
    sources: list[dict[str, str]] = []
    block = 8 * predictor.batch_size
    bar = tqdm(total=hi - lo, unit="spectra", file=sys.stderr, disable=None)

    def flush() -> None:
        for group in stack_sets(pending):
            names = list(dict.fromkeys(group.ids["input"]))
            where = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            try:
                rv = velocity
                if isinstance(velocity, _VelocityColumn):
                    rv = velocity.values(group.ids, where)
                kwargs = group.predict_kwargs(sky=predictor.exact is not None)
                result = predictor.predict(**kwargs, rv=rv, progress=bar.update)
            except (ValueError, TypeError) as exc:
                raise _Failure(f"invalid spectra in {where}: {exc}", "input") from exc
            tables.append(hstack([_prefixed(group.ids, result.colnames), result]))
        pending.clear()

    offset = 0
    with bar:
        for path, n in zip(inputs, counts, strict=True):
            start, stop = max(lo, offset) - offset, min(hi, offset + n) - offset
            offset += n
            if start >= stop:
                continue
            try:
                with open_spectra(path, columns, mask_bits) as spectra:
                    for a in range(start, stop, block):
                        for first, rows in spectra.blocks(a, min(stop, a + block)):
                            # what the run reads: a file's sky only in exact mode
                            source = {
                                role: name
                                for role, name in rows.source.items()
                                if role != "sky" or predictor.exact is not None
                            }
                            if source not in sources:
                                sources.append(source)
                            where = Table(
                                {
                                    "input": [str(path)] * len(rows),
                                    "index": np.arange(first, first + len(rows)),
                                }
                            )
                            if rows.ids.colnames:
                                where = hstack([where, _prefixed(rows.ids, OWN_COLUMNS)])
                            rows.ids = where
                            pending.append(rows)
                            if sum(map(len, pending)) >= predictor.batch_size:
                                flush()
            except (OSError, KeyError, ValueError, EOFError) as exc:
                raise _Failure(_read_error(path, exc), "input") from exc
        flush()
    if not tables:
        empty = predictor.predict(np.empty((0, predictor.config.input_length)))
        where = Table({"input": np.array([], dtype=str), "index": np.array([], dtype=int)})
        return hstack([where, empty]), sources
    meta = tables[-1].meta
    out = vstack(tables, join_type="outer", metadata_conflicts="silent")
    out.meta = meta
    return out, sources


def _prefixed(ids: Table, taken) -> Table:
    """Identifier columns renamed ``input_<name>`` (repeatedly) where a name is taken."""
    taken = set(taken)
    clash = [n for n in ids.colnames if n in taken]
    if not clash:
        return ids
    ids = ids.copy(copy_data=False)
    for name in clash:
        new = f"input_{name}"
        while new in taken or new in ids.colnames:
            new = f"input_{new}"
        ids.rename_column(name, new)
    return ids


def _summary(table: Table, n_files: int, sources: list[dict[str, str]], output: str) -> str:
    """One line: spectra read, where they went, columns used, count per flag."""
    used = "; ".join(
        ", ".join(f"{role}={name}" for role, name in source.items()) for source in sources
    )
    return (
        f"specvit-predict: {len(table)} spectra from {n_files} file(s) -> {output}; "
        f"columns: {used or 'none read'}; flags: {_flag_counts(table)}"
    )


def _flag_counts(table: Table) -> str:
    """``none set (N clean)``, or ``C clean, F flagged (NAME n, …)`` (a spectrum may count
    under several names)."""
    flags = np.asarray(table["flags"], dtype=np.int64) if len(table) else np.zeros(0, np.int64)
    clean = int(np.count_nonzero(flags == 0))
    if clean == len(flags):
        return f"none set ({clean} clean)"
    counts = Counter()
    for flag in PredictFlag:
        hit = int(np.count_nonzero(flags & int(flag)))
        if hit:
            counts[flag.name] = hit
    named = ", ".join(f"{name} {n}" for name, n in counts.items())
    return f"{clean} clean, {len(flags) - clean} flagged ({named})"


if __name__ == "__main__":
    main()
