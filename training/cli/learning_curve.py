"""Print a training run's validation learning curve as a Markdown table.

Usage::

    python -m training learning-curve runs/default

The table: :func:`training.evaluation.learning_curve.curve_table`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.evaluation.learning_curve import curve_table

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print the table; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (metrics.jsonl, config.yaml)")
    args = parser.parse_args(argv)
    try:
        print(curve_table(args.run_dir), end="")
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
