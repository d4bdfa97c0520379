"""Whether a model's σ coverage per S/N bin is what calibrated σ would give, bins' noise included.

The coverage goal is a window per cell (0.68 ± 0.03 within 1σ, 0.95 ± 0.02 within 2σ, per S/N
bin and label). A cell of N stars scatters about the true coverage p by √(p(1 − p)/N): 0.014
within 1σ for 1000 stars. So even calibrated σ leave some cells outside the window, and a
cell outside it says little alone. This script reads a model's coverage on the faint ideal test
set (its ``training_args.json``, written by ``publish``) and on the mixed realism set (the
``--out`` JSON of ``python -m training realism --only mixed``) and prints, for 1σ and 2σ, each
cell's z-score against a Gaussian's 0.683 / 0.954, the χ² of all cells with its p-value, and
how many cells calibrated σ would leave outside the window on these bins' stars::

    python docs/research/coverage_consistency.py \\
        --model specvit/pretrained/specvit-tiny-pfs-observed \\
        --realism runs/realism/observed_mixed.json

The ideal set's cells are the S/N bins from 2 to 15, the goal's efficiency bins. The mixed set's
are the same by default; ``--mixed-snr 5 inf`` takes its bins from S/N 5 up instead, [15, ∞)
included, as the goal's realism benchmark is stated (S/N ≥ 5).

The numbers are quoted in docs/research/observed_model.md.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

#: The goal per cell (centre, half-width) and the coverage calibrated Gaussian σ give.
GOALS = {
    "coverage_1sigma": ((0.68, 0.03), math.erf(1 / math.sqrt(2))),
    "coverage_2sigma": ((0.95, 0.02), math.erf(2 / math.sqrt(2))),
}
#: The S/N bins the goal's efficiency is stated on.
SNR_RANGE = (2.0, 15.0)


def cells(
    groups: list[dict], tag: str, snr_range: tuple[float, float] = SNR_RANGE
) -> list[tuple[str, str, str, str, float, int]]:
    """``(set, bin, label, metric, coverage, stars)`` of the S/N groups whose lower edge lies in
    ``[low, high)`` of ``snr_range``."""
    out = []
    for group in groups:
        if not snr_range[0] <= group["low"] < snr_range[1] or not group["n"]:
            continue
        for label, metrics in group["metrics"].items():
            for key in GOALS:
                if metrics.get(key) is not None:
                    out.append((tag, group["bin"], label, key, metrics[key], group["n"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder publish wrote")
    parser.add_argument("--test-set", default="test-i20.5-22.5-c44ec337b5af.h5")
    parser.add_argument("--realism", type=Path, required=True, help="realism --only mixed JSON")
    parser.add_argument(
        "--mixed-snr",
        nargs=2,
        type=float,
        default=SNR_RANGE,
        metavar=("LOW", "HIGH"),
        help="the mixed set's bins whose lower S/N edge lies in [LOW, HIGH) (default 2 15)",
    )
    args = parser.parse_args()
    record = json.loads((args.model / "training_args.json").read_text())
    ideal = record["test_sets"][args.test_set]["score"]["snr"]
    scores = json.loads(args.realism.read_text())
    mixed = next(v for v in scores["variants"].values() if v["effect"] == "mixed")
    rows = cells(ideal, "ideal") + cells(mixed["coverage"]["snr"], "mixed", tuple(args.mixed_snr))
    for key, ((centre, half), p) in GOALS.items():
        chosen = [r for r in rows if r[3] == key]
        n = np.array([r[5] for r in chosen], dtype=np.float64)
        value = np.array([r[4] for r in chosen])
        sd = np.sqrt(p * (1 - p) / n)
        z = (value - p) / sd
        outside = np.abs(value - centre) > half
        expected = stats.norm.cdf(centre - half, p, sd) + stats.norm.sf(centre + half, p, sd)
        chi2 = float((z**2).sum())
        print(
            f"\n{key[9:]}: {len(chosen)} cells, χ² {chi2:.1f} (p {stats.chi2.sf(chi2, len(z)):.3f}"
            f" for calibrated σ); outside {centre:.2f} ± {half:.2f}: {int(outside.sum())}, "
            f"calibrated σ would leave {expected.sum():.1f} outside (none: "
            f"{np.prod(1 - expected):.2f} of the time)"
        )
        for (tag, bin_, label, _, v, stars), zz, out in zip(chosen, z, outside, strict=True):
            mark = "  outside" if out else ""
            print(f"  {tag:5s} {bin_:9s} {label:6s} {v:.3f}  N {stars:5d}  z {zz:+.1f}{mark}")


if __name__ == "__main__":
    main()
