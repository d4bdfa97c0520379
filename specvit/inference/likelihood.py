"""The emulator likelihood of many model spectra at once, their continuum marginalised.

Exact mode (:mod:`specvit.inference.exact`) weighs hundreds of model spectra per observed one.
For each it needs ``ln L = −χ²/2 − ln det(GᵀWG)/2 − (K + 1) ln β̂_0``: the flux is the model's
times a continuum ``Σ_k β_k P_k`` (the amplitude alone, or a Legendre polynomial for a model
that divides its input by its continuum) marginalised analytically (:func:`whitened_loglike`),
plus, where they are known, additive terms with free coefficients (the subtracted sky and its
derivative: a scale error and a shift of the sky subtraction).
The sums are taken about one reference spectrum per observed one, so float32 model spectra keep
the likelihood's differences between samples accurate, and :class:`Reference` adds them up block
by block of pixels while the model spectra are in cache.
"""

from __future__ import annotations

import functools
import math

import torch

from specvit.continuum import legendre_basis

__all__ = ["Reference", "continuum_basis", "whitened_loglike"]


def whitened_loglike(
    y: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor,
    f0: torch.Tensor,
    basis: torch.Tensor | None = None,
    background: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log likelihood of many model spectra, their continuum (and an additive background)
    marginalised.

    The observed flux is ``y ~ N(c(x) f, σ²)``, ``c = Σ_k β_k P_k`` a combination of the
    ``basis`` terms (``None``: the flux amplitude alone, ``c = β_0``); ``β`` is marginalised
    with the prior ``p(A, c_1 … c_K) ∝ 1/A`` on the amplitude ``A = β_0`` and the relative
    terms ``c_k = β_k/β_0`` (for the amplitude alone,
    :func:`specvit.bounds.bayes.amplitude_marginal_loglike`), at its Gaussian (Laplace)
    form: ``ln L = −χ²/2 − ln det(GᵀWG)/2 − (K + 1) ln β̂_0``, ``G`` the columns ``P_k f``.

    With a ``background`` the flux is ``c f + Σ_j γ_j B_j``: additive terms, such as a
    sky-subtraction error leaves (a scale error of the subtracted sky, and its derivative for a
    shift), their coefficients ``γ`` marginalised under a flat prior. That projects the
    ``B_j`` out of the data and of ``G``: every inner product below is taken in the metric
    ``M = I − B̃ (B̃ᵀB̃)⁺ B̃ᵀ`` (``B̃ = B/σ``; ``ln det(B̃ᵀB̃)/2``, the same for every sample,
    is left out).

    The sums are taken about a reference spectrum ``f0`` so that float32 model fluxes keep the
    likelihood's differences between samples accurate (the sums ``Σ y²/σ²`` and ``Σ y f/σ²``
    are large and nearly cancel; their differences from the reference's are not). With
    ``U = [P_k f0/σ]``, ``z = y/σ = U a + r`` (``r ⟂ U``), ``G = U + Δ``, ``L = ΔᵀU``,
    ``Q = ΔᵀΔ``, ``t = Δᵀr``, ``A = GᵀG = UᵀU + L + Lᵀ + Q`` and ``d = (Lᵀ + Q) a − t``
    (with a background, in the metric ``M``)::

        χ² = |z|² − zᵀG (GᵀG)⁻¹ Gᵀz = |r|² + aᵀQ a − 2 aᵀt − dᵀA⁻¹d,   β̂ = a − A⁻¹d,

    every term a difference from the reference's fit (for the amplitude alone, the form of
    earlier versions). ``tests/test_exact.py`` holds it against
    the direct float64 form.

    Parameters
    ----------
    y, w : torch.Tensor
        ``(n, L)`` observed flux and inverse variance (0 on masked pixels), float64.
    f : torch.Tensor
        ``(n, S, L)`` model fluxes (float32 or float64).
    f0 : torch.Tensor
        ``(n, L)`` a reference model flux per spectrum (e.g. at the proposal's centre), float64.
    basis : torch.Tensor, optional
        ``(K + 1, L)`` the continuum's terms, the first a constant (e.g. 1 and the Legendre
        polynomials of :func:`specvit.continuum.legendre_basis`); None: the amplitude alone.
    background : torch.Tensor, optional
        ``(J, L)`` the additive terms ``B_j``, or ``(n, J, L)``: each spectrum its own (in the
        flux's unit; a zero or repeated term adds nothing); None: none.

    Returns
    -------
    torch.Tensor
        ``(n, S)`` float64 log likelihood up to a constant per spectrum; ``-inf`` where the
        fitted amplitude ``β̂_0`` is ≤ 0.
    """
    reference = Reference(y, w, f0, basis, background)
    sums = reference.zeros(f.shape[1])
    reference.accumulate(sums, f, slice(None))
    return reference.loglike(sums)


class Reference:
    """:func:`whitened_loglike` in parts: the reference fit of each spectrum, sums over pixels
    that model spectra add to block by block (:meth:`accumulate`, so that a block of model
    fluxes is used while it is in cache), and the log likelihood from them (:meth:`loglike`).
    The arguments are :func:`whitened_loglike`'s."""

    def __init__(self, y, w, f0, basis, background=None) -> None:
        basis = y.new_ones((1, y.shape[-1])) if basis is None else basis.to(y)
        self.k = k = basis.shape[0]
        self.sw = w.sqrt()
        z = y * self.sw
        self.u = f0 * self.sw
        big_u = self.u[:, None] * basis  # (n, K+1, L)
        m0, rhs = big_u @ big_u.mT, big_u @ z.unsqueeze(-1)
        self._terms = None
        if background is not None:  # the metric M = I − B̃ K B̃ᵀ, K = (B̃ᵀB̃)⁺
            terms = background.to(y).expand(len(y), -1, -1)  # (n, J, L)
            b = terms * self.sw[:, None]  # whitened
            kernel = torch.linalg.pinv(b @ b.mT, hermitian=True)
            bu, bz = b @ big_u.mT, b @ z.unsqueeze(-1)  # (n, J, K+1), (n, J, 1)
            m0, rhs = m0 - bu.mT @ kernel @ bu, rhs - bu.mT @ kernel @ bz
        self.m0 = m0  # (n, K+1, K+1)
        self.a = torch.linalg.solve(m0, rhs).squeeze(-1)  # (n, K+1)
        self.r = z - (self.a.unsqueeze(1) @ big_u).squeeze(1)
        #: |r|² in the metric: the reference fit's χ²
        self.chi2 = self.r.square().sum(-1)
        if background is not None:
            br = b @ self.r.unsqueeze(-1)  # (n, J, 1)
            self.chi2 = self.chi2 - (br.mT @ kernel @ br)[:, 0, 0]
            # what turns the sums against B̃ into the metric's t, L and Q
            self._terms = (terms, kernel, kernel @ bu, (kernel @ br).squeeze(-1))
        self.upper = torch.triu_indices(k, k)
        self._basis = basis
        self._cast: dict[torch.dtype, tuple[torch.Tensor, ...]] = {}

    @functools.cached_property
    def pairs(self) -> torch.Tensor:
        """``(M, L)`` the products of each pair of continuum terms, M = (K+1)(K+2)/2."""
        return self._basis[self.upper[0]] * self._basis[self.upper[1]]

    @functools.cached_property
    def columns(self) -> torch.Tensor:
        """``(n, K+1+M[+(K+1)J], L)`` what the model spectra's differences are summed against:
        the residual and the reference times each continuum term and pair of terms (and each
        continuum term times each additive term, whitened)."""
        parts = [self._basis * self.r[:, None], self.u[:, None] * self.pairs]
        if self._terms is not None:
            terms = self._terms[0]  # (n, J, L)
            cross = (self._basis[None, :, None] * terms[:, None]).flatten(1, 2)  # (n, (K+1)J, L)
            parts.append(self.sw[:, None] * cross)
        return torch.cat(parts, dim=1)

    def zeros(self, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Empty (float64) sums for ``samples`` model spectra per spectrum."""
        n, width = self.columns.shape[:2]
        return (
            torch.zeros(n, samples, width, dtype=torch.float64),
            torch.zeros(n, samples, self.pairs.shape[0], dtype=torch.float64),
        )

    def accumulate(self, sums, f: torch.Tensor, pixels: slice) -> None:
        """Add the pixels ``pixels`` of the model fluxes ``f`` ``(n, S, len)`` to ``sums``."""
        dt = f.dtype
        if dt not in self._cast:
            self._cast[dt] = tuple(t.to(dt) for t in (self.u, self.sw, self.columns, self.pairs))
        u, sw, columns, pairs = (t[..., pixels] for t in self._cast[dt])
        delta = torch.addcmul(-u[:, None], f, sw[:, None])  # (n, S, len)
        sums[0].add_(delta @ columns.mT)  # (n, S, K+1+M[+(K+1)J])
        sums[1].add_(delta.square_() @ pairs.T)  # (n, S, M)

    def loglike(self, sums) -> torch.Tensor:
        """``(n, S)`` the log likelihood of the model spectra summed into ``sums``."""
        k, a = self.k, self.a
        linear, square = sums
        m = self.upper.shape[1]
        # with t = ΔᵀP r, L = ΔᵀU and Q = ΔᵀΔ (A = UᵀU + L + Lᵀ + Q, d = (Lᵀ + Q) a − t) the
        # large terms cancel before any rounding: χ² = |r|² + aᵀQ a − 2 aᵀt − dᵀA⁻¹d
        t = linear[..., :k]
        big_l = _symmetric(linear[..., k : k + m], self.upper, k)
        big_q = _symmetric(square, self.upper, k)
        if self._terms is not None:  # in the metric: with C = ΔᵀB̃ (n, S, K+1, J)
            _, kernel, kernel_bu, kernel_br = self._terms
            cross = linear[..., k + m :].unflatten(-1, (k, -1))
            t = t - (cross @ kernel_br[:, None, :, None]).squeeze(-1)
            big_l = big_l - cross @ kernel_bu[:, None]
            big_q = big_q - cross @ kernel[:, None] @ cross.mT
        a_ = a[:, None, :, None]  # (n, 1, K+1, 1)
        d = ((big_l.mT + big_q) @ a_).squeeze(-1) - t  # (n, S, K+1)
        chol, info = torch.linalg.cholesky_ex(self.m0[:, None] + big_l + big_l.mT + big_q)
        solved = torch.cholesky_solve(d.unsqueeze(-1), chol).squeeze(-1)
        chi2 = (
            self.chi2[:, None]
            + (a_.mT @ big_q @ a_)[..., 0, 0]
            - 2.0 * (t * a[:, None]).sum(-1)
            - (d * solved).sum(-1)
        ).clamp_min(0.0)
        log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        amplitude = a[:, None, 0] - solved[..., 0]
        out = -0.5 * chi2 - 0.5 * log_det - k * torch.log(amplitude.clamp_min(1e-300))
        return torch.where((amplitude > 0) & (info == 0), out, torch.full_like(out, -math.inf))


@functools.lru_cache(maxsize=4)
def continuum_basis(length: int, order: int) -> torch.Tensor | None:
    """``(order + 1, length)`` float64: 1 and the Legendre polynomials of degree 1 … ``order``
    across ``length`` pixels, the continuum terms of :func:`whitened_loglike`; None for order 0
    (the amplitude alone)."""
    if not order:
        return None
    x = torch.linspace(-1.0, 1.0, length, dtype=torch.float64)
    return torch.cat([torch.ones_like(x)[None], legendre_basis(x, order)])


def _symmetric(packed: torch.Tensor, upper: torch.Tensor, k: int) -> torch.Tensor:
    """``(..., k, k)`` symmetric matrices from their ``(..., M)`` upper triangles."""
    out = packed.new_zeros((*packed.shape[:-1], k, k))
    out[..., upper[0], upper[1]] = packed
    out[..., upper[1], upper[0]] = packed
    return out
