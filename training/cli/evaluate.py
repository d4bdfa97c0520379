"""Score every method on the test set against the Bayes-optimal ceiling; write the report.

The recipe is :func:`training.evaluation.compare.run`; its options are
:func:`training.evaluation.compare.parser`'s.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

from training.evaluation.compare import parser, run

__all__ = ["main"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the scores (as written to ``<work>/scores.json``)."""
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    return run(args, "python -m training evaluate " + shlex.join(argv))


if __name__ == "__main__":
    main()
