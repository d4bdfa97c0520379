"""Training from HDF5 shards written by make_dataset.py, with fresh noise every step."""

from __future__ import annotations

import torch

from training.cli.make_dataset import main as make_dataset
from training.cli.train import main as train
from training.engine.sources import ShardSource
from training.trainer.checkpoint import load_checkpoint
from training.trainer.config import load_config


def test_train_from_shards(tmp_path, etc_dir):
    data = tmp_path / "data"
    make_dataset(
        [
            *("--out", str(data), "--n-train", "160", "--shard-size", "96"),
            *("--n-val", "32", "--n-test", "8", "--etc-dir", str(etc_dir)),
        ]
    )
    args = [
        "--config",
        "tiny",
        f"out_dir={tmp_path / 'run'}",
        "data.source=hdf5",
        f"data.train_path={data}/train_*.h5",
        f"data.val_path={data}/validation.h5",
        "data.n_val=32",
        "train.batch_size=32",
        "train.epochs=2",
        "train.progress=false",
    ]
    assert train(args) == 0
    # 96 + 64 spectra in blocks of 32: 3 + 2 blocks, 5 steps per epoch
    assert load_checkpoint(tmp_path / "run" / "checkpoints")["step"] == 10

    source = ShardSource(load_config("tiny", args[2:]))
    assert source.steps_per_epoch(32, 1) == 5
    a, again = source.train_batch(0, 0, 1, 32), source.train_batch(0, 0, 1, 32)
    assert torch.equal(a["flux"], again["flux"])  # a step is a pure function of its number
    blocks = [source.train_batch(s, 0, 1, 32) for s in range(5, 10)]  # epoch 1: same blocks
    same = next(b for b in blocks if torch.equal(b["labels"], a["labels"]))
    assert torch.equal(same["error"], a["error"])
    assert not torch.equal(same["flux"], a["flux"])  # fresh noise each epoch
    assert len(source.train_labels()) == 160
