"""training/publish.py's σ calibration and test-set tables, on a miniature evaluation set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import specvit
from training.evaluation.calibration import ONE_SIGMA
from training.evaluation.eval_sets import read_eval_set
from training.evaluation.model_scores import (
    format_number,
    predict_eval_set,
    score_eval_set,
    score_tables,
    summary_table,
)
from training.publish import calibrate, scores_section

# The models here are deliberately untrained (fresh create_model): these tests check the σ
# calibration's arithmetic and the tables' layout on whatever the model predicts, not the labels,
# so its UntrainedModelWarning is expected. tests/test_models.py asserts that the warning fires.
pytestmark = pytest.mark.filterwarnings("ignore::specvit.UntrainedModelWarning")


@pytest.fixture(scope="module")
def bench(tiny_eval_set):
    path = tiny_eval_set(60)
    # 60 stars make 2 S/N bins of 30 for the calibration's table
    return {**read_eval_set(path), "name": "v.h5"}


@pytest.fixture(scope="module")
def gaussian_model():
    torch.manual_seed(0)
    return specvit.create_model(
        "specvit_tiny",
        label_names=("T_eff", "log_g", "M_H"),
        label_shift=(4875.0, 3.0, -1.0),
        label_scale=(650.0, 1.15, 0.86),
        head="gaussian",
        input_channels="flux+lnsnr",
    ).eval()


def test_calibration_scales_sigma_to_68_percent_coverage(bench, gaussian_model):
    _, raw = predict_eval_set(gaussian_model, bench)
    model, record = calibrate(gaussian_model, [bench])
    assert model is not gaussian_model and not gaussian_model.config.sigma_scale
    mean, sigma = predict_eval_set(model, bench)
    config = model.config
    table = [
        np.interp(np.log(bench["snr"]), np.log(config.sigma_snr_knots), f)
        for f in config.sigma_snr_factors
    ]
    np.testing.assert_allclose(sigma / raw, np.column_stack(table), rtol=1e-5)
    inside = (np.abs(bench["labels"] - mean) < sigma).mean(axis=0)
    # two S/N bins of 30 stars, interpolated between: near 68.3 %, not exactly
    np.testing.assert_allclose(inside, ONE_SIGMA, atol=0.1)
    assert record["n"] == 60 and record["sets"] == ["v.h5"]
    assert list(record["sigma_snr_factors"]) == ["T_eff", "log_g", "M_H"]
    assert record["sigma_snr_factors"]["log_g"] == pytest.approx(config.sigma_snr_factors[1])
    assert record["sigma_snr_knots"] == pytest.approx(config.sigma_snr_knots)
    # calibrating a calibrated model starts again from the head's own σ: the same result
    again, _ = calibrate(model, [bench])
    assert again.config == model.config


def test_calibration_needs_a_gaussian_head_and_a_set(bench, gaussian_model):
    point = specvit.create_model("specvit_tiny", label_names=("log_g",), label_shift=(3.0,))
    with pytest.raises(ValueError, match="Gaussian head"):
        calibrate(point, [bench])
    with pytest.raises(ValueError, match="at least one"):
        calibrate(gaussian_model, [])


def test_score_tables_show_every_nonempty_bin_and_metric(bench, gaussian_model):
    result = score_eval_set(gaussian_model, bench)
    text = score_tables(result)
    for name in ("T_eff", "log_g", "M_H"):
        assert f"**{name}**" in text
    assert "| S/N | N | R² | MAE (K) |" in text and "MAE (dex)" in text
    assert f"| all | {len(bench['snr'])} |" in text
    for group in result["snr"]:
        assert (f"| {group['bin']} | {group['n']} |" in text) == (group["n"] > 0)
    row = next(line for line in text.splitlines() if line.startswith("| all |"))
    eff = result["overall"]["metrics"]["T_eff"]["efficiency"]
    cov = result["overall"]["metrics"]["T_eff"]["coverage_1sigma"]
    assert f"| {eff:.3f} | {cov:.2f} |" in row
    record = {
        "test_sets": {
            "v.h5": {"settings": bench["settings"], "snr_range": [1.0, 9.0], "score": result}
        }
    }
    section = scores_section(record)
    assert "### Test set `v.h5`" in section and "S/N 1.0–9.0" in section
    summary = summary_table(result)
    assert summary in section
    bins = [g for g in result["snr"] if g["n"]]
    assert summary.splitlines()[0] == "| | all | " + " | ".join(g["bin"] for g in bins) + " |"
    m = result["overall"]["metrics"]["log_g"]
    eff_row = next(line for line in summary.splitlines() if line.startswith("| log_g efficiency"))
    assert eff_row.split(" | ")[1] == format_number(m["efficiency"])
    cov_row = next(line for line in summary.splitlines() if line.startswith("| log_g 1σ"))
    expected = f"{m['coverage_1sigma']:.2f} / {m['coverage_2sigma']:.2f}"
    assert cov_row.split(" | ")[1] == expected
    assert len(cov_row.split(" | ")) == len(bins) + 2
    point = specvit.create_model(
        "specvit_tiny",
        label_names=("T_eff", "log_g", "M_H"),
        label_shift=(4875.0, 3.0, -1.0),
        label_scale=(650.0, 1.15, 0.86),
        input_channels="flux+lnsnr",
    ).eval()
    point_summary = summary_table(score_eval_set(point, bench))  # no σ: no coverage rows
    assert "log_g efficiency" in point_summary and "coverage" not in point_summary
    assert scores_section({}) == ""


def test_calibration_set_is_fixed_fresh_spectra_of_the_runs_prior(etc_dir, gaussian_model):
    from specvit.preprocessing import median_snr
    from training.publish import calibration_set
    from training.trainer.config import load_config

    run = load_config("default", [f"data.etc_dir={etc_dir}"]).to_dict()
    spectra = calibration_set(run, 120)
    assert spectra["labels"].shape == (120, 3) and spectra["flux"].shape == (120, 4096)
    again = calibration_set(run, 120)
    assert np.array_equal(spectra["flux"], again["flux"])  # a fixed seed
    snr = median_snr(torch.from_numpy(spectra["flux"]), torch.from_numpy(spectra["error"]))
    np.testing.assert_allclose(spectra["snr"], snr.numpy(), rtol=1e-6)
    assert spectra["snr"].max() > 20 > 3 > spectra["snr"].min()  # HSC-i 17–23, not 20.5–22.5
    faint = load_config("default", [f"data.etc_dir={etc_dir}", "data.prior={mag: [22, 23]}"])
    assert calibration_set(faint.to_dict(), 120)["snr"].max() < 10
    _, record = calibrate(gaussian_model, [spectra])
    assert record["n"] == 120 and "seed" in record["sets"][0]
    with pytest.raises(ValueError, match="engine"):
        calibration_set({**run, "data": {**run["data"], "source": "hdf5"}}, 10)


def test_benchmark_calibration_sets_are_fresh_draws_of_the_judged_distributions(etc_dir):
    from specvit.instrument import PFSNoiseModel
    from training.engine.seeding import TEST_SEED, step_generator
    from training.engine.simulate import DEFAULT_MAG, Prior, Simulator
    from training.publish import benchmark_calibration_sets

    ideal, mixed = benchmark_calibration_sets(64, etc_dir)
    assert ideal["flux"].shape == (64, 4096) and mixed["flux"].shape == (32, 4096)
    again, _ = benchmark_calibration_sets(64, etc_dir)
    assert np.array_equal(ideal["flux"], again["flux"])  # fixed seeds
    assert "faint ideal" in ideal["name"] and "mixed realism" in mixed["name"]
    assert ideal["snr"].max() < 20  # HSC-i 20.5–22.5
    assert not np.allclose(ideal["labels"][:32], mixed["labels"])  # two independent draws
    sim = Simulator(noise=PFSNoiseModel.from_etc(etc_dir), prior=Prior(mag=DEFAULT_MAG))
    test = sim.sample(8, step_generator(TEST_SEED, 0))  # the faint test set's first stars
    assert not np.isin(test["labels"].numpy(), ideal["labels"]).any()
    with pytest.raises(ValueError, match="n >= 2"):
        benchmark_calibration_sets(1, etc_dir)


def test_publish_rejects_bad_options_before_reading_the_checkpoint(tmp_path):
    from training.cli.publish import main
    from training.publish import publish

    missing = tmp_path / "no-such-checkpoint.pt"
    with pytest.raises(ValueError, match="weights must be"):
        publish(missing, tmp_path / "out", weights="latest")
    with pytest.raises(ValueError, match="calibration_spectra must be"):
        publish(missing, tmp_path / "out", calibration_spectra=-5)
    with pytest.raises(ValueError, match="needs calibration spectra"):
        publish(missing, tmp_path / "out", sigma_hidden=8)
    with pytest.raises(ValueError, match="goes with calibration spectra"):
        publish(missing, tmp_path / "out", benchmark_spectra=100)
    with pytest.raises(ValueError, match="benchmark_spectra must be"):
        publish(missing, tmp_path / "out", calibration_spectra=100, benchmark_spectra=-1)
    for bad in (
        ["--calibration-spectra", "-1"],
        ["--calibration-spectra", "0", "--sigma-hidden", "8"],
        ["--calibration-spectra", "0", "--calibration-benchmarks", "100"],
        ["--calibration-benchmarks", "-1"],
        ["--calibration-clean", "0.5"],  # clean spectra of the run's effects: say default
        ["--calibration-effects", "default", "--calibration-clean", "1.5"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([str(missing), str(tmp_path / "out"), *bad])
        assert exit_info.value.code == 2, bad
    assert not (tmp_path / "out").exists()


def test_format_number_marks_missing_values_and_never_writes_minus_zero():
    assert format_number(None) == format_number(float("nan")) == "–"
    assert format_number(-0.0004) == "0.000" and format_number(-0.0006) == "-0.001"
    assert format_number(12.3456, 1) == "12.3"


def test_the_card_names_the_weights_a_run_started_from():
    from training.publish import _warm_start

    assert "`runs/init/a.pt` (`train.init_from`)" in _warm_start({"init_from": "runs/init/a.pt"})
    assert _warm_start({"init_from": None}) == _warm_start({}) == ""
