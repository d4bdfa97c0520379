"""The physical context of each prediction: per-star CRLB, emulator fit, v_rad and the flags.

Spectra are made here with the data engine (ETC noise, so these tests skip without
../shared); the model is the example model (rest frame, default prior).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.table import Table
from click.testing import CliRunner

import specvit
from specvit.bounds import crlb_ceilings
from specvit.inference import PredictFlag, Predictor
from specvit.inference.cli import main
from specvit.inference.physics import CHI2_PVALUE_THRESHOLD, RV_TOLERANCE_KMS, PhysicalContext
from specvit.instrument import PFSNoiseModel
from tests.predict_helpers import save_trained_model
from training.engine.ood_cases import MAGS, make_case
from training.engine.simulate import Prior, Simulator

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "models" / "specvit-tiny-engine"
LABELS = ("T_eff", "log_g", "M_H")
NEW = (
    PredictFlag.OUT_OF_DOMAIN
    | PredictFlag.OUTSIDE_PRIOR
    | PredictFlag.LOW_SNR
    | PredictFlag.RV_OUTSIDE_TRAINING
)


@pytest.fixture(scope="module")
def noise(etc_dir) -> PFSNoiseModel:
    return PFSNoiseModel.from_etc(etc_dir)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(FOLDER, device="cpu")


def _flagged(table, bits) -> np.ndarray:
    return (np.asarray(table["flags"]) & int(bits)) != 0


def test_engine_spectra_are_rarely_out_of_domain(noise, predictor):
    sim = Simulator(noise=noise, prior=Prior(mag=MAGS))
    spectra = sim.sample(400, torch.Generator().manual_seed(21))
    table = predictor.predict(spectra["flux"].numpy(), spectra["error"].numpy())
    snr = np.asarray(table["snr"])
    sel = (snr >= 2) & (snr <= 15)
    assert sel.sum() > 300
    # documented false-alarm rate: ≤ 1 % (measured 0 of 1690 for docs/predict.md)
    assert _flagged(table, PredictFlag.OUT_OF_DOMAIN)[sel].mean() <= 0.01
    assert _flagged(table, PredictFlag.RV_OUTSIDE_TRAINING)[sel].mean() <= 0.01
    assert np.all(np.abs(table["v_rad"]) < RV_TOLERANCE_KMS)
    chi2 = np.asarray(table["chi2_red"])[sel]
    assert abs(np.median(chi2) - 1.0) < 0.01  # σ is right, the fit is good
    assert abs(np.median(np.asarray(table["line_ratio"])[sel]) - 1.0) < 0.1
    np.testing.assert_array_equal(_flagged(table, PredictFlag.LOW_SNR), snr < 3.0)
    assert table["v_rad"].unit == "km / s" and table["crlb_T_eff"].unit == "K"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("counts", PredictFlag.OUT_OF_DOMAIN),
        ("flat", NEW),
        ("power_law", PredictFlag.OUT_OF_DOMAIN),
        ("rv_300", PredictFlag.RV_OUTSIDE_TRAINING),
        ("teff_7500", PredictFlag.OUTSIDE_PRIOR | PredictFlag.OUT_OF_DOMAIN),
        ("noise", PredictFlag.LOW_SNR),
    ],
)
def test_failure_cases_are_flagged(noise, predictor, name, expected):
    flux, error, snr = make_case(name, noise, 160, torch.Generator().manual_seed(5))
    table = predictor.predict(flux.numpy(), error.numpy())
    snr = snr.numpy()  # of the engine star the case started from
    if name == "noise":  # zero mean: SNR ≈ 0, and half cannot even be normalised
        assert _flagged(table, PredictFlag.LOW_SNR).all()
        return
    high = snr >= 5
    assert high.sum() >= 40
    assert _flagged(table, expected)[high].mean() >= 0.95
    assert _flagged(table, NEW)[high].mean() >= 0.95


def test_rv_is_measured(noise, predictor):
    d = Simulator(noise=noise, prior=Prior(mag=(20.0, 20.5), rv=(-400.0, 400.0))).sample(
        48, torch.Generator().manual_seed(8)
    )
    table = predictor.predict(d["flux"].numpy(), d["error"].numpy())
    fitted = np.asarray(table["v_rad"])
    far = np.abs(fitted) > 50  # measured where the shift wins clearly
    assert far.mean() > 0.8
    # σ_v (CRLB) ≈ 2 km/s here, reached with the true labels; the rest-frame model's labels for
    # moving stars are off, so the fit is a few km/s off and a few templates lock pixels away
    error = np.abs(fitted - d["rv"].numpy())[far]
    assert np.median(error) < 8.0 and (error < 20.0).mean() >= 0.9, error
    beyond = np.abs(d["rv"].numpy()) > 100
    assert _flagged(table, PredictFlag.RV_OUTSIDE_TRAINING)[beyond & far].all()


def test_crlb_equals_specvit_bounds_on_the_same_star(noise, predictor):
    d = Simulator(noise=noise, prior=Prior(mag=MAGS)).sample(12, torch.Generator().manual_seed(3))
    flux, error = d["flux"].numpy(), d["error"].numpy()
    mask = np.zeros(flux.shape, dtype=bool)
    mask[::3, 1000:1300] = True  # a masked stretch in some stars
    table = predictor.predict(flux, error, mask=mask)
    labels = torch.tensor(np.stack([np.asarray(table[n]) for n in LABELS], axis=1))
    # the bounds' error= convention: σ in units of the star's median valid flux, inf = masked
    valid = ~mask
    median = np.array(
        [np.quantile(f[v], 0.5, method="lower") for f, v in zip(flux, valid, strict=True)]
    )
    relative = np.where(valid, error / median[:, None], np.inf)
    for name in LABELS:
        direct = crlb_ceilings(labels, error=torch.from_numpy(relative), target=name)
        np.testing.assert_allclose(table[f"crlb_{name}"], direct.sigma_min.numpy(), rtol=1e-5)


@pytest.mark.parametrize(("mag", "snr", "sigma_min"), [(21.45, 5.0, 0.684), (20.65, 10.0, 0.341)])
def test_median_crlb_matches_the_bounds_table(noise, predictor, mag, snr, sigma_min):
    # docs/bounds.md, the table by SNR: median σ_min(log g) of the default population
    sim = Simulator(noise=noise, prior=Prior(mag=(mag - 1e-4, mag + 1e-4)))
    d = sim.sample(300, torch.Generator().manual_seed(0))
    table = predictor.predict(d["flux"].numpy(), d["error"].numpy())
    assert np.median(table["snr"]) == pytest.approx(snr, rel=0.05)
    assert np.median(table["crlb_log_g"]) == pytest.approx(sigma_min, rel=0.1)


def test_model_the_emulator_cannot_describe_gets_no_columns(tmp_path):
    folder = save_trained_model(tmp_path / "small")  # 1024 px from 7500 Å, log g only
    with pytest.warns(UserWarning, match="not the emulator's PFS MR grid"):
        predictor = Predictor(folder, device="cpu")
    wave = predictor.wavelength
    flux = np.ones((3, wave.size))
    table = predictor.predict(flux, np.full_like(flux, 0.01))
    assert table.colnames == ["log_g", "log_g_err", "snr", "n_valid", "flags"]
    assert table.meta["physics"]["checked"] == int(PredictFlag.LOW_SNR)


def test_model_without_domain_leaves_prior_and_rv_unchecked(noise):
    model = specvit.load(FOLDER)
    bare = specvit.SpecViT(model.config.replace(domain=None))
    bare.load_state_dict(model.state_dict())
    d = Simulator(noise=noise).sample(4, torch.Generator().manual_seed(1))
    table = Predictor(bare, device="cpu").predict(d["flux"].numpy(), d["error"].numpy())
    checked = PredictFlag(table.meta["physics"]["checked"])
    assert checked == PredictFlag.LOW_SNR | PredictFlag.OUT_OF_DOMAIN
    assert np.all(np.isfinite(table["chi2_pvalue"]))


def test_physics_off_and_without_error(noise, predictor):
    d = Simulator(noise=noise).sample(4, torch.Generator().manual_seed(2))
    flux, error = d["flux"].numpy(), d["error"].numpy()
    off = specvit.predict(flux, error, model=FOLDER, device="cpu", physics=False)
    assert off.colnames == [
        *(c for n in LABELS for c in (n, f"{n}_err")),
        "snr",
        "n_valid",
        "flags",
    ]
    assert "physics" not in off.meta
    no_error = predictor.predict(flux)  # no σ: no CRLB, no fit (NaN), no LOW_SNR
    assert np.all(np.isnan(no_error["crlb_log_g"])) and np.all(np.isnan(no_error["chi2_red"]))


def test_cli_no_physics(noise, tmp_path):
    d = Simulator(noise=noise).sample(3, torch.Generator().manual_seed(4))
    path = tmp_path / "spectra.npz"
    np.savez(path, flux=d["flux"].numpy(), error=d["error"].numpy())
    runner = CliRunner()
    for option, present in (([], True), (["--no-physics"], False)):
        out = tmp_path / f"out{len(option)}.ecsv"
        result = runner.invoke(main, [str(path), "-o", str(out), "--model", str(FOLDER), *option])
        assert result.exit_code == 0, result.output
        assert ("chi2_pvalue" in Table.read(out).colnames) is present


def test_the_fit_runs_on_one_thread_and_restores_the_thread_count(noise, predictor, monkeypatch):
    """Two threads on a shared CPU made each of the fit's small operations wait for the other."""
    d = Simulator(noise=noise).sample(8, torch.Generator().manual_seed(2))
    flux, error = d["flux"].numpy(), d["error"].numpy()
    seen = []
    fit = PhysicalContext._fit

    def spy(self, *args):
        seen.append(torch.get_num_threads())
        return fit(self, *args)

    def broken(self, *args):
        raise RuntimeError("fit failed")

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(PhysicalContext, "_fit", spy)
        predictor.predict(flux, error)
        assert seen == [1] and torch.get_num_threads() == 2
        monkeypatch.setattr(PhysicalContext, "_fit", broken)
        with pytest.raises(RuntimeError, match="fit failed"):
            predictor.predict(flux, error)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_model_trained_across_lsf_widths_is_not_flagged_for_a_broad_one(noise):
    """The default model was trained on resolving powers 4000–6500: a star observed at R 4000
    (lines broader than the emulator's at the design R 5000) is not out of its domain. The
    χ² test's second fit, with the emulator at the broadest trained LSF, clears it; a model
    trained at one LSF keeps the flag (the check can fail)."""
    from training.engine.effects import Effects

    sim = Simulator(
        noise=noise, prior=Prior(mag=(18.5, 19.5)), effects=Effects.only("lsf", values=(4000.0,))
    )
    spectra = sim.sample(64, torch.Generator().manual_seed(7))
    flux, error = spectra["flux"].numpy(), spectra["error"].numpy()
    trained = Predictor(device="cpu")
    assert "lsf" in trained.config.domain.effects
    one_lsf = Predictor(device="cpu")
    domain = one_lsf.config.domain
    one_lsf.physics = PhysicalContext(
        dataclasses.replace(
            one_lsf.config,
            domain=dataclasses.replace(
                domain, effects=tuple(e for e in domain.effects if e != "lsf")
            ),
        ),
        one_lsf.device,
    )
    broad = _flagged(trained.predict(flux, error), PredictFlag.OUT_OF_DOMAIN).mean()
    narrow = _flagged(one_lsf.predict(flux, error), PredictFlag.OUT_OF_DOMAIN).mean()
    assert broad <= 0.05 < 0.3 <= narrow, (broad, narrow)


