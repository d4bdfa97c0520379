"""The bundled example (examples/data): the README's main job, end to end, without ../shared."""

import importlib.util
from pathlib import Path

import numpy as np
from astropy.table import Table
from click.testing import CliRunner

from specvit import PredictFlag
from specvit.inference.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_SPEC = importlib.util.spec_from_file_location("score_example", EXAMPLES / "score_example.py")
score_example = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(score_example)


def test_demo_predicts_every_example_star_and_scores_it(tmp_path, capsys):
    out = tmp_path / "labels.ecsv"
    data = EXAMPLES / "data" / "pfsCoadd-engine-example.fits"
    model = EXAMPLES / "models" / "specvit-tiny-engine"
    result = CliRunner().invoke(main, [str(data), "-o", str(out), "--model", str(model)])
    assert result.exit_code == 0, result.output
    table, truth = Table.read(out), Table.read(EXAMPLES / "data" / "truth.ecsv")
    assert list(table["objId"]) == list(truth["objId"])  # every id, in file order
    assert (table["n_valid"] < 4096).all()  # the flagged cosmic-ray pixels are masked
    bad = int(PredictFlag.no_result() | PredictFlag.OUT_OF_DOMAIN)
    assert not (table["flags"] & bad).any()  # engine spectra: predicted, and in the domain
    t_err = np.asarray(table["T_eff"]) - np.asarray(truth["T_eff"])
    assert np.sqrt(np.mean(t_err**2)) < 250  # K; spoiled CR pixels unmasked would wreck it
    assert score_example.main([str(out)]) == 0
    printed = capsys.readouterr().out
    assert "48 spectra" in printed and "log_g: R²" in printed


def test_scoring_refuses_a_table_missing_stars_and_bad_arguments(tmp_path, capsys):
    truth = Table.read(EXAMPLES / "data" / "truth.ecsv")
    partial = truth[:10]  # as if specvit-predict had dropped 38 stars
    partial.write(tmp_path / "partial.ecsv")
    assert score_example.main([str(tmp_path / "partial.ecsv")]) == 1
    assert "only 10 of 48" in capsys.readouterr().err
    assert score_example.main([]) == 2


def test_demo_prints_the_cramer_rao_sigma_beside_r2_and_what_the_flags_mean(tmp_path, capsys):
    """make demo's R² alone said nothing of what a good value is (issue 26, case 23)."""
    out = tmp_path / "labels.ecsv"
    data = EXAMPLES / "data" / "pfsCoadd-engine-example.fits"
    assert CliRunner().invoke(main, [str(data), "-o", str(out)]).exit_code == 0  # as make demo
    assert score_example.main([str(out)]) == 0
    printed = capsys.readouterr().out
    table = Table.read(out)
    for name in ("T_eff", "log_g", "M_H"):
        line = next(x for x in printed.splitlines() if x.strip().startswith(f"{name}: R²"))
        median = np.nanmedian(np.asarray(table[f"crlb_{name}"]))
        assert f"Cramér–Rao σ {median:.3g}" in line and "median per star" in line, line
    assert "best σ any unbiased method could reach" in printed
    flags = np.asarray(table["flags"])
    assert f"flags: {np.count_nonzero(flags == 0)} of {len(flags)} stars clean" in printed
    raised = [flag for flag in PredictFlag if (flags & int(flag)).any()]
    assert raised, "the example raises flags (LOW_SNR at least)"
    for flag in raised:
        assert f"{flag.name} ({np.count_nonzero(flags & int(flag))}): {flag.meaning}" in printed
    rows = printed.split("\n\n")[0].splitlines()  # the prediction rows, as before
    assert rows[0].split() == ["objId", "snr"] + [
        f"{n}_{s}" for n in ("T_eff", "log_g", "M_H") for s in ("pred", "true")
    ]
    assert len(rows) == 3 + 5
