"""End-to-end: a tiny model trained on the real data engine, published, loaded and used."""

from __future__ import annotations

import json

import numpy as np
import pytest

import specvit
from specvit.labels import LABEL_NAMES as LABELS
from training.cli.train import main
from training.engine.sources import build_source
from training.evaluation.scoring import SNR_BIN_EDGES, score
from training.publish import publish
from training.trainer.checkpoint import load_checkpoint
from training.trainer.config import load_config

#: The module trains a tiny model first (≈ 33 s on the shared 2-core machine).
pytestmark = pytest.mark.slow


def _no_nan(token: str):
    raise ValueError(f"not strict JSON: {token}")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, etc_dir):
    out = tmp_path_factory.mktemp("tiny")
    overrides = [f"out_dir={out}", f"data.etc_dir={etc_dir}", "train.progress=false"]
    assert main(["--config", "tiny", *overrides]) == 0
    return out, load_config("tiny", overrides)


def _validations(out):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "val"]


def test_tiny_run_validates_every_epoch_per_snr_bin(tiny_run):
    val = _validations(tiny_run[0])
    assert len(val) == 4  # one validation per epoch
    last = val[-1]["metrics"]
    assert [g["low"] for g in last["snr"]] == list(SNR_BIN_EDGES[:-1])
    assert set(last["overall"]["metrics"]) == set(LABELS) and last["overall"]["n"] == 256
    assert sum(g["n"] for g in last["snr"]) > 200
    assert "efficiency" not in last["overall"]["metrics"]["log_g"]  # no evaluation-set file given


def test_tiny_run_learns(tiny_run):
    val = _validations(tiny_run[0])
    first, last = (v["metrics"]["overall"]["metrics"] for v in (val[0], val[-1]))
    assert last["T_eff"]["r2"] > 0.5, last
    assert last["T_eff"]["rmse"] < first["T_eff"]["rmse"]


def test_published_folder_loads_and_predicts_like_training(tiny_run, tmp_path):
    out, config = tiny_run
    folder = publish(out / "checkpoints", tmp_path / "model")
    files = {"model.safetensors", "config.json", "training_args.json", "README.md"}
    assert {p.name for p in folder.iterdir()} >= files
    card = (folder / "README.md").read_text()
    assert "## Training data" in card and "| [15, ∞) |" in card
    model = specvit.load(folder)
    assert model.config.label_names == LABELS
    assert "preset" not in (folder / "config.json").read_text()  # the run is not in config.json
    record = json.loads((folder / "training_args.json").read_text(), parse_constant=_no_nan)
    assert record["run_config"]["model"]["preset"] == "specvit_tiny"
    assert record["step"] == load_checkpoint(out / "checkpoints")["step"]
    assert model.config.domain == build_source(config).prior.domain()  # the run's prior

    validation = build_source(config).validation_set()
    table = specvit.predict(
        validation["flux"].numpy(), validation["error"].numpy(), model=folder, device="cpu"
    )
    pred = np.stack([np.asarray(table[n], dtype=np.float64) for n in LABELS], axis=1)
    ours = score(validation["labels"], pred, validation["snr"], LABELS)["overall"]["metrics"]
    saved = load_checkpoint(out / "checkpoints")["val_metrics"]["metrics"]["overall"]["metrics"]
    for name in LABELS:  # inference sees exactly what training saw
        assert ours[name]["rmse"] == pytest.approx(saved[name]["rmse"], rel=1e-4)


