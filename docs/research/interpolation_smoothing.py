"""Whether the default model reads the smoothing of the rest-frame shift at high S/N.

The realism test set's unperturbed stars sit at v ≈ 0, where the shift to the rest frame hardly
interpolates; every training star moved and was interpolated. This script takes those stars
(``training.evaluation.realism``, ``--n`` of them) and smooths each spectrum as two cubic
shifts do — by +v and back by −v (``specvit.velocity.to_rest_frame``), so that no line moves —
then predicts both versions with ``rv=0`` and prints the mean shift of log g and T_eff among
the unflagged stars, for S/N 5–15 and ≥ 15::

    python docs/research/interpolation_smoothing.py --n 2000

The numbers are quoted in docs/research/observed_model.md.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import specvit
from specvit.emulator import Emulator
from specvit.inference.flags import PredictFlag
from specvit.instrument import PFSNoiseModel
from specvit.velocity import to_rest_frame
from training.engine.effects import Effects
from training.evaluation.realism import Variant, simulate
from training.paths import DEFAULT_ETC_DIR


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--velocities", type=float, nargs="+", default=[4.0, 8.0], help="km/s")
    args = parser.parse_args()
    noise = PFSNoiseModel.from_etc(DEFAULT_ETC_DIR)
    stars = simulate(Variant("reference", "", Effects.off()), args.n, noise, Emulator.load())
    predictor = specvit.Predictor()
    grid = predictor.config.wavelength_grid
    flux, error = stars["flux"].float(), stars["error"].float()
    valid = torch.isfinite(flux) & (error > 0)
    snr = stars["snr"].numpy()
    plain = predictor.predict(flux.numpy(), error.numpy(), rv=0.0)
    unflagged_bits = ~int(PredictFlag.LOW_SNR)
    for v in args.velocities:
        there = torch.full((flux.shape[0],), v)
        f1, e1, g1 = to_rest_frame(flux, error, valid, there, grid)
        f2, e2, g2 = to_rest_frame(f1, e1, g1, -there, grid)
        smoothed = predictor.predict(torch.where(g2, f2, torch.nan).numpy(), e2.numpy(), rv=0.0)
        for lo, hi in ((5.0, 15.0), (15.0, np.inf)):
            ok = (snr >= lo) & (snr < hi) & ((np.asarray(smoothed["flags"]) & unflagged_bits) == 0)
            shift = {
                name: np.mean(np.asarray(smoothed[name])[ok] - np.asarray(plain[name])[ok])
                for name in ("log_g", "T_eff")
            }
            print(
                f"±{v:g} km/s, S/N [{lo:g}, {hi:g}): {ok.sum()} stars, log g {shift['log_g']:+.3f} "
                f"dex, T_eff {shift['T_eff']:+.1f} K"
            )


if __name__ == "__main__":
    main()
