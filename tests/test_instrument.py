"""Air ↔ vacuum, the pixel-integrated LSF operator, HSC-i photometry and the telluric bands."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from specvit.emulator.doppler import rest_wavelength
from specvit.instrument import (
    PFS_MR,
    TELLURIC_BANDS,
    WavelengthGrid,
    air_to_vacuum,
    band_weights,
    lsf_matrix,
    lsf_sigma,
    magnitude_to_njy,
    njy_to_magnitude,
    telluric_band_masks,
    vacuum_to_air,
)


def test_air_vacuum_known_lines_and_round_trip() -> None:
    # Hα: 6564.61 Å vacuum, 6562.80 Å air; Ca II 8542.09 air ↔ 8544.44 vacuum (NIST).
    assert vacuum_to_air(6564.61) == pytest.approx(6562.80, abs=0.01)
    assert air_to_vacuum(8542.09) == pytest.approx(8544.44, abs=0.01)
    wave = np.linspace(3000.0, 20000.0, 1001)
    np.testing.assert_allclose(air_to_vacuum(vacuum_to_air(wave)), wave, rtol=1e-13)


def test_air_vacuum_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="in Å"):
        vacuum_to_air(np.array([0.7, 0.8]))  # µm
    with pytest.raises(ValueError, match="finite"):
        air_to_vacuum(np.array([np.nan]))


def test_lsf_operator_conserves_flux_and_has_the_right_width() -> None:
    src = 7000.0 + 0.05 * np.arange(8001)
    edges = np.linspace(7100.0, 7300.0, 401)
    op = lsf_matrix(src, edges, 5000.0)
    np.testing.assert_allclose(np.asarray(op.sum(axis=1)).ravel(), 1.0, atol=1e-10)
    # A delta-like line: the response's second moment is σ² + (pixel width)²/12 + source width.
    line = np.zeros(src.size)
    line[np.argmin(np.abs(src - 7200.0))] = 1.0 / 0.05
    resp = op @ line
    centres = 0.5 * (edges[1:] + edges[:-1])
    mean = (resp * centres).sum() / resp.sum()
    var = (resp * (centres - mean) ** 2).sum() / resp.sum()
    expected = lsf_sigma(7200.0, 5000.0) ** 2 + 0.5**2 / 12 + 0.05**2 / 6
    assert mean == pytest.approx(7200.0, abs=1e-3)
    assert var == pytest.approx(expected, rel=2e-2)


def test_lsf_operator_errors() -> None:
    src = 7000.0 + 0.1 * np.arange(100)
    with pytest.raises(ValueError, match="beyond the source"):
        lsf_matrix(src, np.array([7000.5, 7001.0]), 5000.0)
    with pytest.raises(ValueError, match="ascending"):
        lsf_matrix(src[::-1], np.array([7004.0, 7005.0]), 5000.0)
    with pytest.raises(ValueError, match="resolution"):
        lsf_sigma(7000.0, 0.0)


def test_band_weights_and_ab_magnitudes() -> None:
    w = band_weights(PFS_MR.wavelength())
    assert w.shape == (4096,) and w.min() >= 0 and w.sum() == pytest.approx(1.0)
    flat = np.full(4096, magnitude_to_njy(21.5))
    assert njy_to_magnitude(w @ flat) == pytest.approx(21.5, abs=1e-12)
    assert magnitude_to_njy(31.4) == pytest.approx(1.0, rel=1e-4)  # 1 nJy ≈ AB 31.4
    with pytest.raises(ValueError, match="does not overlap"):
        band_weights(np.linspace(4000.0, 5000.0, 10))


def test_pfs_mr_grid_is_linear_and_matches_the_etc(etc_dir) -> None:
    rows = np.loadtxt(etc_dir / "noise_mr.dat")
    etc = rows[rows[:, 0] == 3][:, 2] * 10.0  # nm -> Å, the MR arm
    assert PFS_MR.wavelength().shape == etc.shape == (4096,)
    assert np.abs(PFS_MR.wavelength() - etc).max() < 2e-3  # the ETC prints 4 decimals in nm
    assert PFS_MR.step == pytest.approx(0.42725, abs=1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((7100.0, 8850.0, 1), "at least 2 pixels"),
        ((8850.0, 7100.0, 4096), "must ascend"),
        ((7100.0, 8850.0, 4096, "water"), "medium"),
    ],
)
def test_wavelength_grid_bad_input(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        WavelengthGrid(*args)


def test_telluric_bands_follow_the_star_to_its_rest_frame() -> None:
    wave = PFS_MR.wavelength()
    masks = telluric_band_masks(PFS_MR, torch.tensor([0.0, 300.0]))
    assert masks.shape == (2, len(TELLURIC_BANDS), 4096) and masks.dtype == torch.float64
    for b, (lo, hi) in enumerate(TELLURIC_BANDS.values()):
        at_rest = wave[masks[0, b].bool().numpy()]
        assert at_rest.min() >= lo and at_rest.max() <= hi
        assert at_rest.min() - lo < PFS_MR.step and hi - at_rest.max() < PFS_MR.step
        # a receding star's rest frame sees the band bluewards: λ_rest = λ_obs / (1 + v/c)
        moved = wave[masks[1, b].bool().numpy()]
        assert moved.min() == pytest.approx(rest_wavelength(lo, 300.0), abs=PFS_MR.step)
        assert moved.max() == pytest.approx(rest_wavelength(hi, 300.0), abs=PFS_MR.step)
    air = WavelengthGrid(PFS_MR.start, PFS_MR.stop, PFS_MR.num, "air")
    o2 = telluric_band_masks(air, torch.zeros(1))[0, 1].bool().numpy()
    assert wave[o2].min() == pytest.approx(vacuum_to_air(7594.0), abs=PFS_MR.step)
    for bad in (torch.tensor([math.nan]), torch.zeros(2, 1), torch.tensor(0.0)):
        with pytest.raises(ValueError, match="finite velocities"):
            telluric_band_masks(PFS_MR, bad)
