"""The data engine's telluric-residual effect (training/engine/effects.py, TelluricResiduals):
the transmission is pwv_kpno's model seen through the MR LSF and pixels, the residual sits in the
O₂ A and H₂O bands and scales with ε and the water as stated, ε = 0 changes nothing, and the
draws reproduce by seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip(
    "pwv_kpno",
    reason="the telluric effect needs pwv_kpno (GPL-3, an optional dependency of the train "
    "extra): pip install 'specvit[train]'",
)

from specvit.instrument import PFS_MR, PFSNoiseModel, air_to_vacuum, lsf_matrix
from training.engine.effects import (
    EFFECT_TYPES,
    Effects,
    Extinction,
    LSFSpread,
    TelluricResiduals,
    o2_column,
    o2_layer_weights,
    telluric_model,
    us1976_pressure,
)
from training.engine.simulate import Simulator

WAVE = PFS_MR.wavelength()
EDGES = np.append(WAVE - 0.5 * PFS_MR.step, WAVE[-1] + 0.5 * PFS_MR.step)
#: The bands in the MR arm: H₂O 7160–7340 Å, the O₂ A band with its P-branch tail, H₂O 8120–8350 Å.
BANDS = ((7160.0, 7340.0), (7585.0, 7725.0), (8120.0, 8350.0))
IN_BANDS = np.any([(WAVE > lo) & (WAVE < hi) for lo, hi in BANDS], axis=0)


def _params(pwv, airmass, fraction=0.0, **extra) -> dict[str, torch.Tensor]:
    n = max(np.size(pwv), np.size(airmass), np.size(fraction))
    out = {
        "pwv": torch.tensor(np.broadcast_to(pwv, (n,)), dtype=torch.float64),
        "airmass": torch.tensor(np.broadcast_to(airmass, (n,)), dtype=torch.float64),
        "telluric_fraction": torch.tensor(np.broadcast_to(fraction, (n,)), dtype=torch.float64),
    }
    out.update({k: torch.as_tensor(v, dtype=torch.float64) for k, v in extra.items()})
    return out


@pytest.fixture(scope="module")
def library():
    """pwv_kpno's own transmission, ``trans_for_pwv(c)`` (line-of-sight mm), on its 0.05 Å grid
    over 7000–8950 Å, and the LSF + pixel operator onto the MR grid at a resolving power."""
    from pwv_kpno import pwv_atm

    def transmission(c: float) -> tuple[np.ndarray, np.ndarray]:
        table = pwv_atm.trans_for_pwv(c)
        wave = np.asarray(table["wavelength"], dtype=np.float64)
        keep = (wave >= 7000.0 - 1e-6) & (wave <= 8950.0 + 1e-6)
        return wave[keep], np.asarray(table["transmission"], dtype=np.float64)[keep]

    wave = transmission(1.0)[0]
    operators = {r: lsf_matrix(wave, EDGES, r) for r in (4000.0, 5000.0, 6500.0)}
    return transmission, operators


def test_water_is_pwv_kpno_transmission_binned(library) -> None:
    """H₂O alone: the effect's transmission and residual are pwv_kpno's ``trans_for_pwv`` at the
    line-of-sight water, convolved with the LSF and integrated over the MR pixels (our
    lsf_matrix), at columns between the tabulated ones and at three resolving powers."""
    transmission, operators = library
    effect = TelluricResiduals(oxygen=False)
    for pwv, airmass, fraction, r in ((0.6, 1.13, 0.1, 5000.0), (2.9, 1.41, -0.08, 4000.0)):
        for resolution in (r, 6500.0):
            c = pwv * airmass
            conv = operators[resolution] @ transmission(c)[1]
            corrected = operators[resolution] @ transmission((1.0 - fraction) * c)[1]
            params = _params(pwv, airmass, fraction, resolving_power=[resolution])
            ours = effect.transmission(params)[0].numpy()
            np.testing.assert_allclose(np.log(ours), np.log(conv), rtol=0, atol=3e-5)
            residual = effect.factor(params)[0].numpy()
            np.testing.assert_allclose(np.log(residual), np.log(conv / corrected), atol=3e-5)
            assert float(conv.min()) < 0.95  # a real band, not a flat line


def test_oxygen_is_phosim_cross_sections_at_the_site_column() -> None:
    """O₂ alone, evaluated independently: the cross sections read from the installed o2cs.txt,
    each 10 m slice of the standard atmosphere above Subaru read with the cross section
    interpolated between PhoSim's layers (0, 7, …, 56 km), convolved and binned."""
    from importlib.util import find_spec
    from pathlib import Path

    root = Path(next(iter(find_spec("pwv_kpno").submodule_search_locations)))
    rows = np.loadtxt(root / "default_atmosphere" / "o2cs.txt", skiprows=80000, max_rows=39001)
    wave = rows[:, 0] * 1e4
    assert wave[0] == pytest.approx(7000.0) and wave[-1] == pytest.approx(8950.0)
    # the column: x_O₂ P / (m g); PhoSim's (and pwv_kpno's) sea-level norm is 4.517e24 cm⁻²
    assert o2_column(0.0) == pytest.approx(4.51705e24, rel=0.005)
    assert o2_column() == pytest.approx(o2_column(0.0) * 60.53 / 101.325, rel=1e-3)
    barometric = 101325.0 * (1 - 0.0065 * 4139.0 / 288.15) ** 5.25588  # troposphere, by hand
    assert float(us1976_pressure(4.139)) == pytest.approx(barometric, rel=1e-6)
    top = np.linspace(4.139, 86.0, 8187)
    slab = -np.diff(us1976_pressure(top)) / float(us1976_pressure(4.139))  # column shares
    height = 0.5 * (top[1:] + top[:-1])
    layer = np.minimum(height / 7.0, 8.0)
    lo = np.minimum(np.floor(layer).astype(int), 7)
    frac = layer - lo
    sigma = np.zeros(wave.size)
    for k in range(slab.size):  # slice by slice, as PhoSim sums its layers
        sigma += slab[k] * ((1 - frac[k]) * rows[:, 1 + lo[k]] + frac[k] * rows[:, 2 + lo[k]])
    ours_sigma = rows[:, 1:] @ o2_layer_weights()
    np.testing.assert_allclose(ours_sigma, sigma, rtol=1e-4, atol=0)
    np.testing.assert_allclose(telluric_model()[2], o2_column() * sigma, rtol=1e-4, atol=0)
    # the band's strength: Long et al. (2010) measured 2.231e-22 cm per molecule at 296 K
    band = (wave > 7580) & (wave < 7720)
    strength = np.trapezoid(sigma[band] * 1e8 / wave[band] ** 2, wave[band])  # ∫σ dν, ν in cm⁻¹
    assert strength == pytest.approx(2.231e-22, rel=0.03)
    effect = TelluricResiduals()
    for airmass in (1.07, 1.46):
        expected = lsf_matrix(wave, EDGES, 5000.0) @ np.exp(-airmass * o2_column() * sigma)
        ours = effect.transmission(_params(0.0, airmass))[0].numpy()
        np.testing.assert_allclose(np.log(ours), np.log(expected), rtol=0, atol=3e-5)
    a_band = (WAVE > 7585) & (WAVE < 7725)
    assert float(ours[a_band].min()) < 0.3 and float(ours[~a_band].min()) > 0.99
    # vacuum wavelengths: the A band head is the Fraunhofer A line (759.370 nm in air)
    window = (wave > 7585) & (wave < 7600)
    head = wave[window][np.argmax(sigma[window] > 100 * np.median(sigma[window]))]
    assert head == pytest.approx(float(air_to_vacuum(7593.70)), abs=0.2)


