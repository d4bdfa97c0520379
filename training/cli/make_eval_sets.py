"""Write the fixed evaluation sets (cached): engine spectra with their Bayes-optimal answers.

Usage::

    python -m training make-eval-sets                      # test (10 000) + validation (1 000)
    python -m training make-eval-sets --mag 18.5 20.2      # the bright variant
    python -m training make-eval-sets --convergence 2000   # finer posterior on 2 000 test stars

What the files hold and where they are cached: :mod:`training.evaluation.eval_sets`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.engine.simulate import DEFAULT_MAG
from training.evaluation.eval_sets import (
    DEFAULT_N,
    EvalSetSettings,
    convergence,
    ensure,
)
from training.paths import DEFAULT_ETC_DIR

__all__ = ["main"]


def main(argv: list[str] | None = None) -> list[Path]:
    """Command-line entry point; returns the evaluation-set files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="cache folder (default runs/eval_sets)")
    parser.add_argument("--etc-dir", type=Path, default=DEFAULT_ETC_DIR)
    parser.add_argument("--mag", type=float, nargs=2, default=DEFAULT_MAG, metavar=("LOW", "HIGH"))
    parser.add_argument("--n-test", type=int, default=DEFAULT_N["test"])
    parser.add_argument("--n-val", type=int, default=DEFAULT_N["validation"])
    parser.add_argument("--split", choices=("test", "validation"), action="append")
    parser.add_argument("--grid", type=int, nargs=3, default=(24, 24, 20))
    parser.add_argument("--samples", type=int, default=256, help="per round and spectrum")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--convergence",
        type=int,
        metavar="N",
        help="after generating, recompute the first N test posteriors on a finer grid "
        "(36, 36, 30) with 512 samples per round and print the change of the log g R²",
    )
    args = parser.parse_args(argv)
    common = dict(
        mag=tuple(args.mag),
        grid=tuple(args.grid),
        n_samples=args.samples,
        n_rounds=args.rounds,
    )
    splits = args.split or ["test", "validation"]
    sizes = {"test": args.n_test, "validation": args.n_val}
    paths = {
        s: ensure(EvalSetSettings(s, sizes[s], **common), args.etc_dir, args.out) for s in splits
    }
    for split, path in paths.items():
        print(f"{split}: {path}")
    if args.convergence:
        test = paths.get("test") or ensure(
            EvalSetSettings("test", args.n_test, **common), args.etc_dir, args.out
        )
        print(json.dumps(convergence(test, args.convergence, args.etc_dir), indent=1))
    return list(paths.values())


if __name__ == "__main__":
    main()
