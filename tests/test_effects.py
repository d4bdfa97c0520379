"""The data engine's real-data effects (training/engine/effects.py): each does what it claims,
the same seed gives the same bytes, and with no effect the engine is unchanged."""

from __future__ import annotations

import json
from importlib.util import find_spec

import astropy.units as u
import numpy as np
import pytest
import torch

from specvit.continuum import legendre_basis
from specvit.emulator import C_KMS, DopplerShift, Emulator
from specvit.instrument import PFSNoiseModel, read_etc
from specvit.instrument.photometry import magnitude_to_njy
from specvit.preprocessing import median_snr
from training.engine.effects import (
    BackgroundColour,
    CosmicRays,
    Effects,
    Extinction,
    Fixed,
    FluxCalibration,
    LSFSpread,
    SigmaScale,
    SkyResiduals,
    TelluricResiduals,
    WavelengthOffset,
    shift_pixels,
)
from training.engine.simulate import Prior, Simulator

N = 64  # stars per draw in most tests
#: The default effects include the telluric residuals, whose model is pwv_kpno's.
needs_pwv_kpno = pytest.mark.skipif(
    find_spec("pwv_kpno") is None,
    reason="the default effects include the telluric residuals, which need pwv_kpno (GPL-3, an "
    "optional dependency of the train extra): pip install 'specvit[train]'",
)


@pytest.fixture(scope="module")
def noise(etc_dir) -> PFSNoiseModel:
    return PFSNoiseModel.from_etc(etc_dir)


@pytest.fixture(scope="module")
def sim(noise) -> Simulator:
    return Simulator(noise=noise)


def _gen(seed: int = 5) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair(sim: Simulator, effects: Effects, n: int = N, seed: int = 5) -> tuple[dict, dict]:
    """The same stars (same generator) without and with ``effects``."""
    return sim.sample(n, _gen(seed)), sim.with_effects(effects).sample(n, _gen(seed))


def _background_of(noise: PFSNoiseModel, draw: dict) -> torch.Tensor:
    """The sky + detector variance σ was computed with: σ² minus the source term."""
    level = draw["flux"].double().mean(-1, keepdim=True).clamp_min(0.0)
    return draw["error"].double() ** 2 - noise.var_per_njy * level


# ------------------------------------------------------------------ the ETC's sky
def test_read_etc_returns_the_sky_column(etc_dir, noise) -> None:
    etc = read_etc(etc_dir)
    table = np.loadtxt(etc_dir / "noise_mr.dat")
    table = table[table[:, 0] == 3]
    np.testing.assert_array_equal(etc["sky"], table[:, 4])
    np.testing.assert_array_equal(etc["background_variance"], table[:, 3])  # the rest as before
    assert set(etc) == {"wavelength", "background_variance", "signal_ab18", "snr_ab18", "sky"}
    # e⁻ → nJy with the noise model's own gain: a source of sky_njy collects `sky` e⁻
    gain = noise.signal_ab18 / float(magnitude_to_njy(18.0))
    torch.testing.assert_close(noise.sky_njy * gain, torch.from_numpy(etc["sky"]))
    with pytest.warns(UserWarning, match="default"):
        flat = PFSNoiseModel.default()
    assert torch.all(flat.sky_njy > 0) and flat.sky_njy.shape == (4096,)


# ------------------------------------------------------------------ engine unchanged when off
def test_no_effects_is_the_engine_bit_for_bit(sim, noise) -> None:
    """Effects off (None, Effects.off(), {} …) gives the bytes of the plain pipeline, written
    out here as it was before the effects existed."""
    generator = _gen(11)
    draw = sim.prior.sample(100, generator)
    flux = torch.empty(100, 4096)
    error = torch.empty_like(flux)
    for lo in range(0, 100, 40):
        sl = slice(lo, lo + 40)
        clean = noise.scale_to_magnitude(sim.emulator(draw["labels"][sl]), draw["mag"][sl].float())
        noise.observe(clean, generator, out=(flux[sl], error[sl]))
    snr = median_snr(flux, error)
    for effects in (None, Effects.off(), {}, "off", False):
        got = Simulator(sim.emulator, noise, chunk_size=40, effects=effects).sample(100, _gen(11))
        assert set(got) == {"flux", "error", "labels", "mag", "snr"}
        assert torch.equal(got["flux"], flux) and torch.equal(got["error"], error)
        assert torch.equal(got["snr"], snr) and torch.equal(got["labels"], draw["labels"].float())


