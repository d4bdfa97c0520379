"""Time of the Cramér–Rao ceilings for a population, beside a same-run memory/matmul baseline.

Usage::

    python benchmarks/bounds.py [--n-stars 10000] [--repeat 3] [--threads 1]
                                [--etc-dir ../shared/data/pfs_etc]

Times :func:`specvit.bounds.crlb_ceilings` (emulator flux and Jacobian, PFS noise, Fisher
matrices with the flux amplitude, Schur-complement CRLB of log g) for ``n`` stars at one
magnitude, best of ``--repeat``. The baseline, measured in the same run, is one float32 matmul
``(n, 4096) @ (4096, 4)``: a single pass over data of the size of the stars' spectra, the least
any method touching every pixel of every star must spend.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from specvit.bounds import LabelPrior, crlb_ceilings
from specvit.emulator import Emulator
from specvit.instrument.noise import PFSNoiseModel
from training.paths import DEFAULT_ETC_DIR


def best_of(fn, repeat: int) -> float:
    """Smallest wall time of ``repeat`` calls of ``fn`` (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-stars", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mag", type=float, default=21.5)
    parser.add_argument("--etc-dir", type=Path, default=DEFAULT_ETC_DIR)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: the work is many small cache-sized chunks; extra threads only "
        "add synchronisation, and hurt badly on a shared machine)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    emulator = Emulator.load()
    noise = (
        PFSNoiseModel.from_etc(args.etc_dir) if args.etc_dir.is_dir() else PFSNoiseModel.default()
    )
    labels = LabelPrior.default().sample(args.n_stars, torch.Generator().manual_seed(0))

    def run():
        return crlb_ceilings(labels, mag=args.mag, emulator=emulator, noise_model=noise)

    seconds = best_of(run, args.repeat)
    a = torch.randn(args.n_stars, 4096)
    b = torch.randn(4096, 4)
    baseline = best_of(lambda: a @ b, args.repeat)
    c = run()
    verdict = "met" if seconds <= 2 else "NOT met"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"ceilings, {args.n_stars} stars at i = {args.mag}: {seconds:.3f} s (best of {args.repeat})"
    )
    print(f"baseline matmul ({args.n_stars}, 4096) @ (4096, 4): {baseline * 1e3:.1f} ms")
    print(f"ratio: {seconds / baseline:.0f}x the baseline; goal ≤ 2 s: {verdict}")
    print(
        f"median SNR {c.median_snr:.2f}, R²_max median {c.median_r2_max:.4f}, "
        f"population {c.population_r2_max:.4f}"
    )


if __name__ == "__main__":
    main()
