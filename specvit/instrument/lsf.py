"""Gaussian line-spread function integrated over detector pixels, as one sparse linear operator.

A spectrograph pixel ``i`` with edges ``[a_i, b_i]`` records the mean, over the pixel, of the
source spectrum convolved with the line-spread function (LSF). For a Gaussian LSF of width
``σ_i`` that is ::

    F_i = ∫ K_i(λ') f(λ') dλ',   K_i(λ') = [Φ((b_i − λ')/σ_i) − Φ((a_i − λ')/σ_i)] / (b_i − a_i),

with Φ the standard normal CDF. The source spectrum ``f`` is known on a sampled grid and read as
piecewise linear between samples, so ``F = A f`` with ``A[i, j] = ∫ K_i h_j`` for the hat function
``h_j`` of sample ``j``. :func:`lsf_matrix` evaluates these integrals by Gauss–Legendre quadrature
on every source interval (``K_i`` is smooth on the scale of the source sampling) and truncates the
kernel at ``truncation`` σ. ``σ_i = λ_i / (R · 2√(2 ln 2))`` (FWHM = λ/R) at the pixel centre:
the resolving power ``R`` is constant along the arm, so the LSF widens with wavelength.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.special import ndtr

__all__ = ["MR_RESOLUTION", "MR_RESOLVING_POWERS", "lsf_matrix", "lsf_sigma"]

#: The design resolving power (λ/FWHM) of the PFS MR arm: the emulator's LSF unless told otherwise.
MR_RESOLUTION = 5000.0

#: The resolving powers (λ/FWHM) of the PFS MR arm that specvit models are trained across: the
#: design value ≈ 5000, and an LSF that differs from fibre to fibre (the data engine's ``lsf``
#: effect draws one of these per star; the emulator fit of a model trained on it allows the
#: broadest, :mod:`specvit.inference.physics`).
MR_RESOLVING_POWERS: tuple[float, ...] = (4000.0, 4500.0, 5000.0, 5500.0, 6000.0, 6500.0)

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def lsf_sigma(wavelength: np.ndarray | float, resolution: float) -> np.ndarray:
    """Gaussian σ (Å) of an LSF with FWHM = λ / R.

    Parameters
    ----------
    wavelength : array_like
        Wavelengths in Å.
    resolution : float
        Resolving power R = λ / FWHM (> 0).

    Returns
    -------
    numpy.ndarray
        σ in Å, same shape as ``wavelength``.
    """
    if not resolution > 0:
        raise ValueError(f"resolution must be > 0, got {resolution}")
    return np.asarray(wavelength, dtype=np.float64) / (resolution * _FWHM_PER_SIGMA)


def lsf_matrix(
    source_wave: np.ndarray,
    pixel_edges: np.ndarray,
    resolution: float,
    *,
    truncation: float = 7.0,
    nodes: int = 6,
) -> sparse.csr_matrix:
    """Sparse ``(P, S)`` operator: Gaussian LSF convolution + integration over ``P`` pixels.

    Parameters
    ----------
    source_wave : numpy.ndarray
        ``(S,)`` strictly ascending wavelengths (Å) at which the source spectrum is sampled.
    pixel_edges : numpy.ndarray
        ``(P + 1,)`` strictly ascending pixel edges (Å), in the same medium as ``source_wave``.
    resolution : float
        Resolving power R (FWHM = λ/R at each pixel's centre).
    truncation : float
        The kernel is cut at this many σ beyond each pixel edge (default 7: the neglected
        Gaussian tail is < 1.3e-12).
    nodes : int
        Gauss–Legendre nodes per source interval.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``A`` (float64) with ``A @ f`` the pixel-mean of the LSF-convolved, piecewise-linear
        spectrum ``f``; each row sums to 1 (flux conservation).

    Raises
    ------
    ValueError
        If the grids are not ascending or the kernel of a pixel reaches beyond ``source_wave``.
    """
    x = np.asarray(source_wave, dtype=np.float64)
    edges = np.asarray(pixel_edges, dtype=np.float64)
    if x.ndim != 1 or x.size < 2 or np.any(np.diff(x) <= 0):
        raise ValueError("source_wave must be a 1-D strictly ascending array of ≥ 2 wavelengths")
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("pixel_edges must be a 1-D strictly ascending array of ≥ 2 edges")
    a, b = edges[:-1], edges[1:]
    sigma = lsf_sigma(0.5 * (a + b), resolution)
    lo, hi = a - truncation * sigma, b + truncation * sigma
    if lo[0] < x[0] or hi[-1] > x[-1]:
        raise ValueError(
            f"the LSF of the pixels ({lo[0]:.3f}–{hi[-1]:.3f} Å with ±{truncation}σ) reaches "
            f"beyond the source spectrum ({x[0]:.3f}–{x[-1]:.3f} Å)"
        )
    # Source intervals [x_j, x_{j+1}] overlapping each pixel's kernel support.
    first = np.searchsorted(x, lo, side="right") - 1
    last = np.searchsorted(x, hi, side="left")  # exclusive end of intervals
    width = int((last - first).max())
    j = np.minimum(first[:, None] + np.arange(width)[None, :], x.size - 2)  # (P, W)
    valid = (first[:, None] + np.arange(width)[None, :]) < last[:, None]
    t, w = np.polynomial.legendre.leggauss(nodes)
    u = 0.5 * (t + 1.0)  # nodes on [0, 1]
    x0, dx = x[j], x[j + 1] - x[j]  # (P, W)
    lam = x0[..., None] + dx[..., None] * u  # (P, W, Q)
    s = sigma[:, None, None]
    kernel = (ndtr((b[:, None, None] - lam) / s) - ndtr((a[:, None, None] - lam) / s)) / (b - a)[
        :, None, None
    ]
    kw = kernel * (0.5 * w) * dx[..., None] * valid[..., None]
    left = (kw * (1.0 - u)).sum(-1)  # weight on sample j
    right = (kw * u).sum(-1)  # weight on sample j + 1
    rows = np.repeat(np.arange(a.size), width)
    op = sparse.coo_matrix(
        (
            np.concatenate([left.ravel(), right.ravel()]),
            (np.concatenate([rows, rows]), np.concatenate([j.ravel(), j.ravel() + 1])),
        ),
        shape=(a.size, x.size),
    ).tocsr()
    op.sum_duplicates()
    op.eliminate_zeros()
    return op
