"""Data-engine throughput: noisy PFS MR spectra per second, and HDF5 shard read MB/s.

Usage::

    python benchmarks/data_engine.py [--seconds 5] [--batch 4096] [--threads 1] [--workers 2]
                                     [--device cpu] [--etc-dir ../shared/data/pfs_etc]
                                     [--shard-spectra 20000] [--effects]

Prints, in one run: a baseline (``torch.randn`` of the same (batch, 4096) float32 shape, per
second: the cost of the Gaussian draws alone), the emulator alone, the full engine
(``Simulator.sample``: labels → emulator → nJy → noise → σ estimate → S/N) in this process, each
as spectra/s and as a ratio to the baseline; with ``--effects``, the same engine with every
real-data effect on at its default prior (``Effects.default()``, ``training/engine/effects.py``)
and its ratio to the engine without effects, same run; the engine through the trainer's data path
(:class:`training.engine.sources.EngineSource` batches built by
:class:`training.engine.batches.StepBatches`, model input included) in a ``DataLoader`` with
``--workers`` processes (how training uses the cores: one thread per worker); then the write and
streaming-read rates of an HDF5 shard of ``--shard-spectra`` spectra in a temporary folder (reads
come from the OS page cache when the file fits in memory).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from timing import rate
from torch.utils.data import DataLoader

import specvit
from specvit.emulator import Emulator
from specvit.instrument import PFSNoiseModel
from specvit.io import iter_shard
from training.engine.batches import StepBatches
from training.engine.effects import Effects
from training.engine.shards import ShardWriter
from training.engine.simulate import Simulator
from training.engine.sources import EngineSource
from training.paths import DEFAULT_ETC_DIR
from training.trainer.config import DataConfig, RunConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in this process")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--etc-dir", type=Path, default=DEFAULT_ETC_DIR)
    parser.add_argument("--shard-spectra", type=int, default=20_000)
    parser.add_argument(
        "--effects", action="store_true", help="also time the engine with every effect on"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    device = torch.device(args.device)
    n = args.batch
    print(f"torch {torch.__version__}, {args.threads} threads, device {device}, batch {n}")

    gen = torch.Generator(device=device).manual_seed(0)
    base = n * rate(
        lambda: torch.randn(n, 4096, generator=gen, device=device), args.seconds, device
    )
    print(f"baseline torch.randn({n}, 4096) fp32: {base:12,.0f} spectra/s  (1.00x)")

    emulator = Emulator.load(device=device)
    if args.etc_dir.is_dir():
        noise = PFSNoiseModel.from_etc(args.etc_dir)
    else:
        noise = PFSNoiseModel.default()
    sim = Simulator(emulator=emulator, noise=noise)
    labels = sim.prior.sample(n, torch.Generator().manual_seed(1))["labels"].to(device)
    emu = n * rate(lambda: emulator(labels), args.seconds, device)
    print(f"emulator only (noiseless, fp32):   {emu:12,.0f} spectra/s  ({emu / base:.2f}x)")
    cpu_gen = torch.Generator().manual_seed(2)
    full = n * rate(lambda: sim.sample(n, cpu_gen), args.seconds, device)
    print(f"engine: noisy spectra + σ + S/N:   {full:12,.0f} spectra/s  ({full / base:.2f}x)")
    if args.effects:
        every = sim.with_effects(Effects.default())
        on = n * rate(lambda: every.sample(n, cpu_gen), args.seconds, device)
        print(
            f"engine, every real-data effect on: {on:10,.0f} spectra/s  ({on / base:.2f}x; "
            f"{on / full:.2f} of the engine without effects)"
        )
    per_hour = full * 3600
    print(f"  1 M noisy spectra take {1e6 / full:.0f} s here (paper's pipeline: ≈304 CPU-hours)")
    print(f"  ({per_hour:,.0f} spectra per hour on {args.threads} threads)")
    if args.workers > 0 and device.type == "cpu":
        etc_dir = str(args.etc_dir) if args.etc_dir.is_dir() else None
        source = EngineSource(RunConfig(data=DataConfig(etc_dir=etc_dir)))
        model_config = specvit.get_preset("specvit_tiny", label_names=("log_g",))
        steps = StepBatches(source, model_config, rank=0, world_size=1, size=1024)
        loader = iter(
            DataLoader(steps, batch_size=None, sampler=range(10**9), num_workers=args.workers)
        )
        next(loader)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            count += next(loader)["x"].shape[0]
        par = count / (time.perf_counter() - start)
        print(
            f"engine in {args.workers} DataLoader workers: {par:12,.0f} spectra/s  "
            f"({par / base:.2f}x)"
        )
        del loader

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.h5"
        m = args.shard_spectra
        batch = sim.sample(min(m, 4096), torch.Generator().manual_seed(3))
        batch = {k: v.cpu().numpy() for k, v in batch.items()}
        start = time.perf_counter()
        with ShardWriter(path, sim.wavelength, n_spectra=m) as writer:
            for lo in range(0, m, 4096):
                k = min(4096, m - lo)
                writer.append({key: v[:k] for key, v in batch.items()})
        t_write = time.perf_counter() - start
        size_mb = path.stat().st_size / 1e6
        start = time.perf_counter()
        rows = sum(b["flux"].shape[0] for b in iter_shard(path, 1024))
        t_read = time.perf_counter() - start
        assert rows == m
        print(
            f"shard of {m} spectra ({size_mb:,.0f} MB): write {size_mb / t_write:,.0f} MB/s, "
            f"streaming read (batch 1024, page cache) {size_mb / t_read:,.0f} MB/s = "
            f"{m / t_read:,.0f} spectra/s"
        )


if __name__ == "__main__":
    main()
