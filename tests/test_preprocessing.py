"""specvit.preprocessing: the SNR definition and the one path from spectra to model input."""

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
