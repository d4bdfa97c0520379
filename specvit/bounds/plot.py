"""Figures of the ceilings (matplotlib is optional: ``pip install specvit[plot]``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from specvit.bounds.ceilings import CeilingRow

__all__ = ["plot_ceilings", "require_matplotlib"]


def require_matplotlib():
    """Import ``matplotlib.pyplot`` (Agg backend when no display), or explain how to get it."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "specvit.bounds.plot needs matplotlib: pip install 'specvit[plot]'"
        ) from err
    return plt


def plot_ceilings(
    rows: Sequence[CeilingRow],
    measured: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    ax=None,
):
    """R²_max vs median SNR: the median and population CRLB ceilings, plus measured curves.

    Parameters
    ----------
    rows : sequence of CeilingRow
        From :func:`specvit.bounds.ceiling_table`.
    measured : mapping, optional
        ``{label: (snr, r2)}`` curves to overlay (e.g. the Bayes-optimal R² per SNR bin).
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = require_matplotlib()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    snr = [r.median_snr for r in rows]
    ax.plot(snr, [r.median_r2_max for r in rows], "k--", label="CRLB, median over stars")
    ax.plot(snr, [r.population_r2_max for r in rows], "k-", label="CRLB, population")
    for label, (x, y) in (measured or {}).items():
        ax.plot(x, y, "o-", label=label)
    ax.set_xscale("log")
    ax.set_xticks(snr, [f"{v:.3g}" for v in snr])
    ax.minorticks_off()
    ax.set_xlabel("median SNR (flux/σ per pixel)")
    ax.set_ylabel("R² (log g)")
    ax.set_ylim(-0.05, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return ax.figure
