"""Linear wavelength grids, and the Subaru PFS medium-resolution (MR) grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["PFS_MR", "WavelengthGrid"]


@dataclass(frozen=True)
class WavelengthGrid:
    """A linear grid of pixel-centre wavelengths.

    Parameters
    ----------
    start, stop : float
        Centre wavelengths of the first and last pixel, in Å.
    num : int
        Number of pixels.
    medium : {"vacuum", "air"}
        Medium in which the wavelengths are given.
    """

    start: float
    stop: float
    num: int
    medium: Literal["vacuum", "air"] = "vacuum"

    def __post_init__(self) -> None:
        if self.num < 2:
            raise ValueError(f"a wavelength grid needs at least 2 pixels, got num={self.num}")
        if not self.stop > self.start:
            raise ValueError(f"grid must ascend: start={self.start} Å, stop={self.stop} Å")
        if self.medium not in ("vacuum", "air"):
            raise ValueError(f"medium must be 'vacuum' or 'air', got {self.medium!r}")

    @property
    def step(self) -> float:
        """Pixel width in Å."""
        return (self.stop - self.start) / (self.num - 1)

    def wavelength(self) -> np.ndarray:
        """Pixel-centre wavelengths in Å, shape ``(num,)``, float64."""
        return np.linspace(self.start, self.stop, self.num)


#: The PFS MR arm as sampled by the PFS exposure-time calculator: 4096 pixels from
#: 7100.214 Å to 8849.786 Å (vacuum), 0.4272 Å per pixel.
PFS_MR = WavelengthGrid(start=7100.214, stop=8849.786, num=4096, medium="vacuum")
