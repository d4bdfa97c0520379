"""specvit.predict: accepted input types and the bad-input matrix of issue 6."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from astropy import units as u

import specvit
from specvit.inference import PredictFlag, Predictor, predict
from tests.predict_helpers import save_trained_model, spectrum

SIGMA = 0.02
# The test models' grids are not the emulator's PFS MR grid, so they predict with
# physics=False: Predictor's default physics=True would only warn that the crlb_*, v_rad and
# chi2_* columns are left out (tests/test_predict_physics.py checks that warning).


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    """The trained test model, saved and loaded back through the real specvit.load path."""
    folder = save_trained_model(tmp_path_factory.mktemp("model"))
    return Predictor(str(folder), device="cpu", batch_size=16, physics=False)


@pytest.fixture(scope="module")
def data(predictor):
    """Five noisy spectra on the model's grid, their σ and labels."""
    rng = np.random.default_rng(3)
    log_g = np.array([0.5, 1.5, 2.5, 3.5, 4.5])
    flux = spectrum(predictor.wavelength, log_g) + SIGMA * rng.standard_normal((5, 1024))
    return flux, np.full_like(flux, SIGMA), log_g


def labels(table) -> np.ndarray:
    return np.asarray(table["log_g"], dtype=float)


def test_native_grid_output_table(predictor, data):
    flux, error, log_g = data
    table = predictor.predict(flux, error)
    assert table.colnames == ["log_g", "log_g_err", "snr", "n_valid", "flags"]
    assert str(table["log_g"].unit) == "dex"
    assert len(table) == 5 and np.all(table["flags"] == 0) and np.all(table["n_valid"] == 1024)
    assert np.all(np.isnan(table["log_g_err"])), "a point-head model has no σ"
    np.testing.assert_allclose(labels(table), log_g, atol=0.5)
    lower_median = np.quantile(flux / error, 0.5, axis=1, method="lower")
    np.testing.assert_allclose(table["snr"], lower_median, rtol=1e-5)
    assert table.meta["flags"]["TOO_FEW_PIXELS"] == 1


def test_nan_inf_and_bad_sigma_are_masked(predictor, data):
    flux, error, _ = data
    flux, error = flux.copy(), error.copy()
    flux[0, :10] = np.nan
    flux[1, 10:15] = np.inf
    error[2, :7] = 0.0
    error[3, :3] = -1.0
    error[4, :2] = np.nan
    table = predictor.predict(flux, error)
    assert list(table["n_valid"]) == [1014, 1019, 1017, 1021, 1022]
    assert np.all(table["flags"] == 0) and np.all(np.isfinite(labels(table)))


def test_zero_inverse_variance_is_masked(predictor, data):
    flux, error, _ = data
    ivar = 1.0 / error**2
    ivar[:, :100] = 0.0
    table = predictor.predict(flux, ivar, uncertainty="ivar")
    assert np.all(table["n_valid"] == 924)
    masked = flux.copy()
    masked[:, :100] = np.nan
    np.testing.assert_allclose(labels(table), labels(predictor.predict(masked, error)), atol=1e-6)


def test_too_few_valid_pixels_flags_without_crashing_the_batch(predictor, data):
    flux, error, _ = data
    flux = flux.copy()
    flux[1] = np.nan
    flux[2, :600] = np.nan  # 424 valid < half of 1024
    flux[3] = -1.0  # negative median: cannot be normalised
    table = predictor.predict(flux, error)
    assert table["flags"][1] & PredictFlag.TOO_FEW_PIXELS
    assert table["flags"][2] == PredictFlag.TOO_FEW_PIXELS and table["n_valid"][2] == 424
    assert table["flags"][3] & PredictFlag.BAD_NORMALISATION
    assert np.all(np.isnan(labels(table)[1:4]))
    assert table["flags"][0] == 0 and table["flags"][4] == 0
    assert np.all(np.isfinite(labels(table)[[0, 4]]))
    lenient = Predictor(predictor.model, min_valid=0.3, physics=False).predict(flux, error)
    assert lenient["flags"][2] == 0 and np.isfinite(lenient["log_g"][2])


def test_wrong_length_without_wavelength(predictor):
    with pytest.raises(ValueError, match=r"1000 pixels but the model's grid has 1024.*wavelength="):
        predictor.predict(np.ones((2, 1000)))


def test_flux_error_shape_mismatch(predictor, data):
    with pytest.raises(ValueError, match=r"error shape .* does not match flux shape"):
        predictor.predict(data[0], data[1][:, :-1])
    with pytest.raises(ValueError, match="mask shape"):
        predictor.predict(data[0], data[1], mask=np.zeros((5, 3), bool))
    with pytest.raises(ValueError, match=r"1-D .* or 2-D"):
        predictor.predict(np.ones((2, 2, 1024)))


