"""Flux-conserving resampling onto the model grid, and its effect on predictions."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u

from specvit.inference import Predictor
from specvit.inference.resample import Resampler, bin_edges
from tests.predict_helpers import save_trained_model, spectrum


def test_bin_edges_of_a_linear_grid():
    edges = bin_edges(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(edges, [0.5, 1.5, 2.5, 3.5])


def test_flux_is_conserved_over_whole_target_pixels():
    rng = np.random.default_rng(0)
    source = np.cumsum(rng.uniform(0.1, 0.3, 3000)) + 100.0  # irregular grid
    target = np.linspace(source[10], source[-10], 1200)
    flux = rng.uniform(0.5, 2.0, (3, source.size))
    out, _, valid = Resampler(source, target)(flux, None, np.ones_like(flux, bool))
    assert valid.all()
    src_e, dst_e = bin_edges(source), bin_edges(target)
    # Integral of the piecewise-constant source density over [dst_e[0], dst_e[-1]].
    lo, hi = dst_e[0], dst_e[-1]
    total = []
    for f in flux:
        cf = np.concatenate([[0.0], np.cumsum(f * np.diff(src_e))])
        total.append(np.interp(hi, src_e, cf) - np.interp(lo, src_e, cf))
    np.testing.assert_allclose((out * np.diff(dst_e)).sum(axis=1), total, rtol=1e-12)


def test_sigma_propagation_matches_monte_carlo():
    rng = np.random.default_rng(1)
    source = np.linspace(7000.0, 7100.0, 700)
    target = np.linspace(7010.3, 7089.9, 190)
    sigma = rng.uniform(0.05, 0.2, source.size)
    resampler = Resampler(source, target)
    draws = 1.0 + sigma * rng.standard_normal((4000, source.size))
    valid = np.ones_like(draws, bool)
    out, err, _ = resampler(draws, np.broadcast_to(sigma, draws.shape), valid)
    np.testing.assert_allclose(out.std(axis=0), err[0], rtol=0.08)
    np.testing.assert_allclose(out.mean(axis=0), 1.0, atol=5 * err[0].max() / np.sqrt(4000))


def test_masked_source_pixels_and_coverage():
    source = np.linspace(0.0, 99.0, 100)
    target = np.linspace(50.25, 120.25, 36)  # 2-unit pixels, partly beyond the source
    flux = np.arange(100.0)[None]
    valid = np.ones_like(flux, bool)
    valid[0, 60:64] = False  # a masked gap of 4 source pixels = 2 target pixels
    resampler = Resampler(source, target)
    out, _, good = resampler(flux, None, valid)
    assert not resampler.covered.all()
    assert not good[0, target > 100].any(), "target pixels beyond the source are masked"
    assert not good[0, (target > 60.5) & (target < 62.5)].any()
    # Away from the gap and the edge, a linear flux density resamples exactly.
    clean = good[0] & (np.abs(target - 70) < 20) & (np.abs(target - 61.5) > 3)
    np.testing.assert_allclose(out[0, clean], target[clean], atol=1e-9)
    # A target pixel half-covered by the gap gets the mean of its valid part.
    assert good[0, target == 64.25] and out[0, target == 64.25] > 64.25


def test_identity_grid_passes_through():
    grid = np.linspace(7100.0, 7200.0, 50)
    flux = np.random.default_rng(2).normal(size=(2, 50))
    resampler = Resampler(grid, grid.copy())
    assert resampler.identity
    out, _, valid = resampler(flux, None, np.ones_like(flux, bool))
    assert out is flux and valid.all()


def test_agrees_with_specutils_flux_conserving_resampler():
    specutils = pytest.importorskip("specutils")
    from astropy.nddata import StdDevUncertainty
    from specutils.manipulation import FluxConservingResampler

    rng = np.random.default_rng(4)
    source = np.sort(rng.uniform(7000.0, 7100.0, 400))
    target = np.linspace(7005.0, 7095.0, 150)
    flux = rng.uniform(0.5, 1.5, source.size)
    sigma = rng.uniform(0.05, 0.1, source.size)
    cls = getattr(specutils, "Spectrum", None) or specutils.Spectrum1D
    spec = cls(flux=flux * u.Jy, spectral_axis=source * u.AA, uncertainty=StdDevUncertainty(sigma))
    ref = FluxConservingResampler()(spec, target * u.AA)
    out, err, _ = Resampler(source, target)(flux[None], sigma[None], np.ones((1, 400), bool))
    np.testing.assert_allclose(out[0], ref.flux.value, rtol=1e-10)
    ref_sigma = 1.0 / np.sqrt(ref.uncertainty.array)  # specutils returns inverse variance
    np.testing.assert_allclose(err[0], ref_sigma, rtol=1e-8)


def test_finer_shifted_grid_predicts_within_noise_of_native(tmp_path):
    # the test model's grid is not the emulator's: no physical context to ask for
    predictor = Predictor(str(save_trained_model(tmp_path)), device="cpu", physics=False)
    native = predictor.wavelength
    rng = np.random.default_rng(5)
    log_g = np.linspace(0.3, 4.7, 40)
    sigma = 0.02
    step = (native[1] - native[0]) / 2.5
    fine = np.arange(native[0] - 3.0 + 0.37 * step, native[-1] + 3.0, step)
    sigma_fine = sigma * np.sqrt(2.5)  # same S/N per Å as the native spectra
    clean = spectrum(native, log_g)
    native_a = predictor.predict(clean + sigma * rng.standard_normal(clean.shape))
    native_b = predictor.predict(clean + sigma * rng.standard_normal(clean.shape))
    fine_flux = spectrum(fine, log_g) + sigma_fine * rng.standard_normal((40, fine.size))
    shifted = predictor.predict(fine_flux, np.full_like(fine_flux, sigma_fine), wavelength=fine)
    assert np.all(shifted["flags"] == 0)
    a, b, f = (np.asarray(t["log_g"], dtype=float) for t in (native_a, native_b, shifted))
    noise = np.std(a - b)  # spread of two independent noise draws on the native grid
    assert np.corrcoef(a, log_g)[0, 1] > 0.9, "the test model must respond to the spectrum"
    assert np.std(f - a) < 1.5 * noise, (
        f"fine-grid scatter {np.std(f - a):.4f} vs noise {noise:.4f}"
    )
    assert abs(np.mean(f - a)) < 3 * noise / np.sqrt(40) + 0.01
    np.testing.assert_allclose(np.median(shifted["snr"]), 1.0 / sigma, rtol=0.15)
