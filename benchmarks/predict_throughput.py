"""End-to-end `specvit.predict` throughput of one model against its bare forward, in one run.

One batch of engine spectra (flux + σ, i = 20.5–22.5, ETC noise when ``../shared`` is there)
goes through, back to back in every round:

* **forward**: ``model(x)`` alone, with ``x`` prepared beforehand (``model_input``);
* **predict**: ``Predictor.predict(flux, error)`` on the model's grid with ``physics=False``
  (validation, masking, normalisation, SNR, flags and the output table included);
* **predict + physics**: the same with ``physics=True``, ``predict``'s default (the per-star
  CRLB, the emulator fit with v_rad and the domain flags on top);
* **predict, resampled**: ``physics=False``, the spectra given on a 2.5× finer, shifted grid,
  so every spectrum is also resampled.

Each path's overhead is ``time(path) / time(forward) − 1``: from the best wall-clock time of
each over the rounds, and as the median over rounds of the paired ratio, in wall-clock and in
process CPU time (on a shared CPU the paired medians are the figures to read; with one thread
the CPU time is the least disturbed by other jobs, with more it also counts threads that spin).
A 1024³ fp32 matmul before and after the rounds gives the machine's speed in the same run.

``--model`` is a model folder or Hub repo id (``specvit.load``), a ``specvit.create_model``
preset, or a training recipe (``training/configs`` name or YAML file), built fresh with the
recipe's architecture, head, input channels, labels and domain: an untrained model costs the
same as the trained one. The default, ``default``, is the default model's recipe.

``--accuracy`` also measures how far bf16 autocast moves the predictions of the small model
trained by the test suite (``tests/predict_helpers.py``), compared with that model's own error.

Run from the repository root::

    .venv/bin/python benchmarks/predict_throughput.py --threads 2
    .venv/bin/python benchmarks/predict_throughput.py --model path/to/model/folder
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
from specvit.inference.predictor import resolve_device
from specvit.preprocessing import model_input
from training.paths import REPO_ROOT


def recipe_model(recipe: str) -> specvit.SpecViT:
    """A fresh model as the trainer would build it for ``recipe`` (its label statistics from
    the recipe's prior)."""
    from training.engine.simulate import Prior
    from training.trainer.config import load_config
    from training.trainer.loop import label_statistics

    config = load_config(recipe)
    prior = Prior(**config.data.prior)
    labels = prior.sample(4096, torch.Generator().manual_seed(0))["labels"]
    shift, scale = label_statistics(labels, config.labels, config.label_norm, config.label_stats)
    return specvit.create_model(
        config.model.preset,
        **config.model.overrides,
        label_names=tuple(config.labels),
        label_shift=shift,
        label_scale=scale,
        domain=prior.domain(),
    )


def resolve_model(spec: str) -> specvit.SpecViT:
    """The model ``--model`` names: a folder or Hub id, a preset, or a training recipe."""
    from training.trainer.config import CONFIGS_DIR

    if Path(spec).is_dir():
        return specvit.load(spec)
    if spec in specvit.list_models():
        return specvit.create_model(spec)
    if (CONFIGS_DIR / f"{spec}.yaml").is_file() or spec.endswith((".yaml", ".yml")):
        return recipe_model(spec)
    return specvit.load(spec)


def engine_spectra(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` engine spectra (flux, σ) across the default prior, i = 20.5–22.5."""
    from specvit.instrument import PFSNoiseModel
    from training.engine.simulate import Simulator

    etc = REPO_ROOT.parent / "shared" / "data" / "pfs_etc"
    noise = PFSNoiseModel.from_etc(etc) if etc.is_dir() else PFSNoiseModel.default()
    draw = Simulator(noise=noise).sample(n, torch.Generator().manual_seed(0))
    return draw["flux"].numpy(), draw["error"].numpy()


def measure(model: specvit.SpecViT, batch_size: int, rounds: int, device: str) -> None:
    """Print spectra/s of the forward and of each predict path, and their overheads."""
    flux, error = engine_spectra(batch_size)
    plain = Predictor(model, device=device, batch_size=batch_size, precision="fp32", physics=False)
    physics = Predictor(model, device=device, batch_size=batch_size, precision="fp32")
    dev = plain.device
    f, e = torch.from_numpy(flux).to(dev), torch.from_numpy(error).to(dev)
    x = model_input(f, e, model.config)[0]

    def forward() -> None:
        with torch.inference_mode():
            model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    wave = model.wavelength
    step = (wave[1] - wave[0]) / 2.5
    fine = np.arange(wave[0] - 2.0 + 0.37 * step, wave[-1] + 2.0, step)
    fine_flux = np.stack([np.interp(fine, wave, row) for row in flux]).astype(np.float32)
    fine_error = np.stack([np.interp(fine, wave, row) for row in error]) * np.sqrt(2.5)
    paths = {
        "forward": forward,
        "predict": lambda: plain.predict(flux, error),
        "predict + physics": lambda: physics.predict(flux, error),
        "predict, resampled": lambda: plain.predict(fine_flux, fine_error, wavelength=fine),
    }
    for fn in paths.values():  # warm-up (the emulator's load, the resampler's sparse matrix)
        fn()
        fn()
    wall, cpu = np.zeros((rounds, len(paths))), np.zeros((rounds, len(paths)))
    for r in range(rounds):
        for i, fn in enumerate(paths.values()):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[r, i] = time.perf_counter() - start
            cpu[r, i] = time.process_time() - start_cpu
    best = wall.min(axis=0)
    print(f"  {'':20s} {'wall clock':>10s}   overhead on the forward (median paired: wall, CPU)")
    print(f"  {'path':20s} {'spectra/s':>10s}   {'best':>7s} {'wall':>8s} {'CPU':>8s}")
    for i, name in enumerate(paths):
        line = f"  {name:20s} {batch_size / best[i]:10.1f}"
        if i:
            paired = [np.median(t[:, i] / t[:, 0]) - 1 for t in (wall, cpu)]
            line += f"   {100 * (best[i] / best[0] - 1):+6.1f}% {100 * paired[0]:+7.1f}%"
            line += f" {100 * paired[1]:+7.1f}%"
        print(line, flush=True)
    paired = [np.median(t[:, 2] / t[:, 1]) - 1 for t in (wall, cpu)]
    print(
        f"  physics=True on physics=False: best {100 * (best[2] / best[1] - 1):+.1f}%, "
        f"median paired {100 * paired[0]:+.1f}% (wall), {100 * paired[1]:+.1f}% (CPU)"
    )


def accuracy() -> None:
    """bf16 autocast vs fp32 on the test suite's trained small model."""
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
    parser.add_argument(
        "--model", default="default", help="folder, Hub id, preset or training recipe"
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--accuracy", action="store_true", help="also measure bf16 vs fp32")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = resolve_model(args.model).eval()
    c = model.config
    device = resolve_device(args.device)
    print(
        f"specvit {specvit.__version__}, torch {torch.__version__}, {platform.processor() or '?'}"
        f", {torch.get_num_threads()} threads, {args.rounds} rounds, batch {args.batch}, {device}"
    )
    print(
        f"model {args.model}: {c.num_labels} labels {c.label_names}, head {c.head}, input "
        f"{c.input_channels}, {model.num_parameters() / 1e3:.0f} k parameters"
    )
    print(f"  matmul 1024^3 fp32 before: {matmul_gflops(device, torch.float32, 1.0):7.1f} GFLOP/s")
    measure(model, args.batch, args.rounds, str(device))
    print(f"  matmul 1024^3 fp32 after:  {matmul_gflops(device, torch.float32, 1.0):7.1f} GFLOP/s")
    if args.accuracy:
        accuracy()


if __name__ == "__main__":
    main()
