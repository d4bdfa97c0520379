"""Whether a model reads the star's continuum from the colour of its noise.

Divided by its continuum, a faint spectrum's noise is σ/continuum per pixel; with one background
shape (the ETC's, new moon) the trend of that noise is the star's continuum. This script takes
the first ``--n`` spectra of the faint test set (ideal engine spectra at rest, HSC-i 20.5–22.5),
adds noise so that their σ is the given one times a factor across the arm — the same at every
pixel (``flat``), 1.5 at the blue end falling to 1 at the red end (``blue``), or 1 rising to 1.5
(``red``) — and prints, per S/N bin of the original spectra, the mean T_eff error (K) and the
1σ coverage of T_eff of ``--model`` (``predict`` with ``rv=0``)::

    python docs/research/background_colour.py --n 3000
    python docs/research/background_colour.py --n 3000 --model specvit/pretrained/OTHER

A model that reads T_eff from the lines alone gives the three rows alike. The numbers are quoted
in docs/research/observed_model.md.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

import specvit
from specvit.preprocessing import median_snr
from training.evaluation.eval_sets import DEFAULT_N, EvalSetSettings, eval_set_path, read_eval_set
from training.evaluation.scoring import SNR_BIN_EDGES, bin_label

#: The σ factor across the arm (x from 0 at the first pixel to 1 at the last).
SHAPES = {
    "flat": lambda x: 1.25 + 0.0 * x,
    "blue": lambda x: 1.5 - 0.5 * x,
    "red": lambda x: 1.0 + 0.5 * x,
}


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--model", help="model folder or Hub id (default: the bundled model)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = read_eval_set(eval_set_path(EvalSetSettings("test", DEFAULT_N["test"])))
    flux = data["flux"][: args.n].astype(np.float64)
    error = data["error"][: args.n].astype(np.float64)
    truth = data["labels"][: args.n, 0]
    snr = np.asarray(median_snr(torch.as_tensor(flux), torch.as_tensor(error)))
    x = np.linspace(0.0, 1.0, flux.shape[1])
    rng = np.random.default_rng(args.seed)
    predictor = specvit.Predictor(args.model)
    edges = SNR_BIN_EDGES[:-1]
    print("σ factor | " + " | ".join(bin_label(a, b) for a, b in itertools.pairwise(edges)))
    for name, shape in SHAPES.items():
        factor = shape(x)  # ≥ 1: the added noise makes up the difference in variance
        extra = rng.standard_normal(flux.shape) * error * np.sqrt(factor**2 - 1.0)
        table = predictor.predict(
            (flux + extra).astype(np.float32), (error * factor).astype(np.float32), rv=0.0
        )
        t_eff, sigma = np.asarray(table["T_eff"]), np.asarray(table["T_eff_err"])
        cells = []
        for lo, hi in itertools.pairwise(edges):
            rows = (snr >= lo) & (snr < hi)
            bias = np.mean(t_eff[rows] - truth[rows])
            cover = np.mean(np.abs(t_eff[rows] - truth[rows]) < sigma[rows])
            cells.append(f"{bias:+.0f} K / {cover:.2f}")
        print(f"{name} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
