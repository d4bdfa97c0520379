"""A continuum-dividing model against the Bayes answer with the continuum marginalised, per S/N bin.

A model that divides its input by a fitted continuum (the default model, ``input_norm=
"continuum"``) gives up what the continuum's shape says about the labels by design, so the
evaluation set's Bayes-optimal answers (the continuum known but for its amplitude) are not its
ceiling. This script computes the ceiling that is: the posterior mean with a Legendre polynomial
of the model's ``continuum_order`` marginalised, under the evaluation set's prior
(``LabelPrior.default``), for the first ``--n`` stars of the set. It is importance sampling
(``specvit.inference.exact.ImportancePosterior``) with the emulator's whole spectra (its own
continuum not held at the proposal's centre, as exact mode holds it), ``--samples`` draws per
star in three rounds from the network's answer with ``--inflate`` × its σ. On the same stars it
then scores, per S/N bin, the network alone, ``predict``'s exact mode and the set's
continuum-known Bayes answers, each as R² over the continuum-marginalised posterior's R²
(``training.evaluation.scoring.score``). ``--rv-known`` gives exact mode the stars' velocity (0:
the set is at rest) instead of letting ``predict`` measure it, and ``--no-telluric`` takes the
telluric bands' terms out of its likelihood, to see what each costs. Last, per label and S/N
bin, the fraction of stars within 1σ / 2σ of the continuum-marginalised posterior's mean with
its own σ, and of the network's answer with its σ::

    python docs/research/continuum_bayes.py runs/eval_sets/test-i20.5-22.5-c44ec337b5af.h5 \\
        --n 10000 [--rv-known] [--no-telluric]

The numbers are quoted in docs/predict.md (Exact posteriors) and docs/research/exact_mode.md and
observed_model.md.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import specvit
from specvit.bounds.prior import LabelPrior
from specvit.emulator import Emulator
from specvit.inference.exact import ExactCorrection, ImportancePosterior
from specvit.labels import LABEL_NAMES
from training.evaluation.eval_sets import read_eval_set
from training.evaluation.scoring import score


class WholeSpectra:
    """The emulator's spectra in blocks of pixels, with no ``continuum`` for the sampler to hold
    (so its likelihood takes each sample's own continuum)."""

    dtype = torch.float32

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator

    def __call__(self, labels: torch.Tensor) -> torch.Tensor:
        return self._emulator(labels)

    def flux_blocks(self, labels: torch.Tensor):
        return self._emulator.flux_blocks(labels)


def predictions(table, names) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3)`` labels and σ of a ``predict`` table, in :data:`LABEL_NAMES` order."""
    mean = np.stack([np.asarray(table[n], dtype=np.float64) for n in names], 1)
    sigma = np.stack([np.asarray(table[f"{n}_err"], dtype=np.float64) for n in names], 1)
    return mean, sigma


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("eval_set")
    parser.add_argument("--model", default="specvit-tiny-pfs-observed")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--inflate", type=float, default=2.0)
    parser.add_argument("--rv-known", action="store_true")
    parser.add_argument("--no-telluric", action="store_true")
    args = parser.parse_args()
    if args.no_telluric:
        ExactCorrection._telluric_terms = lambda self, model, v_rad: None
    model = specvit.load(args.model)
    order = model.config.continuum_order if model.config.input_norm == "continuum" else 0
    data = read_eval_set(args.eval_set)
    flux, error = data["flux"][: args.n], data["error"][: args.n]
    true, snr = data["labels"][: args.n], data["snr"][: args.n]
    known = data["posterior_mean"][: args.n]
    names = list(LABEL_NAMES)
    network = predictions(specvit.predict(flux, error, model=model, physics=False), names)
    rv = 0.0 if args.rv_known else None
    table = specvit.predict(flux, error, model=model, physics=False, exact=True, rv=rv)
    exact = predictions(table, names)
    sampler = ImportancePosterior(
        WholeSpectra(Emulator.load()),
        LabelPrior.default(),
        n_samples=args.samples,
        inflate=args.inflate,
        continuum_order=order,
    )
    ok = np.isfinite(network[0]).all(1) & np.isfinite(network[1]).all(1)
    rows = np.flatnonzero(ok)
    post = sampler(
        torch.as_tensor(flux[rows], dtype=torch.float64),
        torch.as_tensor(error[rows], dtype=torch.float64),
        torch.as_tensor(network[0][rows]),
        torch.as_tensor(network[1][rows]),
        [torch.Generator().manual_seed(int(i)) for i in rows],
    )
    ceiling = post.mean.numpy()
    ceiling_sigma = post.std.numpy()
    ess = post.ess.numpy()
    print(
        f"{args.model}, continuum order {order}, rv known: {args.rv_known}, telluric terms: "
        f"{not args.no_telluric}, {len(rows)} stars of {args.eval_set}: "
        f"reference ESS median {np.median(ess):.0f}, 5th percentile {np.percentile(ess, 5):.0f}"
        f" of {args.samples}"
    )
    rows_ok = np.isfinite(ceiling).all(1)
    rows = rows[rows_ok]
    ceiling = ceiling[rows_ok]
    ceiling_sigma = ceiling_sigma[rows_ok]
    methods = {
        "network": network[0][rows],
        "exact mode": exact[0][rows],
        "Bayes, continuum known": known[rows],
    }
    for label in names:
        print(f"\n{label}: R² / R² of the continuum-marginalised posterior, per S/N bin")
        header = None
        for method, pred in methods.items():
            result = score(true[rows], pred, snr[rows], names, bayes_mean=ceiling)
            groups = [g for g in result["snr"] if g["n"]]
            if header is None:
                header = " | ".join(f"{g['bin']:>9s}" for g in groups)
                print(f"  {'':24s} {'all':>6s} | {header}")
                r2 = " | ".join(f"{g['metrics'][label]['bayes_r2']:9.3f}" for g in groups)
                whole = result["overall"]["metrics"][label]["bayes_r2"]
                print(f"  {'ceiling R²':24s} {whole:6.3f} | {r2}")
                stars = " | ".join(f"{g['n']:9d}" for g in groups)
                print(f"  {'stars':24s} {len(rows):6d} | {stars}")
            eff = " | ".join(f"{g['metrics'][label]['efficiency']:9.3f}" for g in groups)
            whole = result["overall"]["metrics"][label]["efficiency"]
            print(f"  {method:24s} {whole:6.3f} | {eff}")
    result = score(
        true[rows],
        network[0][rows],
        snr[rows],
        names,
        sigma=network[1][rows],
        bayes_mean=ceiling,
        bayes_sigma=ceiling_sigma,
    )
    groups = [g for g in result["snr"] if g["n"]]
    for label in names:
        print(f"\n{label}: within 1σ / 2σ, per S/N bin")
        print(f"  {'':24s} {'all':>13s} | " + " | ".join(f"{g['bin']:>13s}" for g in groups))
        for method, key in (("ceiling, its own σ", "bayes_coverage"), ("network", "coverage")):
            cells = [
                f"{m[key + '_1sigma']:.3f} / {m[key + '_2sigma']:.3f}"
                for m in [result["overall"]["metrics"][label]]
                + [g["metrics"][label] for g in groups]
            ]
            print(f"  {method:24s} {cells[0]:>13s} | " + " | ".join(f"{c:>13s}" for c in cells[1:]))


if __name__ == "__main__":
    main()
