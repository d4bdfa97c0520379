"""PFS noise model: ETC S/N vs magnitude, exposures, σ estimated without leaking the spectrum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specvit.emulator import Emulator
from specvit.instrument import PFSNoiseModel, read_etc


@pytest.fixture(scope="module")
def etc(etc_dir) -> dict:
    return read_etc(etc_dir)


@pytest.mark.parametrize("mag", [20.5, 21.5, 22.5])
def test_snr_vs_magnitude_matches_etc(etc_dir, etc, mag) -> None:
    """Done-when: median per-pixel S/N of a flat source within 5 % of the ETC's, at 8 exposures.

    The ETC's S/N at AB = 18 (its own column) scaled to ``mag`` with its signal and its
    variance-without-object columns (``snc_mr.dat``), against our full path: flat spectrum →
    HSC-i scaling → nJy → σ (the model reads ``noise_mr.dat``).
    """
    model = PFSNoiseModel.from_etc(etc_dir, n_exposures=8)
    flat = torch.ones(1, 4096, dtype=torch.float64)
    flux = model.scale_to_magnitude(flat, torch.tensor([mag], dtype=torch.float64))
    ours = (flux / model.expected_sigma(flux)).median()
    snc = np.loadtxt(etc_dir / "snc_mr.dat")
    snc = snc[snc[:, 0] == 3]
    s = snc[:, 4] * 10 ** (-0.4 * (mag - 18.0))
    etc_snr = np.median(s * np.sqrt(8) / np.sqrt(snc[:, 5] + s))
    assert float(ours) == pytest.approx(etc_snr, rel=0.05)
    # and at AB = 18 the ETC's own S/N column, pixel by pixel
    ref18 = model.snr_flat(18.0).numpy()
    np.testing.assert_allclose(ref18, etc["snr_ab18"], rtol=2e-3)


def test_exposures_scale_snr_as_sqrt_n(etc_dir) -> None:
    m8 = PFSNoiseModel.from_etc(etc_dir, n_exposures=8)
    m12 = PFSNoiseModel.from_etc(etc_dir)
    assert m12.n_exposures == 12
    ratio = m12.snr_flat(21.0) / m8.snr_flat(21.0)
    torch.testing.assert_close(ratio, torch.full_like(ratio, np.sqrt(12 / 8)))


def test_observed_noise_has_the_expected_sigma(etc_dir) -> None:
    model = PFSNoiseModel.from_etc(etc_dir).float()
    em = Emulator.load()
    flux = model.scale_to_magnitude(em(torch.tensor([[4500.0, 2.0, -1.0]])), 20.5)
    flux = flux.expand(4000, -1)
    noisy, sigma = model.observe(flux, torch.Generator().manual_seed(1))
    true = model.expected_sigma(flux[0])
    ratio = (noisy - flux).std(0) / true
    assert abs(float(ratio.mean()) - 1.0) < 0.01
    # σ estimated from the noisy observation is unbiased to ~1 % per pixel on average
    assert abs(float((sigma.mean(0) / true).median()) - 1.0) < 0.01
    assert torch.equal(model.magnitude(flux[:1]).round(decimals=4), torch.tensor([20.5]))


def test_observe_is_reproducible_and_checks_length(etc_dir) -> None:
    model = PFSNoiseModel.from_etc(etc_dir)
    flux = torch.full((3, 4096), 500.0, dtype=torch.float64)
    a = model.observe(flux, torch.Generator().manual_seed(5))
    b = model.observe(flux, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="4096"):
        model.expected_sigma(torch.ones(3, 100))


def test_default_approximates_the_etc(etc_dir, etc) -> None:
    with pytest.warns(UserWarning, match="approximation"):
        default = PFSNoiseModel.default(n_exposures=8)
    sig = default.signal_ab18.numpy()
    # smooth throughput: right on most pixels, wrong in the telluric bands (O₂ A band, H₂O)
    assert np.median(np.abs(sig / etc["signal_ab18"] - 1)) < 0.02
    assert np.median(default.background_variance.numpy()) == pytest.approx(
        np.median(etc["background_variance"]), rel=1e-3
    )
    real = PFSNoiseModel.from_etc(etc_dir, n_exposures=8)
    ratio = default.snr_flat(21.5).median() / real.snr_flat(21.5).median()
    print(f"default / ETC median S/N of a flat i = 21.5 source: {float(ratio):.3f}")
    assert 1.0 <= float(ratio) < 1.1  # no sky lines, no telluric bands: a little optimistic


def test_missing_tables_raise(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"noise_mr\.dat"):
        PFSNoiseModel.from_etc(tmp_path)


def test_sigma_from_mean_level_vs_true_sigma(etc_dir) -> None:
    """The cost of σ's source term from the mean level: noiseless level vs the true σ at i=20.5."""
    model = PFSNoiseModel.from_etc(etc_dir)
    em = Emulator.load(dtype=torch.float64)
    labels = torch.tensor(
        [[3750.0, 1.0, 0.5], [3750.0, 5.0, 0.5], [6000.0, 4.5, -2.5], [4500.0, 2.0, -1.0]],
        dtype=torch.float64,
    )
    flux = model.scale_to_magnitude(em(labels), torch.full((4,), 20.5, dtype=torch.float64))
    rel = (model.estimate_sigma(flux) / model.expected_sigma(flux) - 1).abs()
    print(
        "σ(mean level)/σ(true) − 1: max",
        rel.amax(-1).numpy().round(4),
        "median",
        rel.median(-1).values.numpy().round(4),
    )
    assert float(rel.median(-1).values.max()) < 0.01
    assert float(rel.max()) < 0.1


@pytest.mark.parametrize(
    "sky", [np.full(4096, -1.0), np.full(4096, np.nan), np.full(4096, np.inf), np.ones(10)]
)
def test_sky_that_is_negative_non_finite_or_misshapen_is_refused(sky):
    signal, background = np.ones(4096), np.full(4096, 200.0)
    assert PFSNoiseModel(signal, background, sky=np.ones(4096)).sky_njy.shape == (4096,)
    with pytest.warns(UserWarning, match="smooth approximation"):
        assert PFSNoiseModel.default().sky_njy is not None
    with pytest.raises(ValueError, match=r"sky must be finite, ≥ 0 and of shape \(4096,\)"):
        PFSNoiseModel(signal, background, sky=sky)
