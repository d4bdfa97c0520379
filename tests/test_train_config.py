"""Training config: named configs, overrides, strict keys and clear errors."""

from __future__ import annotations

import pytest

from training.trainer.config import ConfigError, load_config


def test_paper_config_is_the_papers_recipe():
    c = load_config("paper")
    assert c.model.preset == "specvit_l6_h256"
    assert c.labels == ["log_g"] and c.label_norm == "zscore" and c.train.loss == "mse"
    assert (c.optim.lr, c.optim.weight_decay, c.optim.eta_min) == (3e-4, 0.01, 1e-5)
    assert (c.optim.warmup_steps, c.optim.clip_grad_norm) == (0, 0.5)
    assert (c.train.epochs, c.train.batch_size, c.train.precision) == (200, 256, "fp16")
    assert (c.seed, c.data.noise_level, c.data.n_train, c.data.n_val) == (42, 1.0, 1_000_000, 1000)


def test_tiny_config_loads():
    assert load_config("tiny").model.preset == "specvit_tiny"


def test_overrides_parse_yaml_values():
    c = load_config(
        "paper",
        [
            "optim.lr=1e-3",
            "labels=[T_eff, log_g]",
            "model.overrides.head=gaussian",
            "train.loss=gaussian_nll",
            "train.ema_decay=0.999",
            "label_stats.log_g=[2.9975, 1.1683]",
        ],
    )
    assert c.optim.lr == 1e-3 and c.labels == ["T_eff", "log_g"]
    assert c.model.overrides == {"head": "gaussian"} and c.train.ema_decay == 0.999
    assert c.label_stats == {"log_g": [2.9975, 1.1683]}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.learning_rate=1e-3", r"unknown key\(s\) \['optim.learning_rate'\]"),
        ("bogus=1", r"unknown key\(s\) \['bogus'\]"),
        ("train.batch_size=big", "train.batch_size must be int"),
        ("train.precision=fp8", "train.precision must be one of"),
        ("labels=[log_g, Teff]", "unknown label 'Teff'"),
        ("train.loss=gaussian_nll", "does not fit model head 'point'"),
        ("train.loss=decoupled_nll", "does not fit model head 'point'"),
        ("train.sigma_grad=head", "sigma_grad=head needs a Gaussian loss"),
        ("train.max_cpu_minutes=-1", "max_cpu_minutes >= 0"),
        ("train.keep_checkpoints=0", "keep_checkpoints >= 1"),
        ("train.compile=maybe", "train.compile must be bool"),
        ("optim.schedule=linear", "optim.schedule must be one of"),
        ("model.overrides.label_names=[log_g]", "may not set"),
        ("data.source=hdf5", "needs data.train_path"),
        ("optim.eta_min=1.0", "eta_min <= lr"),
        ("optim", "not of the form"),
        ("data.teacher_grid=[24, 24]", "teacher_grid must be 3 ints >= 2"),
        ("data.teacher_grid=[24, 24, 1]", "teacher_grid must be 3 ints >= 2"),
        ("data.teacher_grid=[24, 24, 2.5]", r"teacher_grid\[2\] must be int"),
        ("data.prior.foo=1", r"unknown key\(s\) \['data.prior.foo'\]; data.prior takes"),
        ("data.prior.T_eff=[4000]", "data.prior: cannot make a distribution"),
        ("data.prior.T_eff=[3000, 4000]", "data.prior: .*beyond the emulator's grid"),
        ("train.batch_size=-32", r"train.batch_size >= 1, got 200 and -32$"),
        ("train.max_cpu_minutes=.nan", "train.max_cpu_minutes must be a finite number, got nan"),
        ("optim.lr=.inf", "optim.lr must be a finite number, got inf"),
        ("label_stats.log_g=[.nan, 1]", r"label_stats.log_g\[0\] must be a finite number"),
        ("train.progress=sometimes", "train.progress must be bool or 'auto', got 'sometimes'"),
    ],
)
def test_bad_config_is_a_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("paper", [override])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.prior.rv=[-300, 300]"], "no radial velocity"),
        (["train.loss=l1"], r"needs a train.loss in \('mse', 'decoupled_nll'\)"),
    ],
)
def test_teacher_needs_the_rest_frame_engine_and_a_squared_loss(overrides, message):
    grid = load_config("paper", ["data.teacher_grid=[24, 24, 20]"]).data.teacher_grid
    assert grid == [24, 24, 20]
    with pytest.raises(ConfigError, match=message):
        load_config("paper", ["data.teacher_grid=[24, 24, 20]", *overrides])


def test_missing_file_names_the_configs(tmp_path):
    with pytest.raises(ConfigError, match=r"no config file .*paper"):
        load_config(tmp_path / "nope.yaml")


def test_bad_key_in_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  epochs: 2\n  epoch_size: 10\n")
    with pytest.raises(ConfigError, match=r"train.epoch_size"):
        load_config(path)


def test_a_checkpoint_from_before_a_new_key_resumes_with_its_default():
    from training.trainer.loop import Trainer

    saved = load_config("tiny").to_dict()
    del saved["train"]["sigma_grad"]  # written before train.sigma_grad existed
    trainer = Trainer.__new__(Trainer)
    trainer.config = load_config("tiny")
    trainer._check_resume(saved)  # the default reproduces the old behaviour: no error
    trainer.config = load_config("tiny", ["train.loss=l1"])
    with pytest.raises(ValueError, match="different recipe"):
        trainer._check_resume(saved)


def test_progress_bar_defaults_to_terminals_only():
    assert load_config("tiny").train.progress == "auto"
    assert load_config("tiny", ["train.progress=true"]).train.progress is True
    assert load_config("tiny", ["train.progress=false"]).train.progress is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.effects={foo: true}", "unknown effect 'foo'"),
        ("data.effects=5", "data.effects must be dict or str"),
        ("data.effects={sky: {scale: [0, 1], x: 1}}", "effect 'sky'"),
    ],
)
def test_bad_engine_effects_fail_before_training(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


def test_engine_effects_reach_the_simulator(etc_dir):
    from training.engine.effects import Effects
    from training.engine.sources import build_source

    config = load_config("tiny", ["data.effects=default", f"data.etc_dir={etc_dir}"])
    # "default" is recorded as what it means in this version, so a run says what it drew
    assert config.to_dict()["data"]["effects"] == Effects.default().to_dict()
    source = build_source(config)
    assert set(source.simulator.effects.effects) == {
        "lsf",
        "wavelength",
        "background",
        "extinction",
        "telluric",
        "sky",
        "cosmic_rays",
        "calibration",
        "sigma_scale",
    }
    assert not build_source(
        load_config("tiny", [f"data.etc_dir={etc_dir}"])
    ).simulator.effects.enabled
