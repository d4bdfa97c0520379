"""Write a simulated data set as HDF5 shards: train shards, a validation and a test set.

Train spectra come in shards of ``--shard-size``; validation (1 000) and test (10 000) sets are
drawn with the fixed seeds of :mod:`training.seeding` (independent of ``--seed``), so every
run writes the same ones for the same prior and noise settings. Layout: :mod:`specvit.io.hdf5`.

Run: ``python training/make_dataset.py --out data/engine --n-train 1000000``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from specvit.instrument import PFSNoiseModel  # noqa: E402
from training.paths import DEFAULT_ETC_DIR  # noqa: E402
from training.seeding import TEST_SEED, VALIDATION_SEED, step_generator  # noqa: E402
from training.shards import ShardWriter  # noqa: E402
from training.simulate import Prior, Simulator  # noqa: E402


def write_set(path: Path, sim: Simulator, n: int, seed: int, batch: int, attrs: dict) -> None:
    """Write ``n`` spectra drawn batch by batch with generators ``(seed, batch index)``."""
    extra = ("rv",) if sim.prior.rv is not None else ()
    with ShardWriter(
        path, sim.wavelength, n_spectra=n, extra_fields=extra, attrs={**attrs, "seed": seed}
    ) as writer:
        for b, lo in enumerate(range(0, n, batch)):
            writer.append(sim.sample(min(batch, n - lo), step_generator(seed, b)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--n-train", type=int, default=1_000_000)
    parser.add_argument("--shard-size", type=int, default=200_000)
    parser.add_argument("--n-val", type=int, default=1_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42, help="seed of the training shards")
    parser.add_argument("--etc-dir", type=Path, default=DEFAULT_ETC_DIR)
    parser.add_argument("--n-exposures", type=int, default=12)
    parser.add_argument("--rv", type=float, default=0.0, help="uniform RV in ±this km/s")
    parser.add_argument("--batch", type=int, default=4096, help="spectra drawn at a time")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    if args.etc_dir.is_dir():
        noise = PFSNoiseModel.from_etc(args.etc_dir, n_exposures=args.n_exposures)
    else:
        noise = PFSNoiseModel.default(n_exposures=args.n_exposures)
    prior = Prior(rv=(-args.rv, args.rv) if args.rv > 0 else None)
    sim = Simulator(noise=noise, prior=prior)
    attrs = {
        "description": "specvit data engine: Doppler Cannon emulator, R=5000 LSF, PFS ETC noise",
        "prior": json.dumps(prior.to_dict()),
        "noise": f"{noise.description}; {noise.n_exposures} x 900 s",
        "created_by": "training/make_dataset.py",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(args.out / "validation.h5", args.n_val, VALIDATION_SEED)]
    jobs.append((args.out / "test.h5", args.n_test, TEST_SEED))
    for k, lo in enumerate(range(0, args.n_train, args.shard_size)):
        n = min(args.shard_size, args.n_train - lo)
        jobs.append((args.out / f"train_{k:03d}.h5", n, args.seed * 1000 + k))
    for path, _, _ in jobs:
        if path.exists() and not args.overwrite:
            raise SystemExit(f"{path} exists (use --overwrite)")
    for path, n, seed in jobs:
        t0 = time.perf_counter()
        with torch.no_grad():
            write_set(path, sim, n, seed, args.batch, attrs)
        print(f"{path}: {n} spectra in {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