def test_empty_input(predictor):
    table = predictor.predict(np.ones((0, 1024)))
    assert len(table) == 0 and "log_g" in table.colnames
    with pytest.raises(ValueError, match="zero pixels"):
        predictor.predict(np.array([]))


def test_descending_wavelengths_equal_ascending(predictor):
    wave = np.linspace(7490.0, 7950.0, 1500)
    fine = spectrum(wave, np.array([1.0, 4.0]))
    up = predictor.predict(fine, np.full_like(fine, SIGMA), wavelength=wave)
    down = predictor.predict(
        fine[:, ::-1], np.full_like(fine, SIGMA), wavelength=wave[::-1], mask=np.zeros(1500, bool)
    )
    np.testing.assert_array_equal(labels(up), labels(down))
    before = fine.copy()
    per_row = predictor.predict(fine[:, ::-1], wavelength=np.stack([wave[::-1], wave[::-1]]))
    np.testing.assert_allclose(labels(per_row), labels(up), atol=1e-6)
    np.testing.assert_array_equal(fine, before)  # the caller's arrays are never modified
    shuffled = wave.copy()
    shuffled[[10, 11]] = shuffled[[11, 10]]
    with pytest.raises(ValueError, match="strictly monotonic"):
        predictor.predict(fine, wavelength=shuffled)


def test_bad_per_spectrum_wavelength_is_flagged(predictor):
    wave = np.linspace(7490.0, 7950.0, 1500)
    waves = np.stack([wave, wave])
    waves[1, 5] = np.nan
    table = predictor.predict(spectrum(wave, np.array([1.0, 4.0])), wavelength=waves)
    assert table["flags"][0] == 0
    assert table["flags"][1] & PredictFlag.BAD_WAVELENGTH and np.isnan(table["log_g"][1])


def test_range_outside_the_model(predictor):
    # Covers only the blue 60% of the model grid: the rest is masked and flagged.
    wave = np.linspace(7400.0, 7770.0, 2000)
    flux = spectrum(wave, np.array([2.0]))
    table = predictor.predict(flux, wavelength=wave)
    assert table["flags"][0] == PredictFlag.PARTIAL_COVERAGE
    covered = np.sum(predictor.wavelength < 7770.0)
    assert abs(int(table["n_valid"][0]) - covered) <= 1
    with pytest.raises(ValueError, match=r"do not overlap the model's range.*Quantity"):
        predictor.predict(flux, wavelength=wave / 10)  # nm given as plain numbers
    nm = predictor.predict(flux, wavelength=(wave / 10) * u.nm)
    np.testing.assert_allclose(labels(nm), labels(table), atol=1e-6)


def test_integer_and_unsupported_dtypes(predictor, data):
    counts = np.round(data[0] * 1000).astype(np.int32)
    as_int = predictor.predict(counts)
    as_float = predictor.predict(counts.astype(np.float64))
    np.testing.assert_array_equal(labels(as_int), labels(as_float))
    with pytest.raises(TypeError, match="real numbers"):
        predictor.predict(data[0] > 1)
    with pytest.raises(TypeError, match="real numbers"):
        predictor.predict(data[0].astype(complex))


def test_one_spectrum_vs_batch(predictor, data):
    flux, error, _ = data
    batch = predictor.predict(flux, error)
    one = predictor.predict(flux[2], error[2])
    assert len(one) == 1
    np.testing.assert_allclose(labels(one)[0], labels(batch)[2], atol=1e-5)


def test_tensor_quantity_and_mask_inputs(predictor, data):
    flux, error, _ = data
    ref = labels(predictor.predict(flux, error))
    tensor = predictor.predict(torch.from_numpy(flux), torch.from_numpy(error))
    np.testing.assert_allclose(labels(tensor), ref, atol=1e-6)
    quantity = predictor.predict(flux * u.Jy, (error * 1000) * u.mJy)
    np.testing.assert_allclose(labels(quantity), ref, atol=1e-6)
    np.testing.assert_allclose(quantity["snr"], predictor.predict(flux, error)["snr"], rtol=1e-6)
    with pytest.raises(ValueError, match="cannot be converted to the flux unit"):
        predictor.predict(flux * u.Jy, error * u.m)
    mask = np.zeros(flux.shape, dtype=np.int32)
    mask[:, :50] = 4  # a PFS-style mask bit
    assert np.all(predictor.predict(flux, error, mask=mask)["n_valid"] == 974)


