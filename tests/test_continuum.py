"""The weighted Legendre continuum fit of ``input_norm="continuum"`` models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.polynomial import legendre

from specvit.continuum import fit_continuum, legendre_basis

L = 4096
X = torch.linspace(-1.0, 1.0, L, dtype=torch.float64)


def test_the_basis_is_numpys_legendre_polynomials():
    basis = legendre_basis(X, 6).numpy()
    expected = legendre.legvander(X.numpy(), 6)[:, 1:].T  # P_1 … P_6, numpy's own recursion
    np.testing.assert_allclose(basis, expected, atol=1e-12)
    assert legendre_basis(X, 0).shape == (0, L)
    with pytest.raises(ValueError, match="non-negative integer"):
        legendre_basis(X, -1)


def test_a_polynomial_continuum_is_fitted_exactly_and_a_cosmic_ray_does_not_move_it():
    curve = (3.0 + 0.4 * X - 0.2 * X**2 + 0.05 * X**5).float()[None].repeat(2, 1)
    error = torch.full_like(curve, 0.1)
    valid = torch.ones_like(curve, dtype=torch.bool)
    fit = fit_continuum(curve, error, valid, 5)
    torch.testing.assert_close(fit, curve, atol=1e-4, rtol=0)
    spiked = curve.clone()
    spiked[1, 2000:2003] += 50.0  # 500 σ above: left out of the second fit
    fit = fit_continuum(spiked, error, valid, 5)
    torch.testing.assert_close(fit[1], curve[1], atol=1e-4, rtol=0)
    # order 1 cannot follow the curve: the check above can fail
    assert (fit_continuum(curve, error, valid, 1) - curve).abs().max() > 0.01


def test_pixels_are_weighted_by_one_over_sigma_squared_and_masked_ones_ignored():
    flux = torch.full((1, L), 2.0)
    flux[0, :100] = 2.3  # 3 σ above: not clipped, but pulls the fit where it has weight
    error = torch.full_like(flux, 0.1)
    valid = torch.ones_like(flux, dtype=torch.bool)
    masked = valid.clone()
    masked[0, :100] = False
    torch.testing.assert_close(fit_continuum(flux, error, masked, 0), torch.full_like(flux, 2.0))
    noisy = error.clone()
    noisy[0, :100] = 1e6  # the same pixels, now with no weight
    torch.testing.assert_close(fit_continuum(flux, noisy, valid, 0), torch.full_like(flux, 2.0))
    assert fit_continuum(flux, error, valid, 0)[0, 0] > 2.005


def test_a_row_without_valid_pixels_gets_a_zero_continuum_and_shapes_are_checked():
    flux = torch.ones(2, L)
    valid = torch.ones_like(flux, dtype=torch.bool)
    valid[1] = False
    fit = fit_continuum(flux, torch.ones_like(flux), valid, 3)
    assert torch.isfinite(fit).all() and (fit[1] == 0).all()
    with pytest.raises(ValueError, match="one \\(B, L\\) shape"):
        fit_continuum(flux, torch.ones(2, L - 1), valid, 3)