@needs_pwv_kpno
def test_zero_strength_effects_change_nothing(sim) -> None:
    """Every effect on at zero strength: the same bytes as none (the same stars, magnitudes and
    noise draw: the effects draw from their own streams)."""
    zero = Effects(
        lsf=LSFSpread([5000.0]),
        wavelength=WavelengthOffset(0.0),
        background=BackgroundColour(amplitude=0.0),
        extinction=Extinction(ebv=0.0),
        telluric=TelluricResiduals(fraction=0.0),
        sky=SkyResiduals(0.0, 0.0, 0.0),
        cosmic_rays=CosmicRays(rate=0.0),
        calibration=FluxCalibration(amplitude=0.0),
        sigma_scale=SigmaScale(1.0),
    )
    off, on = _pair(sim, zero)
    for key in off:
        assert torch.equal(off[key], on[key]), key
    assert torch.all(on["ebv"] == 0) and torch.all(on["n_cosmic"] == 0)


@needs_pwv_kpno
def test_effects_do_not_draw_from_the_generator_and_reproduce(sim) -> None:
    effects = Effects.default()
    fx = sim.with_effects(effects)
    g_off, g_on = _gen(3), _gen(3)
    off, a = sim.sample(N, g_off), fx.sample(N, g_on)
    assert torch.equal(g_off.get_state(), g_on.get_state())  # nothing extra drawn from it
    assert torch.equal(off["labels"], a["labels"]) and torch.equal(off["mag"], a["mag"])
    b = fx.sample(N, _gen(3))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)  # same seed, same bytes
    c = fx.sample(N, _gen(4))
    assert not torch.equal(a["flux"], c["flux"]) and not torch.equal(a["ebv"], c["ebv"])
    # a second draw from the same generator gets new effects, not the first draw's again
    g = _gen(3)
    first, second = fx.sample(8, g), fx.sample(8, g)
    assert not torch.equal(first["wave_offset"], second["wave_offset"])
    keys = {"resolving_power", "wave_offset", "ebv", "calib_amplitude", "calib_coeffs"}
    keys |= {"sky_scale", "sky_pixel", "n_cosmic", "sigma_scale"}
    keys |= {"telluric_fraction", "pwv", "airmass"}
    assert keys <= set(a) and a["calib_coeffs"].shape == (N, 3)


@needs_pwv_kpno
def test_clean_fraction_draws_spectra_without_any_effect(sim) -> None:
    """``clean_fraction``: those stars are the engine's without effects, bit for bit (every
    effect at its absent value); the others keep the strengths they were drawn without clean
    spectra."""
    plain = Effects.default()
    half = Effects.from_dict({**plain.to_dict(), "clean_fraction": 0.5})
    off, on = _pair(sim, half)
    full = sim.with_effects(plain).sample(N, _gen(5))
    clean = (on["ebv"] == 0) & (on["calib_amplitude"] == 0) & (on["sigma_scale"] == 1)
    assert 0.3 < clean.float().mean() < 0.7
    assert torch.all(on["resolving_power"][clean] == 5000.0)
    assert torch.all(on["n_cosmic"][clean] == 0) and torch.all(on["telluric_fraction"][clean] == 0)
    for key in ("flux", "error", "snr"):
        assert torch.equal(on[key][clean], off[key][clean]), key
        assert not torch.equal(on[key][~clean], off[key][~clean]), key
    for key in ("ebv", "calib_coeffs", "sky_pixel", "n_cosmic", "wave_offset", "background_coeffs"):
        assert torch.equal(on[key][~clean], full[key][~clean]), key
    assert half.to_dict()["clean_fraction"] == 0.5 and "clean_fraction" not in plain.to_dict()
    assert "50% clean" in repr(half)
    with pytest.raises(ValueError, match="clean_fraction must be in"):
        Effects(clean_fraction=1.0, extinction=Extinction())
    with pytest.raises(ValueError, match="clean_fraction needs effects"):
        Effects(clean_fraction=0.2)
    with pytest.raises(ValueError, match="design R 5000"):
        Effects(clean_fraction=0.2, lsf=LSFSpread([4000.0, 6000.0]))
    with pytest.raises(TypeError, match="clean_fraction must be a number"):
        Effects.from_dict({"extinction": True, "clean_fraction": "some"})


