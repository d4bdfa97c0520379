"""Score training checkpoints on an evaluation set: one line per checkpoint.

Usage::

    python -m training score-checkpoints runs/default/checkpoints/*.pt [--weights ema]
        [--eval-set FILE]

Without ``--eval-set``: the validation set of ``python -m training make-eval-sets``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import specvit
from training.evaluation.eval_sets import DEFAULT_N, EvalSetSettings, ensure, read_eval_set
from training.evaluation.model_scores import format_number, score_eval_set
from training.trainer.checkpoint import load_checkpoint

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: one line per checkpoint."""
    parser = argparse.ArgumentParser(description="Score training checkpoints on an evaluation set.")
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--weights", choices=("model", "ema"), default="model")
    parser.add_argument(
        "--eval-set", type=Path, help="an evaluation-set file (default: validation)"
    )
    args = parser.parse_args(argv)
    path = args.eval_set or ensure(EvalSetSettings("validation", DEFAULT_N["validation"]))
    bench = read_eval_set(path)
    print(f"{path.name}: efficiency = R² / Bayes-optimal R²; log g per SNR bin")
    for checkpoint in args.checkpoints:
        state = load_checkpoint(checkpoint)
        if state.get(args.weights) is None:
            raise SystemExit(f"{checkpoint} holds no {args.weights!r} weights")
        model = specvit.SpecViT(specvit.SpecViTConfig.from_dict(state["model_config"]))
        model.load_state_dict(state[args.weights])
        result = score_eval_set(model, bench)
        labels = " ".join(
            f"{n} {format_number(result['overall']['metrics'][n].get('efficiency'), 3)}"
            for n in result["labels"]
        )
        bins = " ".join(
            f"{g['bin']} {format_number(g['metrics']['log_g'].get('efficiency'), 2)}"
            for g in result["snr"]
            if g["n"] and "log_g" in g["metrics"]
        )
        spectra = state["step"] * state["run_config"]["train"]["batch_size"]
        print(f"{checkpoint}: step {state['step']} ({spectra} spectra), {args.weights}: {labels}")
        print(f"    log_g {bins}")


if __name__ == "__main__":
    main()
