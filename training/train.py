"""Train a SpecViT model: ``python training/train.py …`` is ``python -m training train …``.

Usage::

    python training/train.py --config default [key=value ...]
    python training/train.py --resume runs/default [train.max_steps=...]
    torchrun --nproc_per_node 8 training/train.py --config paper

Options and exit statuses: :mod:`training.cli.train`.
"""

import sys

from training.cli.train import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
