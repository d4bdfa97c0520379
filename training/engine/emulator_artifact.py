"""Build specvit's compact emulator artifact from the Doppler Cannon cool-star model (MIT).

Input: the cool-star Cannon model of the PyPI package ``thedoppler==1.1.32`` (D. Nidever, MIT
licence), file ``doppler/data/cannongrid_3000_18000_coolstars_norm_cubic_model.pkl``, as cropped to
7050–8900 Å into ``../shared/data/emulator/doppler_cannon_coolstars_7050_8900.npz`` (keys
described in ``../shared/README.md``). Output: ``specvit/emulator/data/doppler_coolstars.npz`` at
the model's native resolution (0.1 Å air steps), float32 coefficients; the line-spread function
and the resampling onto the PFS MR pixels are folded in when :meth:`specvit.emulator.Emulator.load`
runs (≈ 0.5 s), so any resolving power or grid can be asked for.

What is kept: the 20 normalised-flux coefficients per 0.1 Å pixel, the log10-continuum
coefficients on the model's continuum nodes within 6900–9100 Å, the polynomial's terms as an
integer power matrix, the label scaling, and the 689 training labels of the grid. Nothing is
refitted: the artifact reproduces the input model exactly (checked here before writing).

Run: ``python training/engine/emulator_artifact.py [--source PATH] [--out PATH]``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from specvit.labels import LABEL_NAMES
from training.paths import REPO_ROOT, SHARED_DIR

__all__ = [
    "ATTRIBUTION",
    "CONTINUUM_RANGE",
    "DEFAULT_OUT",
    "DEFAULT_SOURCE",
    "VALID_HIGH",
    "VALID_LOW",
    "build",
    "design",
    "power_matrix",
]

DEFAULT_SOURCE = SHARED_DIR / "data" / "emulator" / "doppler_cannon_coolstars_7050_8900.npz"
DEFAULT_OUT = REPO_ROOT / "specvit" / "emulator" / "data" / "doppler_coolstars.npz"
#: Continuum nodes kept: those covering the MR arm in air with room for interpolation.
CONTINUUM_RANGE = (6900.0, 9100.0)
#: Valid ranges of the grid the polynomial was fitted to (../shared/README.md).
VALID_LOW = (3500.0, 0.0, -2.5)
VALID_HIGH = (8000.0, 5.0, 0.5)
ATTRIBUTION = (
    "Derived from the Cannon cool-star model cannongrid_3000_18000_coolstars_norm_cubic_model.pkl "
    "of the Doppler package (PyPI thedoppler 1.1.32), Copyright (c) David Nidever, MIT licence; "
    "cropped to 7050-8900 A (air) and repacked by specvit's training/engine/emulator_artifact.py."
)


def power_matrix(terms: str, n_labels: int = 3) -> np.ndarray:
    """Integer ``(T + 1, n_labels)`` powers: row 0 is the constant term, then one row per term."""
    parsed = ast.literal_eval(terms)
    powers = np.zeros((len(parsed) + 1, n_labels), dtype=np.int8)
    for row, term in enumerate(parsed, start=1):
        for label, power in term:
            if float(power) != int(power):
                raise ValueError(f"non-integer power {power} in term {term}")
            powers[row, int(label)] += int(power)
    return powers


def design(labels: np.ndarray, powers: np.ndarray, fiducials, scales) -> np.ndarray:
    """Design vectors ``(N, T + 1)`` of labels ``(N, 3)``."""
    x = (np.asarray(labels, np.float64) - fiducials) / scales
    return np.prod(x[:, None, :] ** powers[None, :, :], axis=-1)


def build(source: Path) -> dict[str, np.ndarray]:
    """Read the cropped Doppler model and return the artifact's arrays."""
    src = np.load(source)
    if tuple(str(s) for s in src["label_names"]) != ("TEFF", "LOGG", "FEH"):
        raise ValueError(f"unexpected label names {src['label_names']}")
    wave = src["wave_air"]
    step = float(np.round(wave[1] - wave[0], 6))
    if not np.allclose(wave, wave[0] + step * np.arange(wave.size), rtol=0, atol=1e-6):
        raise ValueError("the emulator's wavelengths are not evenly spaced")
    powers = power_matrix(str(src["terms"]))
    keep = (src["cont_wave"] >= CONTINUUM_RANGE[0]) & (src["cont_wave"] <= CONTINUUM_RANGE[1])
    out = {
        "wave_start": np.float64(wave[0]),
        "wave_step": np.float64(step),
        "theta": src["theta"].astype(np.float32),
        "cont_wave": src["cont_wave"][keep].astype(np.float64),
        "cont_theta": src["cont_theta"][keep].astype(np.float32),
        "powers": powers,
        "fiducials": src["fiducials"].astype(np.float64),
        "scales": src["scales"].astype(np.float64),
        "training_labels": src["training_labels"].astype(np.float32),
        "label_names": np.array(LABEL_NAMES),
        "valid_low": np.array(VALID_LOW),
        "valid_high": np.array(VALID_HIGH),
        "attribution": np.array(ATTRIBUTION),
    }
    # Check against the source's own evaluation rule (../shared/README.md) on its training labels.
    labels = src["training_labels"][::23]
    terms = ast.literal_eval(str(src["terms"]))
    x = (labels - src["fiducials"]) / src["scales"]
    v_ref = np.stack(
        [np.ones(len(x))] + [np.prod([x[:, i] ** p for i, p in t], axis=0) for t in terms], -1
    )
    v = design(labels, powers, out["fiducials"], out["scales"])
    if not np.allclose(v, v_ref, rtol=1e-12, atol=1e-12):
        raise AssertionError("power matrix does not reproduce the source's terms")
    return out
