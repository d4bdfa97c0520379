"""A polynomial spectral emulator of cool stars on the PFS MR grid, in torch.

The model is the Doppler package's Cannon cool-star model (MIT, see ``data/LICENSE.md``): for
labels θ = (T_eff, log g, [M/H]) and ``x = (θ − fiducials) / scales``, a cubic design vector
``v(x)`` (20 monomials) gives, at each 0.1 Å air pixel of 7050–8900 Å, ::

    normalised flux n(λ) = Θ_n(λ) · v,      log10 continuum log c(λ) = Θ_c(λ) · v.

On the MR grid
--------------
The line-spread function (Gaussian, FWHM = λ/R) and the integration over each vacuum MR pixel are
one linear operator ``A`` (:func:`specvit.instrument.lsf.lsf_matrix`, pixel edges converted to air).
It acts on the normalised flux exactly, by folding it into the coefficients: ``A n = (A Θ_n) · v``.
The continuum is smooth, so it is taken at each pixel's centre instead of inside the convolution::

    F_i = (A n)_i · c(λ_i)      instead of      (A (n c))_i.

The difference is second order in the continuum's curvature over the LSF (≈ 1 Å) and the line
profile's asymmetry; ``tests/test_emulator.py`` bounds it against the brute-force convolution of
the native spectrum (< 1e-4 relative). ``log c`` between the model's continuum nodes (≈ 2.5 Å
apart) is interpolated linearly, on both paths.

Unit
----
Output flux is proportional to f_ν: ``10**log c`` is the model's f_λ continuum, multiplied by
``(λ_vac / 8000 Å)²`` and by 1e-5 (so values are of order 1–10). Only shapes matter to the data
engine: :meth:`specvit.instrument.PFSNoiseModel.scale_to_magnitude` sets the flux scale.

Validity
--------
The polynomial was fitted to a grid spanning T_eff 3500–8000 K, log g 0–5, [M/H] −2.5…+0.5; beyond
that it extrapolates (``in_range`` tells). There is no α-enhancement label.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
from scipy import sparse

from specvit.instrument.grid import PFS_MR, WavelengthGrid
from specvit.instrument.lsf import MR_RESOLUTION, lsf_matrix
from specvit.instrument.wavelength import air_to_vacuum, vacuum_to_air
from specvit.labels import LABEL_NAMES

__all__ = ["Emulator", "NativeModel"]

#: f_ν ∝ f_λ λ²: reference wavelength (Å) and overall factor of the output unit.
#: Pixels per block of :meth:`Emulator.flux_blocks`: 512 spectra × 512 pixels × 2 (normalised
#: flux and continuum) of float32 stay within a 2 MB cache.
FLUX_BLOCK = 512
_LAMBDA_REF = 8000.0
_UNIT_FACTOR = 1e-5
_LN10 = float(np.log(10.0))
_LN2 = float(np.log(2.0))


@dataclass(frozen=True)
class NativeModel:
    """The emulator at its native resolution (0.1 Å, air), in numpy float64.

    Used to build :class:`Emulator` for a resolving power and grid, and as the brute-force
    reference in tests. Load with :meth:`load`.
    """

    wave_air: np.ndarray
    theta: np.ndarray
    cont_wave: np.ndarray
    cont_theta: np.ndarray
    powers: np.ndarray
    fiducials: np.ndarray
    scales: np.ndarray
    valid_low: np.ndarray
    valid_high: np.ndarray
    training_labels: np.ndarray
    attribution: str

    @classmethod
    @lru_cache(maxsize=1)
    def load(cls) -> NativeModel:
        """Read the committed artifact ``specvit/emulator/data/doppler_coolstars.npz``."""
        path = resources.files("specvit.emulator") / "data" / "doppler_coolstars.npz"
        with resources.as_file(path) as p, np.load(p) as d:
            n = d["theta"].shape[0]
            wave = float(d["wave_start"]) + float(d["wave_step"]) * np.arange(n)
            return cls(
                wave_air=wave,
                theta=d["theta"].astype(np.float64),
                cont_wave=d["cont_wave"],
                cont_theta=d["cont_theta"].astype(np.float64),
                powers=d["powers"].astype(np.int64),
                fiducials=d["fiducials"],
                scales=d["scales"],
                valid_low=d["valid_low"],
                valid_high=d["valid_high"],
                training_labels=d["training_labels"].astype(np.float64),
                attribution=str(d["attribution"]),
            )

    def label_ranges(self) -> dict[str, tuple[float, float]]:
        """``{label: (low, high)}`` of the grid the polynomial was fitted to."""
        return {
            name: (float(lo), float(hi))
            for name, lo, hi in zip(LABEL_NAMES, self.valid_low, self.valid_high, strict=True)
        }

    def design(self, labels: np.ndarray) -> np.ndarray:
        """Design vectors ``(N, 20)`` of labels ``(N, 3)``."""
        x = (np.atleast_2d(np.asarray(labels, np.float64)) - self.fiducials) / self.scales
        return np.prod(x[:, None, :] ** self.powers[None], axis=-1)

    def log_continuum(self, wave_air: np.ndarray) -> np.ndarray:
        """``(len(wave_air), 20)`` coefficients of the natural-log f_ν continuum (output unit)."""
        wave_air = np.asarray(wave_air, np.float64)
        if wave_air.min() < self.cont_wave[0] or wave_air.max() > self.cont_wave[-1]:
            raise ValueError("wavelengths beyond the continuum model's nodes")
        hi = np.clip(np.searchsorted(self.cont_wave, wave_air), 1, self.cont_wave.size - 1)
        t = (wave_air - self.cont_wave[hi - 1]) / (self.cont_wave[hi] - self.cont_wave[hi - 1])
        coef = (1.0 - t)[:, None] * self.cont_theta[hi - 1] + t[:, None] * self.cont_theta[hi]
        coef = coef * _LN10
        coef[:, 0] += 2.0 * np.log(air_to_vacuum(wave_air) / _LAMBDA_REF) + np.log(_UNIT_FACTOR)
        return coef

    def flux(self, labels: np.ndarray) -> np.ndarray:
        """Native-resolution flux ``(N, S)`` (output unit) on :attr:`wave_air`."""
        v = self.design(labels)
        return (v @ self.theta.T) * np.exp(v @ self.log_continuum(self.wave_air).T)

    def operator(self, resolution: float, grid: WavelengthGrid) -> sparse.csr_matrix:
        """LSF + pixel-integration operator ``(grid.num, S)`` from the native air samples."""
        edges = np.concatenate(
            [[grid.start - 0.5 * grid.step], grid.wavelength() + 0.5 * grid.step]
        )
        if grid.medium == "vacuum":
            edges = vacuum_to_air(edges)
        return lsf_matrix(self.wave_air, edges, resolution)


@lru_cache(maxsize=4)
def _folded(resolution: float, grid: WavelengthGrid) -> tuple[np.ndarray, np.ndarray]:
    native = NativeModel.load()
    op = native.operator(resolution, grid)
    centres = grid.wavelength()
    centres_air = vacuum_to_air(centres) if grid.medium == "vacuum" else centres
    return np.asarray(op @ native.theta), native.log_continuum(centres_air)


class Emulator(torch.nn.Module):
    """Noiseless spectra of cool stars on an instrument grid: ``flux = emulator(labels)``.

    Build with :meth:`load`. ``labels`` is ``(..., 3)`` in the order
    :data:`~specvit.labels.LABEL_NAMES` (K, dex, dex); the output is ``(..., L)`` relative f_ν
    (see the module docstring) on :attr:`wavelength` (Å, the grid's medium). Batched,
    differentiable, on any device.

    Parameters
    ----------
    flux_coefficients, log_continuum_coefficients : numpy.ndarray
        ``(L, 20)`` coefficients of the pixel-integrated normalised flux and of the natural-log
        continuum.
    powers : numpy.ndarray
        ``(20, 3)`` integer powers of the design's monomials.
    fiducials, scales : numpy.ndarray
        ``(3,)`` label offset and scale of the design.
    grid : WavelengthGrid
        The output pixels.
    resolution : float
        Resolving power the LSF was folded with.
    dtype : torch.dtype
        Dtype of the coefficients (and of the output).
    """

    label_names = LABEL_NAMES

    def __init__(
        self,
        flux_coefficients: np.ndarray,
        log_continuum_coefficients: np.ndarray,
        powers: np.ndarray,
        fiducials: np.ndarray,
        scales: np.ndarray,
        grid: WavelengthGrid,
        resolution: float,
        valid_low: np.ndarray,
        valid_high: np.ndarray,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.grid, self.resolution = grid, float(resolution)
        # the continuum in base 2: float32 exp2 is faster than exp on the CPU and as accurate
        # (benchmarks/exact_posterior.py; docs/research/exact_mode.md)
        log2_continuum = np.asarray(log_continuum_coefficients, np.float64) / _LN2
        weights = np.concatenate([flux_coefficients.T, log2_continuum.T], axis=1)
        #: ``(20, 2L)``: the normalised flux's coefficients, then the base-2 log continuum's
        self.register_buffer("weights", torch.as_tensor(weights, dtype=dtype))
        self.register_buffer("fiducials", torch.as_tensor(fiducials, dtype=dtype))
        self.register_buffer("scales", torch.as_tensor(scales, dtype=dtype))
        self.register_buffer("powers", torch.as_tensor(powers, dtype=torch.long))
        self.register_buffer("_label_index", torch.arange(3).expand(powers.shape[0], 3).clone())
        self.register_buffer("valid_low", torch.as_tensor(valid_low, dtype=dtype))
        self.register_buffer("valid_high", torch.as_tensor(valid_high, dtype=dtype))

    @classmethod
    def load(
        cls,
        resolution: float = MR_RESOLUTION,
        grid: WavelengthGrid = PFS_MR,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Emulator:
        """The emulator with a Gaussian LSF of resolving power ``resolution`` on ``grid``.

        Parameters
        ----------
        resolution : float
            Resolving power R = λ/FWHM (default 5000, PFS MR).
        grid : WavelengthGrid
            Output pixels (default :data:`~specvit.instrument.PFS_MR`, vacuum); must lie within
            7050–8900 Å (air) with room for the LSF.
        device : torch.device or str, optional
            Where to put the coefficients.
        dtype : torch.dtype
            Coefficient and output dtype (float32 default; float64 for precise derivatives).

        Returns
        -------
        Emulator
        """
        native = NativeModel.load()
        coef, logc = _folded(float(resolution), grid)
        emulator = cls(
            coef,
            logc,
            native.powers,
            native.fiducials,
            native.scales,
            grid,
            resolution,
            native.valid_low,
            native.valid_high,
            dtype=dtype,
        )
        return emulator.to(device) if device is not None else emulator

    # ------------------------------------------------------------------ properties
    @property
    def wavelength(self) -> np.ndarray:
        """Pixel-centre wavelengths (Å) of the output, in the grid's medium (float64)."""
        return self.grid.wavelength()

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the coefficients and of the output."""
        return self.weights.dtype

    @property
    def num_pixels(self) -> int:
        """Number of output pixels."""
        return self.weights.shape[1] // 2

    def in_range(self, labels: torch.Tensor) -> torch.Tensor:
        """``(...)`` bool: labels inside the model grid's ranges (outside: extrapolation)."""
        labels = torch.as_tensor(labels, dtype=self.dtype, device=self.weights.device)
        return ((labels >= self.valid_low) & (labels <= self.valid_high)).all(-1)

    # ------------------------------------------------------------------ evaluation
    def _scaled(self, labels: torch.Tensor) -> torch.Tensor:
        labels = torch.as_tensor(labels, device=self.weights.device)
        if labels.shape[-1:] != (3,):
            raise ValueError(
                f"labels must have shape (..., 3) ordered {LABEL_NAMES}, got {tuple(labels.shape)}"
            )
        return (labels.to(self.dtype) - self.fiducials) / self.scales

    @staticmethod
    def _power_table(x: torch.Tensor) -> torch.Tensor:
        """``(..., 3, 4)``: 1, x, x², x³ per label."""
        return torch.stack([torch.ones_like(x), x, x * x, x * x * x], dim=-1)

    def design(self, labels: torch.Tensor) -> torch.Tensor:
        """Design vectors ``(..., 20)`` of labels ``(..., 3)``."""
        table = self._power_table(self._scaled(labels))
        return table[..., self._label_index, self.powers].prod(-1)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """Flux ``(..., L)`` of labels ``(..., 3)`` (T_eff K, log g dex, [M/H] dex)."""
        y = self.design(labels) @ self.weights
        n = self.num_pixels
        return y[..., :n] * torch.exp2(y[..., n:])

    @property
    def normalised_weights(self) -> torch.Tensor:
        """``(20, L)``: the normalised flux is ``design(labels) @ normalised_weights``, linear in
        the design vector (:meth:`forward` multiplies it by :meth:`continuum`)."""
        return self.weights[:, : self.num_pixels]

    def continuum(self, labels: torch.Tensor) -> torch.Tensor:
        """``(..., L)`` the smooth continuum of labels ``(..., 3)``, which :meth:`forward`
        multiplies the normalised flux by."""
        return torch.exp2(self.design(labels) @ self.weights[:, self.num_pixels :])

    def flux_blocks(
        self, labels: torch.Tensor, size: int = FLUX_BLOCK
    ) -> Iterator[tuple[slice, torch.Tensor]]:
        """:meth:`forward` in blocks of ``size`` pixels, for sums over pixels that need not hold
        whole spectra: each block is summed while it is still in the CPU cache (the exact
        mode's likelihood, :mod:`specvit.inference.exact`).

        Parameters
        ----------
        labels : torch.Tensor
            ``(..., 3)`` labels.
        size : int
            Pixels per block.

        Raises
        ------
        ValueError
            If ``size`` is not a positive integer.

        Yields
        ------
        pixels : slice
            The block's pixels.
        flux : torch.Tensor
            ``(..., len)`` the flux there, as :meth:`forward` gives it.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size!r}")
        design = self.design(labels)
        n = self.num_pixels
        for lo in range(0, n, size):
            hi = min(lo + size, n)
            norm = design @ self.weights[:, lo:hi]
            yield slice(lo, hi), norm * (design @ self.weights[:, n + lo : n + hi]).exp2_()

    def jacobian(self, labels: torch.Tensor) -> torch.Tensor:
        """Analytic derivative of the flux w.r.t. the labels, ``(..., L, 3)`` (per K, per dex).

        ``J[..., i, k] = ∂flux_i / ∂label_k``; see :meth:`flux_and_jacobian`.
        """
        return self.flux_and_jacobian(labels)[1]

    def flux_and_jacobian(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flux and its analytic Jacobian from one matrix product.

        The design vector and its three label derivatives are stacked and multiplied with the
        coefficients at once; the product rule then combines the normalised flux and the
        log-continuum parts.

        Parameters
        ----------
        labels : torch.Tensor
            ``(..., 3)`` labels (T_eff K, log g dex, [M/H] dex).

        Returns
        -------
        flux : torch.Tensor
            ``(..., L)``, as :meth:`forward`.
        jacobian : torch.Tensor
            ``(..., L, 3)``, ``J[..., i, k] = ∂flux_i / ∂label_k``: a view of a
            ``(..., 3, L)`` array, so sums over pixels stay contiguous.
        """
        x = self._scaled(labels)
        table = self._power_table(x)
        deriv = torch.stack([torch.zeros_like(x), torch.ones_like(x), 2.0 * x, 3.0 * x * x], dim=-1)
        factors = table[..., self._label_index, self.powers]  # (..., 20, 3)
        dfactors = deriv[..., self._label_index, self.powers]
        rows = [factors.prod(-1)]
        for k in range(3):
            f = factors.clone()
            f[..., k] = dfactors[..., k]
            rows.append(f.prod(-1))
        y = torch.stack(rows, dim=-2) @ self.weights  # (..., 4, 2L): [normalised | log2 continuum]
        n = self.num_pixels
        norm, cont = y[..., 0, :n], torch.exp2(y[..., 0, n:])
        dy = y[..., 1:, :] / self.scales[:, None]  # (..., 3, 2L), per label unit
        dy[..., n:] *= _LN2  # d ln c = ln 2 · d log2 c
        jac = (dy[..., :n] + norm.unsqueeze(-2) * dy[..., n:]) * cont.unsqueeze(-2)
        return norm * cont, jac.mT

    def extra_repr(self) -> str:
        return f"R={self.resolution:g}, pixels={self.num_pixels}, grid={self.grid}"
