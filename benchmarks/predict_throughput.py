"""End-to-end `specvit.predict` throughput against the bare model forward, in one run.

For each model preset, N spectra (flux + σ) go through

* **forward**: ``model(x)`` alone on the batches, with ``x`` prepared beforehand;
* **predict, native grid**: ``Predictor.predict(flux, error)`` on the model's grid
  (validation, masking, normalisation, SNR, flags and the output table included);
* **predict, resampled**: the same spectra given on a 2.5× finer, shifted grid, so every
  batch is also resampled.

The overhead is ``time(predict) / time(forward) − 1``. ``--accuracy`` also measures how far
bf16 autocast moves the predictions of the small model trained by the test suite
(``tests/predict_helpers.py``), compared with that model's own error.

Run from the repository root::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/predict_throughput.py --accuracy
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import specvit
from specvit.inference import Predictor
from specvit.preprocessing import model_input


def _best_interleaved(fns: list, repeats: int) -> list[float]:
    """Best wall time of each function, running them in turn ``repeats`` times.

    Interleaving exposes every variant to the same background load on a shared machine.
    """
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def measure(preset: str, n: int, batch_size: int, repeats: int, device: str) -> None:
    """Print spectra/s of forward, predict (native) and predict (resampled) for one preset."""
    model = specvit.create_model(preset).eval()
    predictor = Predictor(model, device=device, batch_size=batch_size, precision="fp32")
    wave = model.wavelength
    rng = np.random.default_rng(0)
    flux = (1.0 + 0.05 * rng.standard_normal((n, wave.size))).astype(np.float32)
    error = np.full_like(flux, 0.05)
    dev = predictor.device
    batches = []
    for start in range(0, n, batch_size):
        f = torch.from_numpy(flux[start : start + batch_size]).to(dev)
        e = torch.from_numpy(error[start : start + batch_size]).to(dev)
        batches.append(model_input(f, e, model.config)[0])

    def forward() -> None:
        with torch.inference_mode():
            for x in batches:
                model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step = (wave[1] - wave[0]) / 2.5
    fine = np.arange(wave[0] - 2.0 + 0.37 * step, wave[-1] + 2.0, step)
    fine_flux = np.stack([np.interp(fine, wave, row) for row in flux]).astype(np.float32)
    fine_error = np.full_like(fine_flux, 0.05 * np.sqrt(2.5))

    forward()  # warm-up
    t_forward, t_native, t_resampled = _best_interleaved(
        [
            forward,
            lambda: predictor.predict(flux, error),
            lambda: predictor.predict(fine_flux, fine_error, wavelength=fine),
        ],
        repeats,
    )
    for name, t in (
        ("forward only", t_forward),
        ("predict, native grid", t_native),
        ("predict, resampled", t_resampled),
    ):
        overhead = "" if t is t_forward else f"  overhead {100 * (t / t_forward - 1):+.1f}%"
        print(f"  {preset:16s} {name:22s} {n / t:9.0f} spectra/s{overhead}")


def accuracy() -> None:
    """bf16 autocast vs fp32 on the test suite's trained small model."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.predict_helpers import spectrum, trained_state

    config, state = trained_state()
    model = specvit.SpecViT(specvit.SpecViTConfig.from_dict(config))
    model.load_state_dict(state)
    rng = np.random.default_rng(1)
    log_g = rng.uniform(0, 5, 2000)
    flux = spectrum(model.wavelength, log_g) + 0.02 * rng.standard_normal((2000, 1024))
    fp32 = np.asarray(Predictor(model, precision="fp32").predict(flux)["log_g"])
    bf16 = np.asarray(Predictor(model, precision="bf16").predict(flux)["log_g"])
    print(
        f"  bf16 - fp32: rms {np.std(bf16 - fp32):.4f} dex, max {np.abs(bf16 - fp32).max():.4f}"
        f" dex; the model's own error (fp32 - truth): rms {np.std(fp32 - log_g):.4f} dex"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accuracy", action="store_true", help="also measure bf16 vs fp32")
    args = parser.parse_args()
    print(
        f"specvit {specvit.__version__}, torch {torch.__version__}, {platform.processor() or '?'}"
        f", {torch.get_num_threads()} threads, batch size {args.batch_size}"
    )
    measure("specvit_l6_h256", 512, args.batch_size, args.repeats, args.device)
    measure("specvit_tiny", 4096, args.batch_size, args.repeats, args.device)
    if args.accuracy:
        accuracy()


if __name__ == "__main__":
    main()
