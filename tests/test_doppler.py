"""The Doppler relations have one home (specvit.emulator.doppler), and the emulator fit's fast
approximations of a shifted spectrum (specvit.inference.physics) agree with the exact shift."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specvit.emulator import DopplerShift, Emulator
from specvit.emulator.doppler import (
    C_KMS,
    kms_per_pixel,
    pixel_shift,
    pixels_per_kms,
    rest_wavelength,
    velocity_from_pixel_shift,
)
from specvit.inference.physics import pixel_derivatives, taylor_shift
from specvit.instrument import PFS_MR
from specvit.velocity import RV_SEARCH_KMS, catmull_rom_shift

#: A cool giant (the deepest lines), a cool dwarf and a hot metal-poor dwarf.
LABELS = torch.tensor(
    [[3750.0, 1.0, 0.0], [4200.0, 2.0, -0.5], [6000.0, 4.5, -2.5]], dtype=torch.float64
)
#: Tolerances on |approximation − exact| in units of each spectrum's median flux (a quarter of
#: the noise of an S/N-100 spectrum for the interpolation; measured: 1.7e-3 and 5.6e-3 at most,
#: 4e-5 and 1.3e-4 in the median pixel).
INTERPOLATION_MAX, INTERPOLATION_MEDIAN = 2.5e-3, 1e-4
TAYLOR_MAX, TAYLOR_MEDIAN = 1e-2, 3e-4
VELOCITIES = [-RV_SEARCH_KMS, -400.0, -37.0, 3.0, 15.0, 250.0, RV_SEARCH_KMS]


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    return Emulator.load(dtype=torch.float64)


@pytest.fixture(scope="module")
def doppler(emulator: Emulator) -> DopplerShift:
    return DopplerShift(emulator, max_rv=RV_SEARCH_KMS)


def exact_shift(doppler: DopplerShift, v: float) -> torch.Tensor:
    return doppler(LABELS, torch.full((len(LABELS),), v, dtype=torch.float64))


@pytest.mark.parametrize("v", [-RV_SEARCH_KMS, -30.0, 0.5, 30.0, RV_SEARCH_KMS])
def test_pixel_relations_are_the_one_shift(v: float) -> None:
    """pixel_shift is rest_wavelength in pixels, velocity_from_pixel_shift its inverse, and
    pixels_per_kms / kms_per_pixel its first order (off by exactly the factor 1 + β)."""
    wave, step = PFS_MR.wavelength(), PFS_MR.step
    shift = pixel_shift(wave, step, v)
    np.testing.assert_allclose(shift * step, wave - rest_wavelength(wave, v), rtol=1e-9)
    np.testing.assert_allclose(velocity_from_pixel_shift(shift, kms_per_pixel(wave, step)), v)
    np.testing.assert_allclose(v * pixels_per_kms(wave, step) / shift, 1.0 + v / C_KMS)
    np.testing.assert_allclose(kms_per_pixel(wave, step) * pixels_per_kms(wave, step), 1.0)


@pytest.mark.parametrize("v", VELOCITIES)
def test_interpolated_shift_agrees_with_the_exact_shift(
    emulator: Emulator, doppler: DopplerShift, v: float
) -> None:
    """The fit's far-velocity template (Catmull–Rom at i − pixel_shift) vs DopplerShift."""
    flux = emulator(LABELS)
    scale = flux.median(dim=-1, keepdim=True).values
    index = torch.arange(PFS_MR.num, dtype=torch.float64)
    wave = torch.from_numpy(PFS_MR.wavelength())
    pos = (index - pixel_shift(wave, PFS_MR.step, torch.tensor(v, dtype=torch.float64))).expand(
        len(LABELS), -1
    )
    inside = (pos[0] >= 2.0) & (pos[0] <= PFS_MR.num - 3.0)  # the pixels the fit uses
    error = ((catmull_rom_shift(flux, pos) - exact_shift(doppler, v)) / scale)[:, inside].abs()
    assert float(error.max()) < INTERPOLATION_MAX, float(error.max())
    assert float(error.median()) < INTERPOLATION_MEDIAN, float(error.median())


def test_taylor_shift_agrees_with_the_exact_shift(
    emulator: Emulator, doppler: DopplerShift
) -> None:
    """The fit's Gauss–Newton model (second order in finite-difference derivatives, the shift
    from pixels_per_kms) vs DopplerShift, up to its step limit of 0.75 pixel."""
    flux = emulator(LABELS)
    scale = flux.median(dim=-1, keepdim=True).values
    px_per_kms = pixels_per_kms(torch.from_numpy(PFS_MR.wavelength()), PFS_MR.step)[2:-2]
    d1, d2 = pixel_derivatives(flux)
    limit = 0.75 / float(px_per_kms.mean())
    for v in (-limit, -5.0, -1.0, 1.0, 5.0, limit):
        approx = taylor_shift(flux[:, 2:-2], d1, d2, v * px_per_kms)
        error = ((approx - exact_shift(doppler, v)[:, 2:-2]) / scale).abs()
        assert float(error.max()) < TAYLOR_MAX, (v, float(error.max()))
        assert float(error.median()) < TAYLOR_MEDIAN, (v, float(error.median()))
