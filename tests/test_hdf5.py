"""HDF5 shards: layout, exact round trips, streaming reads, the shard source and make_dataset."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from specvit.instrument import PFS_MR
from specvit.io import iter_shard, read_shard_info
from training.engine.shards import ShardWriter
from training.engine.sources import ShardBlocks, ShardSource
from training.trainer.config import DataConfig, RunConfig

L = PFS_MR.num


def random_batch(rng: np.random.Generator, n: int, rv: bool = False) -> dict[str, np.ndarray]:
    """Spectra-shaped random content (the I/O must be exact whatever the values)."""
    out = {
        "flux": rng.standard_normal((n, L), dtype=np.float32) * 100 + 300,
        "error": rng.random((n, L), dtype=np.float32) * 50 + 1,
        "labels": np.stack(
            [rng.uniform(3750, 6000, n), rng.uniform(1, 5, n), rng.uniform(-2.5, 0.5, n)], -1
        ).astype(np.float32),
        "mag": rng.uniform(20.5, 22.5, n).astype(np.float32),
        "snr": rng.uniform(1, 20, n).astype(np.float32),
    }
    if rv:
        out["rv"] = rng.uniform(-300, 300, n).astype(np.float32)
    return out


def write(path: Path, n: int, batch: int = 1000, seed: int = 0, **kwargs) -> None:
    rng = np.random.default_rng(seed)
    with ShardWriter(path, PFS_MR.wavelength(), **kwargs) as w:
        for lo in range(0, n, batch):
            w.append(random_batch(rng, min(batch, n - lo), rv="extra_fields" in kwargs))


def check_round_trip(path: Path, n: int, batch: int, seed: int = 0, read_batch: int = 4096):
    rng = np.random.default_rng(seed)
    pending: dict[str, np.ndarray] = {}
    seen = 0
    for got in iter_shard(path, read_batch):
        b = got["flux"].shape[0]
        while pending.get("flux", np.empty((0, L))).shape[0] < b:
            new = random_batch(rng, min(batch, n - seen - len(pending.get("mag", []))))
            pending = {
                k: np.concatenate([pending[k], v]) if k in pending else v for k, v in new.items()
            }
        for key in ("flux", "error", "labels", "mag", "snr"):
            np.testing.assert_array_equal(got[key], pending[key][:b])
        np.testing.assert_array_equal(got["index"], np.arange(seen, seen + b))
        pending = {k: v[b:] for k, v in pending.items()}
        seen += b
    assert seen == n


def test_layout_and_info(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    write(path, 300, batch=128, extra_fields=("rv",), attrs={"prior": "uniform"}, n_spectra=300)
    info = read_shard_info(path)
    assert (info.n_spectra, info.n_pixels, info.medium, info.unit) == (300, L, "vacuum", "nJy")
    assert info.fields == ("T_eff", "log_g", "M_H", "mag", "snr", "rv")
    assert info.attrs["format"] == "specvit-shard" and info.attrs["prior"] == "uniform"
    np.testing.assert_array_equal(info.wavelength, PFS_MR.wavelength())
    with h5py.File(path) as f:
        assert f["flux"].dtype == np.float32 and f["flux"].chunks == (64, L)
        assert f["labels"].dtype.names == info.fields
    batch = next(iter_shard(path, 7))
    assert batch["labels"].shape == (7, 3) and batch["rv"].shape == (7,)
    assert not (tmp_path / "s.h5.partial").exists()


def test_round_trip_exact_small(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    write(path, 5000, batch=999)
    check_round_trip(path, 5000, batch=999, read_batch=1234)


def indexed_rows(lo: int, hi: int, base: np.ndarray) -> dict[str, np.ndarray]:
    """Distinct, cheaply recomputable rows ``lo:hi``: a random base spectrum shifted per row."""
    idx = np.arange(lo, hi, dtype=np.float32)[:, None]
    labels = np.concatenate([3750 + idx / 100, 1 + idx / 5e4, -2.5 + idx / 7e4], axis=1)
    return {
        "flux": base[0] + idx,
        "error": base[1] * (1 + idx / 2e5),
        "labels": labels.astype(np.float32),
        "mag": (20.5 + idx[:, 0] / 1e5).astype(np.float32),
        "snr": (1 + idx[:, 0] / 1e4).astype(np.float32),
    }


@pytest.mark.slow  # ≈ 35–60 s and 6.6 GB of temporary disk on the 2-core machine
def test_round_trip_exact_200k(tmp_path: Path) -> None:
    """Done-when: a 200 k-spectrum shard (6.6 GB) is written, streamed back and is bit-identical.

    Rows are a random base spectrum plus a per-row offset, so every row differs and the expected
    values are recomputed per batch instead of held in memory.
    """
    n, batch = 200_000, 8192
    free = shutil.disk_usage(tmp_path).free
    if free < 2 * 6.6e9:
        pytest.skip(f"needs ~6.6 GB of temporary disk (x2 headroom), {free / 1e9:.1f} GB free")
    base = np.random.default_rng(0).standard_normal((2, L), dtype=np.float32) * 100 + 300
    path = tmp_path / "big.h5"
    with ShardWriter(path, PFS_MR.wavelength(), n_spectra=n) as w:
        for lo in range(0, n, batch):
            w.append(indexed_rows(lo, min(lo + batch, n), base))
    assert read_shard_info(path).n_spectra == n
    seen = 0
    for got in iter_shard(path, batch):
        b = got["flux"].shape[0]
        want = indexed_rows(seen, seen + b, base)
        for key, value in want.items():
            np.testing.assert_array_equal(got[key], value)
        seen += b
    assert seen == n


class CountingFile(io.FileIO):
    """A file that counts the bytes HDF5 reads through it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "rb")
        self.bytes_read = 0

    def readinto(self, buffer) -> int:
        n = super().readinto(buffer)
        self.bytes_read += n or 0
        return n


