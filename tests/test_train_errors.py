"""The command line fails early and clearly: bad config keys and values, run folders that cannot
be written, damaged checkpoints (exit status 2, before training), non-finite losses (3)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

from training.cli.train import main
from training.trainer.checkpoint import latest_checkpoint, load_checkpoint


def test_bad_key_exits_2_with_the_key(capsys):
    assert main(["--config", "tiny", "optim.learning_rate=1e-3"]) == 2
    assert "optim.learning_rate" in capsys.readouterr().err


def test_no_config_no_resume_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        main([])
    assert "--config" in capsys.readouterr().err


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, etc_dir, capsys):
    status = main(
        [
            "--config",
            "tiny",
            f"out_dir={tmp_path}",
            f"data.etc_dir={etc_dir}",
            "data.n_val=16",
            "train.batch_size=16",
            "train.precision=fp32",
            "train.checkpoint_every=1",
            "train.progress=false",
            "optim.lr=1e30",  # one AdamW step moves every weight by ~1e30: the next loss is NaN
            "optim.clip_grad_norm=null",
        ]
    )
    err = capsys.readouterr().err
    assert status == 3, err
    assert "non-finite training loss" in err
    last = latest_checkpoint(tmp_path / "checkpoints")
    assert str(last) in err
    assert load_checkpoint(last)["step"] < 4


def _tiny(out: Path, etc_dir: Path | str, *more: str) -> list[str]:
    """A one-step run of the tiny recipe (seconds)."""
    return [
        "--config",
        "tiny",
        f"out_dir={out}",
        f"data.etc_dir={etc_dir}",
        "data.n_train=32",
        "data.n_val=16",
        "train.epochs=1",
        "train.batch_size=16",
        "train.max_steps=1",
        "train.checkpoint_every=1",
        *more,
    ]


@pytest.fixture(scope="module")
def finished_step(tmp_path_factory, etc_dir) -> tuple[Path, str]:
    """A run folder after one step, and what the run wrote to stderr (not a terminal)."""
    out = tmp_path_factory.mktemp("run") / "run"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(_tiny(out, etc_dir)) == 0
    return out, err.getvalue()


def _refused(args: list[str], capsys) -> str:
    """Run the command: exit status 2, one clear message and no traceback; the message."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.prior.foo=1", r"unknown key\(s\) \['data.prior.foo'\]"),
        ("train.batch_size=-32", r"train.batch_size >= 1, got 1 and -32\n"),
        ("train.max_cpu_minutes=.nan", "train.max_cpu_minutes must be a finite number"),
    ],
)
def test_bad_values_exit_2_before_training(tmp_path, capsys, override, message):
    err = _refused(_tiny(tmp_path / "run", "null", override), capsys)
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_out_dir_that_is_a_file_exits_2_before_training(tmp_path, etc_dir, capsys):
    (tmp_path / "file").write_text("not a folder")
    err = _refused(_tiny(tmp_path / "file", etc_dir), capsys)
    assert f"out_dir={tmp_path / 'file'}: run folder" in err and "is a file" in err
    err = _refused(_tiny(tmp_path / "file" / "run", etc_dir), capsys)
    assert "cannot be made" in err


def _damaged(good: Path, how: str, out: Path) -> Path:
    """A run folder whose one checkpoint is ``good`` damaged as ``how`` says."""
    path = out / "checkpoints" / good.name
    path.parent.mkdir(parents=True)
    if how == "truncated":
        raw = good.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
        return out
    state = load_checkpoint(good)
    if how == "a bare tensor":
        state = torch.zeros(3)
    elif how == "no run_config":
        del state["run_config"]
    elif how == "step -5":
        state["step"] = -5
    elif how == "step 10**12":
        state["step"] = 10**12
    elif how == "another model's weights":
        state["model"] = {k: v[..., :1] for k, v in state["model"].items()}
    elif how == "unknown weights":
        state["model"] = {"encoder.weight": torch.zeros(2)}
    torch.save(state, path)
    return out


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "cannot read checkpoint .*: truncated, damaged or not a torch file"),
        ("a bare tensor", "is not a training checkpoint: it holds a Tensor"),
        ("no run_config", r"is not a training checkpoint: it has no \['run_config'\]"),
        ("step -5", "is damaged: its step -5 is not an integer >= 0"),
        ("step 10**12", "its step 1000000000000 lies beyond the run's 2 steps"),
        ("another model's weights", "'model' holds another model's weights .* shape mismatches"),
        ("unknown weights", r"missing keys .*; 1 unexpected keys \(encoder.weight\)"),
    ],
)
def test_damaged_checkpoint_exits_2_before_training(finished_step, tmp_path, capsys, how, message):
    out, _ = finished_step
    run = _damaged(latest_checkpoint(out / "checkpoints"), how, tmp_path / "run")
    err = _refused(["--resume", str(run)], capsys)
    assert re.search(message, err), err
    assert not (run / "metrics.jsonl").exists()  # nothing trained, nothing logged


def test_progress_bar_only_on_a_terminal_unless_asked(finished_step, tmp_path, etc_dir):
    _, quiet = finished_step  # the default, train.progress=auto, with stderr not a terminal
    assert "step/s" not in quiet and "s/step" not in quiet, quiet
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(_tiny(tmp_path / "run", etc_dir, "train.progress=true")) == 0
    assert "1/1" in err.getvalue(), err.getvalue()  # asked for: a bar even in a log file
