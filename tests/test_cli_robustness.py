"""specvit-predict against bad input: a clear early error, a documented exit code, nothing lost.

Each test is one case a new user or a hostile input hit (issue 12). The model is a fresh
``specvit_tiny`` on a 1024-pixel grid: these tests compare the CLI with a direct ``predict``
call and check errors, so the weights need not be trained.
"""

from __future__ import annotations

import os
import pickle
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

import specvit
from specvit.inference import Predictor
from specvit.inference.cli import EXIT_CODES, main
from specvit.inference.flags import PredictFlag
from specvit.io.columns import parse_unit, wavelength_in_angstrom
from tests.predict_helpers import GRID, spectrum

SIGMA = 0.02
# The fixture model is deliberately untrained: these tests check input handling (and compare the
# CLI with a direct predict call), not labels, so its UntrainedModelWarning is expected noise
# here. test_an_untrained_model_warns_in_one_line still checks the CLI's warning line (the CLI
# shows warnings itself, past this filter); tests/test_models.py asserts the Python warning.
pytestmark = pytest.mark.filterwarnings("ignore::specvit.UntrainedModelWarning")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "tiny"
    specvit.create_model("specvit_tiny", label_names=("log_g",), **GRID).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def predictor(model_dir) -> Predictor:
    """The Python API on the CLI's model (its grid is not the emulator's: physics off, which
    would only warn that the crlb_*, v_rad and chi2_* columns are left out)."""
    return Predictor(str(model_dir), device="cpu", physics=False)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def flux_on(wave: np.ndarray, n: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return spectrum(wave, np.linspace(1, 4, n)) + SIGMA * rng.standard_normal((n, wave.size))


def one_error_line(result, *names: str) -> str:
    """The CLI failed with one ``Error:`` line naming ``names`` and no traceback."""
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output and "Aborted!" not in result.output, result.output
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def summary(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("specvit-predict:")]
    assert len(lines) == 1, result.output
    return lines[0]


# ---------------------------------------------------------------------------- columns
def write_columns(path: Path, wave: np.ndarray, flux: np.ndarray, names: dict[str, str]) -> None:
    n, length = flux.shape
    cols = [
        fits.Column("objid", "K", array=np.arange(n)),
        fits.Column(names["flux"], f"{length}E", array=flux),
        fits.Column(names["error"], f"{length}E", array=np.full_like(flux, SIGMA)),
        fits.Column(names["wave"], f"{length}D", array=np.tile(wave, (n, 1))),
    ]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(path)


def test_aliases_resolve_columns_and_the_summary_names_them(tmp_path, model_dir, predictor):
    # wl / e_flux on a grid of the model's length but shifted: read as the model grid before.
    wave = predictor.wavelength + 30.0
    flux = flux_on(wave)
    path = tmp_path / "t.fits"
    write_columns(path, wave, flux, {"flux": "flux", "error": "e_flux", "wave": "wl"})
    out = tmp_path / "out.ecsv"
    result = invoke(path, "-o", out, "--model", model_dir)
    assert result.exit_code == 0, result.output
    direct = predictor.predict(flux, np.full_like(flux, SIGMA), wavelength=wave)
    table = Table.read(out)
    np.testing.assert_allclose(table["log_g"], direct["log_g"], atol=1e-5)
    assert list(table["flags"]) == list(direct["flags"])
    assert (table["flags"] & PredictFlag.PARTIAL_COVERAGE).all()  # the 30 Å shift is seen
    line = summary(result)
    assert "3 spectra from 1 file(s)" in line and "wavelength=wl" in line
    assert "error=e_flux (1σ)" in line and "PARTIAL_COVERAGE 3" in line


def test_unknown_columns_are_listed_not_guessed(tmp_path, model_dir, predictor):
    wave = predictor.wavelength + 30.0
    flux = flux_on(wave)
    path = tmp_path / "t.fits"
    write_columns(path, wave, flux, {"flux": "counts", "error": "noise_1s", "wave": "lam_vac"})
    new = tmp_path / "out.csv"
    result = invoke(path, "-o", new, "--model", model_dir)
    assert result.exit_code == EXIT_CODES["input"]
    line = one_error_line(result, "t.fits", "counts", "lam_vac", "--flux-col")
    assert "known names" in line
    result = invoke(path, "-o", new, "--model", model_dir, "--flux-col", "counts")
    assert result.exit_code == EXIT_CODES["input"]
    one_error_line(result, "lam_vac", "--wave-col")  # a pixel array could be the wavelength
    args = ["--flux-col", "COUNTS", "--wave-col", "lam_vac", "--error-col", "noise_1s"]
    result = invoke(path, "-o", new, "--model", model_dir, *args)
    assert result.exit_code == 0, result.output
    direct = predictor.predict(flux, np.full_like(flux, SIGMA), wavelength=wave)
    np.testing.assert_allclose(Table.read(new)["log_g"], direct["log_g"], atol=1e-5)
    result = invoke(path, "-o", tmp_path / "x.csv", "--model", model_dir, "--flux-col", "nope")
    assert result.exit_code == EXIT_CODES["input"]
    one_error_line(result, "nope", "counts")
    assert not (tmp_path / "x.csv").exists()


def test_own_columns_are_never_renamed(tmp_path, model_dir, predictor):
    path = tmp_path / "s.npz"
    flux = flux_on(predictor.wavelength)
    np.savez(path, flux=flux, index=np.array([7, 8, 9]), input=np.array(["a", "b", "c"]))
    out = tmp_path / "out.ecsv"
    result = invoke(path, "-o", out, "--model", model_dir)
    assert result.exit_code == 0, result.output
    table = Table.read(out)
    assert table.colnames[:2] == ["input", "index"]
    assert list(table["input"]) == [str(path)] * 3 and list(table["index"]) == [0, 1, 2]
    assert list(table["input_index"]) == [7, 8, 9] and list(table["input_input"]) == list("abc")
    assert not any(name.endswith(("_1", "_2")) for name in table.colnames), table.colnames


# ---------------------------------------------------------------------------- outputs
@pytest.fixture
def npz_input(tmp_path, predictor) -> Path:
    path = tmp_path / "s.npz"
    np.savez(path, flux=flux_on(predictor.wavelength, n=2))
    return path


def test_output_folder_checked_before_the_model_is_loaded(tmp_path, npz_input):
    missing = tmp_path / "nowhere" / "out.fits"
    # The model does not exist either: the output is checked first, so it is exit 6, not 5.
    result = invoke(npz_input, "-o", missing, "--model", tmp_path / "no-model")
    assert result.exit_code == EXIT_CODES["output"] == 6
    one_error_line(result, "no such folder", "nowhere")
    if sys.platform.startswith("linux"):  # /proc: a folder no one (not even root) writes in
        result = invoke(npz_input, "-o", "/proc/out.csv", "--model", tmp_path / "no-model")
        assert result.exit_code == EXIT_CODES["output"]
        one_error_line(result, "not writable")
    result = invoke(npz_input, "-o", tmp_path, "--model", tmp_path / "no-model")
    assert result.exit_code in (EXIT_CODES["usage"], EXIT_CODES["output"])


def test_the_input_is_never_the_output(tmp_path, model_dir, predictor):
    path = tmp_path / "t.fits"
    fits.PrimaryHDU(flux_on(predictor.wavelength).astype(np.float32)).writeto(path)
    before = path.read_bytes()
    for target in (path, tmp_path / "." / "t.fits"):
        result = invoke(path, "-o", target, "--model", model_dir, "--overwrite")
        assert result.exit_code == EXIT_CODES["output"]
        one_error_line(result, "input file")
    link = tmp_path / "link.fits"
    link.symlink_to(path)
    result = invoke(path, "-o", link, "--model", model_dir, "--overwrite")
    assert result.exit_code == EXIT_CODES["output"]
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.fits", "t.fits"]


def test_non_ascii_names_and_ids_survive_a_fits_output(tmp_path, model_dir, predictor):
    path = tmp_path / "étoile.npz"
    np.savez(path, flux=flux_on(predictor.wavelength, n=2), name=np.array(["Vega", "Bételgeuse"]))
    out = tmp_path / "out.fits"
    result = invoke(path, "-o", out, "--model", model_dir)
    assert result.exit_code == 0, result.output
    raw = fits.getdata(out)
    assert raw["input"][0].decode("utf-8") == str(path)
    assert [v.decode("utf-8") for v in raw["name"]] == ["Vega", "Bételgeuse"]


@pytest.mark.parametrize("suffix", [".fits", ".csv", ".ecsv"])
def test_output_modes_follow_the_umask(tmp_path, model_dir, npz_input, suffix):
    old = os.umask(0o022)
    try:
        out = tmp_path / f"out{suffix}"
        assert invoke(npz_input, "-o", out, "--model", model_dir).exit_code == 0
        os.umask(0o027)
        assert invoke(npz_input, "-o", out, "--model", model_dir, "--overwrite").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    plain = tmp_path / "plain"
    os.umask(0o027)
    try:
        plain.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(plain.stat().st_mode) == stat.S_IMODE(out.stat().st_mode)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_final_write_leaves_nothing(tmp_path, model_dir, npz_input, signum):
    from specvit.io import tables

    out = tmp_path / "out.fits"
    publish = tables._link_no_clobber

    def signal_then_publish(tmp, path):
        assert Path(tmp).stat().st_size > 0  # the hidden temporary file is written …
        os.kill(os.getpid(), signum)  # … when Slurm's SIGTERM (or Ctrl-C) arrives
        publish(tmp, path)

    # Ctrl-C as in a terminal: a background job of a non-interactive shell (a CI script's
    # `cmd &`) starts with SIGINT ignored, where Python raises no KeyboardInterrupt
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(tables, "_link_no_clobber", signal_then_publish)
            args = [str(npz_input), "-o", str(out), "--model", model_dir]
            result = CliRunner().invoke(main, args)
    finally:
        signal.signal(signal.SIGINT, previous)
    expected = "terminated" if signum == signal.SIGTERM else "interrupted"
    assert result.exit_code == EXIT_CODES[expected], result.output
    assert "no output written" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]


