"""How much of its own mass a posterior puts within its mean ± σ, against the coverage measured.

The coverage goal (0.683 within 1σ) holds for Gaussian posteriors. A posterior pressed against
the prior's box (log g at S/N 2–3, say) is flatter: a uniform one holds only 0.577 of its mass
within its mean ± σ, and a correct posterior of that shape covers the truth that often, not
0.683 of the time. This script takes the first ``--n`` spectra of the faint test set (ideal
engine spectra at rest), runs the default model's exact-mode sampler on them (the network's
labels and σ as proposal, the continuum polynomial marginalised, the spectra given at rest so
that no velocity is measured) with its weighted samples, and prints per S/N bin and label the
posterior mass within mean ± σ (averaged over the stars: the coverage a calibrated posterior of
these shapes has) beside the fraction of stars whose true label lies there::

    python docs/research/exact_coverage.py --n 3000
    python docs/research/exact_coverage.py --n 3000 --order 0    # the amplitude alone

``--order K`` marginalises a continuum polynomial of degree K instead of the model's 5 (0: the
amplitude alone, as the ideal spectra's true continuum allows); ``--samples N`` draws N samples
per star instead of the model's 256; ``--snr 2 3`` takes the first ``--n`` stars with
2 ≤ S/N < 3. The numbers are quoted in docs/predict.md.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

import specvit
from specvit.inference.exact import ImportancePosterior
from specvit.preprocessing import median_snr
from training.evaluation.eval_sets import DEFAULT_N, EvalSetSettings, eval_set_path, read_eval_set
from training.evaluation.scoring import SNR_BIN_EDGES, bin_label


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--order", type=int, help="continuum degree (default: the model's)")
    parser.add_argument("--samples", type=int, help="samples per star (default: the model's)")
    parser.add_argument(
        "--snr",
        type=float,
        nargs=2,
        default=(0.0, np.inf),
        metavar=("LOW", "HIGH"),
        help="take the first --n stars with LOW ≤ S/N < HIGH (default: any)",
    )
    args = parser.parse_args()
    data = read_eval_set(eval_set_path(EvalSetSettings("test", DEFAULT_N["test"])))
    every = np.asarray(median_snr(torch.as_tensor(data["flux"]), torch.as_tensor(data["error"])))
    rows = np.flatnonzero((every >= args.snr[0]) & (every < args.snr[1]))[: args.n]
    flux = torch.as_tensor(data["flux"][rows], dtype=torch.float64)
    error = torch.as_tensor(data["error"][rows], dtype=torch.float64)
    truth = torch.as_tensor(data["labels"][rows], dtype=torch.float64)
    snr = every[rows]
    predictor = specvit.Predictor(exact=True)
    network = specvit.Predictor()
    names = list(predictor.config.label_names)
    table = network.predict(flux.numpy(), error.numpy(), rv=0.0)
    mean = torch.as_tensor(np.stack([np.asarray(table[k]) for k in names], 1), dtype=torch.float64)
    std = torch.as_tensor(
        np.stack([np.asarray(table[f"{k}_err"]) for k in names], 1), dtype=torch.float64
    )
    sampler = predictor.exact.sampler
    if args.order is not None or args.samples is not None:
        sampler = ImportancePosterior(
            sampler.model,
            sampler.prior,
            n_samples=args.samples or sampler.n_samples,
            continuum_order=sampler.continuum_order if args.order is None else args.order,
        )
    gens = [torch.Generator().manual_seed(i) for i in range(len(rows))]
    post = sampler(flux, error, mean, std, gens, return_samples=True)
    weights = post.log_weights.exp()  # (n, K)
    inside = (post.samples - post.mean[:, None]).abs() < post.std[:, None]  # (n, K, P)
    own = (weights[..., None] * inside).sum(1).numpy()  # each posterior's mass within ±σ
    hit = ((truth - post.mean).abs() < post.std).numpy()
    edges = SNR_BIN_EDGES[:-1]
    print("label | " + " | ".join(bin_label(a, b) for a, b in itertools.pairwise(edges)))
    for j, name in enumerate(names):
        cells = []
        for lo, hi in itertools.pairwise(edges):
            rows = (snr >= lo) & (snr < hi)
            if not rows.any():  # a --snr range leaves the other bins empty
                cells.append("–")
                continue
            cells.append(f"{own[rows, j].mean():.2f} / {hit[rows, j].mean():.2f}")
        print(f"{name} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
