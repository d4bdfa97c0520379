"""Calibration of predicted σ: the factor per label that makes 68.3 % of stars fall within 1σ."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ONE_SIGMA", "fit_sigma_scale"]

#: Fraction of a Gaussian within ±1σ.
ONE_SIGMA = math.erf(1 / math.sqrt(2))


def fit_sigma_scale(true: np.ndarray, pred: np.ndarray, sigma: np.ndarray) -> tuple[float, ...]:
    """Per-label factors ``s`` such that ``|true − pred| < s·σ`` for 68.3 % of the stars.

    ``s`` is the 68.3 % quantile of ``|true − pred| / σ``: 1 for calibrated σ, above 1 for
    over-confident σ. Apply it as :attr:`specvit.SpecViTConfig.sigma_scale` (multiplied with any
    factor the model already carries).

    Parameters
    ----------
    true, pred, sigma : numpy.ndarray
        (N, P) true labels, predicted means and predicted (uncalibrated) 1σ of a validation
        set, σ > 0.

    Returns
    -------
    tuple of float
        One factor per label (column).

    Raises
    ------
    ValueError
        On shapes that disagree, fewer than 20 stars, non-finite values or σ ≤ 0.
    """
    true, pred, sigma = (np.asarray(a, dtype=np.float64) for a in (true, pred, sigma))
    if true.ndim != 2 or pred.shape != true.shape or sigma.shape != true.shape:
        raise ValueError(
            f"true, pred and sigma must share one (N, P) shape, got {true.shape}, "
            f"{pred.shape}, {sigma.shape}"
        )
    if true.shape[0] < 20:
        raise ValueError(f"need at least 20 stars to calibrate σ, got {true.shape[0]}")
    if not (np.isfinite(true).all() and np.isfinite(pred).all() and np.isfinite(sigma).all()):
        raise ValueError("true, pred and sigma must be finite")
    if not (sigma > 0).all():
        raise ValueError("sigma must be > 0")
    ratio = np.abs(true - pred) / sigma
    return tuple(float(q) for q in np.quantile(ratio, ONE_SIGMA, axis=0))
