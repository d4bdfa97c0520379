"""The SpecViT family: parameter counts, shapes, every configurable variant."""

import pytest
import torch

import specvit
from specvit import SpecViT


def test_paper_preset_has_4p8m_parameters():
    model = specvit.create_model("specvit_l6_h256")
    assert abs(model.num_parameters() - 4.8e6) <= 0.1e6


@pytest.mark.parametrize(
    "batch",
    [1, pytest.param(256, marks=pytest.mark.slow)],  # 256: ≈ 30 s on 2 shared cores
)
def test_paper_preset_forward_shapes(batch):
    model = specvit.create_model("specvit_l6_h256").eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 4096))
    assert out.shape == (batch, 1, 1)
    mean, sigma = model.to_physical(out)
    assert mean.shape == (batch, 1) and sigma is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"tokenizer": "sw"},
        {"tokenizer": "sw", "patch_size": 32, "patch_stride": 16},
        {"pos_embed": "sinusoidal"},
        {"pos_embed": "wavelength", "patch_stride": 16, "patch_size": 48},
        {"input_channels": "flux+inverr"},
        {"pool": "mean"},
        {
            "head": "gaussian",
            "label_names": ("T_eff", "log_g", "M_H"),
            "label_shift": (4875.0, 3.0, -1.0),
            "label_scale": (650.0, 1.15, 0.87),
        },
    ],
)
def test_variants_forward_and_backward(overrides):
    model = specvit.create_model("specvit_tiny", **overrides)
    c = model.config
    x = torch.randn(3, c.in_chans, c.input_length)
    out = model(x)
    assert out.shape == (3, c.num_labels, 2 if c.head == "gaussian" else 1)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_gaussian_head_physical_units():
    model = specvit.create_model(
        "specvit_tiny", head="gaussian", label_shift=(3.0,), label_scale=(1.2,)
    )
    out = torch.tensor([[[0.5, 0.0]]])
    mean, sigma = model.to_physical(out)
    assert mean.item() == pytest.approx(3.6) and sigma.item() == pytest.approx(1.2)
    assert model.normalize_labels(torch.tensor([[3.6]])).item() == pytest.approx(0.5)


def test_wavelength_encoding_follows_the_grid():
    a = specvit.create_model("specvit_tiny", pos_embed="wavelength")
    b = specvit.create_model("specvit_tiny", pos_embed="wavelength", wave_start=7000.0)
    assert not torch.equal(a.pos_embed.code, b.pos_embed.code)
    assert a.wavelength[0] == pytest.approx(a.config.wave_start)


def test_wrong_input_shape_is_explained():
    model = specvit.create_model("specvit_tiny")
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 1, 4096\)"):
        model(torch.randn(2, 4000))


def test_config_type_checked():
    with pytest.raises(TypeError, match="SpecViTConfig"):
        SpecViT({"depth": 2})


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown SpecViT preset 'vit_huge'"):
        specvit.create_model("vit_huge")


def test_sigma_scale_calibrates_the_gaussian_sigma_only():
    labels = {"label_names": ("T_eff", "log_g"), "label_shift": (0, 0), "label_scale": (1, 2)}
    raw = specvit.create_model("specvit_tiny", head="gaussian", **labels)
    calibrated = specvit.SpecViT(raw.config.replace(sigma_scale=(1.5, 0.5)))
    out = torch.randn(4, 2, 2)
    mean0, sigma0 = raw.to_physical(out)
    mean1, sigma1 = calibrated.to_physical(out)
    torch.testing.assert_close(mean1, mean0)
    torch.testing.assert_close(sigma1, sigma0 * torch.tensor([1.5, 0.5]))
    with pytest.raises(ValueError, match="one factor per label"):
        raw.config.replace(sigma_scale=(1.0,))
    with pytest.raises(ValueError, match="gaussian head"):
        specvit.get_preset("specvit_tiny", sigma_scale=(1.0,))
    with pytest.raises(ValueError, match="finite and > 0"):
        raw.config.replace(sigma_scale=(1.0, 0.0))


def test_sigma_snr_slope_scales_sigma_by_a_clipped_snr_power_law():
    labels = {"label_names": ("T_eff", "log_g"), "label_shift": (0, 0), "label_scale": (1, 2)}
    raw = specvit.create_model("specvit_tiny", head="gaussian", **labels)
    snr_cal = {"sigma_scale": (2.0, 1.0), "sigma_snr_slope": (-0.5, 0.25)}
    calibrated = specvit.SpecViT(raw.config.replace(**snr_cal, sigma_snr_range=(2.0, 40.0)))
    out = torch.randn(4, 2, 2)
    snr = torch.tensor([1.0, 10.0, 20.0, 400.0])  # the first and last are clipped to 2 and 40
    _, sigma0 = raw.to_physical(out)
    mean1, sigma1 = calibrated.to_physical(out, snr)
    ratio = torch.tensor([[2 * 0.2**-0.5, 0.2**0.25], [2, 1], [2 * 2**-0.5, 2**0.25], [1, 4**0.25]])
    ratio[3, 0] = 2 * 4**-0.5
    torch.testing.assert_close(sigma1 / sigma0, ratio)
    torch.testing.assert_close(mean1, raw.to_physical(out)[0])
    with pytest.raises(ValueError, match="depends on S/N"):
        calibrated.to_physical(out)
    for bad in (
        {"sigma_snr_slope": (0.1, 0.2)},  # no range
        {"sigma_snr_slope": (0.1,), "sigma_snr_range": (2.0, 40.0)},
        {"sigma_snr_slope": (0.1, 0.2), "sigma_snr_range": (40.0, 2.0)},
        {"sigma_snr_slope": (0.1, float("nan")), "sigma_snr_range": (2.0, 40.0)},
    ):
        with pytest.raises(ValueError, match="sigma_snr_slope"):
            raw.config.replace(sigma_scale=(1.0, 1.0), **bad)
    with pytest.raises(ValueError, match="need sigma_scale"):
        raw.config.replace(sigma_snr_slope=(0.1, 0.2), sigma_snr_range=(2.0, 40.0))


def test_detach_sigma_keeps_the_values_and_stops_the_sigma_loss_at_the_head():
    labels = {"label_names": ("log_g",), "label_shift": (0.0,), "label_scale": (1.0,)}
    model = specvit.create_model("specvit_tiny", head="gaussian", **labels)
    x = torch.randn(3, 1, 4096)
    torch.testing.assert_close(model(x, detach_sigma=True), model(x))
    for detach in (False, True):
        model.zero_grad()
        model(x, detach_sigma=detach)[..., 1].sum().backward()  # a loss on log σ only
        encoder = model.patch_embed.proj.weight.grad
        reached = encoder is not None and bool(encoder.abs().sum() > 0)
        assert reached is not detach
        assert model.head.fc.weight.grad[1].abs().sum() > 0  # the σ row always learns
