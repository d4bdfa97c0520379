"""Spectra a model trained on the data engine was not meant for, made from the data engine.

Used by ``tests/test_predict_physics.py`` and ``docs/figures/make_physics_figure.py`` to check
the ``OUT_OF_DOMAIN`` / ``OUTSIDE_PRIOR`` / ``LOW_SNR`` / ``RV_OUTSIDE_TRAINING`` flags of
:func:`specvit.predict` (see ``docs/predict.md``).
"""

from __future__ import annotations

import torch

from specvit.instrument import PFSNoiseModel
from training.engine.simulate import Prior, Simulator

__all__ = ["CASES", "MAGS", "make_case"]

#: HSC-i magnitudes of every case: median SNR ≈ 2–15 with 12 × 900 s.
MAGS = (20.0, 22.7)
#: The cases, in figure order.
CASES = ("engine", "counts", "flat", "power_law", "rv_300", "teff_7500", "noise")


def make_case(
    name: str, noise: PFSNoiseModel, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` spectra of one case: flux, σ and the SNR of the star each one started from.

    Cases: ``engine`` (the engine's own spectra across the default prior), ``counts`` (the
    same in detector counts: the instrument throughput left in), ``flat`` and ``power_law``
    (a featureless f_ν ∝ 1 or ∝ λ⁻² continuum at the engine stars' levels, observed with the
    same noise model), ``rv_300`` (stars moving at 300 km/s, observed frame), ``teff_7500``
    (the emulator at T_eff = 7500 K, beyond the default prior's 6000 K) and ``noise`` (zero-mean
    noise with the engine stars' σ).
    """
    if name == "rv_300":
        prior = Prior(mag=MAGS, rv=(299.99, 300.01))
    elif name == "teff_7500":
        prior = Prior(T_eff=(7499.0, 7501.0), mag=MAGS)
    else:
        prior = Prior(mag=MAGS)
    d = Simulator(noise=noise, prior=prior).sample(n, generator)
    flux, error, snr = d["flux"], d["error"], d["snr"]
    if name == "counts":
        gain = (noise.signal_ab18 / noise.signal_ab18.mean()).to(flux.dtype)
        return flux * gain, error * gain, snr
    if name == "noise":
        return error * torch.randn(error.shape, generator=generator), error, snr
    if name in ("flat", "power_law"):
        wave = torch.from_numpy(noise.grid.wavelength())
        shape = torch.ones_like(wave) if name == "flat" else (wave / 8000.0) ** -2.0
        clean = flux.median(dim=-1, keepdim=True).values.double() * shape
        flux, error = noise.observe(clean, generator)
        return flux.float(), error.float(), snr
    if name not in ("engine", "rv_300", "teff_7500"):
        raise ValueError(f"unknown case {name!r}; cases: {CASES}")
    return flux, error, snr
