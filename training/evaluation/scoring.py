"""The one scorer: regression metrics overall, per SNR bin and per T_eff / [M/H] bin, and the
efficiency against the Bayes-optimal estimator.

Every evaluation in the repository (the trainer's validation, the baselines, the report of
``training/evaluation/compare.py``) calls :func:`score`, so every number is computed the same way.

Definitions, for one label in one group of stars (``y`` true, ``ŷ`` predicted):

* ``r2 = 1 − Σ(ŷ − y)² / Σ(y − ȳ)²``, with ``ȳ`` the mean of the group's true labels (so a bin's
  R² is measured against the label spread *within the bin*); ``None`` for fewer than two stars
  or no spread;
* ``mae = mean|ŷ − y|``, ``rmse = √mean(ŷ − y)²``, ``bias = mean(ŷ − y)``, in the label's unit
  (K for T_eff, dex for log g and [M/H]);
* with the Bayes-optimal posterior means of the same stars: ``bayes_r2`` (their R²) and
  ``efficiency = r2 / bayes_r2`` (``None`` where ``bayes_r2 ≤ 0``: no ceiling to compare with);
* with predicted σ: ``coverage_1sigma`` / ``coverage_2sigma``, the fraction of stars with
  ``|y − ŷ| < σ`` / ``< 2σ`` (0.683 / 0.954 for calibrated Gaussian errors); with the posterior
  σ: ``bayes_coverage_1sigma`` / ``bayes_coverage_2sigma``, the same for the posterior mean and
  its own σ.

The SNR of a spectrum is its median flux/σ (:func:`specvit.preprocessing.median_snr`). SNR bins
are ``[low, high)`` with the edges :data:`SNR_BIN_EDGES` (the last bin is open above); stars
below the first edge count in ``overall`` only. T_eff and [M/H] bins use the *true* label and the
edges :data:`TEFF_BIN_EDGES` and :data:`MH_BIN_EDGES` (the default prior's box in equal steps).

The result is plain JSON (``json.dumps(result, allow_nan=False)`` works): numbers are Python
floats, undefined ones ``None``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "MH_BIN_EDGES",
    "SNR_BIN_EDGES",
    "TEFF_BIN_EDGES",
    "UNITS",
    "bin_label",
    "score",
    "strict_json",
]

#: SNR bin edges (median flux/σ): bins ``[2, 3), [3, 4), …, [15, ∞)``. The only SNR bins in
#: the repository.
SNR_BIN_EDGES: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, math.inf)
#: T_eff bin edges (K): the default prior's 3750–6000 K in five equal bins.
TEFF_BIN_EDGES: tuple[float, ...] = (3750.0, 4200.0, 4650.0, 5100.0, 5550.0, 6000.0)
#: [M/H] bin edges (dex): the default prior's −2.5…+0.5 in six equal bins.
MH_BIN_EDGES: tuple[float, ...] = (-2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5)
#: Units of the labels' errors.
UNITS: dict[str, str] = {"T_eff": "K", "log_g": "dex", "M_H": "dex"}

#: The binnings of :func:`score` besides SNR: group name -> (label it bins on, edges).
_LABEL_BINS = {"T_eff": TEFF_BIN_EDGES, "M_H": MH_BIN_EDGES}


def strict_json(value: Any) -> Any:
    """``value`` with NaN / infinite floats replaced by None, recursively (strict JSON has no NaN).

    For records that mix the scorer's output with other numbers (a loss, a learning rate) before
    they are written as JSON.
    """
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _num(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def bin_label(low: float, high: float) -> str:
    """``"[low, high)"`` as the tables print a bin (``∞`` for an open top)."""
    top = "∞" if math.isinf(high) else f"{high:g}"
    return f"[{low:g}, {top})"


def _array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} NaN or infinite values")
    return arr


def _r2(err: np.ndarray, true: np.ndarray) -> float | None:
    if true.size < 2:
        return None
    ss_tot = float(np.square(true - true.mean()).sum())
    if ss_tot <= 0:
        return None
    return _num(1.0 - float(np.square(err).sum()) / ss_tot)


def _group(
    mask: np.ndarray,
    names: Sequence[str],
    true: np.ndarray,
    pred: np.ndarray,
    snr: np.ndarray,
    sigma: np.ndarray | None,
    bayes: np.ndarray | None,
    bayes_sigma: np.ndarray | None,
) -> dict[str, Any]:
    n = int(mask.sum())
    out: dict[str, Any] = {
        "n": n,
        "median_snr": _num(np.median(snr[mask])) if n else None,
        "metrics": {},
    }
    for j, name in enumerate(names):
        t, p = true[mask, j], pred[mask, j]
        err = p - t
        m: dict[str, Any] = {
            "r2": _r2(err, t),
            "mae": _num(np.abs(err).mean()) if n else None,
            "rmse": _num(np.sqrt(np.square(err).mean())) if n else None,
            "bias": _num(err.mean()) if n else None,
        }
        if bayes is not None:
            berr = bayes[mask, j] - t
            m["bayes_r2"] = _r2(berr, t)
            m["bayes_rmse"] = _num(np.sqrt(np.square(berr).mean())) if n else None
            ok = m["r2"] is not None and m["bayes_r2"] is not None and m["bayes_r2"] > 0
            m["efficiency"] = _num(m["r2"] / m["bayes_r2"]) if ok else None
            if bayes_sigma is not None:
                s = bayes_sigma[mask, j]
                m["bayes_coverage_1sigma"] = _num((np.abs(berr) < s).mean()) if n else None
                m["bayes_coverage_2sigma"] = _num((np.abs(berr) < 2 * s).mean()) if n else None
        if sigma is not None:
            s = sigma[mask, j]
            m["coverage_1sigma"] = _num((np.abs(err) < s).mean()) if n else None
            m["coverage_2sigma"] = _num((np.abs(err) < 2 * s).mean()) if n else None
        out["metrics"][name] = m
    return out


def score(
    true: Any,
    pred: Any,
    snr: Any,
    names: Sequence[str],
    *,
    sigma: Any = None,
    bayes_mean: Any = None,
    bayes_sigma: Any = None,
    bin_values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score predictions overall, per SNR bin and per T_eff / [M/H] bin.

    Parameters
    ----------
    true, pred : array-like
        ``(N, P)`` true and predicted labels in physical units, columns named by ``names``.
    snr : array-like
        ``(N,)`` median flux/σ of each spectrum.
    names : sequence of str
        The ``P`` label names (e.g. ``("T_eff", "log_g", "M_H")``).
    sigma : array-like, optional
        ``(N, P)`` predicted 1σ (> 0) of a method that predicts uncertainties.
    bayes_mean, bayes_sigma : array-like, optional
        ``(N, P)`` posterior means and σ of the same stars and labels
        (:class:`specvit.bounds.PosteriorMean`): add ``bayes_r2``, ``efficiency`` and the
        posterior's coverage. ``bayes_sigma`` needs ``bayes_mean``.
    bin_values : mapping, optional
        ``{"T_eff": (N,), "M_H": (N,)}`` true values to bin on when they are not columns of
        ``true`` (e.g. a model predicting log g only); a binning with neither is left out.

    Returns
    -------
    dict
        ``{"labels", "units", "snr_edges", "overall", "snr", "T_eff", "M_H"}``: ``overall`` is
        one group, the others lists of groups; a group is ``{"n", "median_snr", "metrics":
        {label: {...}}}`` (plus ``"low"``, ``"high"``, ``"bin"`` in binned groups), the
        metrics as in the module docstring. ``high`` of the open top SNR bin is ``None``.

    Raises
    ------
    ValueError
        On shapes that disagree, NaN or infinite values, σ ≤ 0, duplicate names, or
        ``bayes_sigma`` without ``bayes_mean``.
    """
    names = tuple(names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"names must be non-empty and unique, got {names}")
    true_arr = np.asarray(true, dtype=np.float64)
    if true_arr.ndim != 2 or true_arr.shape[1] != len(names):
        raise ValueError(f"true must be (N, {len(names)}) for labels {names}, got {true_arr.shape}")
    shape = true_arr.shape
    true_arr = _array("true", true_arr, shape)
    pred_arr = _array("pred", pred, shape)
    snr_arr = _array("snr", snr, (shape[0],))
    optional = {}
    for key, value in (("sigma", sigma), ("bayes_mean", bayes_mean), ("bayes_sigma", bayes_sigma)):
        optional[key] = None if value is None else _array(key, value, shape)
    for key in ("sigma", "bayes_sigma"):
        if optional[key] is not None and not (optional[key] > 0).all():
            raise ValueError(f"{key} must be > 0")
    if optional["bayes_sigma"] is not None and optional["bayes_mean"] is None:
        raise ValueError("bayes_sigma needs bayes_mean")
    args = (
        names,
        true_arr,
        pred_arr,
        snr_arr,
        optional["sigma"],
        optional["bayes_mean"],
        optional["bayes_sigma"],
    )

    def binned(values: np.ndarray, edges: Sequence[float]) -> list[dict[str, Any]]:
        groups = []
        for low, high in itertools.pairwise(edges):
            inside = (values >= low) & (values < high)
            if high == edges[-1] and math.isfinite(high):  # a closed label box: top edge in
                inside |= values == high
            group = {"bin": bin_label(low, high), "low": low, "high": _num(high)}
            groups.append({**group, **_group(inside, *args)})
        return groups

    result: dict[str, Any] = {
        "labels": list(names),
        "units": {n: UNITS.get(n, "") for n in names},
        "snr_edges": [_num(e) for e in SNR_BIN_EDGES],
        "overall": _group(np.ones(shape[0], dtype=bool), *args),
        "snr": binned(snr_arr, SNR_BIN_EDGES),
    }
    for group, edges in _LABEL_BINS.items():
        if group in names:
            values = true_arr[:, names.index(group)]
        elif bin_values is not None and group in bin_values:
            values = _array(f"bin_values[{group!r}]", bin_values[group], (shape[0],))
        else:
            continue
        result[group] = binned(values, edges)
    return result
