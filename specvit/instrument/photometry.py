"""HSC-i synthetic photometry on a spectrum's own wavelength grid (AB magnitudes, f_ν in nJy).

The AB magnitude of a photon-counting band with response ``T`` is ::

    m = −2.5 log10( ∫ f_ν T dλ/λ / ∫ 3631 Jy · T dλ/λ ) = 31.4 − 2.5 log10 ⟨f_ν / nJy⟩_T,

where ``⟨·⟩_T`` is the mean weighted by ``T(λ)/λ``. On a spectrum that covers only part of the
band (the PFS MR arm, 7100–8850 Å, receives ≈ 88 % of the HSC-i photons of a flat-f_ν source;
the band runs ≈ 6770–8760 Å), the mean is taken over the covered part: :func:`band_weights`
restricts and
renormalises the response. For a flat-f_ν source this is exact; for a coloured star it is the
magnitude of the star's MR-covered part, and differs from the full-band HSC-i magnitude by a colour
term (quantified in ``docs/data_engine.md``). The filter curve is committed under
``specvit/instrument/data/hsc2017_i.csv`` (from speclite, BSD-3-Clause; see the file's header).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
import torch

__all__ = [
    "AB_ZEROPOINT_NJY",
    "band_weights",
    "hsc_i_response",
    "magnitude_to_njy",
    "njy_to_magnitude",
]

#: 3631 Jy in nJy: the flux density of an AB = 0 source.
AB_ZEROPOINT_NJY = 3631e9

ArrayOrTensor = np.ndarray | torch.Tensor


@lru_cache(maxsize=1)
def hsc_i_response() -> tuple[np.ndarray, np.ndarray]:
    """The HSC i-band response curve (``hsc2017-i``).

    Returns
    -------
    wavelength, response : numpy.ndarray
        Wavelengths in Å and the dimensionless total response (read-only arrays).
    """
    path = resources.files("specvit.instrument") / "data" / "hsc2017_i.csv"
    with resources.as_file(path) as p:
        table = np.loadtxt(p, delimiter=",", comments="#", skiprows=7)
    wave, resp = np.ascontiguousarray(table[:, 0]), np.clip(table[:, 1], 0.0, None)
    wave.setflags(write=False)
    resp.setflags(write=False)
    return wave, resp


def band_weights(wavelength: np.ndarray) -> np.ndarray:
    """Weights ``w`` with ``w @ f_ν`` the HSC-i photon-weighted mean of ``f_ν`` on a grid.

    Parameters
    ----------
    wavelength : numpy.ndarray
        ``(L,)`` ascending pixel-centre wavelengths in Å.

    Returns
    -------
    numpy.ndarray
        ``(L,)`` non-negative float64 weights summing to 1: ``T(λ)/λ · Δλ`` with the response
        linearly interpolated and zero outside the filter curve.

    Raises
    ------
    ValueError
        If the grid does not overlap the band.
    """
    wave = np.asarray(wavelength, dtype=np.float64)
    if wave.ndim != 1 or wave.size < 2 or np.any(np.diff(wave) <= 0):
        raise ValueError("wavelength must be a 1-D strictly ascending array")
    fw, fr = hsc_i_response()
    dlam = np.gradient(wave)
    w = np.interp(wave, fw, fr, left=0.0, right=0.0) / wave * dlam
    if not w.sum() > 0:
        raise ValueError(
            f"the grid ({wave[0]:.1f}–{wave[-1]:.1f} Å) does not overlap the HSC-i band "
            f"({fw[0]:.0f}–{fw[-1]:.0f} Å)"
        )
    return w / w.sum()


def magnitude_to_njy(mag: ArrayOrTensor | float) -> ArrayOrTensor:
    """Flux density in nJy of a flat-f_ν source of AB magnitude ``mag``.

    A ``torch.Tensor`` gives a tensor of its dtype and device; anything else a float64 array.
    """
    if isinstance(mag, torch.Tensor):
        return AB_ZEROPOINT_NJY * torch.pow(10.0, -0.4 * mag)
    return AB_ZEROPOINT_NJY * 10.0 ** (-0.4 * np.asarray(mag, dtype=np.float64))


def njy_to_magnitude(flux_njy: ArrayOrTensor | float) -> ArrayOrTensor:
    """AB magnitude of a flux density in nJy (> 0); a tensor stays a tensor, as above."""
    if isinstance(flux_njy, torch.Tensor):
        return -2.5 * torch.log10(flux_njy / AB_ZEROPOINT_NJY)
    return -2.5 * np.log10(np.asarray(flux_njy, dtype=np.float64) / AB_ZEROPOINT_NJY)
