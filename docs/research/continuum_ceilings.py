"""Cramér–Rao R² ceilings per S/N bin of an evaluation set, with and without the continuum.

A model that divides its input by a fitted continuum (``input_norm="continuum"``) cannot use the
continuum's shape, so its honest ceiling is the one with a multiplicative Legendre polynomial
of that order marginalised (``specvit.bounds.crlb_ceilings(..., continuum_order=K)``). This
prints, for the first ``--n`` stars of an evaluation set (their labels, magnitudes and noise
model), the population R² ceiling ``1 − E[min(CRLB, Var)]/Var`` of each label in each S/N bin
of the set's observed S/N (Var: the label's variance in the bin), for each order asked::

    python docs/research/continuum_ceilings.py runs/eval_sets/test-i20.5-22.5-c44ec337b5af.h5 \\
        --n 3000 --order 0 --order 5

The numbers are quoted in docs/research/observed_model.md.
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch

from specvit.bounds import crlb_ceilings
from specvit.bounds.prior import LabelPrior
from specvit.emulator import Emulator
from specvit.instrument import PFSNoiseModel
from specvit.labels import LABEL_NAMES
from training.evaluation.eval_sets import read_eval_set
from training.evaluation.scoring import SNR_BIN_EDGES, bin_label
from training.paths import DEFAULT_ETC_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_set")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--order", type=int, action="append", required=True)
    args = parser.parse_args()
    data = read_eval_set(args.eval_set, spectra=False)
    labels = torch.as_tensor(data["labels"][: args.n], dtype=torch.float64)
    mag = torch.as_tensor(data["mag"][: args.n], dtype=torch.float64)
    snr = np.asarray(data["snr"][: args.n], dtype=np.float64)
    emulator = Emulator.load(dtype=torch.float64)
    noise = PFSNoiseModel.from_etc(DEFAULT_ETC_DIR)
    out: dict[str, dict] = {}
    for order, (k, target) in itertools.product(args.order, enumerate(LABEL_NAMES)):
        ceilings = crlb_ceilings(
            labels,
            mag=mag,
            emulator=emulator,
            noise_model=noise,
            prior=LabelPrior.default(),
            target=target,
            continuum_order=order,
        )
        crlb = ceilings.crlb.numpy()
        row = {}
        for lo, hi in itertools.pairwise(SNR_BIN_EDGES):
            sel = (snr >= lo) & (snr < hi)
            if sel.sum() < 20:
                continue
            var = float(np.var(labels[sel, k].numpy()))
            row[bin_label(lo, hi)] = 1.0 - float(np.minimum(crlb[sel], var).mean()) / var
        out.setdefault(f"order {order}", {})[target] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
