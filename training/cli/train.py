"""Train a SpecViT model.

Usage (``python training/train.py`` is the same as ``python -m training train``)::

    python training/train.py --config paper [key=value ...]
    python training/train.py --config training/configs/tiny.yaml out_dir=runs/t optim.lr=1e-3
    python training/train.py --resume runs/t [train.max_steps=...]
    torchrun --nproc_per_node 8 training/train.py --config paper

``--config`` takes a YAML file or a config name from ``training/configs``; ``key=value``
overrides use dotted paths and YAML values. ``--resume`` takes a checkpoint file or a run folder
(its ``checkpoints/`` is searched for the newest) and continues exactly where it stopped; the
recipe comes from the checkpoint, and only keys that do not change the computation
(``train.max_steps``, ``train.max_cpu_minutes``, ``train.progress``, ``train.log_every``,
``train.checkpoint_every``) may be overridden. Exit status 2 means a bad config (an unknown key, a
bad value, an ``out_dir`` that cannot be written, or a checkpoint to resume that is unreadable or
damaged), found before training starts; 3 a non-finite loss.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.engine.sources import build_source
from training.trainer.checkpoint import STATE_KEYS, latest_checkpoint, load_checkpoint
from training.trainer.config import ConfigError, RunConfig, apply_overrides, load_config
from training.trainer.distributed import shutdown_distributed
from training.trainer.loop import NonFiniteLossError, Trainer
from training.trainer.rundir import RunDir

__all__ = ["main", "resolve_run"]


def resolve_run(
    config: str | None, overrides: list[str], resume: str | None
) -> tuple[RunConfig, Path | None]:
    """The run config and the checkpoint to resume from (None for a fresh run).

    With ``resume`` and no ``config``, the recipe is the checkpoint's, with ``overrides``
    applied; with both, the file's recipe must agree with the checkpoint's (checked by the
    :class:`~training.trainer.loop.Trainer`).
    """
    if resume is None:
        return load_config(config, overrides), None
    path = Path(resume)
    if path.is_dir():
        run = RunDir(path)
        found = run.latest_checkpoint() or latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"no checkpoint in {path} or {run.checkpoint_dir}")
        path = found
    if config is not None:
        return load_config(config, overrides), path
    saved = load_checkpoint(path, STATE_KEYS)["run_config"]
    return RunConfig.from_dict(apply_overrides(saved, overrides)), path


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="overrides: dotted keys with YAML values, e.g. optim.lr=1e-4 labels=[T_eff,log_g]",
    )
    parser.add_argument(
        "--config", help="YAML file or config name from training/configs (default, paper, tiny)"
    )
    parser.add_argument("--resume", help="checkpoint file or run folder to continue")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    args = parser.parse_args(argv)
    if args.config is None and args.resume is None:
        parser.error("give --config (a fresh run) or --resume (continue a run)")
    try:
        config, checkpoint = resolve_run(args.config, args.overrides, args.resume)
        trainer = Trainer(config, build_source(config), resume=checkpoint)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        shutdown_distributed()
        return 2
    try:
        trainer.fit()
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    finally:
        shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
