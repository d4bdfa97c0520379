"""The radial velocity as a nuisance parameter: ``∂flux/∂v`` of pixel-integrated spectra.

A pixel ``[a, b]`` observed at radial velocity ``v`` records the mean of the rest-frame spectrum
``f`` (after the line-spread function) over ``[a, b] / (1 + v/c)``, so at ``v = 0`` ::

    ∂F/∂v = (F − (b f(b) − a f(a)) / (b − a)) / c

with ``F`` the pixel's flux and ``f(a)``, ``f(b)`` the spectrum at its edges. The edge values
come from the emulator on cells four times narrower than the pixels, centred on the edges (a
cell mean differs from the point value by ``(Δ/4)² f''/24``).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from specvit.instrument.grid import WavelengthGrid

__all__ = ["C_KMS", "VELOCITY", "velocity_jacobian"]

#: Name of the radial-velocity parameter (km/s).
VELOCITY = "v_rad"
#: Speed of light in km/s.
C_KMS = 299_792.458
_OVERSAMPLE = 4


@lru_cache(maxsize=2)
def _edge_emulator(resolution: float, grid: WavelengthGrid, dtype: torch.dtype):
    from specvit.emulator import Emulator

    step = grid.step / _OVERSAMPLE
    edges = WavelengthGrid(
        grid.start - 0.5 * grid.step,
        grid.stop + 0.5 * grid.step,
        _OVERSAMPLE * grid.num + 1,
        grid.medium,
    )
    assert abs(edges.step - step) < 1e-9 * step
    return Emulator.load(resolution=resolution, grid=edges, dtype=dtype), edges


def velocity_jacobian(emulator, labels: torch.Tensor, flux: torch.Tensor) -> torch.Tensor:
    """``∂flux/∂v`` at ``v = 0`` in flux units per km/s, ``(n, L)``.

    Parameters
    ----------
    emulator : specvit.emulator.Emulator
        The emulator that gave ``flux`` (its grid and resolving power are reused).
    labels : torch.Tensor
        ``(n, 3)`` labels.
    flux : torch.Tensor
        ``(n, L)`` the emulator's flux at ``labels``.

    Returns
    -------
    torch.Tensor
        ``(n, L)``.
    """
    edge_model, edges = _edge_emulator(emulator.resolution, emulator.grid, emulator.dtype)
    at_edges = edge_model(labels)[..., ::_OVERSAMPLE]  # (n, L + 1)
    wave = torch.as_tensor(edges.wavelength()[::_OVERSAMPLE], dtype=flux.dtype)
    weighted = at_edges * wave
    mean_edge = (weighted[..., 1:] - weighted[..., :-1]) / (wave[1:] - wave[:-1])
    return (flux - mean_edge) / C_KMS
