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

from training.checkpoint import latest_checkpoint, load_checkpoint

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


def test_resume_refuses_a_changed_recipe(tmp_path, etc_dir):
    from training.train import main

    out = tmp_path / "run"
    args = _args(out, etc_dir)
    assert main([*args, "train.max_steps=2", "train.checkpoint_every=1"]) == 0
    assert main(["--resume", str(out), "optim.lr=1e-2"]) == 2
