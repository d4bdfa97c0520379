"""Speed of ``predict``'s exact mode (importance sampling under the emulator) beside the network.

On the first ``--n`` spectra of an evaluation-set file (``python -m training make-eval-sets``;
default: the faint test set in ``runs/eval_sets``), in one run:

* **network**: ``Predictor.predict(flux, error)`` with ``physics=False`` and the bundled default
  model (or ``--model``): labels and σ;
* **exact**: the same with ``exact=True`` (``--samples`` per spectrum): the network, then the
  posterior under the emulator, the model's prior and the noise model, as users run it (on the
  CPU a batch is cut across the cores);
* a 1024³ fp32 matmul before and after, for the machine's speed in the same run.

``--physics`` times both with the physical context (``predict``'s default: the per-star CRLB,
the emulator fit and the flags; exact mode checks the network's answer too).

Each is timed ``--repeat`` times (best time), after a warm-up call on 32 spectra.

It prints spectra/s of each, exact mode's time in network-equivalents and its ESS distribution.
Run from the repository root::

    .venv/bin/python benchmarks/exact_posterior.py --threads 2
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from timing import matmul_gflops

import specvit
from specvit.inference import Predictor
from training.evaluation.eval_sets import DEFAULT_N, EvalSetSettings, eval_set_path, read_eval_set
from training.evaluation.model_scores import exact_summary


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
    parser.add_argument("--n", type=int, default=512, help="spectra timed")
    parser.add_argument("--samples", type=int, default=256, help="importance samples per star")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--physics", action="store_true", help="with the physical context")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = args.eval_set or eval_set_path(EvalSetSettings("test", DEFAULT_N["test"]))
    data = read_eval_set(path)
    flux, error = data["flux"][: args.n], data["error"][: args.n]
    network = Predictor(args.model, physics=args.physics)
    exact = Predictor(args.model, physics=args.physics, exact=True, exact_samples=args.samples)
    for predictor in (network, exact):  # warm-up calls
        predictor.predict(flux[:32], error[:32])
    gflops_before = matmul_gflops(torch.device("cpu"), torch.float32, 1.0)
    t_net, _ = best_time(lambda: network.predict(flux, error), args.repeat)
    t_exact, table = best_time(lambda: exact.predict(flux, error), args.repeat)
    gflops_after = matmul_gflops(torch.device("cpu"), torch.float32, 1.0)

    ess = exact_summary(table)
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} thread(s), torch "
        f"{torch.__version__}, specvit {specvit.__version__}; {path.name}, {args.n} spectra, "
        f"model {exact.source}"
    )
    print(f"matmul 1024³ fp32: {gflops_before:.1f} / {gflops_after:.1f} GFLOP/s (before/after)")
    physics = f"physics={args.physics}"
    print(f"network (predict, {physics}): {args.n / t_net:8.1f} spectra/s")
    print(
        f"exact ({args.samples} samples, {physics}): {args.n / t_exact:8.1f} spectra/s "
        f"= {t_exact / t_net:.1f}x the network's time; ESS median {ess['ess_median']:.1f}, "
        f"5th percentile {ess['ess_p5']:.1f}, LOW_ESS {ess['low_ess_fraction']:.3f}"
    )


if __name__ == "__main__":
    main()
