"""SpecViTConfig: validation, JSON round trip, strict decoding."""

import json

import pytest

from specvit import SpecViTConfig, get_preset


def test_defaults_are_the_paper_model():
    c = get_preset("specvit_l6_h256")
    assert (c.tokenizer, c.patch_size, c.depth, c.embed_dim, c.num_heads) == ("c1d", 16, 6, 256, 8)
    assert c.embed_dim * c.mlp_ratio == 1024
    assert (c.pool, c.pos_embed, c.num_patches) == ("cls", "learned", 256)


def test_json_round_trip(tmp_path):
    c = SpecViTConfig(label_names=("T_eff", "log_g"), label_shift=(4800, 3), label_scale=(700, 1.2))
    c.to_json(tmp_path / "config.json")
    back = SpecViTConfig.from_json(tmp_path / "config.json")
    assert back == c
    assert json.loads((tmp_path / "config.json").read_text())["label_names"] == ["T_eff", "log_g"]


def test_legacy_extra_is_dropped_and_json_is_strict(tmp_path):
    legacy = SpecViTConfig().to_dict() | {"extra": {"training": {"out_dir": "runs/x"}}}
    assert SpecViTConfig.from_dict(legacy) == SpecViTConfig()
    SpecViTConfig().to_json(tmp_path / "config.json")
    text = (tmp_path / "config.json").read_text()
    assert "extra" not in json.loads(text, parse_constant=lambda t: pytest.fail(t))


def test_an_empty_snr_power_law_of_a_development_snapshot_is_dropped_a_set_one_refused():
    # checkpoints of runs started before the S/N table carry these two keys, empty
    old = SpecViTConfig().to_dict() | {"sigma_snr_slope": [], "sigma_snr_range": []}
    assert SpecViTConfig.from_dict(old) == SpecViTConfig()
    calibrated = old | {"sigma_snr_slope": [0.1], "sigma_snr_range": [2.0, 40.0]}
    with pytest.raises(ValueError, match="no longer applies; recalibrate"):
        SpecViTConfig.from_dict(calibrated)


def test_unknown_key_is_an_error():
    data = SpecViTConfig().to_dict() | {"emb_dim": 128}
    with pytest.raises(ValueError, match=r"unknown SpecViTConfig key\(s\) \['emb_dim'\]"):
        SpecViTConfig.from_dict(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tokenizer": "conv"}, "tokenizer must be one of"),
        ({"embed_dim": 100, "num_heads": 8}, "not divisible"),
        ({"patch_stride": 32, "patch_size": 16}, "would skip pixels"),
        ({"patch_size": 8192}, "exceeds input_length"),
        (
            {"label_names": ("log_g", "log_g"), "label_shift": (0, 0), "label_scale": (1, 1)},
            "unique",
        ),
        ({"label_shift": (0.0, 1.0)}, "one entry per label"),
        ({"label_scale": (0.0,)}, "must be > 0"),
        ({"depth": 0}, "positive integer"),
        ({"dropout": 1.0}, r"\[0, 1\)"),
        ({"wave_stop": 7000.0}, "must exceed"),
        ({"label_shift": (float("nan"),)}, "label_shift must be finite"),
        ({"label_scale": (float("inf"),)}, "label_scale must be finite"),
        ({"mlp_ratio": float("inf")}, "mlp_ratio must be finite"),
    ],
)
def test_invalid_configs_fail_clearly(changes, message):
    with pytest.raises(ValueError, match=message):
        SpecViTConfig().replace(**changes)


def test_overlapping_patches_count():
    c = SpecViTConfig(patch_size=16, patch_stride=8)
    assert c.num_patches == (4096 - 16) // 8 + 1


def test_domain_round_trip_and_strict_keys(tmp_path):
    domain = {"labels": {"log_g": [1, 5], "T_eff": [3750, 6000]}, "mag": [20.5, 22.5]}
    c = SpecViTConfig(domain=domain)
    assert c.domain.rv == (0.0, 0.0) and c.domain.frame == "rest"
    c.to_json(tmp_path / "config.json")
    assert SpecViTConfig.from_json(tmp_path / "config.json") == c
    assert json.loads((tmp_path / "config.json").read_text())["domain"]["labels"]["log_g"] == [
        1.0,
        5.0,
    ]


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ({"labels": {"log_g": [1, 5]}, "rv_range": [0, 0]}, r"unknown ModelDomain key\(s\)"),
        ({"mag": [20, 22]}, "needs 'labels'"),
        ({"labels": {"log_g": [5, 1]}}, "low <= high"),
        ({"labels": {"log_g": [1, float("nan")]}}, "finite"),
        ({"labels": {"log_g": 3.0}}, r"\[low, high\] pair"),
        ({"labels": {"log_g": [1, 5]}, "frame": "helio"}, "frame"),
        ({"labels": {"T_eff": [3750, 6000]}}, r"no prior box for \['log_g'\]"),
        ([1, 5], "must be a dict"),
    ],
)
def test_invalid_domains_fail_clearly(domain, message):
    with pytest.raises(ValueError, match=message):
        SpecViTConfig(domain=domain)


