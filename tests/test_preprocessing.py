"""specvit.preprocessing: the SNR definition and the one path from spectra to model input."""

import numpy as np
import pytest
import torch

import specvit
from specvit.preprocessing import median_snr, model_input

CONFIG = specvit.get_preset("specvit_tiny")
CONFIG2 = specvit.get_preset("specvit_tiny", input_channels="flux+inverr")


def test_median_snr_is_the_lower_median_like_torch():
    flux = torch.rand(5, 400, generator=torch.Generator().manual_seed(4)) + 0.5
    sigma = torch.full_like(flux, 0.1)
    assert torch.equal(median_snr(flux, sigma), (flux / sigma).median(dim=-1).values)


def test_median_snr_skips_invalid_pixels():
    flux = torch.tensor([[1.0, 2.0, 3.0, float("nan"), 100.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    sigma = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0], [1.0, -1.0, 0.0, float("inf"), 0.5]])
    # row 0: valid ratios 1, 2, 3 -> 2; row 1: valid ratios 1, 2 -> lower median 1
    assert median_snr(flux, sigma).tolist() == [2.0, 1.0]
    assert median_snr(flux[:, :0], sigma[:, :0]).isnan().all()


def test_model_input_is_scale_free():
    flux = torch.rand(3, 4096, generator=torch.Generator().manual_seed(0)) + 0.5
    error = 0.1 * flux
    x1, s1 = model_input(flux, error, CONFIG2)
    x2, s2 = model_input(1e6 * flux, 1e6 * error, CONFIG2)
    torch.testing.assert_close(x1, x2)
    torch.testing.assert_close(s2, 1e6 * s1)
    assert x1.shape == (3, 2, 4096)
    assert torch.allclose(x1[:, 0].median(dim=1).values, torch.zeros(3), atol=1e-3)


def test_model_input_masks_bad_pixels_and_flags_unusable_spectra():
    flux = torch.ones(3, 4096)
    error = torch.full_like(flux, 0.1)
    flux[0, 10] = float("nan")
    error[0, 11] = 0.0
    flux[1] = -1.0  # no positive median: unusable
    user_mask = torch.ones_like(flux, dtype=torch.bool)
    user_mask[2, 5] = False
    x, scale = model_input(flux, error, CONFIG2, valid=user_mask)
    assert x[0, 0, 10] == 0 and x[0, 1, 10] == 0 and x[0, 1, 11] == 0
    assert x[2, 1, 5] == 0 and x[2, 1, 6] == pytest.approx(10.0)
    assert scale[1].isnan() and torch.isfinite(scale[[0, 2]]).all()
    assert torch.isfinite(x).all()


@pytest.mark.parametrize(
    ("flux", "error", "config", "message"),
    [
        (torch.ones(2, 100), None, CONFIG, r"shape \(B, 4096\)"),
        (torch.ones(2, 4096), torch.ones(2, 4095), CONFIG, "error shape"),
        (torch.ones(2, 4096), None, CONFIG2, "pass the error array"),
    ],
)
def test_model_input_bad_shapes(flux, error, config, message):
    with pytest.raises(ValueError, match=message):
        model_input(flux, error, config)


def test_lnsnr_channel_is_log1p_of_the_inverr_channel_and_zero_where_masked():
    flux = torch.rand(2, 4096, generator=torch.Generator().manual_seed(3)) + 0.5
    error = 0.05 * flux
    error[0, :10] = float("inf")
    raw, _ = model_input(flux, error, CONFIG2)
    x, _ = model_input(flux, error, specvit.get_preset("specvit_tiny", input_channels="flux+lnsnr"))
    torch.testing.assert_close(x[:, 0], raw[:, 0])
    torch.testing.assert_close(x[:, 1], raw[:, 1].log1p())
    assert (x[0, 1, :10] == 0).all() and (x[:, 1, 10:] > 2.5).all()  # ln(1 + 13…40)