def test_one_effect_at_graded_strengths_same_stars(sim) -> None:
    """The realism benchmark's need: the same stars, one effect at graded strengths; a fixed
    strength keeps the effect's shape (here the calibration's) and scales it."""
    grades = [sim.with_effects(Effects.only("calibration", amplitude=a)) for a in (0.05, 0.1)]
    lo, hi = (s.sample(N, _gen(8)) for s in grades)
    assert torch.equal(lo["labels"], hi["labels"]) and torch.equal(lo["mag"], hi["mag"])
    torch.testing.assert_close(hi["calib_coeffs"], 2.0 * lo["calib_coeffs"])
    # one effect on leaves the others' draws alone: the same E(B−V) alone or after an offset
    both = sim.with_effects(Effects(wavelength=WavelengthOffset(), extinction=Extinction()))
    alone = sim.with_effects(Effects.only("extinction")).sample(8, _gen(8))
    assert torch.equal(both.sample(8, _gen(8))["ebv"], alone["ebv"])


# ------------------------------------------------------------------ moving stars (RV)
def test_moving_star_lines_shift_and_sigma_pattern_stays(noise) -> None:
    """±600 km/s: the star's lines move by λv/c on the observed grid; σ's sky pattern stays."""
    sim = Simulator(noise=noise, prior=Prior(rv=(-600.0, 600.0)))
    labels = torch.tensor([[4200.0, 2.0, 0.0]] * 3)
    rv = torch.tensor([0.0, 600.0, -600.0])
    flux = sim.noiseless(labels, torch.full((3,), 21.0), rv).double()
    wave = torch.as_tensor(sim.wavelength)

    def centre(k: int, guess: float) -> float:  # parabola through the minimum of Ca II 8542
        window = torch.nonzero((wave > guess - 6) & (wave < guess + 6))[:, 0]
        i = int(window[flux[k, window].argmin()])
        y0, y1, y2 = flux[k, i - 1 : i + 2].tolist()
        return float(wave[i]) + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2) * sim.noise.grid.step

    rest = centre(0, 8544.4)
    for k in (1, 2):
        shift = rest * float(rv[k]) / C_KMS  # 17.1 Å, 40 pixels
        assert centre(k, rest + shift) - rest == pytest.approx(shift, abs=0.05)
    # σ: its sky + detector term is the same pattern on the observed grid at every velocity
    draw = sim.sample(N, _gen(2))
    assert float(draw["rv"].abs().max()) > 500.0
    background = _background_of(noise, draw)
    torch.testing.assert_close(background, noise.var_background.expand(N, -1), rtol=2e-4, atol=1.0)
    tops = {tuple(sorted(e.topk(20).indices.tolist())) for e in draw["error"]}
    assert len(tops) == 1  # the brightest sky lines: the same pixels for every velocity


