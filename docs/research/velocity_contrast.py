"""How well the cross-correlation velocity of ``specvit.velocity.measure_rv`` does, and how its
peak contrast separates right velocities from wrong ones.

Draws ``--n`` engine spectra (HSC-i 19.5–23, stars at −600…+600 km/s, every real-data effect at
its default prior, PFS ETC noise, seed 7) and prints, per observed-S/N bin, the median
``|v_rad − v|``, the fraction off by more than 30 km/s, and for S/N ≥ 5 the share of right and
of wrong velocities that each contrast threshold would flag::

    python docs/research/velocity_contrast.py --n 3000

The numbers are quoted in docs/research/observed_model.md and in
``specvit.velocity.MIN_PEAK_CONTRAST``.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from specvit.instrument import PFS_MR, PFSNoiseModel
from specvit.preprocessing import valid_pixels
from specvit.velocity import measure_rv
from training.engine.effects import Effects
from training.engine.simulate import Prior, Simulator
from training.paths import DEFAULT_ETC_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = Simulator(
            noise=PFSNoiseModel.from_etc(DEFAULT_ETC_DIR),
            prior=Prior(rv=(-600, 600), mag=(19.5, 23)),
            effects=Effects.default(),
        )
    draw = sim.sample(args.n, torch.Generator().manual_seed(7))
    flux, error = draw["flux"], draw["error"]
    velocity = measure_rv(flux, error, valid_pixels(flux, error), PFS_MR)
    error_kms = np.abs(velocity.v_rad.numpy() - draw["rv"].numpy())
    wrong = error_kms > 30
    snr = draw["snr"].numpy()
    contrast = velocity.contrast.numpy()
    print("S/N bin | stars | median |v_rad - v| (km/s) | off by > 30 km/s")
    for lo, hi in [(2, 3), (3, 5), (5, 7), (7, 10), (10, 15), (15, np.inf)]:
        sel = (snr >= lo) & (snr < hi)
        median, off = np.median(error_kms[sel]), wrong[sel].mean()
        print(f"[{lo}, {hi}) | {sel.sum()} | {median:.2f} | {off:.3f}")
    bright = snr >= 5
    print("contrast threshold | right velocities flagged | wrong ones flagged (S/N >= 5)")
    for threshold in (5, 10, 16, 25, 36):
        low = contrast < threshold
        right = (low & ~wrong & bright).sum() / (~wrong & bright).sum()
        caught, total = (low & wrong & bright).sum(), (wrong & bright).sum()
        print(f"{threshold} | {right:.3f} | {caught} of {total}")


if __name__ == "__main__":
    main()
