"""Resume: a run killed with SIGKILL halfway and resumed ends bit-identical to a straight run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training.trainer.checkpoint import latest_checkpoint, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "training" / "train.py")
STEPS = 40


def _args(out: Path, etc_dir: Path) -> list[str]:
    return [
        "--config",
        "tiny",
        f"out_dir={out}",
        f"data.etc_dir={etc_dir}",
        f"data.n_train={STEPS * 16}",
        "data.n_val=32",
        "train.epochs=1",
        "train.batch_size=16",
        "train.precision=bf16",
        f"train.checkpoint_every={STEPS // 2}",
        "train.ema_decay=0.9",
        "model.overrides.dropout=0.1",
        "train.progress=false",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.slow  # ≈ 37 s on the shared 2-core machine (two training processes)
def test_sigkill_then_resume_is_bit_identical(tmp_path, etc_dir):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run([sys.executable, TRAIN, *_args(straight, etc_dir)], env=_env(), check=True)

    proc = subprocess.Popen(
        [sys.executable, TRAIN, *_args(killed, etc_dir)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    half = killed / "checkpoints" / f"step_{STEPS // 2:08d}.pt"
    deadline = time.monotonic() + 120
    while not half.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    stopped_at = load_checkpoint(latest_checkpoint(killed / "checkpoints"))["step"]
    assert stopped_at == STEPS // 2, "the run finished before it could be killed"

    resumed = subprocess.run(
        [sys.executable, TRAIN, "--resume", str(killed)], env=_env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(straight / "checkpoints"), load_checkpoint(killed / "checkpoints")
    assert a["step"] == b["step"] == STEPS
    for part in ("model", "ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs"
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for idx, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][idx]["exp_avg_sq"])
    assert json.dumps(a["val_metrics"]) == json.dumps(b["val_metrics"])  # NaN-aware


def test_a_checkpoint_written_before_the_layout_change_resumes_bit_exactly(tmp_path, etc_dir):
    """The layout change renamed one run-config key (``data.benchmark_val`` → ``data.val_set``);
    a checkpoint holds plain tensors and dicts (no class paths), so that key is all that tells
    an older checkpoint apart. Written under the old name, it resumes to the same bits."""
    from training.cli.train import main

    steps = 8
    small = [f"data.n_train={steps * 16}", f"train.checkpoint_every={steps // 2}"]
    assert main([*_args(tmp_path / "straight", etc_dir), *small]) == 0
    old = tmp_path / "old"
    assert main([*_args(old, etc_dir), *small, f"train.max_steps={steps // 2}"]) == 0
    half = latest_checkpoint(old / "checkpoints")
    state = load_checkpoint(half)
    data = state["run_config"]["data"]
    data["benchmark_val"] = data.pop("val_set")  # as the code before the change wrote it
    torch.save(state, half)
    assert "val_set" not in load_checkpoint(half)["run_config"]["data"]
    assert main(["--resume", str(old), "train.max_steps=0"]) == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoints")
    b = load_checkpoint(old / "checkpoints")
    assert a["step"] == b["step"] == steps
    for part in ("model", "ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs"
    for idx, moments in a["optimizer"]["state"].items():
        assert torch.equal(moments["exp_avg_sq"], b["optimizer"]["state"][idx]["exp_avg_sq"])
    assert b["run_config"]["data"]["val_set"] is None  # read under its new name


def test_resume_refuses_a_changed_recipe(tmp_path, etc_dir):
    from training.cli.train import main

    out = tmp_path / "run"
    args = _args(out, etc_dir)
    assert main([*args, "train.max_steps=2", "train.checkpoint_every=1"]) == 0
    assert main(["--resume", str(out), "optim.lr=1e-2"]) == 2


def test_warm_start_takes_the_source_weights_and_normalisation_with_a_new_schedule(
    tmp_path, etc_dir
):
    from training.cli.train import main, resolve_run
    from training.engine.sources import build_source
    from training.trainer.loop import Trainer

    first = tmp_path / "first"
    assert main([*_args(first, etc_dir), "train.max_steps=2", "train.checkpoint_every=1"]) == 0
    source = load_checkpoint(first / "checkpoints")
    second = [
        *_args(tmp_path / "second", etc_dir),
        "seed=43",
        f"train.init_from={first}/checkpoints",
    ]
    config, _ = resolve_run("tiny", second[2:], None)
    trainer = Trainer(config, build_source(config))
    assert trainer.step == 0 and trainer.scheduler.last_epoch == 0
    assert trainer.model.config.label_shift == tuple(source["model_config"]["label_shift"])
    for key, value in trainer.model.state_dict().items():  # the EMA weights, not the raw ones
        assert torch.equal(value, source["ema"][key]), key
    assert any(not torch.equal(source["ema"][k], source["model"][k]) for k in source["model"])
    # it trains, and its checkpoints say where it started
    assert main([*second, "train.max_steps=1", "train.checkpoint_every=1"]) == 0
    warm = load_checkpoint(tmp_path / "second" / "checkpoints")
    assert warm["step"] == 1 and warm["run_config"]["train"]["init_from"].endswith("checkpoints")
    # another architecture is refused before training, naming the difference
    other = resolve_run("tiny", [*second[2:], "model.overrides.depth=1"], None)[0]
    with pytest.raises(ValueError, match=r"another model than this recipe.*depth"):
        Trainer(other, build_source(other))
    other = resolve_run("tiny", [*second[2:], "label_norm=minmax"], None)[0]
    with pytest.raises(ValueError, match=r"another model than this recipe.*label_norm"):
        Trainer(other, build_source(other))
    # dropout is the new run's to choose: it does not change the weights
    other = resolve_run("tiny", [*second[2:], "model.overrides.dropout=0.0"], None)[0]
    assert Trainer(other, build_source(other)).model.config.dropout == 0.0


@pytest.mark.slow  # compiling the tiny model takes ≈ 30–60 s on 2 shared cores
def test_compiled_training_steps_match_the_eager_ones(tmp_path, etc_dir):
    from training.cli.train import resolve_run
    from training.engine.batches import StepBatches
    from training.engine.sources import build_source
    from training.trainer.loop import Trainer

    trainers = []
    for flag in ("false", "true"):
        config, _ = resolve_run(
            "tiny",
            # no dropout: compiled code draws its masks from another random stream
            [
                *_args(tmp_path / flag, etc_dir)[2:],
                "model.overrides.dropout=0.0",
                f"train.compile={flag}",
            ],
            None,
        )
        trainers.append(Trainer(config, build_source(config)))
    eager, compiled = trainers
    assert compiled.step_model is not compiled.model  # the step really runs the compiled module
    batches = StepBatches(eager.source, eager.model.config, 0, 1, 16)
    for step in range(3):
        losses = [t.train_step(batches[step]) for t in trainers]
        # float rounding differs; AdamW's first steps (≈ ±lr per weight) amplify it a little
        assert losses[0] == pytest.approx(losses[1], rel=2e-3), step
    # Adam moves a weight by ≈ lr whatever its gradient's size, so a near-zero gradient whose
    # sign rounds the other way flips a single weight by ≈ 2 lr: count weights apart by > lr / 2
    lr, other = eager.config.optim.lr, compiled.model.state_dict()
    apart = torch.cat([(other[k] - v).abs().flatten() for k, v in eager.model.state_dict().items()])
    assert (apart > lr / 2).float().mean() < 0.01
