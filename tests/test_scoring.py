"""The one scorer: known answers, bins, efficiency, coverage, JSON and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from training.evaluation.scoring import MH_BIN_EDGES, SNR_BIN_EDGES, TEFF_BIN_EDGES, score

LABELS = ("T_eff", "log_g", "M_H")


def test_known_metrics_of_one_label():
    true = np.array([[1.0], [2.0], [3.0], [4.0]])
    pred = np.array([[1.5], [2.0], [2.5], [4.5]])
    out = score(true, pred, np.full(4, 5.0), ["log_g"])
    m = out["overall"]["metrics"]["log_g"]
    assert m["r2"] == pytest.approx(1 - 0.75 / 5.0)
    assert m["mae"] == pytest.approx(0.375)
    assert m["rmse"] == pytest.approx(math.sqrt(0.75 / 4))
    assert m["bias"] == pytest.approx(0.125)
    assert out["units"] == {"log_g": "dex"} and out["overall"]["n"] == 4
    assert "efficiency" not in m and "coverage_1sigma" not in m


def test_snr_bins_are_half_open_with_an_open_top():
    assert SNR_BIN_EDGES == (2, 3, 4, 5, 7, 10, 15, math.inf)
    snr = np.array([1.0, 2.0, 2.99, 3.0, 14.9, 15.0, 1000.0])
    true = np.arange(7.0)[:, None]
    out = score(true, true, snr, ["log_g"])
    assert [g["n"] for g in out["snr"]] == [2, 1, 0, 0, 0, 1, 2]
    assert out["overall"]["n"] == 7  # SNR < 2 counts overall only
    assert [g["bin"] for g in out["snr"]][-1] == "[15, ∞)" and out["snr"][-1]["high"] is None
    assert out["snr"][2]["metrics"]["log_g"]["r2"] is None  # empty bin
    assert out["snr"][1]["metrics"]["log_g"]["r2"] is None  # one star: no spread
    assert out["snr"][0]["median_snr"] == pytest.approx(2.495)


def test_label_bins_use_the_true_labels_and_close_the_box():
    true = np.array([[3750.0, 1.0, -2.5], [4300.0, 2.0, 0.5], [6000.0, 3.0, -0.7]])
    out = score(true, true, np.full(3, 5.0), LABELS)
    assert [g["n"] for g in out["T_eff"]] == [1, 1, 0, 0, 1]
    assert [g["n"] for g in out["M_H"]] == [1, 0, 0, 1, 0, 1]
    assert len(out["T_eff"]) == len(TEFF_BIN_EDGES) - 1 and len(out["M_H"]) == len(MH_BIN_EDGES) - 1
    only_g = score(true[:, 1:2], true[:, 1:2], np.full(3, 5.0), ["log_g"])
    assert "T_eff" not in only_g
    given = score(
        true[:, 1:2], true[:, 1:2], np.full(3, 5.0), ["log_g"], bin_values={"T_eff": true[:, 0]}
    )
    assert [g["n"] for g in given["T_eff"]] == [1, 1, 0, 0, 1] and "M_H" not in given


def test_efficiency_is_the_ratio_to_the_bayes_r2():
    true = np.array([[-1.0], [1.0], [-1.0], [1.0]])  # Σ(y − ȳ)² = 4
    model = true + math.sqrt(0.75)  # Σe² = 3: R² 0.25
    bayes = true - math.sqrt(0.5)  # Σe² = 2: R² 0.5
    m = score(true, model, np.full(4, 3.5), ["log_g"], bayes_mean=bayes)["overall"]["metrics"]
    m = m["log_g"]
    assert m["r2"] == pytest.approx(0.25) and m["bayes_r2"] == pytest.approx(0.5)
    assert m["efficiency"] == pytest.approx(0.5)
    assert m["bayes_rmse"] == pytest.approx(math.sqrt(0.5))
    worse = score(true, model, np.full(4, 3.5), ["log_g"], bayes_mean=true + 2.0)
    assert worse["overall"]["metrics"]["log_g"]["efficiency"] is None  # Bayes R² ≤ 0


def test_coverage_counts_stars_inside_one_and_two_sigma():
    true = np.zeros((3, 1))
    pred = np.array([[0.5], [-1.5], [2.5]])
    bayes = np.array([[0.1], [0.2], [0.3]])
    m = score(
        true,
        pred,
        np.full(3, 8.0),
        ["M_H"],
        sigma=np.ones((3, 1)),
        bayes_mean=bayes,
        bayes_sigma=np.full((3, 1), 0.15),
    )["overall"]["metrics"]["M_H"]
    assert m["coverage_1sigma"] == pytest.approx(1 / 3) and m["coverage_2sigma"] == pytest.approx(
        2 / 3
    )
    assert m["bayes_coverage_1sigma"] == pytest.approx(1 / 3)
    assert m["bayes_coverage_2sigma"] == pytest.approx(2 / 3)  # 0.3 is not < 2 × 0.15


def test_gaussian_errors_give_the_expected_r2_and_coverage():
    rng = np.random.default_rng(1)
    true = rng.uniform(1.0, 5.0, (200_000, 1))  # variance 16/12
    pred = true + rng.normal(0.0, 0.5, true.shape)
    m = score(true, pred, np.full(len(true), 4.0), ["log_g"], sigma=np.full(true.shape, 0.5))
    m = m["overall"]["metrics"]["log_g"]
    assert m["r2"] == pytest.approx(1 - 0.25 / (16 / 12), abs=3e-3)
    assert m["coverage_1sigma"] == pytest.approx(0.6827, abs=3e-3)
    assert m["coverage_2sigma"] == pytest.approx(0.9545, abs=2e-3)


def test_result_is_strict_json():
    true = np.array([[4000.0, 2.0, -1.0], [5000.0, 3.0, 0.0]])
    out = score(true, true + 0.1, np.array([2.5, 40.0]), LABELS, bayes_mean=true)
    text = json.dumps(out, allow_nan=False)  # raises on NaN / inf
    assert json.loads(text)["snr"][-1]["metrics"]["log_g"]["r2"] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pred": np.full((3, 1), np.nan)}, "pred has 3 NaN"),
        ({"pred": np.zeros((2, 1))}, "pred must have shape"),
        ({"snr": np.array([1.0, np.inf, 2.0])}, "snr has 1 NaN or infinite"),
        ({"sigma": np.zeros((3, 1))}, "sigma must be > 0"),
        ({"bayes_sigma": np.ones((3, 1))}, "bayes_sigma needs bayes_mean"),
        ({"names": ["log_g", "log_g"]}, "unique"),
        ({"true": np.zeros(3)}, "true must be"),
    ],
)
def test_bad_input_raises(kwargs, message):
    args = {"true": np.zeros((3, 1)), "pred": np.zeros((3, 1)), "snr": np.ones(3)}
    args["names"] = ["log_g"]
    args.update(kwargs)
    names = args.pop("names")
    with pytest.raises(ValueError, match=message):
        score(args.pop("true"), args.pop("pred"), args.pop("snr"), names, **args)
