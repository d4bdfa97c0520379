"""Radial velocities of observed spectra and their shift to the rest frame (specvit.velocity)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from specvit.emulator import DopplerShift, Emulator
from specvit.instrument import PFS_MR
from specvit.velocity import (
    RV_SEARCH_KMS,
    catmull_rom_shift,
    catmull_rom_weights,
    interpolated_variance,
    measure_rv,
    to_rest_frame,
)

#: A metal-rich cool giant, a K dwarf, a metal-poor warm giant (the fewest lines).
LABELS = torch.tensor(
    [[4100.0, 1.8, 0.0], [4700.0, 4.6, -0.3], [5600.0, 2.5, -2.0]], dtype=torch.float64
)
VELOCITIES = (-900.0, -250.0, 0.0, 37.0, 600.0)


@pytest.fixture(scope="module")
def observed():
    """Noiseless emulator spectra observed at each velocity (the engine's exact shift)."""
    emulator = Emulator.load(dtype=torch.float64)
    doppler = DopplerShift(emulator, max_rv=RV_SEARCH_KMS)
    labels = LABELS.repeat_interleave(len(VELOCITIES), 0)
    rv = torch.tensor(VELOCITIES, dtype=torch.float64).repeat(len(LABELS))
    return emulator(labels).float(), doppler(labels, rv).float(), rv


def test_catmull_rom_weights_sum_to_one_and_reproduce_a_quadratic():
    t = torch.linspace(0.0, 0.99, 50)
    torch.testing.assert_close(catmull_rom_weights(t).sum(-1), torch.ones(50))
    values = (0.3 * torch.arange(40.0) ** 2 - 2.0 * torch.arange(40.0))[None]
    pos = torch.linspace(3.0, 30.0, 40)[None]
    torch.testing.assert_close(catmull_rom_shift(values, pos), 0.3 * pos**2 - 2.0 * pos)


def test_velocities_of_noiseless_spectra_are_recovered(observed):
    _, flux, rv = observed
    error = 0.01 * flux  # S/N 100
    v = measure_rv(flux, error, torch.ones_like(flux, dtype=torch.bool), PFS_MR)
    assert (v.v_rad.double() - rv).abs().max() < 2.0
    assert torch.isfinite(v.v_rad_err).all() and (v.v_rad_err < 2.0).all()


def test_velocities_at_snr_10_are_within_a_few_km_s():
    emulator = Emulator.load()
    doppler = DopplerShift(emulator, max_rv=RV_SEARCH_KMS)
    gen = torch.Generator().manual_seed(0)
    n = 60
    labels = torch.stack(
        [
            3800 + 2000 * torch.rand(n, generator=gen),
            1 + 4 * torch.rand(n, generator=gen),
            -2 + 2.3 * torch.rand(n, generator=gen),
        ],
        -1,
    )
    rv = -600 + 1200 * torch.rand(n, generator=gen)
    flux = doppler(labels, rv)
    error = flux.median(-1, keepdim=True).values / 10.0 * torch.ones_like(flux)
    noisy = flux + error * torch.randn(flux.shape, generator=gen)
    v = measure_rv(noisy, error, torch.ones_like(flux, dtype=torch.bool), PFS_MR)
    dv = (v.v_rad - rv).abs()
    assert dv.median() < 5.0 and dv.max() < 50.0
    # the error estimate is the scatter's size (within a factor 2.5)
    ratio = (v.v_rad - rv).square().mean().sqrt() / v.v_rad_err.median()
    assert 0.4 < ratio < 2.5


def test_a_spectrum_without_valid_pixels_has_no_velocity(observed):
    _, flux, _ = observed
    valid = torch.ones_like(flux, dtype=torch.bool)
    valid[0] = False
    v = measure_rv(flux, 0.01 * flux, valid, PFS_MR)
    assert math.isnan(v.v_rad[0]) and math.isnan(v.v_rad_err[0])
    assert torch.isfinite(v.v_rad[1:]).all()


def test_the_rest_frame_shift_undoes_the_doppler_shift(observed):
    rest, flux, rv = observed
    error = 0.01 * flux
    valid = torch.ones_like(flux, dtype=torch.bool)
    out, out_error, out_valid = to_rest_frame(flux, error, valid, rv.float(), PFS_MR)
    relative = ((out - rest) / rest)[out_valid]
    assert relative.abs().max() < 0.02 and relative.abs().mean() < 0.002
    # unshifted: the wrong frame is far worse (the check can fail)
    moving = rv.abs() > 100
    assert ((flux - rest) / rest)[moving].abs().max() > 0.1
    # masked where the shift reads beyond the arm: ~v/c · λ / Δλ pixels at one end
    masked = (~out_valid).sum(-1).float()
    edge = torch.where(rv > 0, PFS_MR.stop, PFS_MR.start)
    expected = (rv.abs() / 299_792.458 * edge / PFS_MR.step).float()
    assert ((masked - expected).abs() <= 4).all()
    # σ through the squared interpolation weights: never above the input's, equal at v = 0
    assert (out_error[out_valid] <= error.max() * 1.0001).all()
    still = rv == 0
    torch.testing.assert_close(out_error[still][:, 2:-2], error[still][:, 2:-2])


def test_masked_pixels_and_unknown_velocities_propagate(observed):
    _, flux, rv = observed
    valid = torch.ones_like(flux, dtype=torch.bool)
    valid[:, 2000] = False
    v = rv.float().clone()
    v[1] = float("nan")
    _, _, out_valid = to_rest_frame(flux, 0.01 * flux, valid, v, PFS_MR)
    assert not out_valid[1].any()
    still = int(np.flatnonzero(rv.numpy() == 0)[0])
    assert not out_valid[still, 1999:2002].any() and out_valid[still, 1990:1998].all()


def test_a_spectrum_of_noise_has_an_ambiguous_velocity_and_a_star_a_clear_one(observed):
    from specvit.velocity import MIN_PEAK_CONTRAST

    _, flux, _ = observed
    gen = torch.Generator().manual_seed(3)
    noise = 1.0 + 0.05 * torch.randn(flux.shape, generator=gen)  # S/N 20, no lines
    both = torch.cat([flux[:3], noise[:3]])
    v = measure_rv(both, 0.05 * both.abs(), torch.ones_like(both, dtype=torch.bool), PFS_MR)
    assert (v.contrast[:3] > 10 * MIN_PEAK_CONTRAST).all()
    assert (v.contrast[3:] < MIN_PEAK_CONTRAST).all()


def test_interpolated_variance_is_what_the_shift_leaves_of_white_noise():
    """Shifted white noise keeps Σw² of its variance per pixel: 1 unshifted, 0.64 half-way."""
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(4000, PFS_MR.num, generator=gen)
    ones = torch.ones_like(noise)
    valid = torch.ones_like(noise, dtype=torch.bool)
    for v in (0.0, 7.0, 300.0):
        rv = torch.full((4000,), v)
        shifted, _, ok = to_rest_frame(noise, ones, valid, rv, PFS_MR)
        fraction = interpolated_variance(rv[:1], PFS_MR)[0]
        inside = ok.all(0)
        measured = shifted[:, inside].var(0)
        np.testing.assert_allclose(measured.numpy(), fraction[inside].numpy(), rtol=0.1)
        if v == 0.0:
            assert (fraction == 1.0).all()
        elif v == 7.0:  # about half a pixel everywhere
            assert fraction.max() < 0.7
        else:  # the fraction of a pixel runs through [0, 1) along the arm
            assert fraction.min() < 0.65 and fraction.max() > 0.99
    assert interpolated_variance(torch.tensor([math.nan]), PFS_MR).eq(1.0).all()
