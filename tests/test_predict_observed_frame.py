"""predict with a model that takes observed-frame spectra (``config.rest_frame``): the velocity
measured or given, the v_rad columns, and the checks on ``rv``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import specvit
from specvit.emulator import DopplerShift, Emulator
from specvit.models.specvit import UntrainedModelWarning
from tests.predict_helpers import observed_frame_model


@pytest.fixture(scope="module")
def observed_model():
    return observed_frame_model()


@pytest.fixture(scope="module")
def moving_stars():
    emulator = Emulator.load()
    labels = torch.tensor([[4300.0, 2.0, -0.7], [5100.0, 4.4, -0.2], [4700.0, 1.5, -1.5]])
    rv = torch.tensor([-480.0, 25.0, 310.0])
    flux = DopplerShift(emulator, max_rv=600.0)(labels, rv).numpy()
    return flux, 0.03 * flux, rv.numpy()


def _predict(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        return specvit.predict(*args, **kwargs)


def test_the_velocity_is_measured_and_reported(observed_model, moving_stars):
    flux, error, rv = moving_stars
    table = _predict(flux, error, model=observed_model)
    assert table["v_rad"].unit == "km / s" and table["v_rad_err"].unit == "km / s"
    assert np.abs(table["v_rad"] - rv).max() < 5.0
    assert (table["v_rad_err"] > 0).all()
    assert table.colnames.count("v_rad") == 1  # the emulator fit reports none of its own
    # given the measured velocities, the same input and labels; v_rad_err is then NaN
    given = _predict(flux, error, model=observed_model, rv=np.asarray(table["v_rad"]))
    for name in ("T_eff", "log_g", "M_H", "flags"):
        np.testing.assert_array_equal(given[name], table[name])
    assert np.isnan(given["v_rad_err"]).all()
    without = _predict(flux, error, model=observed_model, physics=False)
    np.testing.assert_array_equal(without["v_rad"], table["v_rad"])


def test_one_velocity_for_all_or_one_each_and_bad_ones_are_refused(observed_model, moving_stars):
    flux, error, _ = moving_stars
    one = _predict(flux, error, model=observed_model, rv=100.0)
    assert (one["v_rad"] == 100.0).all()
    with pytest.raises(ValueError, match="one per spectrum \\(3\\)"):
        _predict(flux, error, model=observed_model, rv=[1.0, 2.0])
    with pytest.raises(ValueError, match="spectrum 1 has nan"):
        _predict(flux, error, model=observed_model, rv=[1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="within ±1000 km/s"):
        _predict(flux, error, model=observed_model, rv=1500.0)
    with pytest.raises(ValueError, match="a number or one number per spectrum"):
        _predict(flux, error, model=observed_model, rv="fast")


def test_a_rest_frame_model_refuses_a_velocity(moving_stars):
    flux, error, _ = moving_stars
    with pytest.raises(ValueError, match="takes rest-frame spectra"):
        specvit.predict(flux, error, model="specvit-tiny-pfs", rv=10.0)


def test_the_fit_of_a_model_trained_on_spikes_and_wrong_sigma_leaves_them_out():
    """Cosmic rays, sky-subtraction residuals and a σ 30 % too small fail the χ² test of an
    ideal-trained model, and pass that of a continuum model whose domain says it was trained on
    them."""
    from specvit.config import ModelDomain
    from specvit.inference.physics import PhysicalContext

    labels = torch.tensor([[4500.0, 2.0, -1.0], [5200.0, 4.0, -0.3]] * 8)
    clean = Emulator.load()(labels)
    sigma = clean.median(-1, keepdim=True).values / 20.0 * torch.ones_like(clean)
    gen = torch.Generator().manual_seed(1)
    flux = clean + sigma * torch.randn(clean.shape, generator=gen)
    flux[:, 1000] += 30 * sigma[:, 1000]  # a cosmic ray in every spectrum
    flux[:, 3000:3002] += 20 * sigma[:, 3000:3002]
    # sky lines' subtraction residuals at a shifted wavelength: both signs
    flux[:, 2500:2540:4] -= 20 * sigma[:, 2500:2540:4]
    flux[:, 2501:2541:4] += 20 * sigma[:, 2501:2541:4]
    # sky lines: σ three times the continuum's there, and residuals of 3 of their σ (below any
    # spike clip) from subtracting the sky at a slightly wrong wavelength
    sky = torch.zeros(clean.shape[1], dtype=torch.bool)
    for start in range(200, 4000, 160):
        sky[start : start + 6] = True
    sigma = torch.where(sky, 3 * sigma, sigma)
    flux = torch.where(sky, flux + 3 * sigma * torch.tensor([1.0, -1.0]).repeat(2048), flux)
    reported = 0.75 * sigma
    box = {"T_eff": (3750.0, 6000.0), "log_g": (1.0, 5.0), "M_H": (-2.5, 0.5)}
    results = {}
    for name, domain in {
        "ideal": ModelDomain(labels=box),
        "trained": ModelDomain(labels=box, sigma_scale=(0.7, 1.3), effects=("cosmic_rays", "sky")),
    }.items():
        config = specvit.get_preset(
            "specvit_tiny",
            label_names=("T_eff", "log_g", "M_H"),
            label_shift=(0.0, 0.0, 0.0),
            label_scale=(1.0, 1.0, 1.0),
            input_norm="continuum",
            domain=domain,
        )
        context = PhysicalContext(config, torch.device("cpu"))
        valid = torch.ones_like(flux, dtype=torch.bool)
        scale = flux.median(-1).values
        flags, _ = context(labels, flux, reported, valid, scale, torch.full((16,), 20.0))
        results[name] = (flags & int(specvit.PredictFlag.OUT_OF_DOMAIN)) != 0
    assert results["ideal"].all() and not results["trained"].any()


def test_an_ambiguous_velocity_is_flagged_and_a_given_one_never(observed_model, moving_stars):
    flux, error, _ = moving_stars
    featureless = 1.0 + 0.05 * np.random.default_rng(0).standard_normal(flux.shape)
    both = np.concatenate([flux, featureless])
    sigma = np.concatenate([error, np.full_like(featureless, 0.05)])
    table = _predict(both, sigma, model=observed_model, physics=False)
    uncertain = (np.asarray(table["flags"]) & int(specvit.PredictFlag.RV_UNCERTAIN)) != 0
    assert not uncertain[:3].any() and uncertain[3:].all()
    given = _predict(both, sigma, model=observed_model, physics=False, rv=0.0)
    assert not (np.asarray(given["flags"]) & int(specvit.PredictFlag.RV_UNCERTAIN)).any()