def test_publish_scores_on_test_sets_into_card_and_report(tiny_run, tmp_path, etc_dir):
    from training.evaluation.eval_sets import EvalSetSettings, generate

    out, _ = tiny_run
    test_set = tmp_path / "t.h5"
    settings = EvalSetSettings("test", 40, grid=(6, 6, 5), n_samples=16, n_rounds=2)
    generate(settings, test_set, etc_dir, log=lambda _: 0)
    report = tmp_path / "docs" / "model.md"
    folder = publish(out / "checkpoints", tmp_path / "model", test_sets=[test_set], report=report)
    card = (folder / "README.md").read_text()
    assert "## Test sets" in card and "### Test set `t.h5`" in card
    assert "## σ calibration" not in card  # a point head: nothing to calibrate
    assert "* S/N (median flux/σ per pixel) of its training spectra:" in card
    record = json.loads((folder / "training_args.json").read_text(), parse_constant=_no_nan)
    scored = record["test_sets"]["t.h5"]
    assert scored["score"]["overall"]["n"] == 40 and scored["settings"]["n"] == 40
    assert "efficiency" in scored["score"]["overall"]["metrics"]["log_g"]
    page = report.read_text()
    assert "### Test set `t.h5`" in page and f"step {record['step']}" in page
    # the published folder, scored again: the same weights, record and tables
    again = publish(folder, tmp_path / "again", test_sets=[test_set], report=tmp_path / "again.md")
    for name in ("model.safetensors", "config.json", "training_args.json", "README.md"):
        assert (again / name).read_bytes() == (folder / name).read_bytes(), name
    assert (tmp_path / "again.md").read_text().split("\n")[8:] == page.split("\n")[8:]


def test_model_scores_script_scores_checkpoints_on_an_eval_set(tiny_run, tmp_path, etc_dir, capsys):
    from training.cli.score_checkpoints import main as score_main
    from training.evaluation.eval_sets import EvalSetSettings, generate

    out, _ = tiny_run
    bench = tmp_path / "v.h5"
    settings = EvalSetSettings("validation", 30, grid=(6, 6, 5), n_samples=16, n_rounds=2)
    generate(settings, bench, etc_dir, log=lambda _: 0)
    (checkpoint,) = sorted((out / "checkpoints").glob("step_*.pt"))[-1:]
    score_main([str(checkpoint), "--eval-set", str(bench)])
    printed = capsys.readouterr().out
    assert f"{checkpoint}: step " in printed and "model: T_eff " in printed
    assert "log_g [" in printed
    with pytest.raises(SystemExit, match="no 'ema' weights"):  # the tiny run keeps no EMA
        score_main([str(checkpoint), "--eval-set", str(bench), "--weights", "ema"])


def test_learning_curve_has_one_row_per_validation_the_later_of_a_repeat(tiny_run, tmp_path):
    import shutil

    from training.cli.learning_curve import main as curve_main
    from training.evaluation.learning_curve import curve_table

    out, _ = tiny_run
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(out / "config.yaml", run / "config.yaml")
    val = _validations(out)
    repeat = json.loads(json.dumps(val[-1]))  # a resumed run logs the same step again
    repeat["metrics"]["overall"]["metrics"]["T_eff"]["r2"] = 0.123456
    older = json.loads(json.dumps(val[0]))  # a record from before cpu_seconds and a bin
    del older["cpu_seconds"], older["metrics"]["snr"][0]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    records = [older if r == val[0] else r for r in records]
    text = "".join(json.dumps(r) + "\n" for r in records)
    # and a run still writing its next line
    (run / "metrics.jsonl").write_text(text + json.dumps(repeat) + "\n" + '{"kind": "va')
    rows = curve_table(run).splitlines()
    assert rows[0].startswith("| step | spectra | CPU-min | T_eff r2 | log_g r2 | M_H r2 |")
    assert len(rows) == 2 + len(val) == 6  # no efficiency: the tiny run has no evaluation set
    steps = [int(r.split(" | ")[0].strip("| ")) for r in rows[2:]]
    assert steps == [v["step"] for v in val]
    assert rows[-1].split(" | ")[3] == "0.123"
    first = val[0]["metrics"]["overall"]["metrics"]["log_g"]["r2"]
    assert rows[2].split(" | ")[4] == f"{first:.3f}"
    assert rows[2].split(" | ")[2] == "–"  # no CPU time logged
    if val[0]["metrics"]["snr"][0]["n"]:  # the dropped bin shows as missing
        assert rows[2].split(" | ")[6] == "–"
    assert curve_main([str(tmp_path / "missing")]) == 2
