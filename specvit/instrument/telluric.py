"""The Earth's absorption bands on the MR arm: where a telluric correction leaves residuals.

PFS observes from Maunakea through the O₂ A band and two H₂O bands on the MR arm. A pipeline
divides each spectrum by a model transmission, and where that model's column is off (the
precipitable water misjudged, say) the band keeps a residual of a few per cent: a multiplicative
error over a fixed stretch of the observed frame. :func:`telluric_band_masks` says where each
band falls on a spectrum shifted to its rest frame, for the likelihood of exact mode
(:mod:`specvit.inference.exact`) to give the model a free scale there.
"""

from __future__ import annotations

import numpy as np
import torch

from specvit.emulator.doppler import rest_wavelength
from specvit.instrument.grid import WavelengthGrid
from specvit.instrument.wavelength import vacuum_to_air

__all__ = ["TELLURIC_BANDS", "telluric_band_masks"]

#: The strong telluric bands on the MR arm: name → (first, last) vacuum wavelength in Å, in the
#: observed frame. Outside them, only weak H₂O lines (at Maunakea's median 1.8 mm of water, 96 %
#: of the arm's absorption is inside; ``tests/test_telluric.py``).
TELLURIC_BANDS: dict[str, tuple[float, float]] = {
    "H2O 7160-7340": (7160.0, 7340.0),
    "O2 A": (7594.0, 7720.0),
    "H2O 8120-8350": (8120.0, 8350.0),
}


def telluric_band_masks(grid: WavelengthGrid, v_rad: torch.Tensor) -> torch.Tensor:
    """Where each of :data:`TELLURIC_BANDS` falls on rest-frame spectra of moving stars.

    Parameters
    ----------
    grid : WavelengthGrid
        The rest-frame spectra's pixels (in its medium: the bands are converted for an air grid).
    v_rad : torch.Tensor
        ``(n,)`` the velocity (km/s, > 0 receding) each spectrum was shifted to the rest frame by.

    Returns
    -------
    torch.Tensor
        ``(n, B, L)`` float64, 1 on the pixels whose light was observed within band ``b``
        (``λ_rest (1 + v/c)`` in the band), 0 elsewhere; the bands in the order of
        :data:`TELLURIC_BANDS`.

    Raises
    ------
    ValueError
        If ``v_rad`` is not one finite velocity per spectrum.
    """
    v = torch.as_tensor(v_rad, dtype=torch.float64).cpu()
    if v.dim() != 1 or not torch.isfinite(v).all():
        raise ValueError(f"v_rad must be (n,) finite velocities in km/s, got {tuple(v.shape)}")
    bands = np.array(list(TELLURIC_BANDS.values()))
    if grid.medium == "air":
        bands = vacuum_to_air(bands)
    lo, hi = (torch.from_numpy(b.copy())[None, :, None] for b in bands.T)  # (1, B, 1)
    rest = torch.from_numpy(grid.wavelength())  # (L,)
    # the rest wavelength of each band's edges for each star, against the rest-frame pixels
    v = v[:, None, None]
    inside = (rest >= rest_wavelength(lo, v)) & (rest <= rest_wavelength(hi, v))
    return inside.to(torch.float64)