def test_the_shape_test_is_calibrated_and_sees_a_calibration_error(noise, predictor):
    """The continuum-shape test of a model that sees its flux over one number: on engine spectra
    its p-value is uniform (χ² with SHAPE_ORDER degrees of freedom, whatever the labels' errors);
    a 15 % calibration error, which the overall χ² test mostly misses, fails it."""
    from scipy import stats

    from training.engine.effects import Effects

    clean = Simulator(noise=noise, prior=Prior(mag=(20.0, 22.0)))
    warped = Simulator(
        noise=noise,
        prior=Prior(mag=(20.0, 22.0)),
        effects=Effects.only("calibration", amplitude=0.15),
    )
    tables = [
        predictor.predict(d["flux"].numpy(), d["error"].numpy())
        for d in (s.sample(300, torch.Generator().manual_seed(31)) for s in (clean, warped))
    ]
    p = np.asarray(tables[0]["shape_pvalue"])
    assert stats.kstest(p, "uniform").pvalue > 0.01
    high = np.asarray(tables[1]["snr"]) >= 5
    assert high.sum() > 200
    shape = np.asarray(tables[1]["shape_pvalue"])[high] < CHI2_PVALUE_THRESHOLD
    chi2 = np.asarray(tables[1]["chi2_pvalue"])[high] < CHI2_PVALUE_THRESHOLD
    assert shape.mean() >= 0.9 > 0.6 >= chi2.mean(), (shape.mean(), chi2.mean())
    np.testing.assert_array_equal(_flagged(tables[1], PredictFlag.OUT_OF_DOMAIN)[high][shape], True)