def test_specutils_spectra(predictor, data):
    specutils = pytest.importorskip("specutils")
    from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty

    flux, error, _ = data
    wave = predictor.wavelength * u.AA
    ref = labels(predictor.predict(flux, error))
    cls = getattr(specutils, "Spectrum", None) or specutils.Spectrum1D
    for unc in (
        StdDevUncertainty(error),
        VarianceUncertainty(error**2),
        InverseVariance(1.0 / error**2),
    ):
        spec = cls(flux=flux * u.Jy, spectral_axis=wave, uncertainty=unc)
        np.testing.assert_allclose(labels(predictor.predict(spec)), ref, atol=1e-5)
    mask = np.zeros(flux.shape, bool)
    mask[:, -24:] = True
    unc = StdDevUncertainty(error)
    spec = cls(flux=flux * u.Jy, spectral_axis=wave, uncertainty=unc, mask=mask)
    assert np.all(predictor.predict(spec)["n_valid"] == 1000)
    singles = [cls(flux=f * u.Jy, spectral_axis=wave) for f in flux[:2]]
    np.testing.assert_allclose(labels(predictor.predict(singles)), ref[:2], atol=1e-5)
    with pytest.raises(TypeError, match="carries its own"):
        predictor.predict(spec, error)


def test_memory_mapped_batch_is_read_in_bounded_chunks(predictor, tmp_path):
    n = 3000
    path = tmp_path / "flux.f32"
    big = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, 1024))
    rng = np.random.default_rng(0)
    log_g = rng.uniform(0, 5, n)
    for start in range(0, n, 500):
        block = spectrum(predictor.wavelength, log_g[start : start + 500])
        big[start : start + 500] = block + SIGMA * rng.standard_normal(block.shape)
    big.flush()
    flux = np.memmap(path, dtype=np.float32, mode="r", shape=(n, 1024))
    chunked = Predictor(predictor.model, batch_size=64, physics=False)
    tracemalloc.start()
    table = chunked.predict(flux)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    full_float64 = n * 1024 * 8
    assert peak < full_float64 / 4, f"peak {peak / 1e6:.1f} MB: the batch was not chunked"
    assert len(table) == n and np.all(table["flags"] == 0)
    first = predictor.predict(np.asarray(flux[:16]))
    np.testing.assert_allclose(labels(table)[:16], labels(first), atol=1e-5)
    assert np.corrcoef(labels(table), log_g)[0, 1] > 0.9


def test_gaussian_head_reports_sigma():
    model = specvit.create_model(
        "specvit_tiny", head="gaussian", input_length=256, wave_start=7500.0, wave_stop=7600.0
    )
    # a fresh create_model: untrained on purpose (only the σ column's presence is checked)
    with pytest.warns(specvit.UntrainedModelWarning, match="random numbers"):
        table = predict(np.ones((3, 256)), model=model, device="cpu", physics=False)
    assert np.all(np.isfinite(table["log_g_err"])) and np.all(table["log_g_err"] > 0)
    assert np.all(np.isnan(table["snr"])), "no error given: snr is NaN"


def test_air_wavelengths_are_converted_to_vacuum(predictor):
    from specvit.instrument.wavelength import vacuum_to_air

    vacuum = np.linspace(7480.0, 7960.0, 1500)
    flux = spectrum(vacuum, np.array([1.0, 4.0]))
    ref = predictor.predict(flux, wavelength=vacuum)
    air = predictor.predict(flux, wavelength=vacuum_to_air(vacuum), medium="air")
    np.testing.assert_allclose(labels(air), labels(ref), atol=1e-6)
    with pytest.raises(ValueError, match="medium must be"):
        predictor.predict(flux, wavelength=vacuum, medium="water")


def test_model_object_keeps_its_device_and_mode(predictor, data):
    model = predictor.model
    model.train()
    try:
        table = Predictor(model, physics=False).predict(data[0])
        assert model.training, "predicting must not leave the caller's model in eval mode"
    finally:
        model.eval()
    np.testing.assert_allclose(labels(table), labels(predictor.predict(data[0])), atol=1e-6)


