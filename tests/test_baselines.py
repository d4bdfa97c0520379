"""The baselines: features, and each method on data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specvit.emulator import Emulator
from training.evaluation.baselines import BASELINES, default_block, make
from training.evaluation.baselines.features import Features, features


def test_block_features_average_flux_and_combine_variance():
    flux = torch.full((2, 4096), 10.0)
    flux[:, :2] = torch.tensor([8.0, 12.0])
    error = torch.full((2, 4096), 2.0)
    f = features(flux, error, block=2)
    assert f.x.shape == (2, 2048) and f.x[0, 0] == pytest.approx(1.0)
    assert f.ivar[0, 0] == pytest.approx(1 / (2 * 0.2**2 / 4))  # block mean of two σ = 0.2
    error[0, 5] = 0.0  # an invalid pixel carries no weight
    assert features(flux, error).ivar[0, 5] == 0.0
    with pytest.raises(ValueError, match="does not divide"):
        features(flux, error, block=3)


def test_every_baseline_is_registered_with_a_block():
    assert set(BASELINES) == {"ridge", "lightgbm", "template", "cannon", "mlp", "cnn"}
    assert default_block("template") == 1 and default_block("ridge") == 16
    with pytest.raises(ValueError, match="unknown baseline"):
        make("svm")


def _noiseless(n: int, seed: int, block: int = 1) -> Features:
    g = torch.Generator().manual_seed(seed)
    low, high = torch.tensor([3900.0, 1.3, -2.2]), torch.tensor([5900.0, 4.7, 0.3])
    labels = low + (high - low) * torch.rand(n, 3, generator=g, dtype=torch.float64)
    flux = Emulator.load()(labels.float()).double() * 123.0  # any scale: the amplitude is free
    return features(flux, flux * 1e-3, labels, block)  # SNR 1000


def test_template_fit_recovers_noiseless_labels():
    test = _noiseless(12, 0)
    mean, sigma = make("template").predict(test)
    np.testing.assert_allclose(mean[:, 0], test.labels[:, 0], atol=5.0)
    np.testing.assert_allclose(mean[:, 1:], test.labels[:, 1:], atol=0.02)
    assert (sigma > 0).all() and (sigma[:, 1] < 0.05).all()


@pytest.mark.parametrize("name", ["ridge", "mlp", "lightgbm", "cannon"])
def test_learned_baselines_fit_high_snr_spectra(name):
    if name == "lightgbm":
        pytest.importorskip("lightgbm")
    if name == "cannon":
        pytest.importorskip("TheCannon")
    block = default_block(name)
    train, val, test = (_noiseless(n, s, block) for n, s in ((384, 1), (64, 2), (64, 3)))
    options = {"mlp": {"epochs": 30}, "cannon": {"n_train": None}}.get(name, {})
    model = make(name, **options)
    model.fit(train, val)
    mean, _ = model.predict(test)
    r2 = 1 - ((mean - test.labels) ** 2).sum(0) / ((test.labels - test.labels.mean(0)) ** 2).sum(0)
    assert r2[0] > 0.8, r2  # T_eff is the easiest label for all of them
