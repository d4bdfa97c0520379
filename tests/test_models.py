"""The SpecViT family: parameter counts, shapes, every configurable variant."""

import json

import pytest
import torch

import specvit
from specvit import SpecViT
from specvit.layers import RegressionHead


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


def test_sigma_snr_table_interpolates_in_ln_snr_and_holds_the_end_factors():
    labels = {"label_names": ("T_eff", "log_g"), "label_shift": (0, 0), "label_scale": (1, 2)}
    raw = specvit.create_model("specvit_tiny", head="gaussian", **labels)
    table = {"sigma_snr_knots": (2.0, 8.0, 40.0), "sigma_snr_factors": ((1.0, 3.0, 0.5), (2, 2, 1))}
    calibrated = specvit.SpecViT(raw.config.replace(sigma_scale=(2.0, 1.0), **table))
    out = torch.randn(5, 2, 2)
    snr = torch.tensor([1.0, 2.0, 4.0, 8.0, 400.0])  # below, on, between (halfway in ln), above
    _, sigma0 = raw.to_physical(out)
    mean1, sigma1 = calibrated.to_physical(out, snr)
    expected = torch.tensor([[1.0, 2], [1, 2], [2, 2], [3, 2], [0.5, 1]]) * torch.tensor([2.0, 1])
    torch.testing.assert_close(sigma1 / sigma0, expected)
    torch.testing.assert_close(mean1, raw.to_physical(out)[0])
    with pytest.raises(ValueError, match="depends on S/N"):
        calibrated.to_physical(out)
    # S/N ≤ 0 and +inf get the end factors, NaN a NaN σ; one S/N per spectrum
    edge = torch.tensor([0.0, -3.0, float("inf"), float("nan")])
    _, sigma_edge = calibrated.to_physical(out[:4], edge)
    ratio = sigma_edge / raw.to_physical(out[:4])[1]
    torch.testing.assert_close(ratio[:3], torch.tensor([[2.0, 2], [2, 2], [1, 1]]))
    assert ratio[3].isnan().all()
    with pytest.raises(ValueError, match="one median S/N per spectrum"):
        calibrated.to_physical(out, snr[:, None])
    for bad in (
        {"sigma_snr_knots": (2.0, 8.0)},  # no factors
        {"sigma_snr_knots": (2.0,), "sigma_snr_factors": ((1.0,), (1.0,))},  # one knot
        {"sigma_snr_knots": (8.0, 2.0), "sigma_snr_factors": ((1, 1), (1, 1))},  # decreasing
        {"sigma_snr_knots": (0.0, 2.0), "sigma_snr_factors": ((1, 1), (1, 1))},
        {"sigma_snr_knots": (2.0, 8.0), "sigma_snr_factors": ((1, 1),)},  # one label of two
        {"sigma_snr_knots": (2.0, 8.0), "sigma_snr_factors": ((1, 1), (1,))},
        {"sigma_snr_knots": (2.0, 8.0), "sigma_snr_factors": ((1, 1), (1, float("nan")))},
        {"sigma_snr_knots": (2.0, 8.0), "sigma_snr_factors": ((1, 1), (1, 0))},
    ):
        with pytest.raises(ValueError, match="sigma_snr_knots"):
            raw.config.replace(**bad)
    with pytest.raises(ValueError, match="gaussian head"):
        specvit.get_preset(
            "specvit_tiny", **table, label_names=("a", "b"), label_shift=(0, 0), label_scale=(1, 1)
        )
    # the table survives config.json
    again = specvit.SpecViTConfig.from_dict(json.loads(json.dumps(calibrated.config.to_dict())))
    assert again == calibrated.config


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


