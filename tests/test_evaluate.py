"""The evaluation command end to end on a miniature (tiny N, coarse posterior): the report code
runs in CI, so it cannot rot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import Table

from specvit.inference.flags import PredictFlag
from training.cli.evaluate import main
from training.evaluation.compare import crlb_r2, load_predictions
from training.evaluation.model_scores import exact_summary


def test_crlb_r2_matches_its_definition():
    true = np.array([1.0, 2.0, 3.0, 4.0])  # variance 1.25
    crlb = np.array([0.25, 0.5, 2.0, 5.0])
    median, population = crlb_r2(crlb, true)
    capped = np.minimum(crlb, 1.25)
    assert median == pytest.approx(np.median(1 - capped / 1.25))
    assert population == pytest.approx(1 - capped.mean() / 1.25)
    assert crlb_r2(crlb[:1], true[:1]) == (None, None)


def test_miniature_report_end_to_end(tmp_path, etc_dir):
    tracked = tmp_path / "docs_untouched"
    tracked.mkdir()
    args = [
        f"--etc-dir={etc_dir}",
        f"--eval-set-dir={tmp_path / 'bench'}",
        "--n-test=48",
        "--n-val=24",
        "--grid", "6", "6", "5",
        "--samples=16",
        "--rounds=2",
        "--baselines=ridge,template,mlp",
        "--n-train=256",
        "--epochs=1",
        "--scaling", "128", "256",
        "--scaling-methods=ridge,specvit",
        "--scaling-max=specvit=128",
        "--specvit-steps=2",
        f"--work={tmp_path / 'work'}",
    ]  # fmt: skip
    out = main(args)  # no --report: nothing written outside --work
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench", "docs_untouched", "work"]
    assert set(out["scores"]) == {"ridge", "template", "mlp", "Bayes-optimal"}
    log_g = out["scores"]["template"]["overall"]["metrics"]["log_g"]
    assert {"r2", "efficiency", "coverage_1sigma", "bayes_r2"} <= set(log_g)
    assert [(r["method"], r["n_train"]) for r in out["scaling"]] == [
        ("ridge", 128),
        ("specvit", 128),
        ("ridge", 256),
        ("specvit", 256),
    ]
    assert out["scaling"][-1]["missing"] and "missing" not in out["scaling"][1]
    saved = json.loads(next((tmp_path / "work").glob("*/scores.json")).read_text())
    assert saved["scores"]["ridge"] == out["scores"]["ridge"]

    # A saved prediction file scores like the method it came from; the report gets written.
    pred_file = next((tmp_path / "work").glob("*/predictions/ridge-n256.npz"))
    report = tmp_path / "report"
    again = main([*args, f"--predictions={pred_file}", f"--report={report}"])
    assert again["scores"]["ridge"] == out["scores"]["ridge"]  # cached predictions reused
    text = (report / "index.md").read_text()
    assert "## log g: efficiency" in text and "| Bayes-optimal |" in text
    assert "| specvit | " in text and "| missing |" in text
    for png in ("r2_vs_snr", "efficiency_vs_snr", "scaling", "sigma_calibration"):
        assert (report / f"{png}.png").stat().st_size > 1000
    assert (report / "residuals_teff_logg.png").exists()
    with pytest.raises(ValueError, match="predictions must be"):
        load_predictions(pred_file, 47)


def test_exact_mode_is_scored_with_its_effective_sample_sizes(tmp_path, etc_dir):
    """`--model … --exact` scores the model in both modes and records exact mode's ESS
    distribution and LOW_ESS rate beside its scores."""
    args = [
        f"--etc-dir={etc_dir}",
        f"--eval-set-dir={tmp_path / 'bench'}",
        "--n-test=24",
        "--n-val=24",
        "--grid", "6", "6", "5",
        "--samples=16",
        "--rounds=2",
        "--model=specvit/pretrained/specvit-tiny-pfs",
        "--exact",
        f"--work={tmp_path / 'work'}",
    ]  # fmt: skip
    out = main(args)
    network, exact = (out["methods"][f"SpecViT (specvit-tiny-pfs{m})"] for m in ("", ", exact"))
    assert not network["exact"] and "ess_median" not in network
    assert exact["exact"] and 0 < exact["ess_p5"] <= exact["ess_median"] <= 256
    assert 0.0 <= exact["low_ess_fraction"] <= 1.0


def test_exact_summary_reads_the_ess_and_the_low_ess_flag():
    table = Table(
        {
            "ess": np.array([1.0, 5.0, 50.0, 100.0, 200.0]),
            "flags": np.array([int(PredictFlag.LOW_ESS), int(PredictFlag.LOW_ESS), 0, 0, 1]),
        }
    )
    summary = exact_summary(table)
    assert summary["ess_median"] == 50.0 and summary["low_ess_fraction"] == 0.4
    assert summary["ess_p5"] == np.quantile(table["ess"], 0.05)
    # a spectrum predict could not read has no ESS: left out of the ESS, counted in the rate
    table.add_row({"ess": np.nan, "flags": int(PredictFlag.TOO_FEW_PIXELS)})
    summary = exact_summary(table)
    assert summary["ess_median"] == 50.0 and summary["low_ess_fraction"] == 2 / 6


@pytest.mark.parametrize(
    ("table", "match"),
    [
        (Table({"flags": np.zeros(3, dtype=int)}), "no 'ess' column"),
        (Table({"ess": np.full(2, np.nan), "flags": np.zeros(2, dtype=int)}), "no spectrum"),
    ],
)
def test_exact_summary_refuses_a_table_without_effective_sample_sizes(table, match):
    with pytest.raises(ValueError, match=match):
        exact_summary(table)
