"""A spectrum's smooth continuum: a weighted least-squares Legendre polynomial across the arm.

Flux calibration errors and interstellar extinction multiply a spectrum by a smooth curve; a
model that sees its flux divided by a smooth fit to it (``input_norm = "continuum"``) sees
nearly the same input whatever that curve is. :func:`fit_continuum` is that fit: a polynomial of
:func:`legendre_basis` terms in the normalised pixel position (−1 at the first pixel, +1 at the
last), each pixel weighted by 1/σ², refit once without the pixels lying more than
:data:`CLIP_SIGMA` σ *above* the first fit (cosmic rays, sky residuals; absorption lines stay, so
the fit is the same "pseudo-continuum" in training and inference). Sums run in float32 (the
Legendre normal matrix is well conditioned), the solve in float64.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["CLIP_SIGMA", "fit_continuum", "legendre_basis"]

#: Pixels this many σ above the first fit are left out of the second (emission spikes).
CLIP_SIGMA = 5.0


def legendre_basis(x: torch.Tensor, order: int) -> torch.Tensor:
    """Legendre polynomials P_1 … P_order at ``x`` (Bonnet's recursion).

    Parameters
    ----------
    x : torch.Tensor
        ``(L,)`` positions in [−1, 1].
    order : int
        Highest order (≥ 0; 0 gives an empty basis).

    Returns
    -------
    torch.Tensor
        ``(order, L)`` in the dtype of ``x``; P_0 = 1 is left out.
    """
    if int(order) != order or order < 0:
        raise ValueError(f"order must be a non-negative integer, got {order}")
    rows, previous, current = [], torch.ones_like(x), x
    for n in range(1, int(order) + 1):
        rows.append(current)
        previous, current = current, ((2 * n + 1) * x * current - n * previous) / (n + 1)
    return torch.stack(rows) if rows else x.new_empty((0, x.shape[-1]))


@functools.lru_cache(maxsize=8)
def _design(num_pixels: int, order: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 ``(L, K)`` P_0 … P_order across ``num_pixels`` pixels (K = order + 1) and
    ``(L, K²)`` the products of every pair of them (the normal matrix is one matmul)."""
    x = torch.linspace(-1.0, 1.0, num_pixels, dtype=torch.float64, device=device)
    ones = torch.ones(1, num_pixels, dtype=torch.float64, device=device)
    design = torch.cat([ones, legendre_basis(x, order)]).T.contiguous()
    pairs = (design[:, :, None] * design[:, None, :]).reshape(num_pixels, -1)
    return design.float(), pairs.float()


def _solve(
    design: tuple[torch.Tensor, torch.Tensor], flux: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Per-row weighted least squares: the ``(B, L)`` fitted curves."""
    basis, pairs = design
    k = basis.shape[1]
    normal = (weight @ pairs).reshape(-1, k, k).double()
    rhs = ((weight * flux) @ basis).double()
    # A row with too few weighted pixels has a singular system: a tiny ridge keeps it finite
    # (its curve is then meaningless, and zero where no pixel is weighted).
    ridge = 1e-12 * normal.diagonal(dim1=1, dim2=2).amax(-1) + 1e-20
    normal = normal + ridge[:, None, None] * torch.eye(k, dtype=normal.dtype, device=normal.device)
    return torch.linalg.solve(normal, rhs).float() @ basis.T


def fit_continuum(
    flux: torch.Tensor, error: torch.Tensor, valid: torch.Tensor, order: int
) -> torch.Tensor:
    """The weighted least-squares Legendre continuum of each spectrum.

    Parameters
    ----------
    flux, error : torch.Tensor
        ``(B, L)`` flux and 1σ in the same unit.
    valid : torch.Tensor
        ``(B, L)`` boolean: pixels to fit (finite flux, finite σ > 0).
    order : int
        Highest Legendre order (≥ 0): 0 fits a weighted mean.

    Returns
    -------
    torch.Tensor
        ``(B, L)`` the fitted continuum, in ``flux``'s dtype; where a row has no valid pixel,
        zeros (callers treat a continuum ≤ 0 as unusable).
    """
    if flux.dim() != 2 or error.shape != flux.shape or valid.shape != flux.shape:
        raise ValueError(
            f"flux, error and valid must share one (B, L) shape, got {tuple(flux.shape)}, "
            f"{tuple(error.shape)} and {tuple(valid.shape)}"
        )
    design = _design(flux.shape[1], int(order), str(flux.device))
    flux, error = flux.float(), error.float()
    f = torch.where(valid, flux, 0.0)
    inv_sigma = torch.where(valid, error.reciprocal(), 0.0)
    # weights 1/σ² scaled per row to a unit maximum: float32 sums neither overflow nor underflow
    peak = inv_sigma.amax(-1, keepdim=True).clamp_min(1e-30)
    weight = (inv_sigma / peak).square()
    first = _solve(design, f, weight)
    spikes = (f - first) * inv_sigma > CLIP_SIGMA
    return _solve(design, f, torch.where(spikes, 0.0, weight))
