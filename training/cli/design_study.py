"""The default-model design study: train the candidates for one CPU budget, then compare them.

Usage::

    python -m training design-study run [--only NAME ...] [--budget 6] [--jobs 2] [key=value ...]
    python -m training design-study report [--out docs/results]

The study is :mod:`training.evaluation.design_study`; its candidates are
``training/evaluation/design_candidates.yaml``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.evaluation.design_study import report, run

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train the candidates")
    p_run.add_argument("--only", nargs="*", default=[], help="candidate names (default: all)")
    p_run.add_argument("--budget", type=float, default=6.0, help="CPU-minutes per candidate")
    p_run.add_argument("--jobs", type=int, default=2, help="candidates trained at once")
    p_run.add_argument("overrides", nargs="*", help="key=value overrides for every candidate")
    p_report = sub.add_parser("report", help="score the checkpoints, write table and figure")
    p_report.add_argument("--out", type=Path, default=Path("docs/results"))
    p_report.add_argument("--budget", type=float, default=6.0, help="as given to run")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.only, args.budget, args.jobs, args.overrides)
    report(args.out, args.budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
