"""Fisher information of a spectrum and the marginal Cramér–Rao lower bound (CRLB).

For a spectral model ``f(θ)`` observed with independent Gaussian noise of per-pixel 1σ ``σ``,
the Fisher information is ``I = Jᵀ Σ⁻¹ J`` with ``J = ∂f/∂θ`` and ``Σ = diag(σ²)``. The variance
of any *unbiased* estimator of one parameter ``g``, with the others ``η`` unknown (nuisance), is
at least ``[I⁻¹]_gg = (I_gg − I_gη I_ηη⁻¹ I_ηg)⁻¹`` (Schur complement).

Two nuisances of the flux scale are built in, as columns proportional to the model flux: the
amplitude ``ln A`` (``∂flux/∂ln A = flux``) and a smooth multiplicative continuum of order K,
``flux × (1 + Σ_{k=1..K} c_k P_k(x))`` at ``c = 0`` (``∂flux/∂c_k = flux · P_k(x)``, Legendre
``P_k`` in the normalised pixel coordinate x, −1 at the first pixel and +1 at the last, the basis
of :mod:`specvit.continuum`). Together they marginalise any polynomial continuum of degree K:
what a model that divides each spectrum by a fitted continuum of that order cannot use.

Every function is batched over leading dimensions (one Fisher matrix per star) and works in
float64 internally: Fisher matrices of (T_eff [K], log g [dex], …) span many decades.
"""

from __future__ import annotations

import numpy as np
import torch

from specvit.continuum import legendre_basis

__all__ = [
    "AMPLITUDE",
    "check_continuum_order",
    "continuum_parameters",
    "equilibrate",
    "fisher_information",
    "marginal_crlb",
]

#: Name of the overall flux-amplitude parameter ``ln A``: ``∂flux/∂ln A = flux``.
AMPLITUDE = "ln_A"


def check_continuum_order(order: int) -> int:
    """``order`` of the continuum nuisance, checked: an integer ≥ 0 (0: no continuum).

    Raises
    ------
    ValueError
        Otherwise.
    """
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or order < 0:
        raise ValueError(f"continuum_order must be an integer >= 0, got {order!r}")
    return int(order)


def continuum_parameters(order: int) -> tuple[str, ...]:
    """Names of the continuum coefficients of order ``order``: ``("c_1", …, "c_order")``.

    ``c_k`` multiplies the Legendre polynomial P_k in the factor ``1 + Σ_k c_k P_k(x)`` on the
    flux (dimensionless, a fraction of the flux); ``()`` for order 0.
    """
    return tuple(f"c_{k}" for k in range(1, check_continuum_order(order) + 1))


def _check_sigma(sigma: torch.Tensor) -> None:
    if bool((sigma > 0).all()):  # one pass in the common case (NaN fails the comparison)
        return
    if bool(torch.isnan(sigma).any()):
        raise ValueError("sigma contains NaN; mark a masked pixel with sigma = inf instead")
    raise ValueError(f"sigma must be > 0 everywhere; got minimum {float(sigma.min()):.3g}")


def fisher_information(
    jacobian: torch.Tensor,
    sigma: torch.Tensor,
    flux: torch.Tensor | None = None,
    continuum_order: int = 0,
) -> torch.Tensor:
    """Fisher information ``Jᵀ diag(σ⁻²) J`` for independent Gaussian pixel noise.

    Parameters
    ----------
    jacobian : torch.Tensor
        ``(..., L, P)``: derivative of the flux in each of ``L`` pixels with respect to each of
        ``P`` parameters, in flux units per parameter unit.
    sigma : torch.Tensor
        ``(..., L)``: per-pixel 1σ noise in the flux unit, > 0 (``inf`` masks a pixel); broadcast
        against the leading dimensions of ``jacobian`` (e.g. one σ spectrum ``(L,)`` for all
        stars).
    flux : torch.Tensor, optional
        ``(..., L)`` model flux. When given, the overall flux amplitude ``ln A`` is added as a
        last parameter, with ``∂flux/∂ln A = flux`` (without copying the Jacobian). An
        estimator that is not told the star's brightness (any scale-normalised input) has to
        treat it as unknown.
    continuum_order : int
        K ≥ 0 (needs ``flux``): after ``ln A``, the K coefficients ``c_1 … c_K`` of a
        multiplicative continuum ``1 + Σ_k c_k P_k(x)`` at ``c = 0``, with
        ``∂flux/∂c_k = flux · P_k(x)`` (:func:`continuum_parameters` names them). With ``ln A``
        they marginalise any polynomial continuum of degree K. 0 (default): none.

    Returns
    -------
    torch.Tensor
        ``(..., P', P')`` float64 Fisher matrix, in (parameter unit)⁻², over the Jacobian's
        ``P`` columns, then ``ln A`` (with ``flux``), then ``c_1 … c_K``: ``P' = P`` without
        ``flux``, ``P + 1 + K`` with it.

    Raises
    ------
    ValueError
        If the shapes do not match, σ is NaN or not positive, or ``continuum_order`` is not an
        integer ≥ 0 or is given without ``flux``.
    """
    if jacobian.dim() < 2:
        raise ValueError(f"jacobian must have shape (..., L, P), got {tuple(jacobian.shape)}")
    if sigma.dim() < 1 or sigma.shape[-1] != jacobian.shape[-2]:
        raise ValueError(
            f"sigma has {sigma.shape[-1] if sigma.dim() else 'no'} pixels but the jacobian has "
            f"{jacobian.shape[-2]} (jacobian {tuple(jacobian.shape)}, sigma {tuple(sigma.shape)})"
        )
    _check_sigma(sigma)
    n_continuum = check_continuum_order(continuum_order)
    if n_continuum and flux is None:
        raise ValueError("continuum_order needs the model flux (flux=)")
    try:
        batch = torch.broadcast_shapes(jacobian.shape[:-2], sigma.shape[:-1])
    except RuntimeError as err:
        raise ValueError(
            f"sigma {tuple(sigma.shape)} does not broadcast against jacobian "
            f"{tuple(jacobian.shape)}"
        ) from err
    if flux is not None and flux.shape != jacobian.shape[:-1]:
        raise ValueError(
            f"flux shape {tuple(flux.shape)} must equal the jacobian's {tuple(jacobian.shape[:-1])}"
        )
    # Whiten into one (..., P[+1], L) array in the Jacobian's dtype, rows contiguous over
    # pixels (each element exact to that dtype's rounding), then accumulate in float64: the
    # Schur complement amplifies float32 *accumulation* errors to ~1e-3 of the CRLB.
    n_pix, p = jacobian.shape[-2:]
    inverse = sigma.to(jacobian.dtype).reciprocal()
    rows = p + (flux is not None) + n_continuum
    whitened = torch.empty((*batch, rows, n_pix), dtype=jacobian.dtype, device=jacobian.device)
    torch.mul(jacobian.mT, inverse.unsqueeze(-2), out=whitened[..., :p, :])
    if flux is not None:
        torch.mul(flux.to(jacobian.dtype), inverse, out=whitened[..., p, :])
    if n_continuum:
        # The basis in float64, rounded once to the Jacobian's dtype.
        x = torch.linspace(-1.0, 1.0, n_pix, dtype=torch.float64, device=jacobian.device)
        basis = legendre_basis(x, n_continuum).to(jacobian.dtype)
        torch.mul(whitened[..., p : p + 1, :], basis, out=whitened[..., p + 1 :, :])
    whitened = whitened.to(torch.float64)
    return whitened @ whitened.mT


