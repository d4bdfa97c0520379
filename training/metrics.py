"""Regression metrics in physical units, overall and per S/N bin.

The S/N of a spectrum is the median over pixels of flux/σ (the paper's definition). The bins
are centred on the paper's S/N values 3, 4, 5, 7, 10, 15 and 21; since those centres are
roughly evenly spaced in log S/N, an inner edge is the geometric mean of its two neighbouring
centres and the outer edges mirror the first and last inner edge in log S/N:

======  ==============
centre  S/N range
======  ==============
3       [2.60, 3.46)
4       [3.46, 4.47)
5       [4.47, 5.92)
7       [5.92, 8.37)
10      [8.37, 12.25)
15      [12.25, 17.75)
21      [17.75, 24.85)
======  ==============

Spectra outside [2.60, 24.85) count in the overall metrics only.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch

__all__ = [
    "SNR_BIN_CENTRES",
    "SNR_BIN_EDGES",
    "regression_metrics",
    "snr_binned_metrics",
    "strict_json",
]

#: The paper's S/N bin centres.
SNR_BIN_CENTRES: tuple[int, ...] = (3, 4, 5, 7, 10, 15, 21)


def _edges(centres: tuple[int, ...]) -> tuple[float, ...]:
    inner = [math.sqrt(a * b) for a, b in itertools.pairwise(centres)]
    first = centres[0] ** 2 / inner[0]
    last = centres[-1] ** 2 / inner[-1]
    return (first, *inner, last)


#: Bin edges (len(SNR_BIN_CENTRES) + 1), see the module docstring.
SNR_BIN_EDGES: tuple[float, ...] = _edges(SNR_BIN_CENTRES)


def regression_metrics(
    pred: torch.Tensor, true: torch.Tensor, names: list[str] | tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """R², MAE and RMSE per label, in the labels' physical units.

    Parameters
    ----------
    pred, true : torch.Tensor
        (N, n_labels) predictions and truths in physical units (K, dex, dex).
    names : sequence of str
        Label names, one per column.

    Returns
    -------
    dict
        ``{name: {"r2": ..., "mae": ..., "rmse": ..., "n": N}}``; R² is
        ``1 − Σ(pred − true)² / Σ(true − mean(true))²`` (NaN for fewer than two spectra).
    """
    if pred.shape != true.shape or pred.dim() != 2 or pred.shape[1] != len(names):
        raise ValueError(
            f"pred {tuple(pred.shape)} and true {tuple(true.shape)} must both be (N, {len(names)})"
        )
    pred, true = pred.double(), true.double()
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(names):
        p, t = pred[:, j], true[:, j]
        err = p - t
        n = t.numel()
        ss_tot = ((t - t.mean()) ** 2).sum() if n else torch.tensor(0.0)
        r2 = float(1 - (err**2).sum() / ss_tot) if n > 1 and ss_tot > 0 else math.nan
        out[name] = {
            "r2": r2,
            "mae": float(err.abs().mean()) if n else math.nan,
            "rmse": float(err.pow(2).mean().sqrt()) if n else math.nan,
            "n": n,
        }
    return out


def snr_binned_metrics(
    pred: torch.Tensor,
    true: torch.Tensor,
    snr_values: torch.Tensor,
    names: list[str] | tuple[str, ...],
) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`regression_metrics` overall and in each S/N bin.

    Returns
    -------
    dict
        ``{"all": {...}, "snr_3": {...}, ..., "snr_21": {...}}``, each as returned by
        :func:`regression_metrics`.
    """
    result = {"all": regression_metrics(pred, true, names)}
    edges = SNR_BIN_EDGES
    for i, centre in enumerate(SNR_BIN_CENTRES):
        inside = (snr_values >= edges[i]) & (snr_values < edges[i + 1])
        result[f"snr_{centre}"] = regression_metrics(pred[inside], true[inside], names)
    return result


def strict_json(value: Any) -> Any:
    """``value`` with NaN / infinite floats replaced by None (strict JSON has no NaN).

    Metrics of an empty S/N bin are NaN; records written as JSON carry them as ``null``.
    """
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
