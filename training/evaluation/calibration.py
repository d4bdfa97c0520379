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
    ratio = _ratio(true, pred, sigma)
    return tuple(float(q) for q in np.quantile(ratio, ONE_SIGMA, axis=0))


def _ratio(true: np.ndarray, pred: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``|true − pred| / σ`` of validated (N, P) arrays (see :func:`fit_sigma_scale`)."""
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
    return np.abs(true - pred) / sigma


def fit_sigma_snr_calibration(
    true: np.ndarray,
    pred: np.ndarray,
    sigma: np.ndarray,
    snr: np.ndarray,
    n_bins: int | None = None,
) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]:
    """Per-label σ factors on a table of S/N knots that give 68.3 % coverage at every S/N.

    The stars are split into ``n_bins`` S/N bins of equal counts. A bin's knot is its median
    S/N and its factor, per label, the 68.3 % quantile of ``|true − pred| / σ`` there (the
    factor :func:`fit_sigma_scale` gives its stars). :meth:`specvit.SpecViT.to_physical`
    interpolates the factors linearly in ln S/N and holds the end factors beyond the first and
    last knot. A table rather than a power law: the head's miscalibration is flat at low S/N
    and falls steeply from S/N ≈ 7 to 30. Apply the result as
    :attr:`specvit.SpecViTConfig.sigma_snr_knots` and ``sigma_snr_factors``.

    Parameters
    ----------
    true, pred, sigma : numpy.ndarray
        (N, P) as for :func:`fit_sigma_scale`.
    snr : numpy.ndarray
        (N,) median S/N of each spectrum, > 0.
    n_bins : int, optional
        S/N bins (at least 2; each needs 20 stars); default 16, or as many as the stars fill
        with 200 each (at least 2).

    Returns
    -------
    knots : tuple of float
        Increasing median S/N of the bins.
    factors : tuple of tuple of float
        One row per label (column) of one factor per knot.

    Raises
    ------
    ValueError
        As :func:`fit_sigma_scale`; or for a bad ``snr``, too few stars per bin, bins that
        share one median S/N, or a bin of exact predictions.
    """
    ratio = _ratio(true, pred, sigma)
    snr = np.asarray(snr, dtype=np.float64)
    if snr.shape != (np.shape(true)[0],) or not (np.isfinite(snr).all() and (snr > 0).all()):
        raise ValueError(f"snr must be ({np.shape(true)[0]},), finite and > 0")
    if n_bins is None:
        n_bins = min(16, max(2, len(snr) // 200))
    if n_bins < 2 or len(snr) < 20 * n_bins:
        raise ValueError(f"need n_bins >= 2 and 20 stars per bin, got {n_bins} for {len(snr)}")
    bins = np.array_split(np.argsort(snr, kind="stable"), n_bins)
    knots = np.array([np.median(snr[b]) for b in bins])
    if not (np.diff(knots) > 0).all():
        raise ValueError(f"S/N bins need distinct median S/N, got knots {knots.tolist()}")
    factors = np.array([np.quantile(ratio[b], ONE_SIGMA, axis=0) for b in bins])  # (bins, P)
    if not (factors > 0).all():
        raise ValueError(
            "a S/N bin has 68.3 % of its stars predicted exactly (|true − pred| = 0): "
            "no σ factor fits it"
        )
    return tuple(knots.tolist()), tuple(tuple(row) for row in factors.T.tolist())
