"""How a model's σ tracks its errors on ideal spectra and on spectra with every effect mixed in.

Draws ``--n`` stars of the realism set's magnitudes (HSC-i 18.5–22.5, the default label prior,
PFS ETC noise) with a seed of its own (not the realism benchmark's), observes them twice, as the
engine does without effects (*ideal*) and with every effect drawn from its default prior and
velocities of ±300 km/s (*mixed*, the realism benchmark's mixed variant), and prints per S/N
bin, for each label:

- ``σ ratio``: the median of the head's own σ (without the model's calibration) on the ideal
  spectra over that on the mixed ones;
- ``rms ratio``: the rms error on the ideal spectra over that on the mixed ones;
- ``cov. ideal`` / ``cov. mixed``: the fraction of stars within 1σ of the calibrated σ (every
  star, flagged or not: it is the σ head that is looked at)::

    python docs/research/sigma_by_effects.py --n 10000
    python docs/research/sigma_by_effects.py --n 10000 --model specvit/pretrained/OTHER

A σ head that sees how hard each spectrum is gives σ and rms ratios alike, and coverage that
does not depend on the set. The numbers are quoted in docs/research/observed_model.md.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

import specvit
from specvit.emulator import Emulator
from specvit.inference import DEFAULT_MODEL
from specvit.instrument import PFSNoiseModel
from specvit.labels import LABEL_NAMES
from training.engine.effects import Effects
from training.evaluation.model_scores import predict_eval_set
from training.evaluation.realism import Variant, select_variants, simulate
from training.evaluation.scoring import SNR_BIN_EDGES, bin_label
from training.paths import DEFAULT_ETC_DIR
from training.publish import uncalibrated

#: This script's stars (the realism benchmark's are drawn with REALISM_SEED).
SEED = 20_240_105


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model folder or Hub id")
    args = parser.parse_args()
    model = specvit.load(args.model)
    raw = uncalibrated(model)
    names = model.config.label_names
    noise, emulator = PFSNoiseModel.from_etc(DEFAULT_ETC_DIR), Emulator.load()
    sets = {}
    ideal = Variant("reference", "", Effects.off())
    for key, variant in (("ideal", ideal), ("mixed", select_variants(["mixed"])[0])):
        data = simulate(variant, args.n, noise, emulator, SEED)
        truth = data["labels"].numpy()[:, [LABEL_NAMES.index(n) for n in names]]
        spectra = {"flux": data["flux"].numpy(), "error": data["error"].numpy()}
        mean, sigma = predict_eval_set(model, spectra)
        sets[key] = (truth, mean, predict_eval_set(raw, spectra)[1], sigma)
        if key == "ideal":  # the ideal spectra's S/N bins both sets
            snr = data["snr"].numpy()
    print(f"{args.model}: {args.n} stars, seed {SEED}; per label {', '.join(names)}")
    print("| S/N | N | σ ratio | rms ratio | cov. ideal | cov. mixed |")
    print("|---|---|---|---|---|---|")
    for lo, hi in itertools.pairwise(SNR_BIN_EDGES):
        rows = (snr >= lo) & (snr < hi)
        if rows.sum() < 50:
            continue
        cells, stats = {}, {}
        for key, (truth, mean, own, sigma) in sets.items():
            ok = rows & np.isfinite(mean).all(1)
            error = mean[ok] - truth[ok]
            stats[key] = (np.median(own[ok], 0), np.sqrt((error**2).mean(0)))
            cells[key] = (np.abs(error) / sigma[ok] < 1).mean(0)
        cells["σ"] = stats["ideal"][0] / stats["mixed"][0]
        cells["rms"] = stats["ideal"][1] / stats["mixed"][1]
        text = [" / ".join(f"{x:.2f}" for x in cells[k]) for k in ("σ", "rms", "ideal", "mixed")]
        print(f"| {bin_label(lo, hi)} | {rows.sum()} | " + " | ".join(text) + " |")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
