"""Tables of R² ceilings: one population observed at several magnitudes (or median SNRs).

:func:`ceiling_table` computes the rows with :func:`specvit.bounds.crlb_ceilings`;
:func:`format_table` renders them as Markdown or CSV (what ``specvit-bounds`` prints).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from specvit.bounds.ceilings import (
    MAG_RANGE,
    check_labels,
    check_mag,
    check_n_stars,
    check_nuisance,
    check_snr,
    crlb_ceilings,
)
from specvit.bounds.fisher import check_continuum_order
from specvit.bounds.prior import LabelPrior
from specvit.emulator import Emulator
from specvit.instrument.noise import PFSNoiseModel
from specvit.preprocessing import expected_snr

__all__ = ["CeilingRow", "ceiling_table", "format_table", "magnitude_for_snr"]


@dataclass(frozen=True)
class CeilingRow:
    """One row of a ceiling table: a population observed at one magnitude.

    Attributes
    ----------
    mag : float
        HSC-i magnitude.
    median_snr : float
        Median over the stars of their expected S/N (:attr:`Ceilings.median_snr
        <specvit.bounds.Ceilings.median_snr>`, :func:`specvit.preprocessing.expected_snr`).
    median_r2_max, population_r2_max : float
        The two R² ceilings of :class:`specvit.bounds.Ceilings`.
    median_sigma_min : float
        Median over the stars of √CRLB, in the target's unit.
    """

    mag: float
    median_snr: float
    median_r2_max: float
    population_r2_max: float
    median_sigma_min: float


def magnitude_for_snr(
    snr: float,
    labels: torch.Tensor,
    emulator=None,
    noise_model=None,
    low: float = MAG_RANGE[0],
    high: float = MAG_RANGE[1],
    tol: float = 1e-3,
) -> float:
    """The HSC-i magnitude at which the population's median expected S/N equals ``snr``.

    Found by bisection; the S/N of a star is :func:`specvit.preprocessing.expected_snr` (its
    noiseless flux over the noise model's σ), as in :func:`specvit.bounds.crlb_ceilings`.

    Parameters
    ----------
    snr : float
        The target median expected S/N.
    labels : torch.Tensor
        ``(N, 3)`` the population's labels.
    emulator, noise_model : optional
        Default ``Emulator.load()`` and ``PFSNoiseModel.default()``.
    low, high : float
        Magnitude range searched (default :data:`~specvit.bounds.ceilings.MAG_RANGE`).
    tol : float
        Width (mag) at which the bisection stops.

    Returns
    -------
    float
        The magnitude.

    Raises
    ------
    ValueError
        If ``snr`` is not finite and > 0, or not reached within ``low``–``high``.
    """
    snr = float(check_snr(snr))
    emulator = emulator if emulator is not None else Emulator.load()
    noise_model = noise_model if noise_model is not None else PFSNoiseModel.default()
    flux = emulator(torch.as_tensor(labels).to(emulator.dtype))

    def snr_at(m: float) -> float:
        f = noise_model.scale_to_magnitude(flux, m)
        return float(expected_snr(f, noise_model.expected_sigma(f)).median())

    if not snr_at(high) < snr < snr_at(low):
        raise ValueError(f"SNR {snr} is outside what magnitudes {low}–{high} give")
    while high - low > tol:
        mid = 0.5 * (low + high)
        low, high = (mid, high) if snr_at(mid) > snr else (low, mid)
    return 0.5 * (low + high)


def ceiling_table(
    mags: Sequence[float] = (),
    snrs: Sequence[float] = (),
    *,
    prior: LabelPrior | None = None,
    n_stars: int = 2000,
    seed: int = 0,
    target: str = "log_g",
    nuisance: Sequence[str] | None = None,
    continuum_order: int = 0,
    emulator=None,
    noise_model=None,
) -> list[CeilingRow]:
    """Ceilings of one population (``n_stars`` drawn with ``seed``) at several magnitudes.

    A row asked for by SNR is computed at the magnitude where the population's median SNR
    equals it (:func:`magnitude_for_snr`). Rows are sorted by magnitude. The other arguments
    are those of :func:`specvit.bounds.crlb_ceilings`.

    Raises
    ------
    ValueError
        Before any work, for no rows, ``n_stars`` < 1, a magnitude that is not finite or outside
        :data:`~specvit.bounds.ceilings.MAG_RANGE`, an S/N that is not finite and > 0, an
        unknown target or nuisance parameter, a continuum order that is not an integer ≥ 0, or
        a prior reaching beyond the emulator's grid; and for an S/N no magnitude in that range
        gives.
    """
    if not len(mags) and not len(snrs):
        raise ValueError("give at least one magnitude or SNR")
    check_nuisance(target, nuisance)
    check_continuum_order(continuum_order)
    mags = check_mag(list(mags)).tolist()
    check_snr(list(snrs))
    prior = prior or LabelPrior.default()
    emulator = emulator if emulator is not None else Emulator.load()
    noise_model = noise_model if noise_model is not None else PFSNoiseModel.default()
    labels = prior.sample(check_n_stars(n_stars), torch.Generator().manual_seed(seed))
    check_labels(labels, emulator)
    all_mags = [float(m) for m in mags] + [
        magnitude_for_snr(s, labels, emulator, noise_model) for s in snrs
    ]
    rows = []
    for m in sorted(all_mags):
        c = crlb_ceilings(
            labels,
            mag=m,
            prior=prior,
            target=target,
            nuisance=nuisance,
            continuum_order=continuum_order,
            emulator=emulator,
            noise_model=noise_model,
        )
        rows.append(
            CeilingRow(m, c.median_snr, c.median_r2_max, c.population_r2_max, c.median_sigma_min)
        )
    return rows


def format_table(rows: Sequence[CeilingRow], fmt: str = "markdown") -> str:
    """Render rows as a Markdown table or CSV."""
    head = ("HSC-i mag", "median SNR", "R²_max (median)", "R²_max (population)", "σ_min (dex)")
    body = [
        (
            f"{r.mag:.2f}",
            f"{r.median_snr:.2f}",
            f"{r.median_r2_max:.4f}",
            f"{r.population_r2_max:.4f}",
            f"{r.median_sigma_min:.3f}",
        )
        for r in rows
    ]
    if fmt == "csv":
        return "\n".join(",".join(x) for x in [head, *body])
    if fmt != "markdown":
        raise ValueError(f"fmt must be 'markdown' or 'csv', got {fmt!r}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(x) + " |" for x in body]
    return "\n".join(lines)
