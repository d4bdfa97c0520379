"""End-to-end `specvit.predict` throughput against the bare model forward, in one run.

For each model preset, one batch of spectra (flux + σ; 64 for the paper model, 256 for the
tiny one) goes through

* **forward**: ``model(x)`` alone on the batch, with ``x`` prepared beforehand;
* **predict, native grid**: ``Predictor.predict(flux, error)`` on the model's grid
  (validation, masking, normalisation, SNR, flags and the output table included);
* **predict, resampled**: the same spectra given on a 2.5× finer, shifted grid, so every
  spectrum is also resampled.

The overhead is ``time(predict) / time(forward) − 1``, from the best time of each over the
rounds and as the median of the per-round ratio (these runs leave the physical context off).

**Physical context**: the cost of ``physics=True`` (per-star CRLB, emulator fit with v_rad, the
domain flags) on top of ``physics=False``, on 256 engine spectra (i = 20.5–22.5, ETC noise when
``../shared`` is there), for the example model and for a fresh ``specvit_tiny`` with the default
recipe's Gaussian head and ``flux+lnsnr`` input; the two are timed back to back in each round,
in wall-clock and in process CPU time (which a shared CPU disturbs less).

``--accuracy`` also measures how far bf16 autocast moves the predictions of the small model
trained by the test suite (``tests/predict_helpers.py``), compared with that model's own error.

Run from the repository root::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/predict_throughput.py --accuracy
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/predict_throughput.py --physics-only
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


def measure(preset: str, batch_size: int, rounds: int, device: str) -> None:
    """Print spectra/s of forward, predict (native) and predict (resampled) for one preset.

    One batch of ``batch_size`` spectra; each round times the three variants back to back, so
    every round sees the same background load. Reported: the best time of each variant over the
    rounds, and the median over rounds of the paired ratio predict / forward.
    """
    model = specvit.create_model(preset).eval()
    predictor = Predictor(
        model, device=device, batch_size=batch_size, precision="fp32", physics=False
    )
    wave = model.wavelength
    rng = np.random.default_rng(0)
    flux = (1.0 + 0.05 * rng.standard_normal((batch_size, wave.size))).astype(np.float32)
    error = np.full_like(flux, 0.05)
    dev = predictor.device
    f, e = torch.from_numpy(flux).to(dev), torch.from_numpy(error).to(dev)
    x = model_input(f, e, model.config)[0]

    def forward() -> None:
        with torch.inference_mode():
            model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step = (wave[1] - wave[0]) / 2.5
    fine = np.arange(wave[0] - 2.0 + 0.37 * step, wave[-1] + 2.0, step)
    fine_flux = np.stack([np.interp(fine, wave, row) for row in flux]).astype(np.float32)
    fine_error = np.full_like(fine_flux, 0.05 * np.sqrt(2.5))
    variants = {
        "forward only": forward,
        "predict, native grid": lambda: predictor.predict(flux, error),
        "predict, resampled": lambda: predictor.predict(fine_flux, fine_error, wavelength=fine),
    }
    for fn in variants.values():  # warm-up (and the resampler's sparse matrix)
        fn()
    times = np.zeros((rounds, len(variants)))
    for r in range(rounds):
        for i, fn in enumerate(variants.values()):
            start = time.perf_counter()
            fn()
            times[r, i] = time.perf_counter() - start
    best = times.min(axis=0)
    for i, name in enumerate(variants):
        line = f"  {preset:16s} {name:22s} {batch_size / best[i]:9.1f} spectra/s"
        if i:
            paired = np.median(times[:, i] / times[:, 0])
            line += f"  overhead: best {100 * (best[i] / best[0] - 1):+5.1f}%"
            line += f", median paired {100 * (paired - 1):+5.1f}%"
        print(line, flush=True)


def physics_models() -> dict[str, specvit.SpecViT]:
    """The example model, and a fresh model of the default recipe's size and head."""
    root = Path(__file__).resolve().parents[1]
    example = specvit.load(root / "examples" / "models" / "specvit-tiny-engine")
    fresh = specvit.create_model(
        "specvit_tiny",
        label_names=("T_eff", "log_g", "M_H"),
        label_shift=(4875.0, 3.0, -1.0),
        label_scale=(650.0, 1.15, 0.86),
        head="gaussian",
        input_channels="flux+lnsnr",
        domain=example.config.domain,
    )
    return {"example model": example, "fresh tiny, gaussian": fresh.eval()}


def engine_spectra(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` engine spectra (flux, σ) across the default prior, i = 20.5–22.5."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from specvit.instrument import PFSNoiseModel
    from training.simulate import Simulator

    etc = Path(__file__).resolve().parents[2] / "shared" / "data" / "pfs_etc"
    noise = PFSNoiseModel.from_etc(etc) if etc.is_dir() else PFSNoiseModel.default()
    draw = Simulator(noise=noise).sample(n, torch.Generator().manual_seed(0))
    return draw["flux"].numpy(), draw["error"].numpy()


def measure_physics(name: str, model, batch_size: int, rounds: int, device: str) -> None:
    """Print predict with and without the physical context, paired in each round."""
    flux, error = engine_spectra(batch_size)
    on = Predictor(model, device=device, batch_size=batch_size, precision="fp32")
    off = Predictor(model, device=device, batch_size=batch_size, precision="fp32", physics=False)
    on.predict(flux, error)  # warm-up (and the emulator's one-off load)
    off.predict(flux, error)
    wall, cpu = np.zeros((rounds, 2)), np.zeros((rounds, 2))
    for r in range(rounds):
        for i, predictor in enumerate((off, on)):
            start, start_cpu = time.perf_counter(), time.process_time()
            predictor.predict(flux, error)
            wall[r, i] = time.perf_counter() - start
            cpu[r, i] = time.process_time() - start_cpu
    for clock, t in (("wall", wall), ("cpu", cpu)):
        best = t.min(axis=0)
        paired = np.median(t[:, 1] / t[:, 0])
        print(
            f"  {name:22s} {clock:4s} physics off {batch_size / best[0]:7.1f} spectra/s, on "
            f"{batch_size / best[1]:7.1f}: cost best {100 * (best[1] / best[0] - 1):+5.1f}%, "
            f"median paired {100 * (paired - 1):+5.1f}%",
            flush=True,
        )


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
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--accuracy", action="store_true", help="also measure bf16 vs fp32")
    parser.add_argument(
        "--physics-only", action="store_true", help="only the physical context's cost"
    )
    args = parser.parse_args()
    print(
        f"specvit {specvit.__version__}, torch {torch.__version__}, {platform.processor() or '?'}"
        f", {torch.get_num_threads()} threads, {args.rounds} rounds"
    )
    if not args.physics_only:
        measure("specvit_l6_h256", 64, args.rounds, args.device)
        measure("specvit_tiny", 256, args.rounds, args.device)
    for name, model in physics_models().items():
        measure_physics(name, model, 256, args.rounds, args.device)
    if args.accuracy:
        accuracy()


if __name__ == "__main__":
    main()
