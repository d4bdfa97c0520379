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

A model whose flux is linear in a short design vector, ``f = (d V) s`` (the emulator's
normalised flux times a fixed continuum ``s``), needs no model spectra at all:
:class:`LinearLikelihood` takes every sum over pixels once per observed spectrum, as a quadratic
form in ``d``, and each sample then costs a few hundred multiply-adds instead of a pass over
the pixels.
"""

from __future__ import annotations

import functools
import math

import torch

from specvit.bounds.fisher import equilibrate
from specvit.continuum import legendre_basis

__all__ = [
    "LinearLikelihood",
    "Reference",
    "best_fit_chi2",
    "continuum_basis",
    "design_products",
    "whitened_loglike",
]


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
        self.upper = torch.triu_indices(k, k)
        self._basis = basis
        self.sw = w.sqrt()
        z = y * self.sw
        self.u = f0 * self.sw
        # UᵀU and Uᵀz, U = [P_k f0/σ], from sums over pixels (no (n, K+1, L) array)
        m0 = _symmetric(self.u.square() @ self.pairs.T, self.upper, k)  # (n, K+1, K+1)
        rhs = ((self.u * z) @ basis.T).unsqueeze(-1)  # (n, K+1, 1)
        self._terms = None
        if background is not None:  # the metric M = I − B̃ K B̃ᵀ, K = (B̃ᵀB̃)⁺
            terms = background.to(y).expand(len(y), -1, -1)  # (n, J, L)
            b = terms * self.sw[:, None]  # whitened
            kernel = torch.linalg.pinv(b @ b.mT, hermitian=True)
            bu = _rows_at(b * self.u[:, None], basis.T)  # (n, J, K+1)
            bz = b @ z.unsqueeze(-1)  # (n, J, 1)
            m0, rhs = m0 - bu.mT @ kernel @ bu, rhs - bu.mT @ kernel @ bz
        self.m0 = m0  # (n, K+1, K+1)
        self.a = torch.linalg.solve(m0, rhs).squeeze(-1)  # (n, K+1)
        self.r = z - (self.a @ basis) * self.u
        #: |r|² in the metric: the reference fit's χ²
        self.chi2 = self.r.square().sum(-1)
        if background is not None:
            br = b @ self.r.unsqueeze(-1)  # (n, J, 1)
            self.chi2 = self.chi2 - (br.mT @ kernel @ br)[:, 0, 0]
            # what turns the sums against B̃ into the metric's t, L and Q
            self._terms = (terms, kernel, kernel @ bu, (kernel @ br).squeeze(-1))
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


class LinearLikelihood:
    """:func:`whitened_loglike` for model fluxes linear in a design vector: ``f = (d V) s``.

    For ``V`` ``(D, L)`` fixed weights (the emulator's normalised flux,
    :attr:`specvit.emulator.Emulator.normalised_weights`) and ``s`` ``(n, L)`` a fixed
    multiplicative shape per spectrum (the emulator's continuum at the proposal's centre), every
    sum over pixels of the continuum-marginalised likelihood is a quadratic form in ``d``:
    ``GᵀWG`` from ``Σ_l P_i P_j s² w V_a V_b`` and ``GᵀWy`` from ``Σ_l P_k s w y V_a``. They
    are taken once per spectrum, in float64 (``|z|² − zᵀG(GᵀG)⁻¹Gᵀz`` then needs no reference
    spectrum to stay accurate); additive terms (the metric ``M`` of :func:`whitened_loglike`)
    leave them linear and quadratic in ``d`` and are folded in there too. A sample costs
    ``D(D+1)/2`` products and a ``(K+1)``-square solve. The result is
    :func:`whitened_loglike`'s for ``f = (d V) s`` (``tests/test_exact.py`` holds it to the
    direct float64 form).

    Parameters
    ----------
    y, w : torch.Tensor
        ``(n, L)`` observed flux and inverse variance (0 on masked pixels), float64.
    weights : torch.Tensor
        ``(D, L)`` the design vector's weights ``V``.
    scale : torch.Tensor
        ``(n, L)`` the shape ``s`` each spectrum's model flux is multiplied by.
    order : int
        The continuum's degree K (:func:`continuum_basis`; 0: the amplitude alone).
    background : torch.Tensor, optional
        As in :func:`whitened_loglike`.
    products : torch.Tensor, optional
        :func:`design_products` of ``weights`` (computed here if not given).
    """

    def __init__(
        self,
        y: torch.Tensor,
        w: torch.Tensor,
        weights: torch.Tensor,
        scale: torch.Tensor,
        order: int = 0,
        background: torch.Tensor | None = None,
        products: torch.Tensor | None = None,
    ) -> None:
        length = y.shape[-1]
        basis = _basis(length, order).to(y)
        self.k = k = basis.shape[0]
        v = weights.to(y)
        d = v.shape[0]
        self.upper = torch.triu_indices(k, k)
        i, j = self._design_upper = torch.triu_indices(d, d)
        #: the products d_a d_b (a ≤ b) each count once on the diagonal, twice off it
        self._twice = torch.where(i == j, 1.0, 2.0).to(y)
        ws = w * scale.to(y)
        #: Gᵀz per design term: (n, K+1, D)
        self._gz = _rows_at(basis * (ws * y)[:, None], v.T)
        self._zz = (w * y.square()).sum(-1)
        # GᵀG: Σ_l (P_i P_j)(l) s²w V_a V_b, the continuum products in their span (2K+1 terms
        # for Legendre polynomials) and the design products packed (a ≤ b, the others doubled)
        span, coef = (t.to(y) for t in _pair_span(length, order))
        products = design_products(v) if products is None else products.to(y)
        self._gg = coef @ _rows_at((ws * scale.to(y))[:, None] * span, products)  # (n, M, D2)
        if background is not None:  # in the metric M = I − B̃ K B̃ᵀ, as whitened_loglike's
            terms = background.to(y).expand(len(y), -1, -1)  # (n, J, L)
            kernel = torch.linalg.pinv((terms * w[:, None]) @ terms.mT, hermitian=True)
            bz = (terms @ (w * y).unsqueeze(-1)).squeeze(-1)  # (n, J)
            on = (terms != 0).any(1).any(0)  # the pixels a term touches (a band: a third)
            cross = (terms * ws[:, None])[..., on][:, :, None] * basis[None, None, :, on]
            bg = _rows_at(cross.flatten(1, 2), v[:, on].T).unflatten(1, (-1, k))  # B̃ᵀG/d
            self._zz = self._zz - (bz.unsqueeze(1) @ kernel @ bz.unsqueeze(-1))[:, 0, 0]
            # GᵀMz and GᵀMG are still linear and quadratic in d: fold the metric's terms in
            self._gz = self._gz - torch.einsum(
                "njka,nj->nka", bg, (kernel @ bz.unsqueeze(-1))[..., 0]
            )
            kbg = torch.einsum("nij,njka->nika", kernel, bg)
            quad = torch.einsum("njka,njlb->nklab", bg, kbg)  # (n, K+1, K+1, D, D)
            quad = 0.5 * (quad + quad.transpose(-1, -2))  # the products d_a d_b count once
            self._gg = self._gg - quad[:, self.upper[0], self.upper[1]][..., i, j]

    def loglike(self, design: torch.Tensor) -> torch.Tensor:
        """``(n, S)`` the log likelihood of the model fluxes of design vectors
        ``(n, S, D)``."""
        k = self.k
        design = design.to(self._gz)
        i, j = self._design_upper
        pairs = design[..., i] * design[..., j] * self._twice
        gg = _symmetric(pairs @ self._gg.mT, self.upper, k)  # (n, S, K+1, K+1)
        gz = design @ self._gz.mT  # (n, S, K+1)
        chol, info = torch.linalg.cholesky_ex(gg)
        beta = torch.cholesky_solve(gz.unsqueeze(-1), chol).squeeze(-1)
        chi2 = (self._zz[:, None] - (gz * beta).sum(-1)).clamp_min(0.0)
        log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        amplitude = beta[..., 0]
        out = -0.5 * chi2 - 0.5 * log_det - k * torch.log(amplitude.clamp_min(1e-300))
        return torch.where((amplitude > 0) & (info == 0), out, torch.full_like(out, -math.inf))


def best_fit_chi2(
    y: torch.Tensor,
    w: torch.Tensor,
    models: torch.Tensor,
    basis: torch.Tensor | None = None,
    background: torch.Tensor | None = None,
) -> torch.Tensor:
    """χ² of the least-squares fit of each of several model fluxes to each spectrum.

    The fit is :func:`whitened_loglike`'s: ``y ≈ c(x) f + Σ_j γ_j B_j``, the continuum terms'
    and the additive terms' coefficients free (a zero or repeated term adds nothing).

    Parameters
    ----------
    y, w : torch.Tensor
        ``(n, L)`` observed flux and inverse variance (0 on masked pixels), float64.
    models : torch.Tensor
        ``(n, R, L)`` R model fluxes per spectrum.
    basis : torch.Tensor, optional
        ``(K + 1, L)`` the continuum's terms, the first a constant; None: the amplitude alone.
    background : torch.Tensor, optional
        ``(J, L)`` or ``(n, J, L)`` the additive terms; None: none.

    Returns
    -------
    torch.Tensor
        ``(n, R)`` float64, the χ² of each model's best fit.

    Raises
    ------
    ValueError
        If the shapes disagree.
    """
    n, length = y.shape if y.dim() == 2 else (None, None)
    if (
        n is None
        or w.shape != y.shape
        or models.dim() != 3
        or models.shape[::2] != y.shape
        or (basis is not None and (basis.dim() != 2 or basis.shape[1] != length))
        or (background is not None and background.shape[-1] != length)
        or (background is not None and background.dim() == 3 and background.shape[0] != n)
    ):
        raise ValueError(
            "best_fit_chi2 takes y and w (n, L), models (n, R, L), basis (K + 1, L) and "
            f"background (J, L) or (n, J, L); got y {tuple(y.shape)}, w {tuple(w.shape)}, "
            f"models {tuple(models.shape)}, basis "
            f"{None if basis is None else tuple(basis.shape)}, background "
            f"{None if background is None else tuple(background.shape)}"
        )
    basis = y.new_ones((1, length)) if basis is None else basis.to(y)
    k = basis.shape[0]
    upper = torch.triu_indices(k, k)
    f = models.to(y)
    wf = w[:, None] * f  # (n, R, L)
    # the normal equations of the columns P_k f (and B_j), from sums over the pixels
    gram = _symmetric((wf * f) @ (basis[upper[0]] * basis[upper[1]]).T, upper, k)
    rhs = (wf * y[:, None]) @ basis.T  # (n, R, K+1)
    if background is not None:
        terms = background.to(y).expand(len(y), -1, -1)  # (n, J, L)
        wb = terms * w[:, None]
        on = (terms != 0).any(1).any(0)  # the pixels a term touches
        wf_on, terms_on, basis_on = wf[..., on], terms[..., on], basis[:, on].T
        cross = torch.stack(
            [(wf_on * terms_on[:, j, None]) @ basis_on for j in range(terms.shape[1])], -1
        )  # (n, R, K+1, J)
        corner = (wb @ terms.mT)[:, None].expand(-1, f.shape[1], -1, -1)  # (n, R, J, J)
        gram = torch.cat([torch.cat([gram, cross], -1), torch.cat([cross.mT, corner], -1)], -2)
        by = (wb @ y.unsqueeze(-1)).squeeze(-1)[:, None].expand(-1, f.shape[1], -1)
        rhs = torch.cat([rhs, by], -1)
    # equilibrated, so that the pseudo-inverse's cut sees no unit
    gram, d = equilibrate(gram)
    rhs = rhs / d
    solved = (torch.linalg.pinv(gram, hermitian=True) @ rhs.unsqueeze(-1)).squeeze(-1)
    return ((w * y.square()).sum(-1)[:, None] - (rhs * solved).sum(-1)).clamp_min(0.0)


@functools.lru_cache(maxsize=4)
def _pair_span(length: int, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The products ``P_i P_j`` (i ≤ j) of :func:`continuum_basis`'s terms as ``coef @ span``:
    ``span`` ``(R, L)`` orthonormal rows spanning them (R = 2K + 1: polynomials of degree
    ≤ 2K), ``coef`` ``(M, R)``."""
    basis = _basis(length, order)
    i, j = torch.triu_indices(basis.shape[0], basis.shape[0])
    u, s, vh = torch.linalg.svd(basis[i] * basis[j], full_matrices=False)
    rank = int((s > s[0] * 1e-10).sum())
    return vh[:rank], u[:, :rank] * s[:rank]


