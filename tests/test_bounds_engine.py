"""Bounds on the real emulator and PFS noise model: Jacobian check, ceilings, CLI."""

import pytest
import torch
from click.testing import CliRunner

from specvit.bounds import (
    LabelPrior,
    ceiling_table,
    check_jacobian,
    crlb_ceilings,
    magnitude_for_snr,
)
from specvit.bounds.cli import main
from specvit.bounds.jacobian import autograd_jacobian
from specvit.bounds.velocity import velocity_jacobian
from specvit.emulator import Emulator
from specvit.instrument.noise import PFSNoiseModel


@pytest.fixture(scope="module")
def emulator():
    return Emulator.load(dtype=torch.float64)


@pytest.fixture(scope="module")
def noise(etc_dir):
    return PFSNoiseModel.from_etc(etc_dir)


@pytest.mark.parametrize("kind", ["autograd", "analytic"])
def test_emulator_jacobian_matches_central_differences(emulator, kind):
    labels = LabelPrior.default().sample(8, torch.Generator().manual_seed(0))
    jac = autograd_jacobian(emulator, labels) if kind == "autograd" else emulator.jacobian(labels)
    check = check_jacobian(emulator, labels, jac, scales=(1000, 2, 1.5))
    assert (check.best < 1e-4).all(), check.errors
    # The sweep resolves the h² truncation error: a scaled Jacobian would fail.
    assert (check.errors[0] > 10 * check.best).all()
    assert (check_jacobian(emulator, labels, 1.001 * jac, scales=(1000, 2, 1.5)).best > 5e-4).all()


def test_ceilings_on_the_pfs_noise_model(emulator, noise):
    labels = LabelPrior.default().sample(300, torch.Generator().manual_seed(1))
    bright = crlb_ceilings(labels, mag=19.0, emulator=emulator, noise_model=noise)
    faint = crlb_ceilings(labels, mag=22.5, emulator=emulator, noise_model=noise)
    assert bright.median_snr > faint.median_snr
    assert bright.median_r2_max > faint.median_r2_max
    assert (bright.crlb < faint.crlb).all()
    # The SNR mode hits the requested SNR exactly (median flux/σ per star).
    at5 = crlb_ceilings(labels, snr=5.0, emulator=emulator, noise_model=noise)
    assert torch.allclose(at5.snr, torch.full_like(at5.snr, 5.0))
    # Dropping the amplitude nuisance (the paper's 3-parameter convention) never lowers R²_max.
    three = crlb_ceilings(
        labels, mag=22.5, nuisance=("T_eff", "M_H"), emulator=emulator, noise_model=noise
    )
    assert (three.r2_max >= faint.r2_max - 1e-12).all()


def test_snr_rows_sit_at_the_magnitude_of_that_median_snr(emulator, noise):
    labels = LabelPrior.default().sample(200, torch.Generator().manual_seed(2))
    mag = magnitude_for_snr(7.0, labels, emulator, noise)
    (row,) = ceiling_table(snrs=[7.0], n_stars=200, seed=2, emulator=emulator, noise_model=noise)
    assert row.mag == pytest.approx(mag)
    assert row.median_snr == pytest.approx(7.0, rel=2e-3)
    with pytest.raises(ValueError, match="outside what magnitudes"):
        magnitude_for_snr(1e6, labels, emulator, noise)


def test_cli_prints_the_table(etc_dir):
    result = CliRunner().invoke(
        main, ["--mag", "21.5", "--snr", "5", "--n-stars", "100", "--etc-dir", str(etc_dir)]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("# log_g: unbiased CRLB ceilings, 100 stars")
    assert lines[1].startswith("| HSC-i mag | median SNR |")
    assert len([line for line in lines if line.startswith("| 2")]) == 2


def test_cli_rejects_bad_options(etc_dir):
    runner = CliRunner()
    bad = runner.invoke(main, ["--mag", "21", "--nuisance", "Teff", "--etc-dir", str(etc_dir)])
    assert bad.exit_code == 2
    assert "unknown nuisance parameter 'Teff'" in bad.output
    assert runner.invoke(main, ["--target", "logg"]).exit_code == 2


def test_velocity_jacobian_matches_the_engines_doppler_shift(emulator, noise):
    """∂flux/∂v against central differences of the data engine's own RV path."""
    simulate = pytest.importorskip("training.engine.simulate")
    labels = LabelPrior.default().sample(4, torch.Generator().manual_seed(5))
    sim = simulate.Simulator(emulator=emulator, noise=noise, prior=simulate.Prior(rv=(-300, 300)))
    mag = torch.full((4,), 21.0, dtype=torch.float64)
    h = torch.full((4,), 1.0, dtype=torch.float64)
    fd = (sim.noiseless(labels, mag, h) - sim.noiseless(labels, mag, -h)) / 2.0
    flux = emulator(labels)
    jac = velocity_jacobian(emulator, labels, flux) * (sim.noiseless(labels, mag) / flux)
    # Both use the engine's DopplerShift; what remains is the engine rescaling every shifted
    # spectrum to its magnitude (the band-weighted flux moves with v), ≈ 3e-3 here.
    assert float((fd - jac).norm() / fd.norm()) < 1e-2
    base = crlb_ceilings(labels, mag=21.0, emulator=emulator, noise_model=noise)
    with_rv = crlb_ceilings(
        labels,
        mag=21.0,
        nuisance=("T_eff", "M_H", "v_rad", "ln_A"),
        emulator=emulator,
        noise_model=noise,
    )
    assert with_rv.parameters == ("log_g", "T_eff", "M_H", "v_rad", "ln_A")
    assert (with_rv.crlb >= base.crlb * (1 - 1e-9)).all()


def test_cli_other_target_and_csv(etc_dir):
    args = ["--target", "M_H", "--mag", "21", "--n-stars", "50", "--format", "csv"]
    result = CliRunner().invoke(main, [*args, "--etc-dir", str(etc_dir)])
    assert result.exit_code == 0, result.output
    assert "nuisance T_eff, log_g, ln_A" in result.output
    assert result.output.splitlines()[1].startswith("HSC-i mag,median SNR")
