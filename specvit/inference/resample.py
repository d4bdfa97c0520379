"""Flux-conserving resampling of spectra onto a model's wavelength grid, with σ propagation.

Each pixel is a bin between the midpoints of its neighbours' centres. A target pixel gets the
overlap-weighted mean flux density of the valid source pixels it overlaps, so the integral of
the flux over any range of whole target pixels is conserved. The 1σ errors are propagated
through the same weights assuming independent source pixels (the covariance that resampling
introduces between neighbouring target pixels is not returned).

The weights form a sparse (target × source) matrix that is built once per source grid and
applied to a whole batch with one sparse-dense product; that is why this module exists rather
than using :class:`specutils.manipulation.FluxConservingResampler`, which loops over target
pixels in Python (≈0.18 s per 8000 → 4096 pixel spectrum on a 2-core CPU, measured with
specutils 2.4).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["Resampler", "bin_edges"]


def bin_edges(centres: np.ndarray) -> np.ndarray:
    """Pixel edges from ascending pixel centres: midpoints, with half-pixel extensions at the ends.

    Parameters
    ----------
    centres : numpy.ndarray
        (L,) strictly ascending pixel-centre wavelengths, L ≥ 2.

    Returns
    -------
    numpy.ndarray
        (L + 1,) edges.
    """
    c = np.asarray(centres, dtype=np.float64)
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


class Resampler:
    """Flux-conserving resampling from one source grid onto one target grid.

    Parameters
    ----------
    source, target : numpy.ndarray
        Strictly ascending pixel-centre wavelengths (same unit and medium), at least 2 pixels.
    min_coverage : float
        A target pixel is valid only if valid source pixels cover at least this fraction of its
        width; otherwise it is masked.

    Attributes
    ----------
    identity : bool
        True when the grids coincide (to 10⁻⁶ of a target pixel): :meth:`__call__` then passes
        the data through unchanged.
    covered : numpy.ndarray
        (L_target,) boolean, True where the source grid's range covers at least
        ``min_coverage`` of the target pixel's width: the pixels that are not lost for lack of
        coverage (a source grid offset from the target by a small fraction of a pixel, such
        as the PFS ETC's rounded MR wavelengths, covers every target pixel).
    """

    def __init__(self, source: np.ndarray, target: np.ndarray, min_coverage: float = 0.5) -> None:
        source = np.asarray(source, dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        if not 0.0 < min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
        self.min_coverage = min_coverage
        self.n_target = target.size
        tol = 1e-6 * np.min(np.diff(target))
        self.identity = source.shape == target.shape and bool(
            np.all(np.abs(source - target) <= tol)
        )
        src_edges, dst_edges = bin_edges(source), bin_edges(target)
        inside = np.minimum(dst_edges[1:], src_edges[-1]) - np.maximum(dst_edges[:-1], src_edges[0])
        fraction = np.clip(inside, 0.0, None) / np.diff(dst_edges)
        self.covered = fraction >= min_coverage * (1 - 1e-9)
        if self.identity:
            return
        src_lo, src_hi = src_edges[:-1], src_edges[1:]
        dst_lo, dst_hi = dst_edges[:-1], dst_edges[1:]
        # Source pixels overlapping target pixel i are those with src_hi > dst_lo[i] and
        # src_lo < dst_hi[i]: the contiguous index range [first, stop).
        first = np.searchsorted(src_hi, dst_lo, side="right")
        stop = np.searchsorted(src_lo, dst_hi, side="left")
        counts = np.maximum(stop - first, 0)
        rows = np.repeat(np.arange(target.size), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        cols = np.repeat(first, counts) + offsets
        overlap = np.minimum(src_hi[cols], dst_hi[rows]) - np.maximum(src_lo[cols], dst_lo[rows])
        keep = overlap > 0
        rows, cols = rows[keep], cols[keep]
        weight = overlap[keep] / (dst_hi - dst_lo)[rows]
        shape = (target.size, source.size)
        self._w = sparse.csr_matrix((weight, (rows, cols)), shape=shape)
        self._w2 = sparse.csr_matrix((weight**2, (rows, cols)), shape=shape)

    def __call__(
        self, flux: np.ndarray, error: np.ndarray | None, valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Resample a batch.

        Parameters
        ----------
        flux : numpy.ndarray
            (B, L_source) flux density.
        error : numpy.ndarray or None
            (B, L_source) 1σ in the flux unit.
        valid : numpy.ndarray
            (B, L_source) boolean; only True pixels contribute.

        Returns
        -------
        flux, error : numpy.ndarray
            (B, L_target) resampled flux density and 1σ (``error`` is None if it was); NaN
            where the target pixel is invalid.
        valid : numpy.ndarray
            (B, L_target) boolean.
        """
        if self.identity:
            return flux, error, valid & self.covered
        # Work in (pixel, spectrum) layout: scipy's sparse @ dense wants the dense operand
        # C-contiguous along the summed axis; the results are handed back as transposed views.
        valid_t = np.ascontiguousarray(valid.T)
        coverage = self._w @ valid_t.astype(np.float64)
        good = coverage >= self.min_coverage * (1 - 1e-9)
        denom = np.where(good, coverage, np.inf)  # invalid target pixels become 0, then NaN
        out_flux = self._w @ np.where(valid_t, flux.T, 0.0)
        out_flux /= denom
        out_flux[~good] = np.nan
        out_error = None
        if error is not None:
            var = self._w2 @ np.where(valid_t, error.T, 0.0) ** 2
            out_error = np.sqrt(var, out=var)
            out_error /= denom
            out_error[~good] = np.nan
            out_error = out_error.T
        return out_flux.T, out_error, good.T