# ------------------------------------------------------------------ the numpy CPU path
@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    """torch's thread count, which sets how many threads the CPU path splits rows over."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def _spectra(rows: int, length: int = 4096, seed: int = 0):
    """Flux and σ with NaN, inf, σ ≤ 0, a user mask, fully masked and non-positive rows."""
    g = torch.Generator().manual_seed(seed)
    flux = 1.0 + 0.1 * torch.randn(rows, length, generator=g)
    error = 0.02 + 0.05 * torch.rand(rows, length, generator=g)
    flux[1, ::7] = float("nan")
    flux[2, 3] = float("inf")
    error[3, ::5] = 0.0
    error[4, ::9] = -1.0
    error[5, 100:] = float("inf")
    flux[6] = float("nan")  # nothing valid
    flux[7] = -1.0  # no positive median
    mask = torch.rand(rows, length, generator=g) > 0.01
    mask[:1] = True
    mask[8, 1:] = False  # one valid pixel
    return flux, error, mask


def _reference_input(flux, error, mask, channels):
    """The model input written plainly in torch (the formula model_input implements)."""
    good = torch.isfinite(flux) & torch.isfinite(error) & (error > 0) & mask
    scale = torch.nanmedian(torch.where(good, flux, torch.nan), dim=-1).values
    scale = torch.where(scale > 0, scale, torch.nan)
    keep = good & torch.isfinite(scale)[:, None]
    s = torch.where(torch.isfinite(scale), scale, 1.0)[:, None]
    inverr = torch.where(keep, s / torch.where(keep, error, 1.0), 0.0)
    second = inverr.log1p() if channels == "flux+lnsnr" else inverr
    return torch.stack([torch.where(keep, flux / s - 1.0, 0.0), second], dim=1), scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_median_snr_equals_torch_nanmedian_with_masks(threads, dtype):
    flux, error, mask = _spectra(200, length=1001)
    flux, error = flux.to(dtype), error.to(dtype)
    valid = mask & torch.isfinite(flux) & torch.isfinite(error) & (error > 0)
    expected = torch.nanmedian(torch.where(valid, flux / error, torch.nan), dim=-1).values
    got = median_snr(flux, error, valid)
    assert got.dtype == dtype
    assert torch.equal(got.isnan(), expected.isnan()) and got[6].isnan()
    assert torch.equal(got.nan_to_num(), expected.nan_to_num())
    # (..., L) batches and the all-valid fast path
    clean = torch.rand(4, 50, 1001, generator=torch.Generator().manual_seed(1), dtype=dtype)
    nested = median_snr(clean, torch.ones_like(clean))
    assert torch.equal(nested, clean.median(dim=-1).values)


@pytest.mark.parametrize("channels", ["flux+lnsnr", "flux+inverr"])
def test_model_input_equals_a_plain_torch_reference(threads, channels):
    config = specvit.get_preset("specvit_tiny", input_channels=channels)
    flux, error, mask = _spectra(150)
    x, scale = model_input(flux, error, config, valid=mask)
    ref_x, ref_scale = _reference_input(flux, error, mask, channels)
    assert torch.equal(scale.isnan(), ref_scale.isnan()) and scale[[6, 7]].isnan().all()
    assert torch.equal(scale.nan_to_num(), ref_scale.nan_to_num())
    # bit-identical: a training run resumed with this code sees the input it was trained on
    assert torch.equal(x, ref_x)
    assert (x[6] == 0).all() and (x[7] == 0).all()


def test_the_torch_path_other_devices_take_equals_the_cpu_path():
    """`_input_rows` on tensors is what runs on CUDA; on the CPU model_input uses numpy."""
    from specvit import preprocessing

    config = specvit.get_preset("specvit_tiny", input_channels="flux+lnsnr")
    flux, error, mask = _spectra(40)
    x, scale = model_input(flux, error, config, valid=mask)
    x_t, scale_t = torch.empty_like(x), torch.empty_like(scale)
    preprocessing._input_rows(flux, error, mask, None, None, x_t, scale_t, config=config)
    assert torch.equal(x_t, x)
    assert torch.equal(scale_t.nan_to_num(), scale.nan_to_num())


def _ones() -> torch.Tensor:
    return torch.from_numpy(np.ones((64, 4096), np.float32))  # no torch kernel: fork-safe


def _child_median(_):
    torch.set_num_threads(2)
    return median_snr(_ones(), _ones()).tolist()


def test_the_row_threads_work_in_a_forked_child():
    """A forked child (a DataLoader worker) inherits the parent's thread pool object but not its
    threads: it must get a pool of its own, not wait forever on the parent's."""
    import multiprocessing

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        median_snr(_ones(), _ones())  # the parent's pool of two threads exists
        with multiprocessing.get_context("fork").Pool(1) as pool:
            assert pool.map_async(_child_median, [0]).get(timeout=60) == [[1.0] * 64]
    finally:
        torch.set_num_threads(before)


