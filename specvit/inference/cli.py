"""``specvit-predict``: stellar labels for files of spectra, for survey pipelines.

Exit codes: 0 success; 1 unexpected error; 2 usage error (bad option, no ``--model`` while no
default model is published, unknown output suffix); 3 an input file cannot be read or holds
invalid spectra; 4 the output exists and ``--overwrite`` was not given; 5 the model cannot be
loaded; 130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np
from astropy.table import Table, hstack, vstack

from specvit.inference.predictor import DEFAULT_MODEL, Predictor
from specvit.io.readers import open_spectra
from specvit.io.spectra import SpectrumSet, stack_sets
from specvit.io.tables import table_format, write_table

__all__ = ["EXIT_CODES", "main"]

#: Exit codes of ``specvit-predict``.
EXIT_CODES = {
    "ok": 0,
    "error": 1,
    "usage": 2,
    "input": 3,
    "output_exists": 4,
    "model": 5,
    "interrupted": 130,
}


class _Failure(click.ClickException):
    """An error reported as ``Error: …`` on stderr with a specific exit code."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.exit_code = EXIT_CODES[kind]


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


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument(
    "inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output table: .fits, .fit, .fits.gz, .csv or .ecsv.",
)
@click.option(
    "--model",
    default=DEFAULT_MODEL,
    help="Model folder (save_pretrained) or Hub repo id. Required until a default is published.",
)
@click.option("--revision", default=None, help="Hub revision of --model (pin a commit hash).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, …")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Spectra per forward pass.",
)
@click.option(
    "--shard",
    callback=_parse_shard,
    metavar="I/N",
    help="Process only block I (0-based) of N equal blocks of the input spectra, in input order.",
)
@click.option(
    "--physics/--no-physics",
    default=True,
    show_default=True,
    help="Per-star CRLB, emulator fit (v_rad, chi2) and domain flags (models on the PFS MR grid).",
)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.version_option(package_name="specvit", prog_name="specvit-predict")
def main(
    inputs: tuple[Path, ...],
    output: Path,
    model: str | None,
    revision: str | None,
    device: str,
    batch_size: int,
    shard: tuple[int, int] | None,
    physics: bool,
    overwrite: bool,
) -> None:
    """Predict stellar labels for the spectra in INPUT... and write one table to OUTPUT.

    Inputs are FITS (PFS pfsObject, image HDUs, binary tables with a flux column) or NPZ
    files. The output has one row per spectrum, in input order: ``input`` (the file),
    ``index`` (the spectrum's row in it), the file's identifiers, then the predictions.
    """
    try:
        table_format(output)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if output.exists() and not overwrite:
        raise _Failure(f"{output} exists; pass --overwrite to replace it", "output_exists")
    if model is None:
        raise click.UsageError(
            "no default specvit model is published yet: pass --model FOLDER_OR_HUB_ID"
        )
    try:
        counts = [_count(path) for path in inputs]
        lo, hi = 0, sum(counts)
        if shard is not None:
            lo, hi = shard[0] * hi // shard[1], (shard[0] + 1) * hi // shard[1]
        try:
            predictor = Predictor(
                model, revision=revision, device=device, batch_size=batch_size, physics=physics
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise _Failure(f"cannot load model {model!r}: {exc}", "model") from exc
        table = _run(predictor, inputs, counts, lo, hi)
        write_table(table, output, overwrite=overwrite)
    except KeyboardInterrupt:
        click.echo("interrupted: no output written", err=True)
        sys.exit(EXIT_CODES["interrupted"])
    except FileExistsError as exc:
        raise _Failure(str(exc), "output_exists") from exc


def _count(path: Path) -> int:
    try:
        with open_spectra(path) as spectra:
            return len(spectra)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise _Failure(f"cannot read {path}: {exc}", "input") from exc


def _run(predictor: Predictor, inputs, counts, lo: int, hi: int) -> Table:
    """Predict rows ``lo:hi`` of the concatenated inputs, batching across small files."""
    from tqdm import tqdm

    tables: list[Table] = []
    pending: list[SpectrumSet] = []
    block = 8 * predictor.batch_size
    bar = tqdm(total=hi - lo, unit="spectra", file=sys.stderr, disable=None)

    def flush() -> None:
        for group in stack_sets(pending):
            try:
                result = predictor.predict(**group.predict_kwargs(), progress=bar.update)
            except (ValueError, TypeError) as exc:
                names = list(dict.fromkeys(group.ids["input"]))
                where = ", ".join(names[:3]) + (
                    f" and {len(names) - 3} more" if len(names) > 3 else ""
                )
                raise _Failure(f"invalid spectra in {where}: {exc}", "input") from exc
            tables.append(hstack([_rename_clashes(group.ids, result.colnames), result]))
        pending.clear()

    offset = 0
    with bar:
        for path, n in zip(inputs, counts, strict=True):
            start, stop = max(lo, offset) - offset, min(hi, offset + n) - offset
            offset += n
            if start >= stop:
                continue
            try:
                with open_spectra(path) as spectra:
                    for a in range(start, stop, block):
                        b = min(stop, a + block)
                        rows = spectra.rows(a, b)
                        where = Table({"input": [str(path)] * (b - a), "index": np.arange(a, b)})
                        rows.ids = hstack([where, rows.ids]) if rows.ids.colnames else where
                        pending.append(rows)
                        if sum(map(len, pending)) >= predictor.batch_size:
                            flush()
            except (OSError, KeyError) as exc:
                raise _Failure(f"cannot read {path}: {exc}", "input") from exc
        flush()
    if not tables:
        empty = predictor.predict(np.empty((0, predictor.config.input_length)))
        where = Table({"input": np.array([], dtype=str), "index": np.array([], dtype=int)})
        return hstack([where, empty])
    meta = tables[-1].meta
    out = vstack(tables, join_type="outer", metadata_conflicts="silent")
    out.meta = meta
    return out


def _rename_clashes(ids: Table, names: list[str]) -> Table:
    """Identifier columns renamed ``input_<name>`` where they clash with prediction columns."""
    clash = [n for n in ids.colnames if n in names]
    if clash:
        ids = ids.copy(copy_data=False)
        ids.rename_columns(clash, [f"input_{n}" for n in clash])
    return ids


if __name__ == "__main__":
    main()
