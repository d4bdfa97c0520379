"""The default model takes f_ν, f_λ, photon flux, any scale and continuum-normalised spectra
alike (its input divides the flux by a smooth fit to it); a model that reads the continuum does
not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

import specvit
from specvit.inference.cli import main
from specvit.io import open_spectra

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "pfsCoadd-engine-example.fits"
LABELS = ("T_eff", "log_g", "M_H")


@pytest.fixture(scope="module")
def example():
    with open_spectra(EXAMPLE) as spectra:
        rows = spectra.rows(0, 24)
    sigma = np.sqrt(rows.error)  # the file's COVAR is a variance
    return rows.flux, sigma, rows.wavelength, rows.mask


def _labels(table) -> np.ndarray:
    return np.stack([np.asarray(table[n], dtype=float) for n in LABELS], 1)


def _conventions(flux, sigma, wave, mask):
    """(flux, σ) pairs of the same spectra in other conventions, σ scaled with the flux."""
    x = np.linspace(-1.0, 1.0, flux.shape[1])
    smooth = []
    for f, m in zip(flux, mask, strict=True):  # a user's own continuum: a cubic over good pixels
        good = np.isfinite(f) & (m == 0)
        smooth.append(np.polyval(np.polyfit(x[good], f[good], 3), x))
    smooth = np.asarray(smooth)
    f_lambda = 2.998e18 / wave**2  # f_λ = f_ν c/λ² (plain numbers: the unit is not said)
    return {
        "f_lambda": (flux * f_lambda, sigma * f_lambda),
        "scaled": (flux * 1e-17, sigma * 1e-17),
        # f_ν as plain numbers in erg/(s cm² Hz) and in W/(m² Hz): 1 nJy is 1e-32 and 1e-35, σ²
        # below float32's range; and a scale whose flux² is above it
        "f_nu_cgs": (flux * 1e-32, sigma * 1e-32),
        "f_nu_si": (flux * 1e-35, sigma * 1e-35),
        "large": (flux * 1e15, sigma * 1e15),
        "normalised": (flux / smooth, sigma / smooth),
    }


def test_the_default_model_takes_any_flux_convention(example):
    flux, sigma, wave, mask = example
    predictor = specvit.Predictor(device="cpu")
    base = predictor.predict(flux, sigma, wavelength=wave, mask=mask)
    for name, (f, s) in _conventions(flux, sigma, wave, mask).items():
        table = predictor.predict(f, s, wavelength=wave, mask=mask)
        shift = np.abs(_labels(table) - _labels(base))
        assert shift[:, 0].max() < 40 and shift[:, 1:].max() < 0.05, (name, shift.max(0))
        np.testing.assert_array_equal(table["flags"], base["flags"])
    # photons per unit wavelength, as a Quantity: converted, and the same labels again
    photons = (flux * u.nJy).to(u.photon / (u.s * u.cm**2 * u.AA), u.spectral_density(wave * u.AA))
    ratio = photons.value / flux
    table = predictor.predict(photons, sigma * ratio * photons.unit, wavelength=wave, mask=mask)
    assert np.abs(_labels(table) - _labels(base)).max(0)[0] < 40


def test_the_cli_reads_f_nu_in_cgs_as_it_reads_nJy(example, tmp_path):
    """A FITS table in erg/(s cm² Hz), 1e-32 nJy, σ² below float32's range: nJy's labels."""
    flux, sigma, wave, mask = example
    sigma = np.where(mask == 0, sigma, np.nan)  # the file's masked pixels, as a bad σ
    columns = [
        fits.Column("flux", f"{wave.size}E", unit="erg/(s cm2 Hz)", array=flux * 1e-32),
        fits.Column("error", f"{wave.size}E", unit="erg/(s cm2 Hz)", array=sigma * 1e-32),
        fits.Column("wave", f"{wave.size}D", unit="Angstrom", array=np.tile(wave, (len(flux), 1))),
    ]
    path = tmp_path / "cgs.fits"
    fits.BinTableHDU.from_columns(columns).writeto(path)
    out = tmp_path / "labels.ecsv"
    result = CliRunner().invoke(main, [str(path), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = Table.read(out)
    base = specvit.predict(flux, sigma, wavelength=wave)
    np.testing.assert_allclose(_labels(table), _labels(base), atol=0.05, rtol=1e-3)
    np.testing.assert_array_equal(table["flags"], base["flags"])


def test_a_model_that_reads_the_continuum_is_moved_by_f_lambda(example):
    """The check above can fail: the rest-frame model, which reads the continuum's shape, moves
    its T_eff by hundreds of K on f_λ given as plain numbers (its docs say: give it f_ν)."""
    flux, sigma, wave, mask = example
    predictor = specvit.Predictor("specvit-tiny-pfs", device="cpu")
    base = predictor.predict(flux, sigma, wavelength=wave, mask=mask)
    f, s = _conventions(flux, sigma, wave, mask)["f_lambda"]
    table = predictor.predict(f, s, wavelength=wave, mask=mask)
    assert np.median(np.abs(_labels(table) - _labels(base))[:, 0]) > 100


def test_unit_scale_is_the_power_of_two_nearest_the_median_sigma():
    from specvit.inference.predictor import UNIT_SCALE_STRIDE, unit_scale

    sigma = np.full((4, 64), 3e-30)
    valid = np.ones_like(sigma, dtype=bool)
    valid[1] = False  # no valid pixel: left as it is
    valid[2, ::UNIT_SCALE_STRIDE] = False  # none among the pixels read first: read them all
    sigma[3] = 0.0  # a median of 0: left as it is
    factor = unit_scale(sigma, valid)
    expected = 2.0 ** -np.round(np.log2(3e-30))
    np.testing.assert_array_equal(factor, [expected, 1.0, expected, 1.0])
    assert 0.7 < 3e-30 * expected < 1.5
    # float32 input gets a factor float32 holds
    tiny = np.full((1, 64), 1e-44, dtype=np.float32)
    assert np.isfinite(np.float32(unit_scale(tiny, np.ones_like(tiny, dtype=bool))[0]))