def test_each_snr_definition_is_its_own_function_and_says_where_it_is_stored():
    """expected_snr: noiseless flux over the noise model's σ, what crlb_ceilings reports;
    median_snr: a noisy observation over its estimated σ, what predict's ``snr`` column holds
    (and says, in its description)."""
    from specvit.bounds import crlb_ceilings
    from specvit.emulator import Emulator
    from specvit.instrument import PFSNoiseModel
    from specvit.preprocessing import expected_snr

    with pytest.warns(UserWarning, match="PFSNoiseModel.default"):
        noise = PFSNoiseModel.default()
    emulator = Emulator.load()
    labels = torch.tensor([[4200.0, 2.0, 0.0], [5600.0, 4.5, -1.5], [3900.0, 1.5, -2.0]])
    clean = noise.scale_to_magnitude(emulator(labels), 21.5)
    sigma = noise.expected_sigma(clean)
    expected = expected_snr(clean, sigma)
    assert torch.equal(expected, (clean / sigma).median(dim=-1).values)
    ceilings = crlb_ceilings(labels, mag=21.5, emulator=emulator, noise_model=noise)
    torch.testing.assert_close(ceilings.snr, expected.double(), rtol=1e-6, atol=0)

    noisy, estimated = noise.observe(clean, torch.Generator().manual_seed(0))
    observed = median_snr(noisy, estimated)
    assert torch.equal(observed, (noisy / estimated).median(dim=-1).values)
    assert not torch.allclose(observed, expected, rtol=1e-3)  # one noise draw's scatter
    table = specvit.predict(noisy.numpy(), estimated.numpy(), physics=False, device="cpu")
    np.testing.assert_array_equal(np.asarray(table["snr"]), observed.numpy())
    assert "median_snr" in table["snr"].description