def test_residual_sits_in_the_bands_and_is_bounded_by_the_absorption() -> None:
    """ε = 0.1 at 2 mm and airmass 1.2: ≥ 90 % of Σ|ln r| falls in the bands (31 % of the
    pixels), 3e-3 at most elsewhere (weak H₂O lines and wings absorb across the arm); pixel by
    pixel |ln r| ≤ |ε| |ln T|, ≈ ε ln T where the absorption is weak; no absorber, no change."""
    effect = TelluricResiduals()
    params = _params([2.0, 2.0], 1.2, [0.1, -0.1])
    log_r = effect.factor(params).log().numpy()
    log_t = effect.transmission(params).log().numpy()
    for row, eps in zip(log_r, (0.1, -0.1), strict=True):
        share = np.abs(row[IN_BANDS]).sum() / np.abs(row).sum()
        assert share > 0.9, share
        assert float(np.abs(row[~IN_BANDS]).max()) < 3e-3
        assert float(np.abs(row[IN_BANDS]).max()) > 0.1  # the A band's core
        assert np.all(np.abs(row) <= abs(eps) * np.abs(log_t[0]) + 1e-6)
        weak = log_t[0] > -0.002  # T_conv > 0.998: ≈ ε ln T, less where a line is saturated
        share = row[weak] / (eps * log_t[0][weak])
        assert np.median(share) > 0.995 and np.quantile(share, 0.01) > 0.97
    assert np.all(log_r[0] < 0) and np.all(log_r[1] > 0)  # under-corrected: absorption left
    # nothing to correct: no water and no O₂ in the model, the flux is unchanged, bit for bit
    dry = TelluricResiduals(oxygen=False).factor(_params(0.0, 1.3, 0.1))
    assert torch.equal(dry, torch.ones_like(dry))


