"""The command line fails early and clearly: bad config keys, non-finite losses."""

from __future__ import annotations

from training.cli.train import main
from training.trainer.checkpoint import latest_checkpoint, load_checkpoint


def test_bad_key_exits_2_with_the_key(capsys):
    assert main(["--config", "tiny", "optim.learning_rate=1e-3"]) == 2
    assert "optim.learning_rate" in capsys.readouterr().err


def test_no_config_no_resume_is_a_usage_error(capsys):
    import pytest

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
