"""Write a simulated data set as HDF5 shards: train shards, a validation and a test set.

Usage::

    python -m training make-dataset --out data/engine --n-train 1000000 [--effects]

The layout and the seeds: :mod:`training.engine.datasets`. ``--effects`` turns on every real-data
effect with its default prior (:meth:`training.engine.effects.Effects.default`);
``--effects FILE`` reads the effects' settings from a YAML or JSON file
(:meth:`training.engine.effects.Effects.from_dict`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from specvit.instrument import DEFAULT_N_EXPOSURES, PFSNoiseModel
from training.engine.datasets import write_dataset
from training.engine.effects import Effects
from training.engine.seeding import DRAW_BLOCK
from training.engine.simulate import Prior, Simulator
from training.paths import DEFAULT_ETC_DIR

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--n-train", type=int, default=1_000_000)
    parser.add_argument("--shard-size", type=int, default=200_000)
    parser.add_argument("--n-val", type=int, default=1_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42, help="seed of the training shards")
    parser.add_argument("--etc-dir", type=Path, default=DEFAULT_ETC_DIR)
    parser.add_argument("--n-exposures", type=int, default=DEFAULT_N_EXPOSURES)
    parser.add_argument("--rv", type=float, default=0.0, help="uniform RV in ±this km/s")
    parser.add_argument("--batch", type=int, default=DRAW_BLOCK, help="spectra drawn at a time")
    parser.add_argument(
        "--effects",
        nargs="?",
        const="default",
        default=None,
        metavar="FILE",
        help="real-data effects: every one at its default prior, or the settings in FILE "
        "(YAML/JSON, the form of Effects.to_dict)",
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.etc_dir.is_dir():
        noise = PFSNoiseModel.from_etc(args.etc_dir, n_exposures=args.n_exposures)
    else:
        noise = PFSNoiseModel.default(n_exposures=args.n_exposures)
    prior = Prior(rv=(-args.rv, args.rv) if args.rv > 0 else None)
    try:
        write_dataset(
            args.out,
            Simulator(noise=noise, prior=prior, effects=_effects(args.effects)),
            n_train=args.n_train,
            shard_size=args.shard_size,
            n_val=args.n_val,
            n_test=args.n_test,
            seed=args.seed,
            batch=args.batch,
            overwrite=args.overwrite,
        )
    except FileExistsError as err:
        raise SystemExit(str(err)) from err


def _effects(spec: str | None) -> Effects:
    """``--effects``: None (off), ``"default"``, or a YAML/JSON file of settings."""
    if spec is None or spec == "default":
        return Effects.from_dict(spec)
    import yaml  # JSON is YAML

    path = Path(spec)
    if not path.is_file():
        raise SystemExit(f"--effects {spec}: no such file (or pass --effects alone)")
    return Effects.from_dict(yaml.safe_load(path.read_text()))


if __name__ == "__main__":
    main()