def test_amplitude_scales_with_fraction_and_water() -> None:
    effect = TelluricResiduals()
    half, full = effect.factor(_params(2.0, 1.2, [0.05, 0.1])).log()
    ratio = float(full[IN_BANDS].abs().sum() / half[IN_BANDS].abs().sum())
    assert ratio == pytest.approx(2.0, rel=0.03)  # linear in ε to O(ε²)
    flipped = effect.factor(_params(2.0, 1.2, -0.1))[0].log()
    assert float((full + flipped).abs().max()) <= 0.12 * float(full.abs().max())
    # the water: ∝ the PWV where its lines are weak, sublinear in the saturated band cores
    water = TelluricResiduals(oxygen=False)
    low, high = water.factor(_params([1.0, 4.0], 1.0, 0.1)).log().numpy()
    log_t = water.transmission(_params(1.0, 1.0)).log().numpy()[0]
    weak = log_t > -1e-3
    share = high[weak] / (4.0 * low[weak])  # ≤ 1: ln T is convex in the column
    assert np.median(share) > 0.995 and np.quantile(share, 0.01) > 0.95
    assert float(share.max()) <= 1.0 + 1e-6
    h2o = IN_BANDS & ((WAVE < 7500) | (WAVE > 8000))
    total = float(np.abs(high[h2o]).sum() / np.abs(low[h2o]).sum())
    assert 2.0 < total < 4.0
    # the A band follows the airmass, not the water
    a_band = (WAVE > 7590) & (WAVE < 7700)
    dry, wet = effect.factor(_params([0.5, 8.0], 1.2, 0.1)).log().numpy()
    np.testing.assert_allclose(wet[a_band], dry[a_band], rtol=0, atol=2e-4)
    low_x, high_x = effect.factor(_params(0.5, [1.0, 1.5], 0.1)).log().numpy()
    assert np.abs(high_x[a_band]).sum() > 1.2 * np.abs(low_x[a_band]).sum()


@pytest.fixture(scope="module")
def sim(etc_dir) -> Simulator:
    return Simulator(noise=PFSNoiseModel.from_etc(etc_dir))


def _gen(seed: int = 5) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_engine_applies_it_reproducibly_and_leaves_sigma(sim) -> None:
    off = sim.sample(64, _gen())
    fx = sim.with_effects(Effects.only("telluric"))
    on = fx.sample(64, _gen())
    assert torch.equal(on["error"], off["error"]) and torch.equal(on["labels"], off["labels"])
    params = {k: on[k].double() for k in ("telluric_fraction", "pwv", "airmass")}
    expected = off["flux"] * fx.effects.get("telluric").factor(params, torch.float32)
    torch.testing.assert_close(on["flux"], expected, rtol=2e-6, atol=1e-4)
    assert not torch.equal(on["flux"], off["flux"])
    again = fx.sample(64, _gen())
    assert all(torch.equal(on[k], again[k]) for k in on)  # same seed, same bytes
    other = fx.sample(64, _gen(6))
    assert not torch.equal(other["pwv"], on["pwv"])
    # ε = 0: the bytes of no effect
    zero = sim.with_effects(Effects.only("telluric", fraction=0.0)).sample(64, _gen())
    assert all(torch.equal(zero[k], off[k]) for k in off)
    # the priors
    draws = TelluricResiduals().sample(20_000, _gen(0))
    assert float(draws["telluric_fraction"].abs().max()) <= 0.1
    assert float(draws["airmass"].min()) >= 1.0 and float(draws["airmass"].max()) <= 1.5
    pwv = draws["pwv"].quantile(torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64))
    torch.testing.assert_close(
        pwv, torch.tensor([0.93, 1.80, 2.98], dtype=torch.float64), atol=0.05, rtol=0
    )


