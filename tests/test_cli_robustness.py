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
from tests.predict_helpers import GRID, spectrum

SIGMA = 0.02


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "tiny"
    specvit.create_model("specvit_tiny", label_names=("log_g",), **GRID).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def predictor(model_dir) -> Predictor:
    return Predictor(str(model_dir), device="cpu")


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

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tables, "_link_no_clobber", signal_then_publish)
        result = CliRunner().invoke(main, [str(npz_input), "-o", str(out), "--model", model_dir])
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
    table = specvit.predict(flux, np.full_like(flux, 0.01), wavelength=etc, model=model)
    assert (table["flags"] == 0).all(), table["flags"]
    assert (table["n_valid"] == etc.size).all()
    short = etc[etc < 8000.0]  # a real gap still is flagged
    table = specvit.predict(flux[:, : short.size], wavelength=short, model=model)
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
