"""Doppler shifts of the emulator's pixel-integrated spectra, and their velocity derivative.

A pixel ``[a, b]`` observed at radial velocity ``v`` records the mean of the rest-frame spectrum
``f`` (after the line-spread function) over ``[a, b] / (1 + v/c)``. :class:`DopplerShift`
evaluates the emulator on cells ``oversample`` times narrower than the pixels, aligned with the
pixel edges, over a grid wide enough for the largest shift, and reads each shifted pixel's mean
off the cumulative sum of the cells (linear within a cell); at ``v = 0`` this is the emulator's
own pixel flux. Its derivative at ``v = 0`` is ::

    ∂F/∂v = (F − (b f(b) − a f(a)) / (b − a)) / c

with ``F`` the pixel's flux and ``f(a)``, ``f(b)`` the spectrum at its edges: the mean of the two
cells that meet there, which makes it the exact derivative of the shift above.
"""

from __future__ import annotations

import math

import torch

from specvit.emulator.emulator import Emulator
from specvit.instrument.grid import WavelengthGrid

__all__ = ["C_KMS", "DopplerShift"]

#: Speed of light in km/s.
C_KMS = 299_792.458


class DopplerShift(torch.nn.Module):
    """Doppler-shifted spectra of an emulator on its own grid, on the emulator's device.

    Parameters
    ----------
    emulator : Emulator
        The rest-frame model; its grid, resolving power, device and dtype are reused.
    max_rv : float
        Largest ``|v|`` (km/s) to be asked for (0: only the derivative at ``v = 0``).
    oversample : int
        Cells per pixel of the fine grid.
    """

    def __init__(self, emulator: Emulator, max_rv: float = 0.0, oversample: int = 4) -> None:
        super().__init__()
        if not 0.0 <= max_rv < C_KMS:
            raise ValueError(f"max_rv must be in [0, c) km/s, got {max_rv}")
        grid = emulator.grid
        step = grid.step / oversample
        margin = math.ceil(grid.stop * max_rv / C_KMS / step) + oversample
        self.max_rv, self.oversample, self.margin = float(max_rv), int(oversample), margin
        self.num_pixels = grid.num
        self.fine = WavelengthGrid(
            grid.start - 0.5 * grid.step + 0.5 * step - margin * step,
            grid.stop + 0.5 * grid.step - 0.5 * step + margin * step,
            grid.num * oversample + 2 * margin,
            grid.medium,
        )
        device = emulator.weights.device
        self.fine_emulator = Emulator.load(
            resolution=emulator.resolution, grid=self.fine, device=device, dtype=emulator.dtype
        )
        edges = torch.from_numpy(grid.wavelength() - 0.5 * grid.step)
        edges = torch.cat([edges, edges[-1:] + grid.step])
        self.register_buffer("edges", edges.to(device))  # (L + 1,) float64, Å
        self.step = step
        self.fine_start_edge = self.fine.start - 0.5 * step

    def forward(self, labels: torch.Tensor, rv: torch.Tensor) -> torch.Tensor:
        """Flux ``(n, L)`` of labels ``(n, 3)`` observed at radial velocities ``rv`` (n,) km/s."""
        fine_flux = self.fine_emulator(labels)
        rv = torch.as_tensor(rv, device=self.edges.device, dtype=torch.float64)
        if rv.numel() and float(rv.abs().max()) > self.max_rv:
            raise ValueError(f"|rv| exceeds this shift's max_rv = {self.max_rv:g} km/s")
        # float64: a float32 running sum over ~16 000 cells would lose ~1e-3 of a pixel's flux
        cum = torch.nn.functional.pad(fine_flux.to(torch.float64).cumsum(-1), (1, 0))
        shift = 1.0 / (1.0 + rv / C_KMS)
        pos = (self.edges * shift.unsqueeze(-1) - self.fine_start_edge) / self.step
        idx = pos.floor().long().clamp(0, cum.shape[-1] - 2)
        at = torch.lerp(cum.gather(-1, idx), cum.gather(-1, idx + 1), pos - idx)
        out = (at[..., 1:] - at[..., :-1]) / (pos[..., 1:] - pos[..., :-1])
        return out.to(fine_flux.dtype)

    def velocity_derivative(self, labels: torch.Tensor, flux: torch.Tensor) -> torch.Tensor:
        """``∂flux/∂v`` at ``v = 0``, ``(n, L)`` in flux units per km/s.

        Parameters
        ----------
        labels : torch.Tensor
            ``(n, 3)`` labels.
        flux : torch.Tensor
            ``(n, L)`` the emulator's (unshifted) flux at ``labels``.
        """
        fine = self.fine_emulator(labels).to(torch.float64)
        at = self.margin + self.oversample * torch.arange(self.num_pixels + 1, device=fine.device)
        at_edges = 0.5 * (fine[..., at - 1] + fine[..., at])  # (n, L + 1)
        weighted = at_edges * self.edges
        mean_edge = (weighted[..., 1:] - weighted[..., :-1]) / (self.edges[1:] - self.edges[:-1])
        return ((flux.to(torch.float64) - mean_edge) / C_KMS).to(flux.dtype)

    def extra_repr(self) -> str:
        return f"max_rv={self.max_rv:g} km/s, oversample={self.oversample}"
