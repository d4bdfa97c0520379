"""Make ``docs/figures/predict_physics.png`` and print the flag rates of ``docs/predict.md``.

The reduced χ² and line-strength z of the emulator fit (:mod:`specvit.inference.physics`) for
engine spectra beside each failure case of :mod:`training.engine.ood_cases`, predicted by the
example model, and the fraction of each case flagged, by flag and SNR.

Run: ``python docs/figures/make_physics_figure.py [--etc-dir ../shared/data/pfs_etc]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import stats

from specvit.inference import PredictFlag, Predictor
from specvit.inference.physics import CHI2_PVALUE_THRESHOLD
from specvit.instrument import PFSNoiseModel
from training.engine.ood_cases import CASES, make_case
from training.paths import REPO_ROOT

OUT = Path(__file__).resolve().parent / "predict_physics.png"
MODEL = REPO_ROOT / "examples" / "models" / "specvit-tiny-engine"
FLAGS = ("OUT_OF_DOMAIN", "OUTSIDE_PRIOR", "LOW_SNR", "RV_OUTSIDE_TRAINING")


def _rate(mask: np.ndarray, flags: np.ndarray, bits: int) -> str:
    return f"{((flags[mask] & bits) != 0).mean():.3f}" if mask.any() else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etc-dir", type=Path, default=REPO_ROOT.parent / "shared/data/pfs_etc")
    parser.add_argument("--n-engine", type=int, default=2000)
    parser.add_argument("--n-case", type=int, default=400)
    args = parser.parse_args()
    noise = PFSNoiseModel.from_etc(args.etc_dir)
    predictor = Predictor(MODEL, device="cpu")
    generator = torch.Generator().manual_seed(2026)
    any_new = sum(int(PredictFlag[f]) for f in FLAGS)
    rows, results = [], {}
    for name in CASES:
        n = args.n_engine if name == "engine" else args.n_case
        flux, error, snr = make_case(name, noise, n, generator)
        table = predictor.predict(flux.numpy(), error.numpy())
        snr = snr.numpy()
        flags = np.asarray(table["flags"])
        chi2 = np.asarray(table["chi2_red"])
        results[name] = (chi2, snr)
        sel = (snr >= 2) & (snr <= 15)
        high, low = sel & (snr >= 5), sel & (snr < 5)
        cells = [name, str(sel.sum())]
        for bits in (*(int(PredictFlag[f]) for f in FLAGS), any_new):
            cells.append(f"{_rate(high, flags, bits)} / {_rate(low, flags, bits)}")
        rows.append(cells)
    head = ["case", "N (SNR 2–15)", *FLAGS, "any of them"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")

    nu = 4090
    cut = stats.chi2.isf(CHI2_PVALUE_THRESHOLD, nu) / nu
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), sharex=True)
    bins = np.geomspace(0.9, 6.0, 70)
    engine = results["engine"][0][np.isfinite(results["engine"][0])]
    for ax, name in zip(axes.flat, CASES[1:], strict=True):
        chi2, snr = results[name]
        ax.hist(engine, bins=bins, density=True, color="0.6", label="engine spectra")
        for part, colour, label in ((snr >= 5, "C3", "SNR ≥ 5"), (snr < 5, "C0", "SNR < 5")):
            values = np.clip(chi2[part & np.isfinite(chi2)], None, bins[-1] * 0.999)
            ax.hist(
                values,
                bins=bins,
                density=True,
                histtype="step",
                lw=1.5,
                color=colour,
                label=f"{name}, {label}",
            )
        ax.axvline(cut, color="k", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(name)
        ax.legend(fontsize=7)
    for ax in axes[1]:
        ax.set_xlabel("chi2_red (emulator fit at the predicted labels)")
    fig.suptitle(
        f"Example model: engine spectra (grey, i = 20.0–22.7) beside each failure case; dashed: "
        f"p = {CHI2_PVALUE_THRESHOLD:g} for ν = {nu}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
