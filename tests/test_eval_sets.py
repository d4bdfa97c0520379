"""The evaluation sets: bit-exact regeneration, cache, layout, and the trainer's hook."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from specvit.io.hdf5 import iter_shard, read_shard_info
from specvit.preprocessing import median_snr
from training.engine.datasets import write_set
from training.engine.shards import ShardWriter
from training.evaluation.eval_sets import (
    EvalSetSettings,
    ensure,
    eval_set_path,
    generate,
    read_eval_set,
)
from training.evaluation.scoring import SNR_BIN_EDGES


@pytest.fixture(scope="module")
def tiny_set(tiny_eval_set, tiny_eval_settings):
    return tiny_eval_settings(24), tiny_eval_set(24)


def test_regeneration_is_bit_exact(tiny_set, tmp_path, etc_dir):
    settings, path = tiny_set
    again = generate(settings, tmp_path / "b.h5", etc_dir, log=lambda _: 0)
    assert again.read_bytes() == path.read_bytes()


def test_set_holds_labels_snr_posterior_and_crlb(tiny_set, etc_dir):
    settings, path = tiny_set
    data = read_eval_set(path)
    n = settings.n
    assert data["flux"].shape == (n, 4096) and data["labels"].shape == (n, 3)
    assert data["posterior_mean"].shape == (n, 3) and data["posterior_std"].shape == (n, 3)
    snr = median_snr(torch.from_numpy(data["flux"]), torch.from_numpy(data["error"])).numpy()
    np.testing.assert_allclose(data["snr"], snr, rtol=1e-6)
    low, high = np.array([3750.0, 1.0, -2.5]), np.array([6000.0, 5.0, 0.5])
    assert ((data["posterior_mean"] >= low) & (data["posterior_mean"] <= high)).all()
    assert (data["posterior_std"] > 0).all() and (data["posterior_ess"] >= 1).all()
    assert (data["crlb_log_g"] > 0).all()
    assert data["settings"] == json.loads(json.dumps(settings.to_dict()))
    light = read_eval_set(path, spectra=False)
    assert "flux" not in light
    np.testing.assert_array_equal(light["posterior_mean"], data["posterior_mean"])


def test_spectra_are_make_datasets_validation_spectra(tiny_set, tmp_path, etc_dir):
    from specvit.instrument import PFSNoiseModel
    from training.engine.simulate import Simulator

    settings, path = tiny_set
    sim = Simulator(noise=PFSNoiseModel.from_etc(etc_dir))
    write_set(tmp_path / "v.h5", sim, settings.n, settings.seed, 4096, {})
    ours, theirs = read_eval_set(path), next(iter_shard(tmp_path / "v.h5", 100))
    np.testing.assert_array_equal(ours["flux"], theirs["flux"])
    np.testing.assert_array_equal(ours["labels"], theirs["labels"])


def test_cache_is_keyed_by_every_setting(tmp_path, etc_dir, tiny_eval_settings):
    base = EvalSetSettings("test", 10_000)
    assert eval_set_path(base, etc_dir, tmp_path).name.startswith("test-i20.5-22.5-")
    others = [
        EvalSetSettings("validation", 10_000),
        EvalSetSettings("test", 9_999),
        EvalSetSettings("test", 10_000, mag=(17.0, 20.0)),
        EvalSetSettings("test", 10_000, n_samples=512),
        EvalSetSettings("test", 10_000, grid=(36, 36, 30)),
    ]
    names = {eval_set_path(s, etc_dir, tmp_path).name for s in [base, *others]}
    assert len(names) == 6
    small = tiny_eval_settings(4)
    path = ensure(small, etc_dir, tmp_path, log=lambda _: 0)
    stamp = path.stat().st_mtime_ns
    logged = []
    assert ensure(small, etc_dir, tmp_path, log=logged.append) == path
    assert path.stat().st_mtime_ns == stamp and logged == [f"{path}: cached"]
    with pytest.raises(ValueError, match="split"):
        EvalSetSettings("train", 10)


def test_plain_shard_is_no_eval_set(tmp_path):
    path = tmp_path / "plain.h5"
    with ShardWriter(path, np.linspace(7000.0, 8000.0, 8)) as writer:
        writer.append(
            {"flux": np.ones((2, 8)), "error": np.ones((2, 8)), "labels": np.ones((2, 3))}
            | {"mag": np.ones(2), "snr": np.ones(2)}
        )
    with pytest.raises(ValueError, match="not an evaluation set"):
        read_eval_set(path)
    with pytest.raises(ValueError, match="posterior_mean must be"):
        ShardWriter(tmp_path / "x.h5", np.arange(8.0), datasets=("posterior_mean",)).append(
            {"flux": np.ones((2, 8)), "error": np.ones((2, 8)), "labels": np.ones((2, 3))}
            | {"mag": np.ones(2), "snr": np.ones(2), "posterior_mean": np.ones((2, 2))}
        )
    assert read_shard_info(path).n_spectra == 2


def test_trainer_validates_on_the_eval_set_and_logs_efficiency(tiny_set, tmp_path, etc_dir):
    from training.cli.train import main

    _, path = tiny_set
    out = tmp_path / "run"
    overrides = [
        f"out_dir={out}",
        f"data.etc_dir={etc_dir}",
        f"data.val_set={path}",
        "data.n_train=64",
        "train.epochs=1",
        "train.batch_size=32",
        "train.progress=false",
    ]
    assert main(["--config", "tiny", *overrides]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (val,) = [r for r in records if r["kind"] == "val"]
    metrics = val["metrics"]
    assert metrics["overall"]["n"] == 24
    assert [g["low"] for g in metrics["snr"]] == list(SNR_BIN_EDGES[:-1])
    for group in metrics["snr"]:
        m = group["metrics"]["log_g"]
        assert {"efficiency", "bayes_r2", "bayes_coverage_1sigma"} <= set(m)
    assert metrics["overall"]["metrics"]["log_g"]["bayes_r2"] is not None