# ------------------------------------------------------------------ wavelength offset
def test_shift_pixels_is_the_exact_pixel_integral() -> None:
    """A sub-pixel shift of the pixel values against the exact integration over shifted edges
    (DopplerShift, at the velocity of the same shift at 8542 Å): < 1e-3 of the flux."""
    em = Emulator.load(dtype=torch.float64)
    doppler = DopplerShift(em, 100.0)
    labels = torch.tensor([[4000.0, 4.5, 0.0], [5500.0, 2.0, -1.0]], dtype=torch.float64)
    flux = em(labels)
    wave = torch.as_tensor(em.wavelength)
    window = (wave > 8520) & (wave < 8565)
    for delta in (0.1, -0.3, 0.5):
        exact = doppler(labels, torch.full((2,), -C_KMS * delta * em.grid.step / 8542.0))
        ours = shift_pixels(flux, torch.full((2,), delta))
        err = (ours - exact)[:, window].abs().max(-1).values / flux[:, window].mean(-1)
        moved = (flux - exact)[:, window].abs().max(-1).values / flux[:, window].mean(-1)
        assert float(err.max()) < min(1e-3, 0.1 * float(moved.min())), (delta, err, moved)
    assert torch.equal(shift_pixels(flux, torch.zeros(2)), flux)


def test_wavelength_offset_moves_star_sky_and_variance_together(sim, noise) -> None:
    """δ = 0.3 px: the star, the variance pattern and the sky all move; the sky model does not
    (residual sky(λ+δ) − sky(λ)); the noise draw is the same one."""
    effects = Effects.only("wavelength", pixels=0.3)
    off, on = _pair(sim, effects)
    fx = sim.with_effects(effects)
    assert torch.all(on["wave_offset"] == np.float32(0.3))
    moved = shift_pixels(noise.var_background, torch.full((N,), 0.3))
    torch.testing.assert_close(_background_of(noise, on), moved, rtol=2e-4, atol=1.0)
    assert not torch.allclose(_background_of(noise, on), _background_of(noise, off), rtol=0.01)
    params = {"wave_offset": on["wave_offset"].double()}
    clean_on = fx.noiseless(on["labels"], on["mag"], effects=params).double()
    clean_off = sim.noiseless(off["labels"], off["mag"]).double()
    shifted = shift_pixels(clean_off, torch.full((N,), 0.3))  # then scaled to the magnitude:
    torch.testing.assert_close(clean_on, shifted, rtol=1e-4, atol=0)  # 3e-5 apart
    residual = (shift_pixels(noise.sky_njy, torch.full((N,), 0.3)) - noise.sky_njy).float()
    eps_on = (on["flux"] - residual - clean_on) / noise.expected_sigma(clean_on, moved)
    eps_off = (off["flux"] - clean_off) / noise.expected_sigma(clean_off)
    torch.testing.assert_close(eps_on, eps_off, rtol=0, atol=2e-3)


# ------------------------------------------------------------------ LSF spread
def test_lsf_spread_draws_emulators_and_line_width(noise) -> None:
    sim = Simulator(noise=noise, effects=Effects.only("lsf", values=(4000.0, 6500.0)))
    labels = torch.tensor([[4500.0, 2.0, -1.0]] * 2)
    params = {"resolving_power": torch.tensor([4000.0, 6500.0])}
    flux = sim.noiseless(labels, torch.full((2,), 21.0), effects=params).double()
    for k, r in enumerate((4000.0, 6500.0)):
        ref = noise.scale_to_magnitude(Emulator.load(r)(labels[:1]), torch.tensor([21.0]))
        torch.testing.assert_close(flux[k : k + 1].float(), ref)
    wave = torch.as_tensor(sim.wavelength)
    near = (wave > 8500) & (wave < 8600)
    line = (wave > 8530) & (wave < 8560)
    depth = 1 - flux[:, line] / flux[:, near].quantile(0.95, dim=-1, keepdim=True)
    width = depth.sum(-1) / depth.amax(-1)  # equivalent width over depth ∝ the line's width
    assert float(depth[0].max()) < float(depth[1].max())  # R = 4000 shallower
    assert float(width[0] / width[1]) > 1.08  # and wider
    draw = sim.sample(200, _gen(1))
    assert set(draw["resolving_power"].tolist()) == {4000.0, 6500.0}
    # with a moving star the LSF spread goes through each R's Doppler shift
    moving = Simulator(noise=noise, prior=Prior(rv=(-50.0, 50.0)), effects=sim.effects)
    assert torch.isfinite(moving.sample(4, _gen(1))["flux"]).all()


