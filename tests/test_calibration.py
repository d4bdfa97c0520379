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
