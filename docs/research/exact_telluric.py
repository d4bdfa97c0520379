"""Exact mode against the network under one realism variant, star by star; and what exact mode's
free model scale in the telluric bands does.

The realism test set's stars (``training.evaluation.realism``, 2 000 by default) are observed at
rest and under the variant; for the stars both modes leave unflagged at S/N ≥ 5 it prints each
mode's mean label shift (variant minus unperturbed) with its standard error, and the paired
difference exact − network on the same stars. ``--likelihood no-telluric`` takes the telluric
bands' terms out of exact mode's likelihood for the experiment (as before they were added; not
what ``predict`` does); the script also prints the exact labels' rms error on the unperturbed
stars per S/N bin, the precision the terms cost::

    python docs/research/exact_telluric.py                     # telluric, 10 % residual, 10 mm
    python docs/research/exact_telluric.py --variant mixed
    python docs/research/exact_telluric.py --likelihood no-telluric

The numbers are quoted in docs/predict.md (Exact posteriors).
"""

from __future__ import annotations

import argparse

import numpy as np

import specvit
from specvit.emulator import Emulator
from specvit.inference.exact import ExactCorrection
from specvit.inference.flags import PredictFlag
from specvit.instrument import PFSNoiseModel
from training.engine.effects import Effects
from training.evaluation import realism
from training.paths import DEFAULT_ETC_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="specvit-tiny-pfs-observed")
    parser.add_argument("--variant", default="telluric", help="a realism variant's effect")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument(
        "--likelihood",
        default="default",
        choices=("default", "no-telluric"),
    )
    args = parser.parse_args()
    model = specvit.load(args.model)
    if args.likelihood == "no-telluric":
        ExactCorrection._telluric_terms = lambda self, model, v_rad: None
    noise, emulator = PFSNoiseModel.from_etc(DEFAULT_ETC_DIR), Emulator.load()
    variant = realism.select_variants([args.variant])[0]
    reference = realism.Variant("reference", "", Effects.off())
    data = [realism.simulate(v, args.n, noise, emulator) for v in (reference, variant)]
    snr = data[0]["snr"].numpy()
    labels = data[0]["labels"].numpy()
    names = model.config.label_names
    sky = noise.sky_njy.numpy()
    out = {}
    for exact in (False, True):
        predictor = specvit.Predictor(model, exact=exact)
        out[exact] = [realism._predict(predictor, d, sky if exact else None) for d in data]
    quiet = snr >= 5
    for exact in (False, True):
        quiet &= (out[exact][1]["flags"] & ~int(PredictFlag.LOW_SNR)) == 0
    print(f"{args.model}, {variant.name}, likelihood {args.likelihood}: {quiet.sum()} stars")
    shift = {e: out[e][1]["mean"][quiet] - out[e][0]["mean"][quiet] for e in out}
    for i, label in enumerate(names):
        net, ex = shift[False][:, i], shift[True][:, i]
        diff = ex - net
        se = [x.std(ddof=1) / np.sqrt(len(x)) for x in (net, ex, diff)]
        print(
            f"  {label:6s} network {net.mean():+.4g} ± {se[0]:.2g}, exact {ex.mean():+.4g} ± "
            f"{se[1]:.2g}, exact − network {diff.mean():+.4g} ± {se[2]:.2g}"
        )
    print("exact labels' rms error on the unperturbed stars, per S/N bin:")
    cols = [specvit.LABEL_NAMES.index(n) for n in names]
    for lo, hi in ((2, 3), (3, 5), (5, 10), (10, 15), (15, np.inf)):
        sel = (snr >= lo) & (snr < hi)
        rms = np.sqrt(((out[True][0]["mean"][sel] - labels[sel][:, cols]) ** 2).mean(0))
        values = ", ".join(f"{n} {r:.4g}" for n, r in zip(names, rms, strict=True))
        print(f"  [{lo}, {hi}): {values}")


if __name__ == "__main__":
    main()
