"""Instrument: the PFS MR grid, air ↔ vacuum, line-spread function, photometry, noise and the
telluric bands."""

from specvit.instrument.grid import GRID_ATOL, PFS_MR, WavelengthGrid
from specvit.instrument.lsf import MR_RESOLUTION, MR_RESOLVING_POWERS, lsf_matrix, lsf_sigma
from specvit.instrument.noise import DEFAULT_N_EXPOSURES, PFSNoiseModel, read_etc
from specvit.instrument.photometry import band_weights, magnitude_to_njy, njy_to_magnitude
from specvit.instrument.telluric import TELLURIC_BANDS, telluric_band_masks
from specvit.instrument.wavelength import air_to_vacuum, vacuum_to_air

__all__ = [
    "DEFAULT_N_EXPOSURES",
    "GRID_ATOL",
    "MR_RESOLUTION",
    "MR_RESOLVING_POWERS",
    "PFS_MR",
    "TELLURIC_BANDS",
    "PFSNoiseModel",
    "WavelengthGrid",
    "air_to_vacuum",
    "band_weights",
    "lsf_matrix",
    "lsf_sigma",
    "magnitude_to_njy",
    "njy_to_magnitude",
    "read_etc",
    "telluric_band_masks",
    "vacuum_to_air",
]