# ------------------------------------------------------------------ extinction
def test_extinction_is_the_dust_extinction_curve(noise) -> None:
    from dust_extinction.parameter_averages import G23

    sim = Simulator(noise=noise, effects=Effects.only("extinction"))
    labels = torch.tensor([[5000.0, 4.0, -0.5]] * 3)
    mag = torch.full((3,), 21.3)
    ebv = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
    flux = sim.noiseless(labels, mag, effects={"ebv": ebv}).double()
    ratio = flux[1:] / flux[:1]
    wave = sim.wavelength * u.AA
    curve = torch.from_numpy(np.stack([G23(Rv=3.1).extinguish(wave, Ebv=e) for e in (0.4, 1.0)]))
    torch.testing.assert_close(
        ratio / ratio.mean(-1, keepdim=True),
        curve / curve.mean(-1, keepdim=True),
        rtol=2e-5,
        atol=0,
    )
    assert float(curve[1, -1] / curve[1, 0]) > 1.5  # reddening: the red end gains
    # the drawn magnitude is the observed, reddened one
    torch.testing.assert_close(noise.magnitude(flux), mag.double(), atol=1e-4, rtol=0)
    draw = sim.sample(N, _gen(0))
    assert 0.0 <= float(draw["ebv"].min()) and float(draw["ebv"].max()) <= 1.0


# ------------------------------------------------------------------ background colour
def test_background_colour_tilts_the_noise_and_its_sigma_alike(sim, noise) -> None:
    """The sky + detector σ times a smooth factor whose log spans the drawn amplitude; the noise
    drawn follows the σ reported (the star's flux is untouched)."""
    off, on = _pair(sim, Effects.only("background", amplitude=0.4))
    ratio = (_background_of(noise, on) / _background_of(noise, off)).sqrt().log()  # ln factor
    span = ratio.amax(-1) - ratio.amin(-1)
    torch.testing.assert_close(span, torch.full_like(span, 0.4), atol=0.02, rtol=0)
    assert (ratio[:, :-1] - ratio[:, 1:]).abs().max() < 1e-3  # smooth across the arm
    assert on["background_coeffs"].shape == (N, 2) and torch.all(on["background_amplitude"] == 0.4)
    # the same normal draws scaled by the σ reported: flux = clean + σ z with and without
    step = on["error"].double() - off["error"].double()
    z = (on["flux"].double() - off["flux"].double()) / step
    moved = step.abs() > 0.05 * off["error"].double()
    assert moved.sum() > 10_000 and abs(float(z[moved].std()) - 1.0) < 0.03
    with pytest.raises(ValueError, match="background amplitude must be ≥ 0"):
        BackgroundColour(amplitude=(-0.1, 0.2))
    for order in (0, 1.5):
        with pytest.raises(ValueError, match="order must be a positive integer"):
            BackgroundColour(order=order)
    with pytest.raises(ValueError, match="calibration amplitude must be ≥ 0"):
        FluxCalibration(amplitude=-0.1)