@pytest.mark.parametrize("batch_size", [64, 100])
def test_streaming_reads_only_each_batch(tmp_path: Path, batch_size: int) -> None:
    """Done-when: streaming never loads a whole shard: bytes read per batch ≈ the batch."""
    path = tmp_path / "s.h5"
    write(path, 2048, batch=512)
    size = path.stat().st_size
    row = 2 * L * 4  # flux + error bytes per spectrum
    with CountingFile(path) as fh:
        reads = []
        before = fh.bytes_read
        for batch in iter_shard(fh, batch_size):
            reads.append((batch["flux"].shape[0], fh.bytes_read - before))
            before = fh.bytes_read
    per_batch = np.array([r for _, r in reads[1:]])  # the first also reads the metadata
    # a batch touches at most its rows plus the partial 64-row chunks at its two ends
    limit = (batch_size + 2 * 64) * row + 256 * 1024
    assert per_batch.max() <= limit, (per_batch.max(), limit)
    assert per_batch.max() < size / 8
    total = sum(r for _, r in reads)
    assert 2048 * row <= total < 1.1 * size  # the counter sees every data byte, about once


def test_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such shard"):
        read_shard_info(tmp_path / "nope.h5")
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["flux"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match="missing datasets"):
        read_shard_info(bad)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_shard_info(tmp_path / "text.h5")
    good = tmp_path / "g.h5"
    write(good, 10)
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_shard(good, 0))


def test_writer_errors_and_abort(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    write(path, 10)
    with pytest.raises(FileExistsError):
        ShardWriter(path, PFS_MR.wavelength())
    rng = np.random.default_rng(0)
    with pytest.raises(KeyError, match="snr"):
        with ShardWriter(tmp_path / "t.h5", PFS_MR.wavelength()) as w:
            batch = random_batch(rng, 3)
            del batch["snr"]
            w.append(batch)
    assert not (tmp_path / "t.h5").exists() and not (tmp_path / "t.h5.partial").exists()
    with ShardWriter(tmp_path / "u.h5", PFS_MR.wavelength()) as w:
        with pytest.raises(ValueError, match="flux and error"):
            w.append({**random_batch(rng, 3), "flux": np.zeros((3, 5))})


def test_shard_source_covers_every_row_once_per_epoch(tmp_path: Path) -> None:
    write(tmp_path / "a.h5", 250)
    write(tmp_path / "b.h5", 130, seed=1)
    data = DataConfig(
        source="hdf5", train_path=str(tmp_path / "*.h5"), val_path=str(tmp_path / "b.h5")
    )
    source = ShardSource(RunConfig(seed=3, data=data))
    steps = source.steps_per_epoch(32, 2)
    assert steps == 7  # 8 + 5 blocks of ≤ 32 rows on 2 ranks
    rows = []
    for step in range(steps):
        for rank in (0, 1):
            batch = source.train_batch(step, rank, 2, 32)
            rows += [(float(m), int(i)) for m, i in zip(batch["mag"], batch["index"], strict=True)]
    assert len(set(rows)) == 380  # every row of both shards, the 14th block wrapping round
    first, again = source.train_batch(0, 0, 1, 32), source.train_batch(0, 0, 1, 32)
    assert torch.equal(first["flux"], again["flux"])
    file, lo, hi = ShardBlocks(source.train_path, 32, seed=3).blocks(0)[0]
    clean = next(iter_shard(sorted(tmp_path.glob("*.h5"))[file], hi - lo, start=lo, stop=hi))
    z = (first["flux"].numpy() - clean["flux"]) / clean["error"]
    assert abs(z.std() - 1.0) < 0.02
    with pytest.raises(FileNotFoundError):
        ShardBlocks(str(tmp_path / "none*.h5"), 4)


def test_make_dataset_writes_fixed_validation_and_test(tmp_path: Path, etc_dir) -> None:
    from training.cli.make_dataset import main

    common = ["--n-train", "300", "--shard-size", "200", "--n-val", "50", "--n-test", "60"]
    common += ["--etc-dir", str(etc_dir), "--batch", "128"]
    main(["--out", str(tmp_path / "a"), "--seed", "1", *common])
    main(["--out", str(tmp_path / "b"), "--seed", "2", *common])
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["test.h5", "train_000.h5", "train_001.h5", "validation.h5"]
    assert read_shard_info(tmp_path / "a" / "test.h5").n_spectra == 60
    for name, same in (("validation.h5", True), ("test.h5", True), ("train_000.h5", False)):
        fa = next(iter_shard(tmp_path / "a" / name, 50))["flux"]
        fb = next(iter_shard(tmp_path / "b" / name, 50))["flux"]
        assert np.array_equal(fa, fb) == same


def test_a_one_dimensional_flux_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as f:
        f["flux"], f["error"], f["wavelength"] = np.ones(L), np.ones(L), PFS_MR.wavelength()
        f["labels"] = np.zeros(1, [(k, "f4") for k in ("T_eff", "log_g", "M_H", "mag", "snr")])
    with pytest.raises(ValueError, match=r"flux has shape \(4096,\); a shard's is \(N, L\)"):
        read_shard_info(path)
