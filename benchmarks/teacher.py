"""How good and how fast the grid teacher is: its targets scored as an estimator, per SNR bin.

Usage::

    python benchmarks/teacher.py EVAL_SET.h5 [--n 2000] [--grid 24 24 20] [--threads 2]

Runs :class:`training.trainer.teacher.GridTeacher` (the engine's emulator and the evaluation
set's prior) on the first ``n`` spectra of an evaluation-set file
(:mod:`training.evaluation.eval_sets`) and prints

* the efficiency (R² / Bayes-optimal R²) of its targets per label and SNR bin, scored by
  :func:`training.evaluation.scoring.score` against the true labels: 1 means the targets carry the
  posterior mean's information (a network regressing on them has the same optimum);
* how far the targets and the true labels lie from the exact posterior mean (rms, physical
  units), and how often each label keeps its true value (posterior not resolved by the grid);
* its time per star beside a same-run baseline: the two float32 matrix products of the grid
  posterior alone, ``(n, L) @ (L, G)``, on the same threads.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from specvit.emulator import Emulator
from specvit.labels import LABEL_NAMES
from training.engine.simulate import Prior
from training.evaluation.eval_sets import read_eval_set
from training.evaluation.scoring import score
from training.trainer.teacher import GridTeacher


def seconds(fn) -> float:
    """Wall time of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "eval_set", type=Path, help="an evaluation-set file (python -m training make-eval-sets)"
    )
    parser.add_argument("--n", type=int, default=2000, help="spectra to use (the first n)")
    parser.add_argument("--grid", type=int, nargs=3, default=[24, 24, 20], metavar="G")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = read_eval_set(args.eval_set)
    n = min(args.n, len(data["snr"]))
    spectra = {
        "flux": torch.from_numpy(data["flux"][:n]),
        "error": torch.from_numpy(data["error"][:n]),
        "labels": torch.from_numpy(data["labels"][:n]),
    }
    prior = Prior(mag=tuple(data["settings"]["mag"])).label_prior
    teacher = GridTeacher(Emulator.load(), prior, args.grid)
    teacher({k: v[:16] for k, v in spectra.items()})  # warm-up
    targets = np.empty((n, 3))
    elapsed = seconds(lambda: targets.__setitem__(slice(None), teacher(spectra).numpy()))

    grid_flux = teacher.posterior.grid_flux
    yw = torch.randn(n, grid_flux.shape[1])
    base = seconds(lambda: (yw @ grid_flux.T, yw @ grid_flux.T))

    labels, post = data["labels"][:n], data["posterior_mean"][:n]
    result = score(labels, targets, data["snr"][:n], LABEL_NAMES, bayes_mean=post)
    print(
        f"{args.eval_set.name}: first {n} spectra, grid {args.grid} "
        f"({grid_flux.shape[0]} cells), {args.threads} thread(s)"
    )
    print(
        f"teacher {1e3 * elapsed / n:.2f} ms/star; the grid's two float32 products alone "
        f"{1e3 * base / n:.2f} ms/star (ratio {elapsed / base:.2f})"
    )
    for k, name in enumerate(LABEL_NAMES):
        kept = float(np.mean(targets[:, k] == labels[:, k]))
        rms_t = float(np.sqrt(np.mean((targets[:, k] - post[:, k]) ** 2)))
        rms_y = float(np.sqrt(np.mean((labels[:, k] - post[:, k]) ** 2)))
        unit = result["units"][name]
        print(
            f"{name}: rms to the posterior mean {rms_t:.4g} {unit} (true label {rms_y:.4g}); "
            f"true label kept for {100 * kept:.0f} %"
        )
    print("efficiency (R² / Bayes-optimal R²) of the targets, per SNR bin:")
    print(f"{'SNR bin':>12} {'n':>6} " + " ".join(f"{name:>8}" for name in LABEL_NAMES))
    for group in [{"bin": "all", **result["overall"]}, *result["snr"]]:
        effs = [group["metrics"][name]["efficiency"] for name in LABEL_NAMES]
        cells = " ".join(f"{'—' if e is None else f'{e:.3f}':>8}" for e in effs)
        print(f"{group['bin']:>12} {group['n']:>6} {cells}")


if __name__ == "__main__":
    main()
