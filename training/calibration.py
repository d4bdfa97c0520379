"""Calibration of predicted σ: the factor per label (and its S/N dependence) that makes 68.3 % of
stars fall within 1σ."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ONE_SIGMA", "fit_sigma_scale", "fit_sigma_snr_calibration"]

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


def fit_sigma_snr_calibration(
    true: np.ndarray,
    pred: np.ndarray,
    sigma: np.ndarray,
    snr: np.ndarray,
    n_bins: int | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, float]]:
    """Per-label factor and S/N power law that give 68.3 % coverage at every S/N.

    The stars are split into ``n_bins`` S/N bins of equal counts; in each, the 68.3 % quantile
    ``q`` of ``|true − pred| / σ`` is the factor that bin needs. A straight line
    ``ln q = ln s + slope · ln(snr / 10)`` through the bins (at their median S/N) gives the
    slope; the factor ``s`` is then refitted on all stars (:func:`fit_sigma_scale` of the
    slope-corrected σ), so 68.3 % of the stars fall within 1σ overall. Apply the result as
    :attr:`specvit.SpecViTConfig.sigma_scale`, ``sigma_snr_slope`` and ``sigma_snr_range``.

    Parameters
    ----------
    true, pred, sigma : numpy.ndarray
        (N, P) as for :func:`fit_sigma_scale`.
    snr : numpy.ndarray
        (N,) median S/N of each spectrum, > 0.
    n_bins : int, optional
        S/N bins for the slope (at least 2; each needs 20 stars); default 8, or as many as
        the stars fill with 20 each.

    Returns
    -------
    scale : tuple of float
        One factor per label.
    slope : tuple of float
        One S/N exponent per label.
    snr_range : (float, float)
        The 1st and 99th percentile S/N of the stars: the range the calibration holds for
        (``predict`` clips the S/N to it).

    Raises
    ------
    ValueError
        As :func:`fit_sigma_scale`; or for a bad ``snr`` or too few stars per bin.
    """
    fit_sigma_scale(true, pred, sigma)  # validates the arrays
    snr = np.asarray(snr, dtype=np.float64)
    if snr.shape != (np.shape(true)[0],) or not (np.isfinite(snr).all() and (snr > 0).all()):
        raise ValueError(f"snr must be ({np.shape(true)[0]},), finite and > 0")
    if n_bins is None:
        n_bins = min(8, len(snr) // 20)
    if n_bins < 2 or len(snr) < 20 * n_bins:
        raise ValueError(f"need n_bins >= 2 and 20 stars per bin, got {n_bins} for {len(snr)}")
    ratio = np.abs(np.asarray(true, float) - np.asarray(pred, float)) / np.asarray(sigma, float)
    order = np.argsort(snr)
    bins = np.array_split(order, n_bins)
    x = np.log([np.median(snr[b]) / 10.0 for b in bins])
    y = np.log([np.quantile(ratio[b], ONE_SIGMA, axis=0) for b in bins])  # (n_bins, P)
    slope = np.polyfit(x, y, 1)[0]
    low, high = (float(v) for v in np.percentile(snr, [1, 99]))
    power = (np.clip(snr, low, high)[:, None] / 10.0) ** slope
    scale = fit_sigma_scale(true, pred, sigma * power)
    return scale, tuple(float(v) for v in slope), (low, high)
