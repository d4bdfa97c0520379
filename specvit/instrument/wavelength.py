"""Air ↔ vacuum wavelength conversion (IAU standard, Morton 2000 refractive index of dry air).

The refractive index is the Ciddor (1996) dispersion formula in the form adopted by the IAU and
tabulated by Morton (2000, ApJS 130, 403, eq. 8)::

    n − 1 = 8.34254e-5 + 2.406147e-2 / (130 − s²) + 1.5998e-4 / (38.9 − s²),  s = 10⁴ / λ_vac [µm⁻¹]

``vacuum_to_air`` applies it directly; ``air_to_vacuum`` inverts it by fixed-point iteration, so
the two are inverse to ~1e-12 relative (far below the formula's own accuracy of ~1e-8). Valid
above 2000 Å (below that, air wavelengths are not used).
"""

from __future__ import annotations

import numpy as np

__all__ = ["air_to_vacuum", "refractive_index", "vacuum_to_air"]

_MIN_WAVELENGTH = 2000.0


def _checked(wavelength: np.ndarray | float) -> np.ndarray:
    wave = np.asarray(wavelength, dtype=np.float64)
    if not np.all(np.isfinite(wave)):
        raise ValueError("wavelengths must be finite")
    if np.any(wave < _MIN_WAVELENGTH):
        raise ValueError(
            f"air/vacuum conversion is defined above {_MIN_WAVELENGTH:g} Å; got a minimum of "
            f"{wave.min():.6g} Å (are the wavelengths in Å?)"
        )
    return wave


def refractive_index(vacuum_wavelength: np.ndarray | float) -> np.ndarray:
    """Refractive index of standard dry air at a vacuum wavelength.

    Parameters
    ----------
    vacuum_wavelength : array_like
        Vacuum wavelengths in Å (≥ 2000 Å).

    Returns
    -------
    numpy.ndarray
        ``n`` (float64), same shape as the input.
    """
    s2 = (1e4 / _checked(vacuum_wavelength)) ** 2
    return 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)


def vacuum_to_air(wavelength: np.ndarray | float) -> np.ndarray:
    """Convert vacuum wavelengths (Å) to air wavelengths (Å).

    Parameters
    ----------
    wavelength : array_like
        Vacuum wavelengths in Å (≥ 2000 Å).

    Returns
    -------
    numpy.ndarray
        Air wavelengths in Å (float64), same shape.
    """
    wave = _checked(wavelength)
    return wave / refractive_index(wave)


def air_to_vacuum(wavelength: np.ndarray | float) -> np.ndarray:
    """Convert air wavelengths (Å) to vacuum wavelengths (Å), the exact inverse of `vacuum_to_air`.

    Parameters
    ----------
    wavelength : array_like
        Air wavelengths in Å (≥ 2000 Å).

    Returns
    -------
    numpy.ndarray
        Vacuum wavelengths in Å (float64), same shape.
    """
    air = _checked(wavelength)
    vac = air * 1.00028  # n − 1 ≈ 2.8e-4 in the optical; each iteration gains ~4 digits
    for _ in range(4):
        vac = air * refractive_index(vac)
    return vac
