"""The run folder (training.trainer.rundir): the one reader and writer of its files."""

import pytest

from training.trainer.checkpoint import save_checkpoint
from training.trainer.rundir import RunDir


def test_records_round_trip_and_a_half_written_last_line_is_left_out(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config({"train": {"epochs": 3, "batch_size": 8}})
    run.append({"kind": "train", "step": 1, "epoch": 0.25, "loss": float("nan")})
    run.append({"kind": "val", "step": 4, "epoch": 1.0})
    assert run.records()[0]["loss"] is None  # strict JSON
    with open(run.metrics_path, "a", encoding="utf-8") as handle:
        handle.write('{"kind": "val", "st')  # a run killed mid-line
    assert [r["step"] for r in run.records()] == [1, 4]
    assert run.steps_per_epoch() == 4
    assert run.total_steps() == 12
    assert run.spectra(4) == 32


def test_a_validation_logged_twice_counts_once_the_later(tmp_path):
    run = RunDir(tmp_path)
    run.write_config({"train": {"epochs": 1, "batch_size": 1}})
    for step, value in ((2, "first"), (4, "x"), (2, "again")):
        run.append({"kind": "val", "step": step, "epoch": step / 4, "note": value})
    assert [(r["step"], r["note"]) for r in run.validations()] == [(2, "again"), (4, "x")]


def test_missing_files_name_the_folder(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no config\.yaml in"):
        run.config()
    with pytest.raises(FileNotFoundError, match=r"no metrics\.jsonl in"):
        run.records()
    assert run.latest_checkpoint() is None


def test_checkpoints_are_found_in_the_checkpoint_folder(tmp_path):
    run = RunDir(tmp_path)
    for step in (3, 12):
        save_checkpoint({"step": step}, run.checkpoint_dir, step, keep=5)
    assert run.latest_checkpoint().name == "step_00000012.pt"
    assert [p.name for p in run.checkpoints()] == ["step_00000003.pt", "step_00000012.pt"]


def test_the_learning_curve_shows_a_record_of_the_older_metrics_layout_as_dashes(tmp_path):
    from training.evaluation.learning_curve import curve_table

    run = RunDir(tmp_path)
    run.write_config({"train": {"epochs": 2, "batch_size": 10}})
    old = {"all": {"log_g": {"r2": 0.1}}}  # the layout before the scorer's
    new = {
        "labels": ["log_g"],
        "overall": {"metrics": {"log_g": {"r2": 0.5}}},
        "snr": [{"bin": "[2, 3)", "n": 4, "metrics": {"log_g": {"r2": 0.25}}}],
    }
    run.append({"kind": "val", "step": 5, "epoch": 1.0, "cpu_seconds": 60, "metrics": old})
    run.append({"kind": "val", "step": 10, "epoch": 2.0, "cpu_seconds": 120, "metrics": new})
    rows = curve_table(tmp_path).splitlines()
    assert rows[2] == "| 5 | 0.00 M | 1 | – | – |"
    assert rows[3] == "| 10 | 0.00 M | 2 | 0.500 | 0.25 |"
