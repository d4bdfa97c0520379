"""How often a model flags spectra it was not made for, per failure case.

Makes ``--n`` spectra of each case of ``training.engine.ood_cases`` (detector counts, a flat and a
power-law continuum without lines, stars at 300 km/s, a 7500 K star, zero-mean noise; seed 5),
predicts them with ``--model`` (default: the bundled default model) and prints, among the
spectra whose star had S/N ≥ 5, the fraction with any flag but ``LOW_SNR`` and with
``OUT_OF_DOMAIN``::

    python docs/research/failure_cases.py --n 200

The numbers are quoted in docs/research/observed_model.md.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import specvit
from specvit.inference.flags import PredictFlag
from specvit.instrument import PFSNoiseModel
from training.engine.ood_cases import make_case
from training.paths import DEFAULT_ETC_DIR

CASES = ("counts", "flat", "power_law", "rv_300", "teff_7500")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or name (default: the bundled model)")
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    noise = PFSNoiseModel.from_etc(DEFAULT_ETC_DIR)
    predictor = specvit.Predictor(args.model)
    for case in CASES:
        flux, error, snr = make_case(case, noise, args.n, torch.Generator().manual_seed(5))
        flags = np.asarray(predictor.predict(flux.numpy(), error.numpy())["flags"])
        high = snr.numpy() >= 5
        flagged = (flags & ~int(PredictFlag.LOW_SNR)) != 0
        out = (flags & int(PredictFlag.OUT_OF_DOMAIN)) != 0
        print(
            f"{case:10s} {high.sum():4d} spectra at S/N ≥ 5: flagged {flagged[high].mean():.3f}, "
            f"OUT_OF_DOMAIN {out[high].mean():.3f}"
        )


if __name__ == "__main__":
    main()