def test_a_sigma_network_gives_log_sigma_its_own_weights(tmp_path):
    """``sigma_hidden``: log σ from Linear → GELU → Linear of the features; the mean from its
    own linear map; ``detach_sigma`` stops σ's loss at the network; config.json and strict
    loading carry it."""
    labels = {"label_names": ("log_g", "M_H"), "label_shift": (0.0, 0.0), "label_scale": (1, 1)}
    model = specvit.create_model("specvit_tiny", head="gaussian", sigma_hidden=8, **labels)
    names = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("head.")}
    assert names == {
        "head.fc.weight": (2, 64),
        "head.fc.bias": (2,),
        "head.sigma.0.weight": (8, 64),
        "head.sigma.0.bias": (8,),
        "head.sigma.2.weight": (2, 8),
        "head.sigma.2.bias": (2,),
    }
    x = torch.randn(3, 1, 4096)
    out = model(x)
    assert out.shape == (3, 2, 2)
    torch.testing.assert_close(model(x, detach_sigma=True), out)
    model(x, detach_sigma=True)[..., 1].sum().backward()
    for upstream in (model.patch_embed.proj.weight, model.head.fc.weight):
        assert upstream.grad is None or not upstream.grad.any()
    assert model.head.sigma[0].weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.head.sigma[2].bias += 0.1  # trained, in miniature
    model.save_pretrained(tmp_path)
    again = specvit.load(tmp_path)
    assert again.config.sigma_hidden == 8
    torch.testing.assert_close(again.eval()(x), model.eval()(x))
    for bad, message in (({"sigma_hidden": -1}, "integer ≥ 0"), ({"head": "point"}, "gaussian")):
        with pytest.raises(ValueError, match=message):
            model.config.replace(**bad)
    with pytest.raises(ValueError, match="needs a Gaussian head"):
        RegressionHead(64, 2, gaussian=False, sigma_hidden=8)


def test_specvit_small_is_the_architecture_of_the_default_models_second_run():
    """docs/default_model.md ("A wider second run") says the recorded run trained this preset."""
    from pathlib import Path

    from training.trainer.rundir import RunDir

    folder = Path(__file__).resolve().parents[1] / "run-records" / "default_run_p64"
    model = RunDir(folder).config()["model"]
    run = specvit.get_preset(model["preset"], **model["overrides"])
    preset = specvit.get_preset("specvit_small")
    fields = ("tokenizer", "patch_size", "patch_stride", "embed_dim", "depth", "num_heads")
    fields += ("mlp_ratio", "dropout", "pos_embed", "pool", "input_length")
    assert {f: getattr(run, f) for f in fields} == {f: getattr(preset, f) for f in fields}


def test_an_untrained_model_says_so_in_its_card_its_table_and_a_warning(tmp_path):
    """The README's create_model → save_pretrained → predict(model=…) (issue 26, case 22)."""
    import warnings

    import numpy as np

    grid = {"input_length": 1024, "wave_start": 7500.0, "wave_stop": 7500.0 + 1023 * 0.4272}
    model = specvit.create_model("specvit_tiny", **grid)
    assert model.untrained
    model.save_pretrained(tmp_path / "my-model")
    card = (tmp_path / "my-model" / "README.md").read_text()
    assert "Untrained" in card and "label statistics the model was trained with" not in card
    flux = np.ones((2, 1024))
    for source in (tmp_path / "my-model", model):
        with pytest.warns(specvit.UntrainedModelWarning, match="random numbers"):
            table = specvit.predict(flux, model=source, device="cpu", physics=False)
        assert table.meta["untrained"] is True
    trained = specvit.load(tmp_path / "my-model")
    with torch.no_grad():
        trained.head.fc.bias += 0.1  # a training step, in miniature
    assert not trained.untrained
    with warnings.catch_warnings():
        warnings.simplefilter("error", specvit.UntrainedModelWarning)
        table = specvit.predict(flux, model=trained, device="cpu", physics=False)
    assert table.meta["untrained"] is False
    trained.save_pretrained(tmp_path / "trained")
    assert not specvit.load(tmp_path / "trained").untrained
    assert "Untrained" not in (tmp_path / "trained" / "README.md").read_text()


def test_the_card_of_a_trained_model_is_unchanged():
    """publish's cards (trained models) keep their bytes: the untrained text is conditional."""
    from specvit.inference import DEFAULT_MODEL

    model = specvit.load(DEFAULT_MODEL)
    assert not model.untrained
    card = str(model.generate_model_card(heading="H", training="T"))
    assert "label statistics the model was trained with" in card and "Untrained" not in card
    assert "(when the folder has one) and below.\nT" in card