def test_the_grid_is_one_wavelength_grid():
    """The four flat fields are one WavelengthGrid; the model's wavelengths, its patch centres
    and the emulator check all read it, and grids compare through WavelengthGrid.matches."""
    import numpy as np

    from specvit import create_model
    from specvit.inference.physics import emulator_mismatch
    from specvit.instrument import GRID_ATOL, PFS_MR, WavelengthGrid

    assert SpecViTConfig().wavelength_grid == PFS_MR
    grid = WavelengthGrid(7500.0, 7500.0 + 1023 * 0.4272, 1024, "air")
    config = SpecViTConfig(
        input_length=grid.num, wave_start=grid.start, wave_stop=grid.stop, wave_medium="air"
    )
    assert config.wavelength_grid == grid
    fields = {k: v for k, v in config.to_dict().items() if k.startswith(("wave_", "input_len"))}
    model = create_model("specvit_tiny", pos_embed="wavelength", **fields)
    np.testing.assert_array_equal(model.wavelength, grid.wavelength())
    c = model.config
    first = np.arange(2) * c.patch_stride  # the first pixel of the first two patches
    centres = grid.wavelength()[first] + 0.5 * (c.patch_size - 1) * grid.step
    np.testing.assert_allclose(model._patch_positions().numpy()[:2], centres, rtol=1e-12)
    # the emulator's grid, to GRID_ATOL, in the same medium and number of pixels
    labels = {"label_names": ("T_eff", "log_g", "M_H"), "label_shift": (0, 0, 0)}
    close = SpecViTConfig(**labels, label_scale=(1, 1, 1), wave_stop=PFS_MR.stop + 0.5 * GRID_ATOL)
    assert close.wavelength_grid.matches(PFS_MR) and emulator_mismatch(close) is None
    for change in (
        {"wave_start": PFS_MR.start - 2 * GRID_ATOL},
        {"wave_stop": PFS_MR.stop + 2 * GRID_ATOL},
        {"wave_medium": "air"},
        {"input_length": PFS_MR.num - 1},
    ):
        other = close.replace(**change)
        assert not other.wavelength_grid.matches(PFS_MR), change
        assert "is not the emulator's PFS MR grid" in emulator_mismatch(other), change


def test_published_config_field_names_are_unchanged():
    """config.json keeps the flat grid fields (published weights and configs must load)."""
    from pathlib import Path

    legacy = Path(__file__).parent / "data" / "legacy_config_0.1.0.dev0.json"
    data = json.loads(legacy.read_text())
    config = SpecViTConfig.from_dict(data)
    assert {"input_length", "wave_start", "wave_stop", "wave_medium"} <= set(data)
    assert config.wavelength_grid.num == data["input_length"]
    assert (config.wavelength_grid.start, config.wavelength_grid.stop) == (
        data["wave_start"],
        data["wave_stop"],
    )
    assert {"input_length", "wave_start", "wave_stop", "wave_medium"} <= set(config.to_dict())


def test_the_observed_frame_fields_are_checked():
    from specvit.config import ModelDomain

    box = {"T_eff": (3750.0, 6000.0), "log_g": (1.0, 5.0), "M_H": (-2.5, 0.5)}
    for bad in (-1, 21, 2.5, True):
        with pytest.raises(ValueError, match="continuum_order must be an integer in 0–20"):
            get_preset("specvit_tiny", continuum_order=bad)
    with pytest.raises(ValueError, match="rest_frame must be true or false"):
        get_preset("specvit_tiny", rest_frame="yes")
    with pytest.raises(ValueError, match="input_norm must be one of"):
        get_preset("specvit_tiny", input_norm="polynomial")
    with pytest.raises(ValueError, match="sigma_scale must be > 0"):
        ModelDomain(labels=box, sigma_scale=(0.0, 1.3))
    with pytest.raises(ValueError, match="sigma_scale needs finite low <= high"):
        ModelDomain(labels=box, sigma_scale=(1.3, 0.7))
    with pytest.raises(ValueError, match="effects must be a list of names"):
        ModelDomain(labels=box, effects="sky")
    domain = ModelDomain(labels=box, sigma_scale=[0.7, 1.3], effects=["sky"])
    assert domain.sigma_scale == (0.7, 1.3) and domain.effects == ("sky",)
