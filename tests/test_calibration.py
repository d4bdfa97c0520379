"""training.evaluation.calibration: σ factors that give 68.3 % coverage."""

import numpy as np
import pytest

from training.evaluation.calibration import ONE_SIGMA, fit_sigma_scale


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


def test_snr_calibration_follows_a_miscalibration_that_is_not_a_power_law():
    from training.evaluation.calibration import fit_sigma_snr_calibration

    rng = np.random.default_rng(1)
    n = 40_000
    snr = np.exp(rng.uniform(np.log(2), np.log(50), n))
    true_sigma = rng.uniform(0.1, 1.0, size=(n, 2))
    pred = rng.normal(0.0, true_sigma)
    # claimed σ: right up to S/N 7, then ever too large (as the default model's head); and
    # too small everywhere by a constant factor for label 1
    need = np.column_stack([np.minimum(1.0, (snr / 7) ** -0.6), np.full(n, 1.4)])
    claimed = true_sigma / need
    knots, factors = fit_sigma_snr_calibration(np.zeros_like(pred), pred, claimed, snr)
    assert len(knots) == 16 and list(knots) == sorted(knots) and 2 < knots[0] < knots[-1] < 50
    np.testing.assert_allclose(factors[1], 1.4, rtol=0.05)
    assert factors[0][0] == pytest.approx(1.0, rel=0.05) and factors[0][-1] < 0.6
    corrected = claimed * np.column_stack(
        [np.interp(np.log(snr), np.log(knots), f) for f in factors]
    )
    inside = np.abs(pred) < corrected
    for low, high in ((2, 4), (4, 7), (7, 12), (12, 25), (25, 50)):  # right at every S/N
        part = (snr >= low) & (snr < high)
        assert inside[part].mean(axis=0) == pytest.approx([ONE_SIGMA] * 2, abs=0.015)
    with pytest.raises(ValueError, match="20 stars per bin"):
        fit_sigma_snr_calibration(np.zeros((30, 1)), pred[:30, :1], claimed[:30, :1], snr[:30])
    with pytest.raises(ValueError, match="predicted exactly"):
        fit_sigma_snr_calibration(np.zeros((60, 1)), np.zeros((60, 1)), claimed[:60, :1], snr[:60])
    with pytest.raises(ValueError, match="distinct median S/N"):
        fit_sigma_snr_calibration(
            np.zeros((60, 1)), pred[:60, :1], claimed[:60, :1], 0 * snr[:60] + 5
        )
    with pytest.raises(ValueError, match="snr must be"):
        fit_sigma_snr_calibration(np.zeros_like(pred), pred, claimed, -snr)
