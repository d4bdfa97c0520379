"""Build specvit's emulator artifact from the Doppler Cannon cool-star model.

Usage::

    python -m training build-emulator [--source PATH] [--out PATH]

What the artifact holds: :mod:`training.engine.emulator_artifact`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from training.engine.emulator_artifact import DEFAULT_OUT, DEFAULT_SOURCE, build

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    arrays = build(args.source)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
