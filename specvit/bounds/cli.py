"""``specvit-bounds``: print Cramér–Rao ceiling tables for PFS-MR spectra."""

from __future__ import annotations

from pathlib import Path

import click

from specvit.bounds.ceilings import default_nuisance
from specvit.bounds.table import ceiling_table, format_table
from specvit.instrument.noise import DEFAULT_N_EXPOSURES
from specvit.labels import LABEL_NAMES

__all__ = ["PAPER_MAGS", "main"]

#: The magnitudes of the paper's §5.4 table, used when neither --snr nor --mag is given.
PAPER_MAGS = (18.0, 20.0, 21.5, 22.0, 22.5, 23.0)


def _noise_model(etc_dir: Path | None, n_exposures: int):
    from specvit.instrument.noise import PFSNoiseModel

    if etc_dir is None:
        return PFSNoiseModel.default(n_exposures=n_exposures)
    return PFSNoiseModel.from_etc(etc_dir, n_exposures=n_exposures)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--snr", "snrs", type=float, multiple=True, help="Median SNR of a row (repeatable).")
@click.option(
    "--mag", "mags", type=float, multiple=True, help="HSC-i magnitude of a row (repeatable)."
)
@click.option("--n-stars", default=2000, show_default=True, help="Stars drawn from the prior.")
@click.option("--seed", default=0, show_default=True, help="Seed of the draw.")
@click.option(
    "--target",
    type=click.Choice(LABEL_NAMES),
    default="log_g",
    show_default=True,
    help="Bounded label.",
)
@click.option(
    "--nuisance",
    default=None,
    help="Comma-separated nuisances among the other labels, v_rad, ln_A (flux amplitude); "
    "'' for none. Default: the other labels and ln_A.",
)
@click.option(
    "--etc-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="PFS ETC tables (noise_mr.dat, snc_mr.dat); default: the noise model's built-in default.",
)
@click.option(
    "--n-exposures",
    type=click.IntRange(min=1),
    default=DEFAULT_N_EXPOSURES,
    show_default=True,
    help="Exposures of 900 s (with --etc-dir or the built-in noise model).",
)
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv"]), default="markdown")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also save the R²_max-vs-SNR figure here (needs matplotlib).",
)
def main(snrs, mags, n_stars, seed, target, nuisance, etc_dir, n_exposures, fmt, plot) -> None:
    """Print the R² ceilings on TARGET for PFS-MR spectra at given SNRs and/or magnitudes.

    Each row is one population (N_STARS drawn from the default prior with SEED) observed at one
    HSC-i magnitude; a row asked for by --snr sits at the magnitude where the population's
    median SNR equals it. Without --snr/--mag the paper's magnitudes are used.
    """
    if nuisance is None:
        names = default_nuisance(target)
    else:
        names = tuple(n.strip() for n in nuisance.split(",") if n.strip())
    if not snrs and not mags:
        mags = PAPER_MAGS
    noise = _noise_model(etc_dir, n_exposures)
    try:
        rows = ceiling_table(
            mags,
            snrs,
            n_stars=n_stars,
            seed=seed,
            target=target,
            nuisance=names,
            noise_model=noise,
        )
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    click.echo(
        f"# {target}: unbiased CRLB ceilings, {n_stars} stars (seed {seed}), "
        f"nuisance {', '.join(names) or 'none'}; noise: {noise.description}, "
        f"{noise.n_exposures} exposures"
    )
    click.echo(format_table(rows, fmt))
    if plot is not None:
        from specvit.bounds.plot import plot_ceilings

        plot_ceilings(rows, target=target).savefig(plot, dpi=150, bbox_inches="tight")
        click.echo(f"# figure: {plot}")


if __name__ == "__main__":
    main()