# ---------------------------------------------------------------------------- issue 26
def test_flux_densities_per_wavelength_and_photon_fluxes_are_converted_to_f_nu(predictor):
    # The model reads f_ν (PFS nJy): f_λ or photon fluxes differ from it by a power of λ, a
    # tilt that the median normalisation does not remove.
    wave = np.linspace(7490.0, 7950.0, 1500)
    fnu = spectrum(wave, np.array([1.0, 4.0])) * 1e3
    err = np.full_like(fnu, SIGMA * 1e3)
    ref = predictor.predict(fnu, err, wavelength=wave)
    density = u.spectral_density(wave * u.AA)
    for unit in (u.erg / u.s / u.cm**2 / u.AA, u.photon / u.s / u.cm**2 / u.AA):
        flux, error = ((a * u.nJy).to(unit, density) for a in (fnu, err))
        table = predictor.predict(flux, error, wavelength=wave)
        np.testing.assert_allclose(labels(table), labels(ref), atol=1e-5)
        np.testing.assert_allclose(table["snr"], ref["snr"], rtol=1e-6)
        down = predictor.predict(flux[:, ::-1], error[:, ::-1], wavelength=wave[::-1])
        np.testing.assert_allclose(labels(down), labels(ref), atol=1e-5)
        per_row = predictor.predict(flux, error, wavelength=np.stack([wave, wave]) * u.AA)
        np.testing.assert_allclose(labels(per_row), labels(ref), atol=1e-5)
        var = predictor.predict(flux, error**2, wavelength=wave, uncertainty="var")
        np.testing.assert_allclose(var["snr"], ref["snr"], rtol=1e-6)
    mixed = predictor.predict(flux, err * u.nJy, wavelength=wave)  # σ in f_ν beside f_λ
    np.testing.assert_allclose(mixed["snr"], ref["snr"], rtol=1e-6)
    on_grid = spectrum(predictor.wavelength, np.array([2.0])) * u.erg / u.s / u.cm**2 / u.AA
    with pytest.raises(ValueError, match=r"f_ν.*wavelength="):
        predictor.predict(on_grid, on_grid * SIGMA)


def test_masked_arrays_mask_their_pixels(predictor, data):
    from astropy.table import MaskedColumn
    from astropy.utils.masked import Masked

    flux, error, _ = data
    bad = np.zeros(flux.shape, bool)
    bad[:, :40] = True
    bad[0, 500:520] = True
    ref = predictor.predict(flux, error, mask=bad)
    cases = {
        "numpy masked flux": (np.ma.MaskedArray(flux, bad), error),
        "numpy masked error": (flux, np.ma.MaskedArray(error, bad)),
        "astropy Masked Quantity": (Masked(flux * u.nJy, bad), error * u.nJy),
        "MaskedColumn": (MaskedColumn(flux, mask=bad, unit="nJy"), error * u.nJy),
    }
    for name, (f, e) in cases.items():
        table = predictor.predict(f, e)
        assert list(table["n_valid"]) == list(ref["n_valid"]), name
        np.testing.assert_allclose(labels(table), labels(ref), atol=1e-6, err_msg=name)
    wave = np.ma.MaskedArray(predictor.wavelength, np.zeros(1024, bool))
    wave[3] = np.ma.masked
    with pytest.raises(ValueError, match="wavelength has masked entries"):
        predictor.predict(flux, error, wavelength=wave)


def test_a_unit_on_only_one_of_flux_and_error_is_refused(predictor, data):
    flux, error, _ = data
    with pytest.raises(ValueError, match=r"error has a unit \(mJy\) but flux has none"):
        predictor.predict(flux, (error / 1e3) * u.mJy)
    with pytest.raises(ValueError, match=r"flux has a unit \(nJy\) but error has none"):
        predictor.predict(flux * u.nJy, error)


def test_clear_messages_and_lenient_spellings(predictor, data):
    flux, error, _ = data
    ref = predictor.predict(flux, error)
    half = torch.from_numpy(flux).bfloat16(), torch.from_numpy(error).bfloat16()
    table = predictor.predict(*half)
    assert np.all(table["flags"] == 0)
    np.testing.assert_allclose(labels(table), labels(ref), atol=0.1)  # 8-bit mantissa
    with pytest.raises(
        ValueError, match=r"variance, in the flux unit squared \(nJy2\).*u\.Unit\('nJy'\)\*\*2"
    ):
        predictor.predict(flux * u.nJy, error**2 * u.nJy, uncertainty="var")
    with pytest.raises(
        ValueError, match=r"nJy2 is the flux unit squared, a variance: pass uncertainty='var'"
    ):
        predictor.predict(flux * u.nJy, error**2 * u.nJy**2)
    wave = np.linspace(7480.0, 7960.0, 1500)
    fine = spectrum(wave, np.array([1.0]))
    air = predictor.predict(fine, wavelength=wave, medium="air")
    np.testing.assert_array_equal(
        labels(predictor.predict(fine, wavelength=wave, medium="AIR")), labels(air)
    )
    var = predictor.predict(flux, error**2, uncertainty="VAR")
    np.testing.assert_allclose(labels(var), labels(ref), atol=1e-6)
    table = predict(flux, error, model=predictor.model, batch_size=np.int64(2), physics=False)
    np.testing.assert_allclose(labels(table), labels(ref), atol=1e-6)
    assert Predictor(predictor.model, batch_size=np.int32(3), physics=False).batch_size == 3
    for bad in (2.0, True, np.int64(0)):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            Predictor(predictor.model, batch_size=bad)
