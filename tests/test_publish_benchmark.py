"""training/publish.py's σ calibration and benchmark tables, on a miniature benchmark set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import specvit
from training.benchmark import BenchmarkSettings, generate, read_benchmark
from training.calibration import ONE_SIGMA
from training.model_scores import predict_benchmark, score_benchmark, score_tables
from training.publish import benchmark_section, calibrate

#: A miniature posterior (coarse grid, few samples): seconds, not minutes.
TINY = dict(grid=(6, 6, 5), n_samples=16, n_rounds=2)


@pytest.fixture(scope="module")
def bench(tmp_path_factory, etc_dir):
    path = tmp_path_factory.mktemp("bench") / "v.h5"
    generate(BenchmarkSettings("validation", 60, **TINY), path, etc_dir, log=lambda _: 0)
    return {**read_benchmark(path), "path": str(path)}


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
    _, raw = predict_benchmark(gaussian_model, bench)
    model, record = calibrate(gaussian_model, [bench])
    assert model is not gaussian_model and not gaussian_model.config.sigma_scale
    mean, sigma = predict_benchmark(model, bench)
    factors = np.array(model.config.sigma_scale)
    np.testing.assert_allclose(sigma / raw, np.broadcast_to(factors, raw.shape), rtol=1e-5)
    inside = (np.abs(bench["labels"] - mean) < sigma).mean(axis=0)
    np.testing.assert_allclose(inside, ONE_SIGMA, atol=1.5 / len(mean))  # a quantile of 60 stars
    assert record["n"] == 60 and record["sets"] == ["v.h5"]
    assert list(record["sigma_scale"]) == ["T_eff", "log_g", "M_H"]
    assert record["sigma_scale"]["log_g"] == pytest.approx(factors[1])
    # calibrating a calibrated model changes (almost) nothing: the factors multiply
    again, _ = calibrate(model, [bench])
    np.testing.assert_allclose(again.config.sigma_scale, factors, rtol=0.02)


def test_calibration_needs_a_gaussian_head_and_a_set(bench, gaussian_model):
    point = specvit.create_model("specvit_tiny", label_names=("log_g",), label_shift=(3.0,))
    with pytest.raises(ValueError, match="Gaussian head"):
        calibrate(point, [bench])
    with pytest.raises(ValueError, match="at least one"):
        calibrate(gaussian_model, [])


def test_score_tables_show_every_nonempty_bin_and_metric(bench, gaussian_model):
    result = score_benchmark(gaussian_model, bench)
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
        "benchmarks": {
            "v.h5": {"settings": bench["settings"], "snr_range": [1.0, 9.0], "score": result}
        }
    }
    section = benchmark_section(record)
    assert "### Test set `v.h5`" in section and "S/N 1.0–9.0" in section
    assert benchmark_section({}) == ""
