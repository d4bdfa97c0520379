"""A small real SpecViT trained in seconds on synthetic line spectra, for the predict tests.

The spectra are a flat continuum with Gaussian absorption lines whose depths depend linearly
on one label, ``log_g`` in [0, 5]; the tiny preset learns it well enough in a few hundred
steps on a CPU that its predictions carry information (checked by the tests that use it).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

import specvit
from specvit.preprocessing import model_input

__all__ = [
    "GRID",
    "LINE_WIDTH",
    "observed_frame_model",
    "save_trained_model",
    "spectrum",
    "trained_state",
]

#: Gaussian σ of the absorption lines, Å (≈7 model pixels, so pixel sampling barely matters).
LINE_WIDTH = 3.0
#: The test model's grid: 1024 PFS-MR-sized pixels (0.4272 Å) from 7500 Å, vacuum — a quarter
#: of the MR arm, so training takes seconds.
GRID = {"input_length": 1024, "wave_start": 7500.0, "wave_stop": 7500.0 + 1023 * 0.4272}
_CENTRES = np.linspace(7520.0, 7920.0, 12)
_SLOPE = np.full(12, 0.08)


def spectrum(wave: np.ndarray, log_g: np.ndarray) -> np.ndarray:
    """Noiseless flux (N, L) of stars with labels ``log_g`` (N,) at wavelengths ``wave`` (L,)."""
    depth = 0.3 + _SLOPE[None] * (np.asarray(log_g)[:, None] - 2.5)  # (N, lines)
    profile = np.exp(-0.5 * ((wave[None] - _CENTRES[:, None]) / LINE_WIDTH) ** 2)  # (lines, L)
    return 1.0 - depth @ profile


@functools.lru_cache(maxsize=1)
def trained_state(steps: int = 200, seed: int = 0) -> tuple[dict, dict]:
    """Train ``specvit_tiny`` (point head, log g) on noisy synthetic spectra.

    Returns
    -------
    config : dict
        The model config as a dict.
    state : dict
        Its trained state dict.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same trained weights whatever the machine's thread count
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)  # the weight initialisation draws from the global RNG
            return _train(steps, seed)
    finally:
        torch.set_num_threads(threads)


def _train(steps: int, seed: int) -> tuple[dict, dict]:
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = specvit.create_model(
        "specvit_tiny",
        label_names=("log_g",),
        label_shift=(2.5,),
        label_scale=(1.5,),
        pool="mean",
        **GRID,
    )
    wave = model.wavelength
    labels = rng.uniform(0, 5, 4096)
    clean = torch.from_numpy(spectrum(wave, labels)).float()
    target = model.normalize_labels(torch.from_numpy(labels).float()[:, None])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(labels), (32,), generator=gen)
        sigma = 0.01 + 0.04 * torch.rand(32, 1, generator=gen)
        flux = clean[idx] + sigma * torch.randn(32, clean.shape[1], generator=gen)
        x, _ = model_input(flux, sigma.expand_as(flux), model.config)
        loss = torch.nn.functional.mse_loss(model(x)[..., 0], target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model.config.to_dict(), {k: v.detach().clone() for k, v in model.state_dict().items()}


def save_trained_model(folder: Path) -> Path:
    """Write the trained test model with ``save_pretrained`` to ``folder`` and return it."""
    config, state = trained_state()
    model = specvit.SpecViT(specvit.SpecViTConfig.from_dict(config))
    model.load_state_dict(state)
    model.save_pretrained(folder)
    return folder


def observed_frame_model(seed: int = 0) -> specvit.SpecViT:
    """An untrained model that takes observed-frame spectra (``rest_frame``, continuum input,
    Gaussian head, the three labels): the plumbing of the velocity, without training."""
    torch.manual_seed(seed)
    config = specvit.get_preset(
        "specvit_tiny",
        input_channels="flux+lnsnr",
        input_norm="continuum",
        rest_frame=True,
        head="gaussian",
        label_names=("T_eff", "log_g", "M_H"),
        label_shift=(4900.0, 3.0, -1.0),
        label_scale=(600.0, 1.0, 0.8),
    )
    return specvit.SpecViT(config).eval()
