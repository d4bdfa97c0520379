"""Turn a training checkpoint into a Hub-ready model folder, calibrated and scored; push it.

Usage::

    python -m training publish runs/paper/checkpoints OUT_DIR [--repo-id owner/name] [--private]
    python -m training publish runs/default/checkpoints specvit/pretrained/specvit-tiny-pfs \\
        --test-mag 20.5 22.5 --test-mag 18.5 20.2 --report docs/results/default_model.md

Given a model folder it wrote instead of a checkpoint, it scores that model again (how a
published model's tables are reproduced; ``--calibration-spectra 0`` keeps its σ calibration)::

    python -m training publish specvit/pretrained/specvit-tiny-pfs \\
        specvit/pretrained/specvit-tiny-pfs --calibration-spectra 0 \\
        --test-mag 20.5 22.5 --test-mag 18.5 20.2 --report docs/results/default_model.md

A Gaussian head's σ can be replaced by a σ network fitted on the calibration spectra, drawn
with the engine's default effects and half of them clean (how the default model's σ were made)::

    python -m training publish runs/observed_clean/checkpoints \
        specvit/pretrained/specvit-tiny-pfs-observed --calibration-effects default \
        --calibration-clean 0.5 --sigma-hidden 64 --test-mag 20.5 22.5 --test-mag 18.5 20.2 \
        --report docs/results/observed_model.md

``--calibration-benchmarks M`` adds fresh draws of the two distributions σ is judged on (the
faint ideal test set's, the mixed realism set's) to those spectra.

What the folder holds: :mod:`training.publish`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.engine.effects import Effects
from training.paths import DEFAULT_ETC_DIR
from training.publish import eval_set_test_file, publish

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source", help="checkpoint file, folder of checkpoints, or a model folder written before"
    )
    parser.add_argument("out_dir", help="folder to write")
    parser.add_argument("--repo-id", help="also push to this Hub repo (owner/name)")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN / stored login)")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument(
        "--test-mag",
        type=float,
        nargs=2,
        action="append",
        default=[],
        metavar=("LOW", "HIGH"),
        help="score on the test set of this HSC-i range (repeatable; generated first "
        "when not cached)",
    )
    parser.add_argument(
        "--calibration-spectra",
        type=int,
        default=60_000,
        metavar="N",
        help="calibrate a Gaussian head's σ on N fresh spectra of the run's prior (0: do not)",
    )
    parser.add_argument(
        "--calibration-effects",
        choices=("run", "default"),
        default="run",
        help="the calibration spectra's real-data effects: the run's (default) or the engine's "
        "default priors",
    )
    parser.add_argument(
        "--calibration-clean",
        type=float,
        metavar="F",
        help="draw this fraction of the calibration spectra with no effect (default: as the "
        "effects say)",
    )
    parser.add_argument(
        "--calibration-benchmarks",
        type=int,
        default=0,
        metavar="M",
        help="also calibrate on M fresh spectra of the faint ideal test set's distribution and "
        "M/2 of the mixed realism set's (never their stars; 0: do not)",
    )
    parser.add_argument(
        "--sigma-hidden",
        type=int,
        default=0,
        metavar="H",
        help="replace the head's σ by a σ network of hidden width H fitted on the calibration "
        "spectra (0: keep it)",
    )
    parser.add_argument("--etc-dir", type=Path, default=DEFAULT_ETC_DIR)
    parser.add_argument("--report", type=Path, help="also write the test-set tables here (.md)")
    parser.add_argument(
        "--weights",
        choices=("ema", "model"),
        default="ema",
        help="the run's EMA average (default, when kept) or the weights themselves",
    )
    args = parser.parse_args(argv)
    if args.calibration_spectra < 0:
        parser.error(f"--calibration-spectra must be >= 0, got {args.calibration_spectra}")
    if args.calibration_benchmarks < 0 or (
        args.calibration_benchmarks and not args.calibration_spectra
    ):
        parser.error("--calibration-benchmarks needs M >= 0 and calibration spectra")
    if args.sigma_hidden < 0 or (args.sigma_hidden and not args.calibration_spectra):
        parser.error("--sigma-hidden needs H >= 0 and calibration spectra")
    effects = None
    if args.calibration_effects == "default" or args.calibration_clean is not None:
        if args.calibration_effects == "run":
            parser.error("--calibration-clean goes with --calibration-effects default")
        try:
            effects = Effects.from_dict(
                {**Effects.default().to_dict(), "clean_fraction": args.calibration_clean or 0.0}
            )
        except ValueError as err:
            parser.error(f"--calibration-clean: {err}")
    out = publish(
        args.source,
        args.out_dir,
        args.repo_id,
        calibration_spectra=args.calibration_spectra,
        calibration_effects=effects,
        benchmark_spectra=args.calibration_benchmarks,
        sigma_hidden=args.sigma_hidden,
        test_sets=[eval_set_test_file(mag, args.etc_dir) for mag in args.test_mag],
        report=args.report,
        weights=args.weights,
        token=args.token,
        private=args.private,
    )
    print(f"wrote {out}" + (f" and pushed to {args.repo_id}" if args.repo_id else ""))


if __name__ == "__main__":
    main()
