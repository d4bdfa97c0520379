"""The radial velocity as a nuisance parameter: ``∂flux/∂v`` of the emulator's spectra at v = 0.

The derivative is that of the data engine's own Doppler shift
(:class:`specvit.emulator.DopplerShift`), computed on the emulator's device.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from specvit.emulator import DopplerShift, Emulator
from specvit.instrument.grid import WavelengthGrid

__all__ = ["VELOCITY", "velocity_jacobian"]

#: Name of the radial-velocity parameter (km/s).
VELOCITY = "v_rad"


@lru_cache(maxsize=4)
def _doppler(
    resolution: float, grid: WavelengthGrid, dtype: torch.dtype, device: str
) -> DopplerShift:
    return DopplerShift(Emulator.load(resolution, grid, device=device, dtype=dtype))


def velocity_jacobian(emulator: Emulator, labels: torch.Tensor, flux: torch.Tensor) -> torch.Tensor:
    """``∂flux/∂v`` at ``v = 0`` in flux units per km/s, ``(n, L)``.

    Parameters
    ----------
    emulator : specvit.emulator.Emulator
        The emulator that gave ``flux`` (its grid, resolving power, dtype and device are reused).
    labels : torch.Tensor
        ``(n, 3)`` labels.
    flux : torch.Tensor
        ``(n, L)`` the emulator's flux at ``labels``.

    Returns
    -------
    torch.Tensor
        ``(n, L)``.
    """
    device = str(emulator.weights.device)
    doppler = _doppler(emulator.resolution, emulator.grid, emulator.dtype, device)
    return doppler.velocity_derivative(labels, flux)