def equilibrate(fisher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale symmetric matrices to unit diagonal, ``D⁻¹ I D⁻¹``, so that parameters in K and dex
    solve accurately (the CRLB, the van Trees bound and the posterior's regression use it).

    Parameters
    ----------
    fisher : torch.Tensor
        ``(..., P, P)`` symmetric positive semi-definite matrices.

    Returns
    -------
    scaled : torch.Tensor
        ``(..., P, P)`` float64 ``fisher / (d dᵀ)``, unit diagonal where the diagonal is > 0.
    d : torch.Tensor
        ``(..., P)`` float64 ``√diag(fisher)`` (at least the smallest positive float64), so
        that ``fisher = scaled · d dᵀ`` element by element.

    Raises
    ------
    ValueError
        If ``fisher`` is not ``(..., P, P)``.
    """
    fisher = fisher.to(torch.float64)
    if fisher.dim() < 2 or fisher.shape[-1] != fisher.shape[-2]:
        raise ValueError(f"fisher must have shape (..., P, P), got {tuple(fisher.shape)}")
    d = fisher.diagonal(dim1=-2, dim2=-1).clamp_min(torch.finfo(torch.float64).tiny).sqrt()
    return fisher / (d.unsqueeze(-1) * d.unsqueeze(-2)), d


def marginal_crlb(fisher: torch.Tensor, index: int) -> torch.Tensor:
    """Marginal CRLB of parameter ``index`` through the Schur complement.

    ``CRLB = (I_gg − I_gη I_ηη⁻¹ I_ηg)⁻¹``: the smallest variance of an unbiased estimator of
    ``g`` when all other parameters of the matrix are unknown. Pass a sub-matrix to treat fewer
    parameters as nuisance.

    Parameters
    ----------
    fisher : torch.Tensor
        ``(..., P, P)`` symmetric positive semi-definite Fisher matrices.
    index : int
        The parameter of interest.

    Returns
    -------
    torch.Tensor
        ``(...,)`` float64 variance bound in (parameter unit)²; ``inf`` where the parameter is
        not identifiable (Schur complement ≤ 0 or nuisance block singular).
    """
    scaled, d = equilibrate(fisher)
    p = scaled.shape[-1]
    if not -p <= index < p:
        raise ValueError(f"parameter index {index} out of range for {p} parameters")
    index %= p
    others = [i for i in range(p) if i != index]
    i_gg = scaled[..., index, index]
    if others:
        i_ge = scaled[..., index, others]
        i_ee = scaled[..., others, :][..., others]
        chol, info = torch.linalg.cholesky_ex(i_ee)
        solved = torch.cholesky_solve(i_ge.unsqueeze(-1), chol).squeeze(-1)
        schur = i_gg - (i_ge * solved).sum(-1)
        schur = torch.where(info == 0, schur, torch.zeros_like(schur))
    else:
        schur = i_gg
    crlb = 1.0 / (schur.clamp_min(0.0) * d[..., index] ** 2)
    return torch.where(torch.isfinite(crlb), crlb, torch.full_like(crlb, torch.inf))