def test_masked_median_is_torch_nanmedian_over_the_valid_entries():
    from specvit.preprocessing import masked_median

    values = torch.rand(70, 300, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    valid = torch.rand(70, 300, generator=torch.Generator().manual_seed(7)) > 0.3
    valid[0] = False
    reference = torch.nanmedian(torch.where(valid, values, torch.nan), dim=-1).values
    got = masked_median(values, valid)
    assert torch.isnan(got[0]) and torch.equal(got[1:], reference[1:])
    assert torch.equal(masked_median(values, None), values.median(dim=-1).values)


# ---------------------------------------------------------------- continuum input, rest frame
CONTINUUM = specvit.get_preset("specvit_tiny", input_channels="flux+lnsnr", input_norm="continuum")
OBSERVED = specvit.get_preset(
    "specvit_tiny", input_channels="flux+lnsnr", input_norm="continuum", rest_frame=True
)


def _emulator_spectra(n: int = 4, snr: float = 30.0, seed: int = 0):
    from specvit.emulator import Emulator

    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor([[4200.0, 2.0, -0.5], [5000.0, 4.5, 0.0], [5600.0, 2.5, -2.0]])
    flux = Emulator.load()(labels[torch.arange(n) % 3])
    error = flux.median(-1, keepdim=True).values / snr * torch.ones_like(flux)
    return flux + error * torch.randn(flux.shape, generator=gen), error


def test_the_continuum_input_ignores_a_smooth_multiplicative_curve():
    """f_λ for f_ν (× c/λ²), a calibration tilt, any scale: the input barely moves, far less
    than the median-normalised input does."""
    flux, error = _emulator_spectra()
    wave = torch.as_tensor(CONTINUUM.wavelength_grid.wavelength(), dtype=torch.float32)
    x = torch.linspace(-1.0, 1.0, flux.shape[1])
    for curve in (3e18 / wave**2, 1e-3 * (1.0 + 0.15 * x - 0.05 * x**2)):
        base, _ = model_input(flux, error, CONTINUUM)
        moved, _ = model_input(flux * curve, error * curve, CONTINUUM)
        assert (moved - base).abs().max() < 0.02
        old = (
            model_input(flux * curve, error * curve, CONFIG)[0]
            - model_input(flux, error, CONFIG)[0]
        )
        assert old.abs().max() > 0.05  # the check can fail: a median-normalised input moves


def test_prepare_shifts_a_rest_frame_models_input_and_measures_the_velocity():
    from specvit.emulator import DopplerShift, Emulator
    from specvit.preprocessing import prepare

    emulator = Emulator.load()
    labels = torch.tensor([[4300.0, 2.0, -0.7]] * 2)
    rv = torch.tensor([-350.0, 420.0])
    moving = DopplerShift(emulator, max_rv=600.0)(labels, rv)
    error = 0.02 * moving
    rest = prepare(emulator(labels), 0.02 * emulator(labels), CONTINUUM)
    measured = prepare(moving, error, OBSERVED)
    velocity = measured.velocity
    assert (velocity.v_rad - rv).abs().max() < 3.0 and torch.isfinite(velocity.v_rad_err).all()
    assert (velocity.contrast > 100).all()  # S/N 50: one clear peak
    inner = measured.valid.all(0)
    assert (measured.x[:, 0, inner] - rest.x[:, 0, inner]).abs().max() < 0.05
    given = prepare(moving, error, OBSERVED, rv=rv)
    torch.testing.assert_close(given.velocity.v_rad, rv)
    assert given.velocity.v_rad_err.isnan().all() and given.velocity.contrast.isnan().all()
    with pytest.raises(ValueError, match="takes rest-frame spectra"):
        prepare(moving, error, CONTINUUM, rv=rv)
    with pytest.raises(ValueError, match="needs the error array"):
        prepare(moving, None, OBSERVED)
    # a model without rest_frame: no velocity, the input of model_input
    plain = prepare(moving, error, CONTINUUM)
    assert plain.velocity is None and torch.equal(plain.x, model_input(moving, error, CONTINUUM)[0])


def test_the_continuum_inputs_snr_channel_does_not_reveal_reddening():
    """Reddening changes the S/N along the arm through the star's photon noise; the σ channel
    of a continuum model keeps the S/N's level and sky lines but not that trend."""
    import warnings

    from specvit.continuum import fit_continuum
    from specvit.preprocessing import valid_pixels
    from training.engine.effects import Effects
    from training.engine.simulate import Prior, Simulator

    def blue_minus_red(channel: torch.Tensor) -> float:
        return float(channel[:, :800].mean() - channel[:, -800:].mean())

    trends = {}
    for name, effects in (
        ("ideal", Effects.off()),
        ("E(B-V)=1", Effects.only("extinction", ebv=1.0)),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the approximate noise model says so
            sim = Simulator(prior=Prior(mag=(17.5, 18.0)), effects=effects)
        draw = sim.sample(64, torch.Generator().manual_seed(2))
        x, _ = model_input(draw["flux"], draw["error"], CONTINUUM)
        valid = valid_pixels(draw["flux"], draw["error"])
        raw = torch.log1p(fit_continuum(draw["flux"], draw["error"], valid, 5) / draw["error"])
        trends[name] = (blue_minus_red(x[:, 1]), blue_minus_red(raw))
    (flat_ideal, raw_ideal), (flat_red, raw_red) = trends.values()
    assert abs(flat_red - flat_ideal) < 0.05
    assert abs(raw_red - raw_ideal) > 0.2  # continuum/σ itself does: the check can fail