def design_products(weights: torch.Tensor) -> torch.Tensor:
    """``(L, D(D+1)/2)`` float64: the products ``V_a V_b`` (a ≤ b) of design weights
    ``(D, L)`` per pixel, which :class:`LinearLikelihood` sums against (compute once per
    model)."""
    v = weights.to(torch.float64)
    i, j = torch.triu_indices(v.shape[0], v.shape[0])
    return (v[i] * v[j]).T.contiguous()


@functools.lru_cache(maxsize=4)
def continuum_basis(length: int, order: int) -> torch.Tensor | None:
    """``(order + 1, length)`` float64: 1 and the Legendre polynomials of degree 1 … ``order``
    across ``length`` pixels, the continuum terms of :func:`whitened_loglike`; None for order 0
    (the amplitude alone)."""
    if not order:
        return None
    x = torch.linspace(-1.0, 1.0, length, dtype=torch.float64)
    return torch.cat([torch.ones_like(x)[None], legendre_basis(x, order)])


def _rows_at(rows: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``(n, R, M)``: the rows ``(n, R, L)`` times one ``(L, M)`` matrix, as a single product
    (a batched one would copy the matrix per spectrum)."""
    return (rows.reshape(-1, rows.shape[-1]) @ matrix).view(*rows.shape[:-1], -1)


def _basis(length: int, order: int) -> torch.Tensor:
    """``(K + 1, L)`` the continuum's terms, the amplitude's included."""
    basis = continuum_basis(length, order)
    return torch.ones((1, length), dtype=torch.float64) if basis is None else basis


def _symmetric(packed: torch.Tensor, upper: torch.Tensor, k: int) -> torch.Tensor:
    """``(..., k, k)`` symmetric matrices from their ``(..., M)`` upper triangles."""
    out = packed.new_zeros((*packed.shape[:-1], k, k))
    out[..., upper[0], upper[1]] = packed
    out[..., upper[1], upper[0]] = packed
    return out
