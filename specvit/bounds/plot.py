"""Figures of the ceilings (matplotlib is optional: ``pip install specvit[plot]``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from specvit.bounds.table import CeilingRow

__all__ = ["check_figure_path", "plot_ceilings", "plot_r2_vs_snr", "require_matplotlib"]

#: How each label is written on an axis.
_AXIS_NAMES = {"log_g": "log g", "T_eff": "T_eff", "M_H": "[M/H]"}


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


def check_figure_path(path: str | Path) -> Path:
    """Check, before drawing, that a figure can be saved at ``path``.

    Parameters
    ----------
    path : str or Path
        Where the figure goes; its suffix names the format (``.png``, ``.pdf``, ``.svg`` …).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ImportError
        Without matplotlib.
    ValueError
        If the suffix is not a format matplotlib writes, the path is a folder, or its folder
        does not exist or cannot be written to.
    """
    require_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        what = "its suffix is none" if suffix else "it has no suffix naming one"
        raise ValueError(
            f"cannot save a figure as {str(path)!r}: {what} of the formats matplotlib writes "
            f"({', '.join(formats)})"
        )
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"cannot save a figure as {str(path)!r}: it is a folder")
    if not folder.is_dir():
        raise ValueError(f"cannot save a figure as {str(path)!r}: no folder {str(folder)!r}")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot save a figure as {str(path)!r}: {str(folder)!r} is read-only")
    return path


def plot_r2_vs_snr(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], str]],
    ticks: Sequence[float],
    ax=None,
    xlabel: str = "median SNR (flux/σ per pixel)",
    target: str = "log_g",
):
    """Draw R² curves of one label against SNR on a logarithmic axis.

    Parameters
    ----------
    curves : mapping
        ``{label: (snr, r2, fmt)}``, ``fmt`` a matplotlib format string (``"k--"``, ``"o-"``).
    ticks : sequence of float
        SNR values to label on the axis.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    xlabel : str
        Label of the SNR axis.
    target : str
        The label the R² values are of (names the vertical axis).

    Returns
    -------
    matplotlib.axes.Axes
    """
    plt = require_matplotlib()
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, (x, y, fmt) in curves.items():
        ax.plot(x, y, fmt, label=label)
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{v:.3g}" for v in ticks])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"R² ({_AXIS_NAMES.get(target, target)})")
    ax.set_ylim(-0.05, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return ax


def plot_ceilings(
    rows: Sequence[CeilingRow],
    measured: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    ax=None,
    *,
    target: str = "log_g",
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
    target : str
        The bounded label of ``rows`` (names the vertical axis).

    Returns
    -------
    matplotlib.figure.Figure
    """
    snr = [r.median_snr for r in rows]
    curves = {
        "CRLB, median over stars": (snr, [r.median_r2_max for r in rows], "k--"),
        "CRLB, population": (snr, [r.population_r2_max for r in rows], "k-"),
    }
    curves.update({label: (x, y, "o-") for label, (x, y) in (measured or {}).items()})
    return plot_r2_vs_snr(curves, snr, ax=ax, target=target).figure
