"""Speed of the exact posterior (importance sampling under the emulator) beside the network alone.

On the first ``--n`` spectra of an evaluation-set file (``python -m training make-eval-sets``;
default: the faint test set in ``runs/eval_sets``), in one run:

* **network**: ``Predictor.predict(flux, error, physics=False)`` with the bundled default model
  (or ``--model``): labels and σ;
* **exact**: :class:`specvit.inference.exact.ImportancePosterior` with the emulator and prior
  ``predict(exact=True)`` uses, on the same spectra from the network's labels and σ,
  ``--samples`` per spectrum in each of the ``--rounds`` settings;
* a 1024³ fp32 matmul before and after, for the machine's speed in the same run.

Each is timed ``--repeat`` times (best time), after a warm-up call on 16 spectra.

It prints spectra/s of each, the exact step's cost in network-equivalents and its ESS
distribution. Run from the repository root::

    .venv/bin/python benchmarks/exact_posterior.py --threads 2
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from timing import matmul_gflops

import specvit
from specvit.inference import Predictor
from specvit.inference.exact import ExactCorrection, ImportancePosterior
from specvit.labels import LABEL_NAMES
from training.evaluation.eval_sets import DEFAULT_N, EvalSetSettings, eval_set_path, read_eval_set


def best_time(fn, repeat: int) -> tuple[float, object]:
    """The best wall-clock seconds of ``repeat`` calls, and the last call's result."""
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-set", type=Path, help="evaluation-set file (default: faint test)")
    parser.add_argument("--model", help="model folder or Hub id (default: the bundled model)")
    parser.add_argument("--n", type=int, default=256, help="spectra timed")
    parser.add_argument("--samples", type=int, default=256, help="importance samples per star")
    parser.add_argument("--chunk", type=int, default=8, help="spectra sampled together")
    parser.add_argument(
        "--rounds", type=int, nargs="+", default=[3], help="sampling rounds (several: each timed)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = args.eval_set or eval_set_path(EvalSetSettings("test", DEFAULT_N["test"]))
    data = read_eval_set(path)
    flux, error = data["flux"][: args.n], data["error"][: args.n]
    predictor = Predictor(args.model, physics=False)
    table = predictor.predict(flux, error)
    # the emulator's label order, and the prior and emulator that predict(exact=True) uses
    mean = torch.as_tensor(np.stack([table[n] for n in LABEL_NAMES], 1), dtype=torch.float64)
    std = torch.as_tensor(
        np.stack([table[f"{n}_err"] for n in LABEL_NAMES], 1), dtype=torch.float64
    )
    exact = ExactCorrection(predictor.config, n_samples=args.samples).sampler
    flux_t, error_t = torch.as_tensor(flux), torch.as_tensor(error)
    samplers = {
        r: ImportancePosterior(
            exact.model, exact.prior, n_samples=args.samples, rounds=r, chunk=args.chunk
        )
        for r in args.rounds
    }

    predictor.predict(flux[:16], error[:16])  # warm-up calls
    for sampler in samplers.values():
        sampler(flux_t[:16], error_t[:16], mean[:16], std[:16])
    gflops_before = matmul_gflops(torch.device("cpu"), torch.float32, 1.0)
    t_net, _ = best_time(lambda: predictor.predict(flux, error), args.repeat)
    results = {}
    for r, sampler in samplers.items():
        generator = torch.Generator().manual_seed(0)
        results[r] = best_time(
            lambda s=sampler, g=generator: s(flux_t, error_t, mean, std, g), args.repeat
        )
    gflops_after = matmul_gflops(torch.device("cpu"), torch.float32, 1.0)

    print(
        f"{platform.processor() or platform.machine()}, {args.threads} thread(s), torch "
        f"{torch.__version__}, specvit {specvit.__version__}; {path.name}, {args.n} spectra"
    )
    print(f"matmul 1024³ fp32: {gflops_before:.1f} / {gflops_after:.1f} GFLOP/s (before/after)")
    print(f"network (predict, physics=False): {args.n / t_net:8.1f} spectra/s")
    for r, (t_exact, post) in results.items():
        low = samplers[r].low_ess(post).float().mean()
        print(
            f"exact ({args.samples} samples, {r} round(s)): {args.n / t_exact:8.1f} spectra/s "
            f"= {t_exact / t_net:.1f}x the network's time; ESS median {post.ess.median():.1f}, "
            f"5th percentile {post.ess.quantile(0.05):.1f}, "
            f"below {samplers[r].min_ess:g}: {low:.3f}"
        )


if __name__ == "__main__":
    main()