# ------------------------------------------------------------------ flux calibration
def test_calibration_distortion_is_smooth_and_within_its_amplitude(sim) -> None:
    off, on = _pair(sim, Effects.only("calibration"))
    factor = (on["error"] / off["error"]).double()  # σ carries the same calibration vector
    torch.testing.assert_close(on["flux"], off["flux"] * factor.float(), rtol=1e-5, atol=1e-2)
    ptp = factor.amax(-1) - factor.amin(-1)
    amplitude = on["calib_amplitude"].double()
    torch.testing.assert_close(ptp, amplitude, rtol=1e-4, atol=0)
    assert 0.02 <= float(amplitude.min()) and float(amplitude.max()) <= 0.15
    assert float((factor.mean(-1) - 1).abs().max()) <= float(amplitude.max()) / 2
    x = torch.linspace(-1, 1, 4096, dtype=torch.float64)
    basis = torch.cat([torch.ones(1, 4096, dtype=torch.float64), legendre_basis(x, 3)])
    fit = torch.linalg.lstsq(basis.T, factor.T).solution  # a cubic in x: smooth
    assert float((basis.T @ fit - factor.T).abs().max()) < 1e-5
    torch.testing.assert_close(fit[1:].T, on["calib_coeffs"].double(), rtol=1e-3, atol=1e-5)


# ------------------------------------------------------------------ sky residuals
def test_sky_residuals_as_stated_and_sigma_not_inflated(sim, noise) -> None:
    effects = Effects.only("sky", scale=(-0.02, 0.02), exposure_scale=0.02, pixel=0.015)
    off, on = _pair(sim, effects)
    assert torch.equal(on["error"], off["error"])  # σ does not know the residuals
    rel = (on["flux"] - off["flux"]).double() / noise.sky_njy
    scale = on["sky_scale"].double()
    torch.testing.assert_close(rel.mean(-1), scale, rtol=0, atol=4 * 0.015 / 64)
    rms = (rel - scale.unsqueeze(-1)).std(-1)
    torch.testing.assert_close(rms, on["sky_pixel"].double(), rtol=0.05, atol=0)
    assert torch.all(on["sky_pixel"] == np.float32(0.015))
    # the per-exposure errors average down over the exposures; the coherent one does not
    per_exposure = Effects.only("sky", scale=0.0, exposure_scale=0.04, pixel=0.0)
    for n_exp in (1, 12):
        s = per_exposure.sample(20_000, 0, n_exposures=n_exp)["sky_scale"]
        assert float(s.std()) == pytest.approx(0.04 / n_exp**0.5, rel=0.03)
    s = Effects.only("sky", exposure_scale=0.0, pixel=0.0).sample(20_000, 0)["sky_scale"]
    assert float(s.std()) == pytest.approx(0.02 / 3**0.5, rel=0.03)


