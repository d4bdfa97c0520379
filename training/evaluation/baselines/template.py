"""Template fitting: the maximum-likelihood labels of the emulator, amplitude free.

For each spectrum the χ² of ``y = A f(θ)`` (``y`` the normalised flux, weights its inverse
variance, ``A`` free) is first evaluated on a coarse grid of emulator templates over the prior
box (one matrix product, ``A`` solved exactly per template); the best template in each of
``starts`` log g slices of the grid starts a batched Levenberg–Marquardt fit in ``(A, θ)`` with
the emulator's analytic Jacobian (:meth:`specvit.emulator.Emulator.flux_and_jacobian`), steps
clipped to the prior box. The start with the lowest final χ² wins; its σ is the square root of
the diagonal of the inverse Fisher matrix of θ (amplitude marginalised).
"""

from __future__ import annotations

import numpy as np
import torch

from specvit.emulator import Emulator
from training.engine.simulate import Prior
from training.evaluation.baselines.features import Features

__all__ = ["TemplateFit"]


class TemplateFit:
    """Batched maximum-likelihood fit of the emulator (see the module docstring).

    Parameters
    ----------
    grid : tuple of int
        Templates per label of the starting grid.
    starts : int
        Starts per spectrum: the best template in each of this many log g slices.
    iterations : int
        Levenberg–Marquardt iterations per start.
    chunk : int
        Spectra fitted together.
    prior : Prior, optional
        Its label box bounds the fit (default: the engine's default prior).
    """

    name = "template"
    block = 1

    def __init__(
        self,
        grid: tuple[int, int, int] = (12, 12, 10),
        starts: int = 3,
        iterations: int = 12,
        chunk: int = 128,
        prior: Prior | None = None,
    ) -> None:
        self.grid, self.starts, self.iterations, self.chunk = grid, starts, iterations, chunk
        box = (prior or Prior()).label_prior.bounds()
        self.low, self.high = box[:, 0], box[:, 1]
        self.emulator = Emulator.load()
        width = (self.high - self.low) / torch.tensor(grid, dtype=torch.float64)
        axes = [
            self.low[k] + (torch.arange(g, dtype=torch.float64) + 0.5) * width[k]
            for k, g in enumerate(grid)
        ]
        self.centres = torch.cartesian_prod(*axes)
        with torch.no_grad():
            self.templates = self.emulator(self.centres.float()).double()  # (G, L)
        g = grid[1]
        self.slice_of = (torch.arange(g).repeat_interleave(grid[2]).repeat(grid[0]) * starts) // g

    def fit(self, train: Features, val: Features) -> None:
        """Nothing to learn: the emulator is the model."""

    def predict(self, test: Features) -> tuple[np.ndarray, np.ndarray]:
        """Best-fit labels ``(N, 3)`` and their 1σ from the inverse Fisher matrix."""
        if test.block != 1:
            raise ValueError("template fitting needs full-resolution features (block=1)")
        means, sigmas = [], []
        with torch.no_grad():
            for lo in range(0, len(test), self.chunk):
                y = torch.from_numpy(test.x[lo : lo + self.chunk]).double()
                w = torch.from_numpy(test.ivar[lo : lo + self.chunk]).double()
                mean, sigma = self._fit(y, w)
                means.append(mean)
                sigmas.append(sigma)
        return torch.cat(means).numpy(), torch.cat(sigmas).numpy()

    def _start(self, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """(n, S, 3) the best grid template in each log g slice."""
        s_yf = (y * w) @ self.templates.T
        s_ff = w @ self.templates.square().T
        chi2 = -(s_yf.square() / s_ff)  # χ² − Σ w y², A at its optimum
        best = []
        for s in range(self.starts):
            masked = torch.where(self.slice_of == s, chi2, torch.inf)
            best.append(self.centres[masked.argmin(-1)])
        return torch.stack(best, dim=1)

    def _evaluate(self, theta, y, w):
        f, jac = self.emulator.flux_and_jacobian(theta.float())
        f, jac = f.double(), jac.double()  # (n, S, L), (n, S, L, 3)
        amp = (f * y[:, None] * w[:, None]).sum(-1) / (f.square() * w[:, None]).sum(-1)
        resid = y[:, None] - amp[..., None] * f
        chi2 = (resid.square() * w[:, None]).sum(-1)
        design = torch.cat([f.unsqueeze(-1), amp[..., None, None] * jac], dim=-1)
        wd = design * w[:, None, :, None]
        normal = wd.mT @ design  # (n, S, 4, 4)
        grad = (wd.mT @ resid.unsqueeze(-1)).squeeze(-1)
        return amp, chi2, normal, grad

    def _fit(self, y: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta = self._start(y, w)
        amp, chi2, normal, grad = self._evaluate(theta, y, w)
        lam = torch.full(chi2.shape, 1e-3, dtype=torch.float64)
        eye = torch.eye(4, dtype=torch.float64)
        for _ in range(self.iterations):
            d = torch.diagonal(normal, dim1=-2, dim2=-1).clamp_min(1e-300).sqrt()
            scaled = normal / (d[..., :, None] * d[..., None, :]) + lam[..., None, None] * eye
            step = torch.linalg.solve(scaled, (grad / d).unsqueeze(-1)).squeeze(-1) / d
            trial = torch.minimum(torch.maximum(theta + step[..., 1:], self.low), self.high)
            t_amp, t_chi2, t_normal, t_grad = self._evaluate(trial, y, w)
            better = t_chi2 < chi2
            theta = torch.where(better[..., None], trial, theta)
            amp, chi2 = torch.where(better, t_amp, amp), torch.where(better, t_chi2, chi2)
            normal = torch.where(better[..., None, None], t_normal, normal)
            grad = torch.where(better[..., None], t_grad, grad)
            lam = torch.where(better, lam / 3, lam * 4).clamp(1e-9, 1e9)
        pick = chi2.argmin(dim=1)
        rows = torch.arange(len(y))
        cov = torch.linalg.pinv(normal[rows, pick])[:, 1:, 1:]
        sigma = torch.diagonal(cov, dim1=-2, dim2=-1).clamp_min(1e-300).sqrt()
        return theta[rows, pick], sigma
