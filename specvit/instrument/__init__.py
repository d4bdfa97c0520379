"""Instrument descriptions: wavelength grids (and, with the data engine, LSF and noise models)."""

from specvit.instrument.grid import PFS_MR, WavelengthGrid

__all__ = ["PFS_MR", "WavelengthGrid"]