# ------------------------------------------------------------------ cosmic rays
def test_cosmic_rays_counted(sim) -> None:
    off, on = _pair(sim, Effects.only("cosmic_rays", rate=3.0), n=256)
    assert torch.equal(on["error"], off["error"])
    hits = (on["flux"] - off["flux"]).double()
    assert float(hits.min()) >= 0.0
    hit = hits > 0
    starts = (hit[:, 1:] & ~hit[:, :-1]).sum(-1) + hit[:, 0]  # runs of hit pixels
    count = on["n_cosmic"].long()
    assert torch.all(starts <= count)  # hits may overlap, never more runs than hits
    assert float(starts.sum()) >= 0.97 * float(count.sum()) > 0
    assert float(count.float().mean()) == pytest.approx(3.0, abs=0.4)
    runs = []  # lengths of the runs of hit pixels, per star
    for row in hit.numpy().astype(int):
        edges = np.diff(np.r_[0, row, 0])
        runs.append(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
    isolated = np.concatenate([r for r, c in zip(runs, count.tolist(), strict=True) if len(r) == c])
    assert set(isolated.tolist()) == {1, 2, 3}  # 1–3 pixels each, uniform
    assert float(isolated.mean()) == pytest.approx(2.0, abs=0.15)
    height = hits[hit] / off["error"].double()[hit]
    assert float(height.min()) >= 5.0 - 1e-3 and float(height.quantile(0.9)) <= 50.0


# ------------------------------------------------------------------ σ scale
def test_sigma_scale_applied(sim) -> None:
    off, on = _pair(sim, Effects.only("sigma_scale"))
    assert torch.equal(on["flux"], off["flux"])
    torch.testing.assert_close(
        on["error"] / off["error"], on["sigma_scale"].unsqueeze(-1).expand(-1, 4096)
    )
    assert 0.7 <= float(on["sigma_scale"].min()) and float(on["sigma_scale"].max()) <= 1.3
    torch.testing.assert_close(on["snr"], median_snr(on["flux"], on["error"]))


# ------------------------------------------------------------------ configs and wiring
@needs_pwv_kpno
def test_effects_from_and_to_dict() -> None:
    default = Effects.default()
    assert (
        Effects.from_dict(json.loads(json.dumps(default.to_dict()))).to_dict() == default.to_dict()
    )
    assert Effects.from_dict("default").to_dict() == default.to_dict()
    assert Effects.from_dict(True).to_dict() == default.to_dict()
    one = Effects.from_dict({"extinction": True, "sky": None, "calibration": {"amplitude": 0.1}})
    assert list(one.effects) == ["extinction", "calibration"]
    assert one.get("calibration").amplitude == Fixed(0.1)
    assert Effects.from_dict(one.to_dict()).to_dict() == one.to_dict()
    assert one.column_names() == ("ebv", "calib_amplitude", "calib_c1", "calib_c2", "calib_c3")
    assert not Effects.off().enabled and Effects.from_dict(None).to_dict() == {}
    with pytest.raises(ValueError, match="unknown effect"):
        Effects.from_dict({"seeing": True})
    with pytest.raises(ValueError, match="calibration"):
        Effects.from_dict({"calibration": {"amplitud": 0.1}})
    with pytest.raises(ValueError, match="unknown extinction law"):
        Extinction(law="XX99")


@needs_pwv_kpno
def test_make_dataset_and_engine_source_turn_effects_on(tmp_path, etc_dir, monkeypatch) -> None:
    import training.cli.make_dataset as make_dataset
    from specvit.io import iter_shard, read_shard_info
    from training.engine.datasets import write_set
    from training.engine.seeding import step_generator
    from training.engine.sources import EngineSource
    from training.trainer.config import DataConfig, RunConfig

    seen: dict = {}
    monkeypatch.setattr(make_dataset, "write_dataset", lambda out, sim, **kw: seen.update(sim=sim))
    make_dataset.main(["--out", str(tmp_path), "--etc-dir", str(etc_dir), "--effects"])
    assert seen["sim"].effects.to_dict() == Effects.default().to_dict()
    settings = tmp_path / "fx.yaml"
    settings.write_text("extinction: {ebv: [0.0, 0.5]}\n")
    make_dataset.main(
        ["--out", str(tmp_path), "--etc-dir", str(etc_dir), "--effects", str(settings)]
    )
    assert list(seen["sim"].effects.effects) == ["extinction"]
    make_dataset.main(["--out", str(tmp_path), "--etc-dir", str(etc_dir)])
    assert not seen["sim"].effects.enabled
    # a shard records each star's effect parameters and the settings
    sim = seen["sim"].with_effects(Effects.only("calibration"))
    write_set(tmp_path / "s.h5", sim, 8, 1, 4, {"effects": json.dumps(sim.effects.to_dict())})
    info = read_shard_info(tmp_path / "s.h5")
    assert Effects.from_dict(json.loads(info.attrs["effects"])).to_dict() == sim.effects.to_dict()
    batch = next(iter_shard(tmp_path / "s.h5", 8))
    first = sim.sample(4, step_generator(1, 0))  # the shard's first block
    np.testing.assert_array_equal(batch["calib_c2"][:4], first["calib_coeffs"][:, 1].numpy())
    # the trainer's engine source reads data.effects (a key training/trainer/config.py may add)
    config = RunConfig(data=DataConfig(etc_dir=str(etc_dir), n_train=8, n_val=4))
    assert not EngineSource(config).simulator.effects.enabled
    config.data.effects = {"sigma_scale": True}
    assert list(EngineSource(config).simulator.effects.effects) == ["sigma_scale"]
