"""Score a model on the realism test set: the same stars with one real-data effect at a time.

Usage::

    python -m training realism [--model FOLDER] [--n 2000] [--only mixed] [--report docs/results]

What the set holds and how it is scored: :mod:`training.evaluation.realism`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import specvit
from specvit.inference import DEFAULT_MODEL
from specvit.instrument import PFSNoiseModel
from training.evaluation.realism import realism_scores, select_variants, write_report
from training.paths import DEFAULT_ETC_DIR

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or Hub id (default: the bundled model)")
    parser.add_argument("--n", type=int, default=2000, help="stars (default 2000)")
    parser.add_argument("--etc-dir", type=Path, default=DEFAULT_ETC_DIR)
    parser.add_argument("--out", type=Path, help="also write the scores here (.json)")
    parser.add_argument("--report", type=Path, help="write realism.md and its figure here")
    parser.add_argument(
        "--exact", action="store_true", help="predict in exact mode (realism_exact.md)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="EFFECT",
        help="score only this effect's variants, e.g. mixed (repeatable; realism_mixed.md)",
    )
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be ≥ 1, got {args.n}")
    try:
        select_variants(args.only)
    except ValueError as err:
        parser.error(str(err))
    if not args.etc_dir.is_dir():
        parser.error(f"--etc-dir {args.etc_dir} is not a folder of PFS ETC tables")
    model = specvit.load(args.model or DEFAULT_MODEL)
    noise = PFSNoiseModel.from_etc(args.etc_dir)
    scores = realism_scores(model, noise, n=args.n, exact=args.exact, only=args.only)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(scores, indent=1, allow_nan=False), encoding="utf-8")
    if args.report:
        page = write_report(scores, args.report, "python -m training realism " + shlex.join(argv))
        print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