def test_a_model_that_divides_out_its_continuum_has_no_shape_test():
    config = specvit.load("specvit-tiny-pfs-observed").config
    assert config.input_norm == "continuum"
    assert "shape_pvalue" not in PhysicalContext(config, torch.device("cpu")).columns()


def test_exact_mode_keeps_the_network_flags(noise):
    """Exact mode's labels can fit a reddened continuum better than the network's, but never
    clear a flag the network's answer raised (the check fails when only the posterior mean is
    checked: then some stars lose OUT_OF_DOMAIN)."""
    from training.engine.effects import Effects

    sim = Simulator(
        noise=noise, prior=Prior(mag=(20.0, 21.5)), effects=Effects.only("extinction", ebv=0.3)
    )
    d = sim.sample(128, torch.Generator().manual_seed(3))
    flux, error = d["flux"].numpy(), d["error"].numpy()
    network = np.asarray(Predictor("specvit-tiny-pfs").predict(flux, error)["flags"])
    exact = np.asarray(Predictor("specvit-tiny-pfs", exact=True).predict(flux, error)["flags"])
    assert (network & int(PredictFlag.OUT_OF_DOMAIN) != 0).mean() > 0.5
    np.testing.assert_array_equal(exact & network, network)


@pytest.mark.parametrize("model", ["specvit-tiny-pfs", "specvit-tiny-pfs-observed"])
def test_flags_without_the_crlb_are_the_same(noise, model):
    """``crlb=False`` (exact mode's check of the network's answer) skips the Cramér–Rao columns
    and nothing else: the same flags and fit columns."""
    from specvit.preprocessing import prepare

    predictor = Predictor(model, device="cpu")
    d = Simulator(noise=noise, prior=Prior(mag=(19.0, 22.0))).sample(
        64, torch.Generator().manual_seed(9)
    )
    table = predictor.predict(d["flux"].numpy(), d["error"].numpy())
    labels = torch.tensor(np.stack([np.asarray(table[n]) for n in LABELS], 1), dtype=torch.float32)
    p = prepare(d["flux"], d["error"], predictor.config)
    velocity = None if p.velocity is None else p.velocity.v_rad
    data = (p.flux, p.error, p.valid, p.scale, torch.as_tensor(np.asarray(table["snr"])))
    full = predictor.physics(labels, *data, velocity, p.continuum)
    flags_only = predictor.physics(labels, *data, velocity, p.continuum, crlb=False)
    np.testing.assert_array_equal(flags_only[0].numpy(), full[0].numpy())
    for name, value in full[1].items():
        other = flags_only[1][name].numpy()
        if name.startswith("crlb_"):
            assert np.isnan(other).all() and np.isfinite(value.numpy()).all()
        else:
            np.testing.assert_array_equal(other, value.numpy())


def test_the_sky_lines_left_out_do_not_depend_on_the_flux_unit(noise):
    """``ignored`` (what the emulator fit and exact mode leave out) picks the sky lines from σ
    against its own trend: the same pixels in any unit of flux and σ, as the physical context's
    fit in units of the median flux and exact mode's at a median σ near 1 both need."""
    physics = Predictor("specvit-tiny-pfs-observed", device="cpu").physics
    d = Simulator(noise=noise, prior=Prior(mag=(19.0, 22.0))).sample(
        16, torch.Generator().manual_seed(5)
    )
    flux, error = d["flux"].double(), d["error"].double()
    valid = torch.isfinite(flux) & (error > 0)
    base = physics.ignored(flux, error, valid)
    assert base.any(dim=1).all() and base.float().mean() < 0.2  # some sky lines in every star
    for scale in (1e-3, 3.7, 1e3):
        again = physics.ignored(flux * scale, error * scale, valid)
        np.testing.assert_array_equal(again.numpy(), base.numpy(), err_msg=f"scale {scale}")
