"""Linear wavelength grids, and the Subaru PFS medium-resolution (MR) grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["GRID_ATOL", "PFS_MR", "WavelengthGrid"]

#: Å: two grids whose first and last pixel centres agree to this (with the same number of
#: pixels and medium) are the same grid (:meth:`WavelengthGrid.matches`); far below a pixel
#: (0.43 Å on the MR arm), above the rounding of wavelengths written to files.
GRID_ATOL = 1e-3


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

    def wavelength_at(self, pixel: Any) -> Any:
        """Wavelength (Å) at (fractional) pixel positions, pixel 0 being the first centre.

        Parameters
        ----------
        pixel : float, numpy.ndarray or torch.Tensor
            Pixel positions.

        Returns
        -------
        float, numpy.ndarray or torch.Tensor
            ``start + pixel · (stop − start) / (num − 1)``, in the type of ``pixel``; at whole
            pixels :meth:`wavelength` to rounding.
        """
        return self.start + pixel * (self.stop - self.start) / (self.num - 1)

    def matches(self, other: WavelengthGrid, atol: float = GRID_ATOL) -> bool:
        """Whether ``other`` is this grid: the same pixels and medium, ends within ``atol`` Å.

        Parameters
        ----------
        other : WavelengthGrid
            The grid to compare with.
        atol : float
            Tolerance (Å) on the first and last pixel centre.

        Returns
        -------
        bool
        """
        return (
            self.num == other.num
            and self.medium == other.medium
            and abs(self.start - other.start) < atol
            and abs(self.stop - other.stop) < atol
        )


#: The PFS MR arm as sampled by the PFS exposure-time calculator: 4096 pixels from
#: 7100.214 Å to 8849.786 Å (vacuum), 0.4272 Å per pixel.
PFS_MR = WavelengthGrid(start=7100.214, stop=8849.786, num=4096, medium="vacuum")