def test_default_set_keeps_the_other_draws(sim) -> None:
    """The telluric effect is in the defaults, on its own stream: every other effect's draws are
    those of the default set without it."""
    default = Effects.default()
    assert "telluric" in default.effects
    streams = [kind.stream for kind in EFFECT_TYPES]
    assert len(set(streams)) == len(streams)  # a stream of its own
    others = Effects(**{k: v for k, v in default.effects.items() if k != "telluric"})
    a, b = default.sample(256, 1234), others.sample(256, 1234)
    assert set(a) - set(b) == {"telluric_fraction", "pwv", "airmass"}
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_lsf_spread_sets_the_resolution(sim) -> None:
    effects = Effects(lsf=LSFSpread((4000.0, 6500.0)), telluric=TelluricResiduals())
    params = effects.sample(32, 7)
    assert set(params["resolving_power"].tolist()) == {4000.0, 6500.0}
    factor = effects.get("telluric").factor(params)
    for value in (4000.0, 6500.0):
        rows = params["resolving_power"] == value
        fixed = TelluricResiduals(resolution=value).factor({k: v[rows] for k, v in params.items()})
        assert torch.equal(factor[rows], fixed)
    at_5000 = TelluricResiduals(resolution=5000.0).factor(params)
    assert not torch.allclose(factor, at_5000, rtol=0, atol=1e-3)  # the LSF matters in the A band


def test_config_round_trip_and_checks() -> None:
    one = Effects.only("telluric", fraction=0.1, pwv=10.0)
    spec = json.loads(json.dumps(one.to_dict()))
    assert Effects.from_dict(spec).to_dict() == one.to_dict()
    assert Effects.from_dict({"telluric": True}).to_dict() == Effects.only("telluric").to_dict()
    assert one.column_names() == ("telluric_fraction", "pwv", "airmass")
    assert spec["telluric"]["resolution"] is None and spec["telluric"]["oxygen"] is True
    for bad in ({"fraction": (-1.5, 0.1)}, {"airmass": (0.8, 1.2)}, {"pwv": (0.0, 90.0)}):
        with pytest.raises(ValueError):
            TelluricResiduals(**bad)
    with pytest.raises(TypeError, match="telluric"):
        Effects(telluric=Extinction())


def test_specvit_never_imports_pwv_kpno() -> None:
    """pwv_kpno is GPL-3: only the maintainers' training/ may read it, never the BSD-3 library."""
    from pathlib import Path

    import specvit

    root = Path(specvit.__file__).parent
    assert not [f for f in root.rglob("*.py") if "pwv_kpno" in f.read_text(encoding="utf-8")]


def test_the_library_bands_hold_the_absorption():
    """Exact mode gives the model a free scale in specvit.instrument.TELLURIC_BANDS: most of the
    absorption on the MR arm is there, at Maunakea's median water and at the realism
    benchmark's 10 mm."""
    from specvit.instrument import TELLURIC_BANDS

    wave, h2o, o2 = telluric_model()
    arm = (wave >= PFS_MR.start) & (wave <= PFS_MR.stop)
    bands = np.zeros_like(arm)
    for lo, hi in TELLURIC_BANDS.values():
        bands |= (wave >= lo) & (wave <= hi)
    held = {}
    for pwv in (1.8, 10.0):  # mm of water, airmass 1
        absorbed = 1.0 - np.exp(-(pwv * h2o + o2))
        held[pwv] = absorbed[arm & bands].sum() / absorbed[arm].sum()
    assert held[1.8] > 0.95 and held[10.0] > 0.85, held  # measured 0.96 and 0.90
