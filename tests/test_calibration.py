"""training.calibration: σ factors that give 68.3 % coverage."""

import numpy as np
import pytest

from training.calibration import ONE_SIGMA, fit_sigma_scale


def test_recovers_the_factor_of_miscalibrated_gaussian_sigma():
    rng = np.random.default_rng(0)
    true_sigma = rng.uniform(0.1, 1.0, size=(20_000, 2))
    true = np.zeros_like(true_sigma)
    pred = rng.normal(0.0, true_sigma)
    claimed = true_sigma * np.array([0.5, 2.0])  # over- and under-confident
    scale = fit_sigma_scale(true, pred, claimed)
    assert scale == pytest.approx((2.0, 0.5), rel=0.03)
    inside = np.abs(pred - true) < claimed * np.array(scale)
    assert inside.mean(axis=0) == pytest.approx([ONE_SIGMA] * 2, abs=1e-3)


def test_rejects_bad_input():
    ok = np.ones((30, 1))
    with pytest.raises(ValueError, match="at least 20"):
        fit_sigma_scale(ok[:5], ok[:5], ok[:5])
    with pytest.raises(ValueError, match="one \\(N, P\\) shape"):
        fit_sigma_scale(ok, ok, ok[:, 0])
    with pytest.raises(ValueError, match="> 0"):
        fit_sigma_scale(ok, ok, 0 * ok)
    with pytest.raises(ValueError, match="finite"):
        fit_sigma_scale(ok, ok * np.nan, ok)


def test_snr_calibration_recovers_a_power_law_miscalibration():
    from training.calibration import fit_sigma_snr_calibration

    rng = np.random.default_rng(1)
    n = 20_000
    snr = np.exp(rng.uniform(np.log(2), np.log(50), n))
    true_sigma = rng.uniform(0.1, 1.0, size=(n, 2))
    pred = rng.normal(0.0, true_sigma)
    # claimed σ: too small at low S/N for label 0, too large at high S/N for label 1
    claimed = true_sigma / np.column_stack([1.5 * (snr / 10) ** -0.3, 0.8 * (snr / 10) ** 0.2])
    scale, slope, (low, high) = fit_sigma_snr_calibration(np.zeros_like(pred), pred, claimed, snr)
    assert slope == pytest.approx((-0.3, 0.2), abs=0.03)
    assert scale == pytest.approx((1.5, 0.8), rel=0.03)
    assert 2 <= low < 2.2 and 45 < high <= 50
    corrected = claimed * np.array(scale) * (np.clip(snr, low, high)[:, None] / 10) ** slope
    inside = np.abs(pred) < corrected
    for part in (snr < 5, snr > 20):  # right at low and at high S/N, not only overall
        assert inside[part].mean(axis=0) == pytest.approx([ONE_SIGMA] * 2, abs=0.015)
    with pytest.raises(ValueError, match="20 stars per bin"):
        fit_sigma_snr_calibration(np.zeros((30, 1)), pred[:30, :1], claimed[:30, :1], snr[:30])
    with pytest.raises(ValueError, match="snr must be"):
        fit_sigma_snr_calibration(np.zeros_like(pred), pred, claimed, -snr)
