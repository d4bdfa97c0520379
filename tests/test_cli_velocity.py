"""specvit-predict --rv / --rv-col: velocities for a model that takes observed-frame spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astropy.table import Table
from click.testing import CliRunner

from specvit.emulator import DopplerShift, Emulator
from specvit.inference.cli import EXIT_CODES, main
from tests.predict_helpers import observed_frame_model


@pytest.fixture(scope="module")
def observed_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("observed")
    observed_frame_model().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def npz_input(tmp_path_factory):
    labels = torch.tensor([[4300.0, 2.0, -0.7], [5100.0, 4.4, -0.2]])
    rv = torch.tensor([-210.0, 140.0])
    flux = DopplerShift(Emulator.load(), max_rv=600.0)(labels, rv).numpy()
    path = tmp_path_factory.mktemp("input") / "stars.npz"
    np.savez(path, flux=flux, error=0.03 * flux, RV=rv.numpy(), star=np.array([7, 8]))
    return path


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_velocities_measured_given_for_all_or_read_from_a_column(
    tmp_path, observed_model_dir, npz_input
):
    base = [npz_input, "--model", observed_model_dir, "--wave-col", "none", "--no-physics"]
    measured = _run(*base, "-o", tmp_path / "measured.ecsv")
    assert measured.exit_code == 0, measured.output
    table = Table.read(tmp_path / "measured.ecsv")
    assert np.abs(table["v_rad"] - [-210.0, 140.0]).max() < 5.0
    one = _run(*base, "--rv", "50", "-o", tmp_path / "one.ecsv")
    assert one.exit_code == 0, one.output
    np.testing.assert_array_equal(Table.read(tmp_path / "one.ecsv")["v_rad"], [50.0, 50.0])
    column = _run(*base, "--rv-col", "rv", "-o", tmp_path / "column.ecsv")  # any case
    assert column.exit_code == 0, column.output
    np.testing.assert_array_equal(Table.read(tmp_path / "column.ecsv")["v_rad"], [-210.0, 140.0])


def test_bad_velocity_options_are_refused(tmp_path, observed_model_dir, npz_input):
    base = [npz_input, "--wave-col", "none", "--no-physics", "-o", tmp_path / "out.ecsv"]
    both = _run(*base, "--model", observed_model_dir, "--rv", "1", "--rv-col", "RV")
    assert both.exit_code == EXIT_CODES["usage"] and "drop one" in both.output
    missing = _run(*base, "--model", observed_model_dir, "--rv-col", "vhelio")
    assert missing.exit_code == EXIT_CODES["input"]
    assert "no such per-spectrum column" in missing.output and "star" in missing.output
    fast = _run(*base, "--model", observed_model_dir, "--rv", "5000")
    assert fast.exit_code == EXIT_CODES["usage"]
    rest = _run(*base, "--model", "specvit-tiny-pfs", "--rv", "10")  # a rest-frame model
    assert rest.exit_code == EXIT_CODES["usage"] and "rest-frame" in rest.output
    assert not (tmp_path / "out.ecsv").exists()
