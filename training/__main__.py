"""``python -m training COMMAND [options]``: the maintainers' commands, one module each.

Every command is a thin module of :mod:`training.cli`; ``python -m training COMMAND --help``
lists its options.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main", "usage"]

#: command → (module of :mod:`training.cli`, what it does)
COMMANDS = {
    "train": ("train", "train a model (also: python training/train.py)"),
    "make-dataset": ("make_dataset", "write simulated spectra as HDF5 shards"),
    "make-eval-sets": ("make_eval_sets", "write the fixed test and validation sets (cached)"),
    "learning-curve": ("learning_curve", "a run's validation learning curve (Markdown)"),
    "score-checkpoints": ("score_checkpoints", "score checkpoints on an evaluation set"),
    "evaluate": ("evaluate", "score every method against the Bayes-optimal ceiling"),
    "realism": ("realism", "score a model on the realism test set (one effect at a time)"),
    "publish": ("publish", "calibrate, score and write (and push) a model folder"),
    "design-study": ("design_study", "train and compare the design-study candidates"),
    "build-emulator": ("build_emulator", "build the emulator artifact from the Doppler model"),
}


def usage() -> str:
    """The list of commands."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "usage: python -m training COMMAND [options]\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"training.cli.{COMMANDS[argv[0]][0]}")
    sys.argv = [f"python -m training {argv[0]}", *argv[1:]]
    status = module.main(argv[1:])
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
