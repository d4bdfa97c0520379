"""Distributed data parallel: two CPU processes with the gloo backend, launched by torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.trainer.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ≈ 20 s on the shared 2-core machine (torchrun, two ranks)
def test_two_ranks_through_torchrun(tmp_path, etc_dir):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        str(ROOT / "training" / "train.py"),
        "--config",
        "tiny",
        f"out_dir={out}",
        f"data.etc_dir={etc_dir}",
        "data.n_train=256",
        "data.n_val=32",
        "train.epochs=2",
        "train.batch_size=32",
        "train.progress=false",
        "train.log_every=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 rank(s)" in result.stderr + result.stdout
    state = load_checkpoint(out / "checkpoints")
    assert state["step"] == 16  # 2 epochs × 256 / 32: the global batch is split over ranks
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "val" for r in records) == 2
    assert all(r["loss"] is not None for r in records)
