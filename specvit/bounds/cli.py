"""``specvit-bounds``: print Cramér–Rao ceiling tables for PFS-MR spectra."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from specvit.bounds.ceilings import (
    MAG_RANGE,
    check_mag,
    check_n_stars,
    check_nuisance,
    check_snr,
)
from specvit.bounds.fisher import check_continuum_order, continuum_parameters
from specvit.bounds.table import ceiling_table, format_table
from specvit.instrument.noise import DEFAULT_N_EXPOSURES
from specvit.labels import LABEL_NAMES

__all__ = ["PAPER_MAGS", "main"]

#: The magnitudes of the paper's §5.4 table, used when neither --snr nor --mag is given.
PAPER_MAGS = (18.0, 20.0, 21.5, 22.0, 22.5, 23.0)


#: Said (on stderr) when the noise model is the built-in approximation.
_NO_ETC_NOTE = (
    "note: without --etc-dir the noise is a smooth approximation of the PFS ETC (no sky lines); "
    "for realistic noise give --etc-dir a folder with the ETC tables noise_mr.dat and snc_mr.dat"
)


def _noise_model(etc_dir: Path | None, n_exposures: int):
    """The PFS noise model: from the ETC tables in ``etc_dir``, else the approximation (noted)."""
    from specvit.instrument.noise import PFSNoiseModel

    if etc_dir is None:
        # The library warns about the approximation; a command says it once, in its own words.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            noise = PFSNoiseModel.default(n_exposures=n_exposures)
        click.echo(_NO_ETC_NOTE, err=True)
        return noise
    try:
        return PFSNoiseModel.from_etc(etc_dir, n_exposures=n_exposures)
    except (OSError, ValueError) as err:
        raise click.BadParameter(str(err), param_hint="'--etc-dir'") from err


def _checked(check: Callable[[Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback running the library's own ``check`` on the option's value(s)."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None or value == ():
            return value
        try:
            check(list(value) if isinstance(value, tuple) else value)
        except (ImportError, ValueError) as err:
            raise click.BadParameter(str(err)) from err
        return value

    return callback


def _check_plot(path: Path) -> None:
    from specvit.bounds.plot import check_figure_path

    check_figure_path(path)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--snr",
    "snrs",
    type=float,
    multiple=True,
    callback=_checked(check_snr),
    help="Median SNR of a row (repeatable).",
)
@click.option(
    "--mag",
    "mags",
    type=float,
    multiple=True,
    callback=_checked(check_mag),
    help=f"HSC-i magnitude of a row (repeatable; {MAG_RANGE[0]:g}–{MAG_RANGE[1]:g}).",
)
@click.option(
    "--n-stars",
    type=int,
    default=2000,
    show_default=True,
    callback=_checked(check_n_stars),
    help="Stars drawn from the prior.",
)
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
    "--continuum-order",
    type=int,
    default=0,
    show_default=True,
    callback=_checked(check_continuum_order),
    help="Also marginalise a multiplicative continuum 1 + Σ c_k P_k(x) of this order "
    "(Legendre P_1…P_K across the grid; with ln_A any polynomial continuum of that degree); "
    "0: none.",
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
    callback=_checked(_check_plot),
    help="Also save the R²_max-vs-SNR figure here, in the format its suffix names "
    "(needs matplotlib).",
)
@click.version_option(package_name="specvit", prog_name="specvit-bounds")
def main(
    snrs, mags, n_stars, seed, target, nuisance, continuum_order, etc_dir, n_exposures, fmt, plot
) -> None:
    """Print the R² ceilings on TARGET for PFS-MR spectra at given SNRs and/or magnitudes.

    Each row is one population (N_STARS drawn from the default prior with SEED) observed at one
    HSC-i magnitude; a row asked for by --snr sits at the magnitude where the population's
    median SNR equals it. Without --snr/--mag the paper's magnitudes are used.
    """
    if nuisance is not None:
        nuisance = tuple(n.strip() for n in nuisance.split(",") if n.strip())
    try:
        names = check_nuisance(target, nuisance)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--nuisance'") from err
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
            continuum_order=continuum_order,
            noise_model=noise,
        )
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    continuum = continuum_parameters(continuum_order)
    order = f" (continuum order {continuum_order})" if continuum_order else ""
    click.echo(
        f"# {target}: unbiased CRLB ceilings, {n_stars} stars (seed {seed}), "
        f"nuisance {', '.join((*names, *continuum)) or 'none'}{order}; "
        f"noise: {noise.description}, {noise.n_exposures} exposures"
    )
    click.echo(format_table(rows, fmt))
    if plot is not None:
        from specvit.bounds.plot import plot_ceilings

        plot_ceilings(rows, target=target).savefig(plot, dpi=150, bbox_inches="tight")
        click.echo(f"# figure: {plot}")


if __name__ == "__main__":
    main()