# ---------------------------------------------------------------------------- model loading
def _broken_models(tmp_path: Path, model_dir: Path) -> dict[str, Path]:
    import shutil

    def variant(name: str, file: str, data: bytes) -> Path:
        folder = tmp_path / name
        shutil.copytree(model_dir, folder)
        (folder / file).write_bytes(data)
        return folder

    weights = (model_dir / "model.safetensors").read_bytes()
    return {
        "truncated": variant("truncated", "model.safetensors", weights[: len(weights) // 2]),
        "corrupted": variant("corrupted", "model.safetensors", b"\xff" * 8 + weights[8:]),
        "pickle": variant("pickle", "model.safetensors", pickle.dumps({"w": [1.0]})),
        "list config": variant("list-config", "config.json", b"[1, 2, 3]"),
        "bad json": variant("bad-json", "config.json", b"{oops"),
    }


def test_model_load_failures_exit_5_naming_the_file(tmp_path, model_dir, npz_input):
    for what, folder in _broken_models(tmp_path, model_dir).items():
        out = tmp_path / "out.csv"
        result = invoke(npz_input, "-o", out, "--model", folder)
        assert result.exit_code == EXIT_CODES["model"], (what, result.output)
        name = "config.json" if "config" in what or "json" in what else "model.safetensors"
        one_error_line(result, str(folder), name)
        assert not out.exists()


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks a CPU-only machine's error"
)
def test_cuda_on_a_cpu_only_torch_is_a_usage_error(tmp_path, model_dir, npz_input):
    result = invoke(npz_input, "-o", tmp_path / "o.csv", "--model", model_dir, "--device", "cuda")
    assert result.exit_code == EXIT_CODES["usage"]
    assert "cuda" in result.output and "Traceback" not in result.output
    with pytest.raises(ValueError, match="use device 'cpu'"):
        Predictor(model_dir, device="cuda:0")


def test_a_local_looking_model_path_is_not_tried_on_the_hub(tmp_path, npz_input, monkeypatch):
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was contacted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for typo in ("models/tiny-typo", "./tiny", "models/a/b", "tiny"):
        result = invoke(npz_input, "-o", tmp_path / "o.csv", "--model", typo)
        assert result.exit_code == EXIT_CODES["model"], result.output
        one_error_line(result, "no such folder", typo)


# ---------------------------------------------------------------------------- readers
def _npz_cases(tmp_path: Path, good: bytes) -> dict[str, Path]:
    cases = {}

    def case(name: str, data: bytes) -> None:
        cases[name] = tmp_path / f"{name}.npz"
        cases[name].write_bytes(data)

    case("empty", b"")
    case("truncated", good[: len(good) // 2])
    flipped = bytearray(good)
    with zipfile.ZipFile(tmp_path / "ok.npz") as z:
        info = z.getinfo("flux.npy")
    flipped[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # inside the data
    case("bad-crc", bytes(flipped))
    np.savez(tmp_path / "objects.npz", flux=np.array([{"a": 1}], dtype=object))
    cases["objects"] = tmp_path / "objects.npz"
    np.save(tmp_path / "plain.npy", np.ones(3))
    case("npy-renamed", (tmp_path / "plain.npy").read_bytes())
    return cases


def test_bad_npz_files_exit_3_naming_the_file(tmp_path, model_dir, predictor):
    np.savez(tmp_path / "ok.npz", flux=flux_on(predictor.wavelength, n=2))
    for what, path in _npz_cases(tmp_path, (tmp_path / "ok.npz").read_bytes()).items():
        result = invoke(path, "-o", tmp_path / "o.csv", "--model", model_dir)
        assert result.exit_code == EXIT_CODES["input"], (what, result.output)
        one_error_line(result, str(path))
    assert not (tmp_path / "o.csv").exists()


def test_truncated_fits_exits_3(tmp_path, model_dir, predictor):
    good = tmp_path / "good.fits"
    fits.PrimaryHDU(flux_on(predictor.wavelength, n=50).astype(np.float32)).writeto(good)
    for cut in (100, 2880 + 5000):
        bad = tmp_path / f"cut{cut}.fits"
        bad.write_bytes(good.read_bytes()[:cut])
        result = invoke(bad, "-o", tmp_path / "o.csv", "--model", model_dir)
        assert result.exit_code == EXIT_CODES["input"], result.output
        one_error_line(result, str(bad))


# ---------------------------------------------------------------------------- values
def test_float32_overflow_is_invalid_not_silently_inf(predictor):
    wave = predictor.wavelength
    flux = flux_on(wave, n=1)[0]
    huge = flux.copy()
    huge[::2] = 1e39  # finite in float64, inf in float32: the model's dtype
    table = predictor.predict(np.stack([flux, huge]), np.full((2, wave.size), SIGMA))
    assert table["n_valid"][0] == wave.size
    assert table["n_valid"][1] == wave.size // 2
    tiny_sigma = np.full(wave.size, SIGMA)
    tiny_sigma[: wave.size // 4] = 1e-50  # > 0 in float64, 0 in float32
    table = predictor.predict(flux, tiny_sigma)
    assert table["n_valid"][0] == wave.size - wave.size // 4


def test_the_etc_mr_wavelengths_are_full_coverage(etc_dir):
    """The ETC prints the MR grid to 10⁻⁴ nm: ≤ 0.001 Å (0.2 % of a pixel) off the model's."""
    rows = np.loadtxt(etc_dir / "noise_mr.dat")
    etc = rows[rows[:, 0] == 3][:, 2] * 10.0
    model = specvit.create_model("specvit_tiny", label_names=("log_g",))
    assert np.abs(etc - model.wavelength).max() < 2e-3
    flux = 1.0 + 0.01 * np.random.default_rng(0).standard_normal((2, etc.size))
    # physics off: a log_g-only model gets no emulator fit (it needs T_eff, log_g and M_H)
    table = specvit.predict(
        flux, np.full_like(flux, 0.01), wavelength=etc, model=model, physics=False
    )
    assert (table["flags"] == 0).all(), table["flags"]
    assert (table["n_valid"] == etc.size).all()
    short = etc[etc < 8000.0]  # a real gap still is flagged
    table = specvit.predict(flux[:, : short.size], wavelength=short, model=model, physics=False)
    assert (table["flags"] & PredictFlag.PARTIAL_COVERAGE).all()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/maps")
def test_sigterm_from_outside_stops_cleanly(tmp_path, model_dir, predictor):
    big = tmp_path / "big.fits"
    fits.PrimaryHDU(flux_on(predictor.wavelength, n=3000).astype(np.float32)).writeto(big)
    out = tmp_path / "out.fits"
    cmd = [sys.executable, "-m", "specvit.inference.cli", str(big), "-o", str(out)]
    cmd += ["--model", str(model_dir), "--batch-size", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    maps, deadline = Path(f"/proc/{proc.pid}/maps"), time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:  # predicting has started
        if str(big) in maps.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_CODES["terminated"] == 143, err
    assert "terminated (SIGTERM): no output written" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.fits"]


def test_one_pixel_per_spectrum_grids_are_a_clear_error(predictor):
    """Found by the hypothesis tests: an (N, 1) wavelength grid was an IndexError."""
    for wave in (np.array([[7600.0]]), np.array([7600.0])):
        with pytest.raises(ValueError, match="at least 2 pixels"):
            predictor.predict(np.ones((1, 1)), wavelength=wave)


# ---------------------------------------------------------------------------- issue 26
def run_ok(tmp_path: Path, model_dir: Path, *args) -> Table:
    out = tmp_path / "issue26.ecsv"
    result = invoke(*args, "-o", out, "--model", model_dir, "--overwrite")
    assert result.exit_code == 0, result.output
    return Table.read(out)


def wcs_header(wave: np.ndarray, **cards) -> fits.Header:
    return fits.Header({"CRVAL1": wave[0], "CDELT1": wave[1] - wave[0], "CRPIX1": 1.0, **cards})


def test_a_flux_bunit_per_wavelength_is_converted_to_f_nu(tmp_path, model_dir, predictor):
    from astropy import units as u

    wave = predictor.wavelength
    fnu, err = flux_on(wave) * 1e3, np.full((3, wave.size), SIGMA * 1e3)
    flam = 1e-17 * u.erg / (u.s * u.cm**2 * u.AA)
    density = u.spectral_density(wave * u.AA)
    f32, e32 = ((a * u.nJy).to_value(flam, density).astype(np.float32) for a in (fnu, err))
    header = wcs_header(wave, BUNIT="1e-17 erg/(s cm2 Angstrom)")
    path = tmp_path / "flam.fits"
    hdus = [fits.PrimaryHDU(f32, header=header), fits.ImageHDU(e32, name="ERROR")]
    fits.HDUList(hdus).writeto(path)
    table = run_ok(tmp_path, model_dir, path)
    direct = predictor.predict(f32 * flam, e32 * flam, wavelength=wave)
    np.testing.assert_allclose(table["log_g"], direct["log_g"], atol=1e-6)
    as_fnu = predictor.predict(fnu, err, wavelength=wave)
    np.testing.assert_allclose(table["log_g"], as_fnu["log_g"], atol=1e-4)
    np.testing.assert_allclose(table["snr"], as_fnu["snr"], rtol=1e-5)
    # SDSS-style 'A' for Ångström (astropy reads it as ampere), in a table's TUNIT
    cols = [
        fits.Column("flux", f"{wave.size}E", unit="1e-17 erg/s/cm2/A", array=f32),
        fits.Column("ivar", f"{wave.size}E", array=e32**-2.0),
        fits.Column("wave", f"{wave.size}D", unit="Angstrom", array=np.tile(wave, (3, 1))),
    ]
    path = tmp_path / "flam-table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(path)
    table = run_ok(tmp_path, model_dir, path)
    np.testing.assert_allclose(table["log_g"], direct["log_g"], atol=1e-5)


def test_cd1_1_wins_over_cdelt1(tmp_path):
    from specvit.io.readers import open_spectra

    header = fits.Header({"CRVAL1": 7500.0, "CRPIX1": 1.0, "CD1_1": 0.5, "CDELT1": 1.0})
    fits.PrimaryHDU(np.ones((2, 20), np.float32), header=header).writeto(tmp_path / "cd.fits")
    with open_spectra(tmp_path / "cd.fits") as spectra:
        np.testing.assert_allclose(spectra.wavelength, 7500.0 + 0.5 * np.arange(20))


def test_iraf_linear_and_fits_log_wcs(tmp_path):
    from specvit.io.readers import open_spectra

    flux = np.ones((2, 20), np.float32)
    linear = fits.Header({"CTYPE1": "LINEAR", "CRVAL1": 7500.0, "CRPIX1": 1.0, "CDELT1": 0.5})
    fits.PrimaryHDU(flux, header=linear).writeto(tmp_path / "iraf.fits")
    with open_spectra(tmp_path / "iraf.fits") as spectra:  # IRAF's LINEAR: Å
        np.testing.assert_allclose(spectra.wavelength, 7500.0 + 0.5 * np.arange(20))
    # FITS paper III: WAVE-LOG is λ = CRVAL1 exp(CDELT1 (p − CRPIX1) / CRVAL1)
    log = fits.Header(
        {"CTYPE1": "WAVE-LOG", "CUNIT1": "nm", "CRVAL1": 750.0, "CRPIX1": 3.0, "CDELT1": 0.05}
    )
    fits.PrimaryHDU(flux, header=log).writeto(tmp_path / "log.fits")
    with open_spectra(tmp_path / "log.fits") as spectra:
        expected = 7500.0 * np.exp(0.05 * (np.arange(20) + 1.0 - 3.0) / 750.0)
        np.testing.assert_allclose(spectra.wavelength, expected, rtol=1e-12)
    freq = fits.Header({"CTYPE1": "FREQ", "CRVAL1": 4e14, "CRPIX1": 1.0, "CDELT1": 1e10})
    fits.PrimaryHDU(flux, header=freq).writeto(tmp_path / "freq.fits")
    with pytest.raises(ValueError, match=r"CTYPE1 = 'FREQ'.*--wave-col"):
        open_spectra(tmp_path / "freq.fits").__enter__()


def test_scaled_and_blank_images_are_read(tmp_path, model_dir, predictor):
    wave = predictor.wavelength
    flux = flux_on(wave)
    bzero, bscale = 1.0, 1e-4
    raw = np.round((flux - bzero) / bscale).astype(np.int16)
    raw[:, 100:110] = -32768
    scaled = fits.PrimaryHDU(raw, header=wcs_header(wave))
    scaled.header.update(BSCALE=bscale, BZERO=bzero, BLANK=-32768)
    counts = np.round(flux * 20000).astype(np.uint16)  # uint16: BZERO = 32768
    error = fits.ImageHDU(np.full(flux.shape, SIGMA, np.float32), name="ERROR")
    fits.HDUList([scaled, error]).writeto(tmp_path / "scaled.fits")
    fits.HDUList([fits.PrimaryHDU(counts, header=wcs_header(wave))]).writeto(tmp_path / "u16.fits")
    table = run_ok(tmp_path, model_dir, tmp_path / "scaled.fits")
    values = raw * bscale + bzero
    blank = raw == -32768
    direct = predictor.predict(values, np.full(flux.shape, SIGMA), wavelength=wave, mask=blank)
    assert list(table["n_valid"]) == [wave.size - 10] * 3
    np.testing.assert_allclose(table["log_g"], direct["log_g"], atol=1e-5)
    table = run_ok(tmp_path, model_dir, tmp_path / "u16.fits")
    direct = predictor.predict(counts.astype(float), wavelength=wave)
    np.testing.assert_allclose(table["log_g"], direct["log_g"], atol=1e-5)


def test_the_flux_hdu_is_never_guessed(tmp_path, model_dir, predictor):
    wave = predictor.wavelength
    flux = flux_on(wave)
    sky = np.full_like(flux, 5.0, dtype=np.float32)
    hdus = [
        fits.PrimaryHDU(),
        fits.ImageHDU(sky, name="SKY"),
        fits.ImageHDU(flux.astype(np.float32), name="SCI"),
        fits.ImageHDU(np.full_like(sky, SIGMA), name="ERR"),
        fits.ImageHDU(wave, name="WAVE"),
    ]
    fits.HDUList(hdus).writeto(tmp_path / "sci.fits")
    result = invoke(tmp_path / "sci.fits", "-o", tmp_path / "o.csv", "--model", model_dir)
    assert result.exit_code == EXIT_CODES["input"], result.output
    one_error_line(result, "sci.fits", "SCI", "SKY", "--flux-col")
    table = run_ok(tmp_path, model_dir, tmp_path / "sci.fits", "--flux-col", "sci")
    direct = predictor.predict(flux, np.full_like(flux, SIGMA), wavelength=wave)
    np.testing.assert_allclose(table["log_g"], direct["log_g"], atol=1e-5)
    # an unnamed primary image beside a table with a FLUX column: the named column wins
    cols = [
        fits.Column("FLUX", f"{wave.size}E", array=flux),
        fits.Column("WAVE", f"{wave.size}D", array=np.tile(wave, (3, 1))),
    ]
    both = [fits.PrimaryHDU(sky, header=wcs_header(wave)), fits.BinTableHDU.from_columns(cols)]
    fits.HDUList(both).writeto(tmp_path / "both.fits")
    table = run_ok(tmp_path, model_dir, tmp_path / "both.fits")
    direct = predictor.predict(flux, wavelength=wave)
    np.testing.assert_allclose(table["log_g"], direct["log_g"], atol=1e-5)


def test_npz_loglam_is_log10_angstrom(tmp_path, model_dir, predictor):
    from specvit.io.readers import open_spectra

    wave = np.linspace(7480.0, 7960.0, 1500)
    flux = flux_on(wave)
    np.savez(tmp_path / "loglam.npz", flux=flux, loglam=np.log10(wave))
    with open_spectra(tmp_path / "loglam.npz") as spectra:
        np.testing.assert_allclose(spectra.wavelength, wave, rtol=1e-12)
    table = run_ok(tmp_path, model_dir, tmp_path / "loglam.npz")
    direct = predictor.predict(flux, wavelength=wave)
    np.testing.assert_allclose(table["log_g"], direct["log_g"], atol=1e-5)


@pytest.mark.timeout(60)
def test_inputs_must_be_regular_files(tmp_path, model_dir):
    zero = tmp_path / "zero.fits"
    zero.symlink_to("/dev/zero")
    result = invoke(zero, "-o", tmp_path / "o.csv", "--model", model_dir)
    assert result.exit_code == EXIT_CODES["input"], result.output
    one_error_line(result, "zero.fits", "not a regular file")


def test_variable_length_table_columns_outside_pfs_files(tmp_path, model_dir, predictor):
    wave = predictor.wavelength
    flux = flux_on(wave)
    lengths = [wave.size, wave.size - 200, wave.size]  # spectra of different lengths
    cols = [
        fits.Column("objid", "K", array=np.array([7, 8, 9])),
        fits.Column("flux", "PE()", array=[f[:n] for f, n in zip(flux, lengths, strict=True)]),
        fits.Column("wave", "PD()", array=[wave[:n] for n in lengths]),
    ]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(
        tmp_path / "vla.fits"
    )
    table = run_ok(tmp_path, model_dir, tmp_path / "vla.fits")
    assert list(table["objid"]) == [7, 8, 9]
    for i, n in enumerate(lengths):
        direct = predictor.predict(flux[i, :n].astype(np.float32), wavelength=wave[:n])
        np.testing.assert_allclose(table["log_g"][i], direct["log_g"][0], atol=1e-5)
        assert table["n_valid"][i] == direct["n_valid"][0]


# ---------------------------------------------------------------------------- issue 26
PFS_COADD = Path(__file__).resolve().parent / "data" / "pfs" / "pfsCoadd-10092-007.fits.gz"


def _no_prediction(monkeypatch) -> None:
    """Fail the test if the spectra are predicted: the error must come before the work."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("the spectra were predicted before the error")

    monkeypatch.setattr(Predictor, "predict_spectra", refuse)


def test_a_legal_long_output_name_is_written(tmp_path, model_dir, npz_input):
    """254 bytes is a legal name; the hidden temporary file must fit NAME_MAX too."""
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    out = tmp_path / ("x" * (name_max - 1 - len(".csv")) + ".csv")
    result = invoke(npz_input, "-o", out, "--model", model_dir)
    assert result.exit_code == 0, result.output
    assert len(Table.read(out)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, "s.npz"])


def test_a_too_long_output_name_fails_before_the_work(tmp_path, model_dir, npz_input, monkeypatch):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    _no_prediction(monkeypatch)
    result = invoke(npz_input, "-o", tmp_path / ("x" * name_max + ".csv"), "--model", model_dir)
    assert result.exit_code == EXIT_CODES["output"]
    one_error_line(result, "name too long")


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_dangling_symlink_output_fails_before_the_work(
    tmp_path, model_dir, npz_input, monkeypatch, overwrite
):
    link = tmp_path / "out.fits"
    link.symlink_to(tmp_path / "gone" / "target.fits")
    _no_prediction(monkeypatch)
    result = invoke(npz_input, "-o", link, "--model", model_dir, *overwrite)
    assert result.exit_code == EXIT_CODES["output"], result.output
    one_error_line(result, "dangling symbolic link", "gone")
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["out.fits", "s.npz"]


@pytest.mark.parametrize("device", ["meta", "xla", "cpu:0:1"])
def test_an_unusable_device_is_a_usage_error_before_reading(
    tmp_path, model_dir, npz_input, monkeypatch, device
):
    from specvit.io import readers

    def no_reading(*args, **kwargs):
        raise AssertionError("the spectra were read before the device was checked")

    monkeypatch.setattr("specvit.inference.cli.open_spectra", no_reading)
    monkeypatch.setattr(readers, "open_spectra", no_reading)
    result = invoke(npz_input, "-o", tmp_path / "o.csv", "--model", model_dir, "--device", device)
    assert result.exit_code == EXIT_CODES["usage"] == 2, result.output
    assert device in result.output and "Traceback" not in result.output
    with pytest.raises(ValueError, match=f"device '{device}'"):
        Predictor(model_dir, device=device)


def test_error_kind_that_would_be_ignored_is_refused(tmp_path, model_dir, npz_input, monkeypatch):
    _no_prediction(monkeypatch)
    out = tmp_path / "o.csv"
    args = ["--error-col", "none", "--error-kind", "ivar"]
    result = invoke(npz_input, "-o", out, "--model", model_dir, *args)
    assert result.exit_code == EXIT_CODES["usage"], result.output
    assert "--error-kind" in result.output and "--error-col none" in result.output
    # A PFS file holds its variance in COVAR: --error-kind std would be silently ignored.
    result = invoke(PFS_COADD, "-o", out, "--error-kind", "std")
    assert result.exit_code == EXIT_CODES["usage"], result.output
    one_error_line(result, "--error-kind std", PFS_COADD.name, "σ²")
    assert not out.exists()


def test_an_empty_model_name_is_refused(tmp_path, npz_input, monkeypatch):
    specvit.create_model("specvit_tiny").save_pretrained(tmp_path / "cwd")
    monkeypatch.chdir(tmp_path / "cwd")  # "" used to load the model in the current folder
    result = invoke(npz_input, "-o", tmp_path / "o.csv", "--model", "")
    assert result.exit_code == EXIT_CODES["model"], result.output
    one_error_line(result, "empty model name")


def test_precision_option_reaches_the_predictor(tmp_path, model_dir, npz_input, monkeypatch):
    seen = []
    real_init = Predictor.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("precision"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "__init__", spy)
    out = tmp_path / "o.csv"
    result = invoke(npz_input, "-o", out, "--model", model_dir, "--precision", "bf16")
    assert result.exit_code == 0, result.output
    assert seen == ["bf16"]
    result = invoke(npz_input, "-o", tmp_path / "p.csv", "--model", model_dir, "--precision", "fp8")
    assert result.exit_code == EXIT_CODES["usage"]


def test_list_models_names_the_bundled_models_without_inputs():
    result = CliRunner().invoke(main, ["--list-models"])
    assert result.exit_code == 0, result.output
    assert "specvit-tiny-pfs" in result.output and "(default)" in result.output
    assert "T_eff, log_g, M_H" in result.output


def test_python_dash_m_specvit_runs_both_commands(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for args, expected in (
        (["--version"], specvit.__version__),
        (["predict", "--list-models"], "specvit-tiny-pfs"),
        (["bounds", "--version"], specvit.__version__),
        (["--help"], "specvit-predict"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "specvit", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert done.returncode == 0, (args, done.stderr)
        assert expected in done.stdout, (args, done.stdout)


def test_specvit_bounds_has_a_version():
    from specvit.bounds.cli import main as bounds

    result = CliRunner().invoke(bounds, ["--version"])
    assert result.exit_code == 0 and specvit.__version__ in result.output, result.output


def test_an_untrained_model_warns_in_one_line(tmp_path, model_dir, npz_input):
    result = invoke(npz_input, "-o", tmp_path / "o.csv", "--model", model_dir)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "untrained weights" in line]
    assert len(lines) == 1 and lines[0].startswith("Warning: "), result.output


def test_wavelength_units_bad_and_good():
    # A TUNIT / BUNIT that is no length, or that astropy cannot read, is refused, not taken as Å.
    with pytest.raises(ValueError, match=r"'Jy' is not a length"):
        wavelength_in_angstrom([7500.0], "Jy")
    with pytest.raises(ValueError, match=r"'furlong-ish' is not understood"):
        wavelength_in_angstrom([7500.0], "furlong-ish")
    assert wavelength_in_angstrom([750.0], "nm") == pytest.approx([7500.0])
    assert wavelength_in_angstrom([np.log10(7500.0)], "Jy", "LogLam") == pytest.approx([7500.0])
    assert wavelength_in_angstrom([7500.0], "  ") == pytest.approx([7500.0])  # blank: Å
    # "A" in a flux unit is Ångström (erg/s/cm2/A), not ampere; unknown units are plain numbers.
    assert parse_unit("erg/s/cm2/A").is_equivalent(parse_unit("erg/(s cm2 Angstrom)"))
    assert parse_unit("ADU") is None and parse_unit("") is None
