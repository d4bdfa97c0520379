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

This module is the one home of the Doppler relations: :func:`rest_wavelength` (the shift
``λ_rest = λ_obs / (1 + v/c)``), :func:`pixel_shift` and its inverse
:func:`velocity_from_pixel_shift` (the same shift in pixels of a linear grid), and their
first-order forms :func:`pixels_per_kms` / :func:`kms_per_pixel`. The emulator fit of
:mod:`specvit.inference.physics` uses them with a faster, interpolating approximation of the
shifted spectrum, which ``tests/test_doppler.py`` holds against :class:`DopplerShift`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from specvit.emulator.emulator import Emulator
from specvit.instrument.grid import WavelengthGrid

__all__ = [
    "C_KMS",
    "DopplerShift",
    "kms_per_pixel",
    "pixel_shift",
    "pixels_per_kms",
    "rest_wavelength",
    "velocity_from_pixel_shift",
]

#: Speed of light in km/s.
C_KMS = 299_792.458


def rest_wavelength(observed: Any, rv: Any) -> Any:
    """Rest-frame wavelength of light observed at ``observed`` from a source moving at ``rv``.

    ``λ_rest = λ_obs / (1 + v/c)`` (``v > 0``: receding), the shift every Doppler relation of
    specvit is built on.

    Parameters
    ----------
    observed : float, numpy.ndarray or torch.Tensor
        Observed wavelengths (any unit).
    rv : float, numpy.ndarray or torch.Tensor
        Radial velocity in km/s, broadcast against ``observed``.

    Returns
    -------
    float, numpy.ndarray or torch.Tensor
        Rest wavelengths, in the unit of ``observed``.
    """
    return observed * (1.0 / (1.0 + rv / C_KMS))


def pixel_shift(wavelength: Any, step: float, rv: Any) -> Any:
    """How many pixels of a linear grid the rest wavelength lies below the observed one.

    ``(λ − λ_rest) / Δλ = λ β / ((1 + β) Δλ)`` with ``β = v/c`` and ``λ_rest`` from
    :func:`rest_wavelength` (exact, not first order): pixel ``i`` of a spectrum observed at
    ``rv`` holds what pixel ``i − pixel_shift`` of the rest-frame spectrum holds.

    Parameters
    ----------
    wavelength : float, numpy.ndarray or torch.Tensor
        Observed wavelengths (Å).
    step : float
        Pixel width of the grid (Å).
    rv : float, numpy.ndarray or torch.Tensor
        Radial velocity in km/s, broadcast against ``wavelength``.

    Returns
    -------
    float, numpy.ndarray or torch.Tensor
        The shift in pixels (positive for a receding source).
    """
    beta = rv / C_KMS
    return wavelength * (beta / ((1.0 + beta) * step))


def velocity_from_pixel_shift(shift: Any, kms_per_px: float) -> Any:
    """The radial velocity whose :func:`pixel_shift` is ``shift`` (its exact inverse).

    ``x = shift · Δλ/λ = β / (1 + β)``, so ``v = c x / (1 − x)``.

    Parameters
    ----------
    shift : float, numpy.ndarray or torch.Tensor
        Pixel shift, observed relative to rest frame.
    kms_per_px : float
        :func:`kms_per_pixel` at the wavelength where the shift was measured.

    Returns
    -------
    float, numpy.ndarray or torch.Tensor
        Radial velocity in km/s.
    """
    x = shift * (kms_per_px / C_KMS)
    return C_KMS * x / (1.0 - x)


def pixels_per_kms(wavelength: Any, step: float) -> Any:
    """Pixel shift per km/s at ``wavelength``: ``λ / (Δλ c)``, :func:`pixel_shift` to first order.

    Parameters
    ----------
    wavelength : float, numpy.ndarray or torch.Tensor
        Wavelengths (Å).
    step : float
        Pixel width of the grid (Å).

    Returns
    -------
    float, numpy.ndarray or torch.Tensor
        Pixels per km/s (valid for ``|v| ≪ c``).
    """
    return wavelength / (step * C_KMS)


def kms_per_pixel(wavelength: Any, step: float) -> Any:
    """km/s of a one-pixel shift at ``wavelength`` (Å, pixel width ``step`` Å): ``c Δλ / λ``,
    the reciprocal of :func:`pixels_per_kms` (first order in ``v/c``)."""
    return C_KMS * step / wavelength


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
        pos = (rest_wavelength(self.edges, rv.unsqueeze(-1)) - self.fine_start_edge) / self.step
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
