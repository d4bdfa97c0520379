"""specvit-predict: real FITS / NPZ files written here, click's CliRunner, exit codes, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

from specvit.inference import Predictor
from specvit.inference.cli import EXIT_CODES, main
from tests.predict_helpers import save_trained_model, spectrum

SIGMA = 0.02


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_trained_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def predictor(model_dir) -> Predictor:
    """The Python API on the CLI's model, to compare labels with (the test model's grid is not
    the emulator's: no physics columns, which would only warn)."""
    return Predictor(str(model_dir), device="cpu", physics=False)


def noisy(wave: np.ndarray, log_g: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return spectrum(wave, log_g) + SIGMA * rng.standard_normal((len(log_g), wave.size))


def write_pfs_object(path: Path, log_g: float, obj_id: int) -> tuple[np.ndarray, ...]:
    """A pfsObject file laid out as the PFS datamodel writes one (wavelength in a nm WCS)."""
    length, lo, hi = 900, 745.0, 799.0  # nm, vacuum
    wave_nm = np.linspace(lo, hi, length)
    flux = noisy(wave_nm * 10, np.array([log_g]), obj_id)[0] * 3631e9 * 1e-8  # nJy
    var = (SIGMA * 3631e9 * 1e-8) ** 2 * np.ones(length)
    mask = np.zeros(length, np.int32)
    mask[100:110] = 2
    header = fits.Header()
    header["CTYPE1"] = "WAVE"
    header["CUNIT1"] = "nm"
    header["CRVAL1"] = 0.5 * (lo + hi)
    header["CRPIX1"] = 0.5 * length + 1.5  # the datamodel's WavelengthArray convention
    header["CDELT1"] = (hi - lo) / (length - 1)
    header["DAMD_VER"] = 2
    target = fits.BinTableHDU.from_columns(
        [
            fits.Column("filterName", "1A", array=["i"]),
            fits.Column("fiberFlux", "E", array=[1.0]),
        ],
        name="TARGET",
    )
    for key, value in {"CATID": 90006, "TRACT": 1, "PATCH": "1,1", "OBJID": obj_id}.items():
        target.header[key] = value
    covar = np.stack([var, 0.1 * var, 0.1 * var]).astype(np.float32)
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(flux.astype(np.float32), header=header, name="FLUX"),
            fits.ImageHDU(mask, header=header, name="MASK"),
            target,
            fits.ImageHDU(np.zeros(length, np.float32), header=header, name="SKY"),
            fits.ImageHDU(covar, header=header, name="COVAR"),
            fits.ImageHDU(np.zeros((10, 10), np.float32), name="COVAR2"),
        ]
    ).writeto(path)
    return wave_nm * 10, flux, np.sqrt(var), mask


def write_table_fits(path: Path, wave: np.ndarray, flux: np.ndarray, ids: np.ndarray) -> None:
    cols = [
        fits.Column("objid", "K", array=ids),
        fits.Column("FLUX", f"{wave.size}E", array=flux),
        fits.Column("IVAR", f"{wave.size}E", array=np.full_like(flux, SIGMA**-2)),
        fits.Column("WAVELENGTH", f"{wave.size}D", array=np.tile(wave / 10, (len(ids), 1))),
    ]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.columns["WAVELENGTH"].unit = "nm"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)


def write_image_fits(path: Path, wave: np.ndarray, flux: np.ndarray) -> None:
    header = fits.Header({"CRVAL1": wave[0], "CDELT1": wave[1] - wave[0], "CRPIX1": 1.0})
    fits.HDUList(
        [
            fits.PrimaryHDU(flux.astype(np.float32), header=header),
            fits.ImageHDU(np.full_like(flux, SIGMA, dtype=np.float32), name="ERROR"),
        ]
    ).writeto(path)


def write_shard(path: Path, wave: np.ndarray, flux: np.ndarray, log_g: np.ndarray) -> None:
    """An HDF5 shard in the layout documented in specvit.io.hdf5, written with h5py."""
    import h5py

    n = len(log_g)
    dtype = np.dtype([(k, "f4") for k in ("T_eff", "log_g", "M_H", "mag", "snr")])
    labels = np.zeros(n, dtype)
    labels["T_eff"], labels["log_g"], labels["mag"], labels["snr"] = 5000.0, log_g, 21.0, 50.0
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["format_version"], f.attrs["n_spectra"] = "specvit-shard", 1, n
        f.create_dataset("flux", data=flux.astype(np.float32), chunks=(4, wave.size))
        f.create_dataset("error", data=np.full((n, wave.size), SIGMA, np.float32))
        f.create_dataset("wavelength", data=wave).attrs["medium"] = "vacuum"
        f.create_dataset("labels", data=labels)


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_fits_and_npz_inputs(tmp_path, model_dir, predictor):
    log_g = np.array([0.5, 2.0, 3.5, 4.5])
    pfs = [tmp_path / f"pfsObject-{i}.fits" for i in range(2)]
    pfs_data = [write_pfs_object(p, 1.0 + 3.0 * i, 100 + i) for i, p in enumerate(pfs)]
    wave = np.linspace(7480.0, 7960.0, 1500)
    table_file, image_file, npz_file = (tmp_path / n for n in ("t.fits", "i.fits", "s.npz"))
    write_table_fits(table_file, wave, noisy(wave, log_g, 1), np.array([11, 12, 13, 14]))
    write_image_fits(image_file, wave, noisy(wave, log_g, 2))
    np.savez(npz_file, flux=noisy(predictor.wavelength, log_g, 3), id=np.array([7, 8, 9, 10]))
    out = tmp_path / "out.ecsv"
    result = invoke(*pfs, table_file, image_file, npz_file, "-o", out, "--model", model_dir)
    assert result.exit_code == 0, result.output
    table = Table.read(out)
    assert len(table) == 2 + 3 * 4
    assert list(table["input"][:3]) == [str(pfs[0]), str(pfs[1]), str(table_file)]
    assert list(table["index"][2:6]) == [0, 1, 2, 3]
    assert list(table["objId"][:2]) == [100, 101] and list(table["catId"][:2]) == [90006] * 2
    assert list(table["objid"][2:6]) == [11, 12, 13, 14]
    assert list(table["id"][-4:]) == [7, 8, 9, 10]
    assert np.all(table["flags"] == 0), table["flags"]
    assert table.meta["model"] == str(model_dir)
    # The same numbers as the Python API on the same arrays.
    wave_pfs, flux_pfs, err_pfs, mask_pfs = pfs_data[0]
    direct = predictor.predict(flux_pfs, err_pfs, wavelength=wave_pfs, mask=mask_pfs)
    np.testing.assert_allclose(table["log_g"][0], direct["log_g"][0], atol=1e-5)
    assert table["n_valid"][0] == direct["n_valid"][0]
    for start in (2, 6, 10):
        got = np.asarray(table["log_g"][start : start + 4])
        assert np.corrcoef(got, log_g)[0, 1] > 0.9, got


def test_hdf5_shard_input_keeps_its_labels(tmp_path, model_dir, predictor):
    log_g = np.linspace(0.5, 4.5, 11)
    shard = tmp_path / "shard.h5"
    write_shard(shard, predictor.wavelength, noisy(predictor.wavelength, log_g, 7), log_g)
    out = tmp_path / "out.fits"
    result = invoke(shard, "-o", out, "--model", model_dir, "--batch-size", "4")
    assert result.exit_code == 0, result.output
    table = Table.read(out)
    assert list(table["index"]) == list(range(11))
    np.testing.assert_allclose(table["input_log_g"], log_g, rtol=1e-6)  # the shard's truth
    assert "T_eff" in table.colnames and "input_snr" in table.colnames
    assert np.corrcoef(table["log_g"], log_g)[0, 1] > 0.9
    with h5py_file(shard) as f:
        direct = predictor.predict(f["flux"][()], f["error"][()])
    np.testing.assert_allclose(table["log_g"], direct["log_g"], atol=1e-5)


def h5py_file(path: Path):
    import h5py

    return h5py.File(path, "r")


def test_pfs_wavelengths_follow_the_datamodel_convention(tmp_path):
    from specvit.io.fits import open_fits

    wave, *_ = write_pfs_object(tmp_path / "p.fits", 2.0, 1)
    with open_fits(tmp_path / "p.fits") as spectra:
        np.testing.assert_allclose(spectra.wavelength, wave, rtol=1e-12)
        assert spectra.uncertainty == "var" and spectra.mask.shape == (1, 900)


def test_shards_partition_the_rows(tmp_path, model_dir, predictor):
    log_g = np.linspace(0.5, 4.5, 9)
    npz_file = tmp_path / "s.npz"
    np.savez(npz_file, flux=noisy(predictor.wavelength, log_g, 4))
    outs = []
    for i in range(3):
        outs.append(tmp_path / f"part{i}.fits")
        result = invoke(npz_file, "-o", outs[-1], "--model", model_dir, "--shard", f"{i}/3")
        assert result.exit_code == 0, result.output
    full = tmp_path / "full.fits"
    assert invoke(npz_file, "-o", full, "--model", model_dir).exit_code == 0
    assert Table.read(full).meta["UNIT_LOG_G"] == "dex"  # FITS has no TUNIT for dex
    parts = [Table.read(p) for p in outs]
    assert [len(p) for p in parts] == [3, 3, 3]
    np.testing.assert_array_equal(np.concatenate([p["index"] for p in parts]), np.arange(9))
    np.testing.assert_allclose(
        np.concatenate([p["log_g"] for p in parts]), Table.read(full)["log_g"], atol=1e-6
    )


def test_exit_codes(tmp_path, model_dir, predictor):
    npz_file = tmp_path / "s.npz"
    np.savez(npz_file, flux=noisy(predictor.wavelength, np.array([2.0]), 5))
    out = tmp_path / "out.csv"
    out.write_text("keep me\n")
    result = invoke(npz_file, "-o", out, "--model", model_dir)
    assert result.exit_code == EXIT_CODES["output_exists"] == 4
    assert out.read_text() == "keep me\n"
    assert invoke(npz_file, "-o", out, "--model", model_dir, "--overwrite").exit_code == 0
    assert len(Table.read(out, format="ascii.csv")) == 1
    new = tmp_path / "new.csv"
    assert invoke(npz_file, "-o", tmp_path / "x.txt", "--model", model_dir).exit_code == 2
    assert invoke(npz_file, "-o", new, "--model", model_dir, "--shard", "3/3").exit_code == 2
    assert invoke(npz_file, "-o", new, "--model", tmp_path / "nowhere").exit_code == 5
    garbage = tmp_path / "bad.fits"
    garbage.write_bytes(b"not a FITS file")
    assert invoke(garbage, "-o", new, "--model", model_dir).exit_code == 3
    short = tmp_path / "short.npz"
    np.savez(short, flux=np.ones((2, 100)))  # no wavelength and not the model's length
    result = invoke(short, "-o", new, "--model", model_dir)
    assert result.exit_code == 3 and "short.npz" in result.output
    assert not new.exists()
    assert invoke("--version").exit_code == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/maps")
def test_killed_run_leaves_no_output(tmp_path, model_dir, predictor):
    big = tmp_path / "big.fits"
    n = 4000
    flux = noisy(predictor.wavelength, np.full(n, 2.0), 6).astype(np.float32)
    fits.PrimaryHDU(flux).writeto(big)
    out = tmp_path / "out.fits"
    cmd = [sys.executable, "-m", "specvit.inference.cli", str(big), "-o", str(out)]
    cmd += ["--model", str(model_dir), "--batch-size", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    # Predicting starts when the input is memory-mapped for reading row blocks.
    while proc.poll() is None and time.monotonic() < deadline:
        if str(big) in maps.read_text():
            break
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    assert not any(p.name == "out.fits" for p in tmp_path.iterdir())


def test_image_reader_wcs_units_and_air(tmp_path):
    from specvit.io.readers import open_spectra

    header = fits.Header(
        {"CTYPE1": "AWAV", "CUNIT1": "nm", "CRVAL1": 750.0, "CDELT1": 0.05, "CRPIX1": 1.0}
    )
    fits.PrimaryHDU(np.ones((3, 20), np.float32), header=header).writeto(tmp_path / "a.fits")
    with open_spectra(tmp_path / "a.fits") as spectra:
        assert len(spectra) == 3 and spectra.medium == "air"
        np.testing.assert_allclose(spectra.wavelength, 7500.0 + 0.5 * np.arange(20))
    with pytest.raises(ValueError, match="unknown spectrum file type"):
        open_spectra(tmp_path / "a.txt")


def test_failed_write_leaves_nothing_behind(tmp_path):
    from specvit.io.tables import write_table

    bad = Table({"x": np.array([object(), object()], dtype=object)})  # FITS cannot hold objects
    with pytest.raises((TypeError, ValueError)):
        write_table(bad, tmp_path / "out.fits")
    assert list(tmp_path.iterdir()) == []
    good = Table({"x": [1, 2]})
    write_table(good, tmp_path / "out.ecsv")
    with pytest.raises(FileExistsError):
        write_table(good, tmp_path / "out.ecsv")
    write_table(Table({"x": [3]}), tmp_path / "out.ecsv", overwrite=True)
    assert list(Table.read(tmp_path / "out.ecsv")["x"]) == [3]
    assert [p.name for p in tmp_path.iterdir()] == ["out.ecsv"]


# ---------------------------------------------------------------------------- issue 26
PFS_DIR = Path(__file__).resolve().parent / "data" / "pfs"


def test_the_table_records_the_weights_and_float32_digits(tmp_path, model_dir, predictor):
    """Which weights made the table (name, revision, sha256); float32 results, float32 digits."""
    import hashlib
    import re

    npz_file = tmp_path / "s.npz"
    np.savez(npz_file, flux=noisy(predictor.wavelength, np.array([1.0, 2.5, 4.0]), 8))
    out = tmp_path / "out.ecsv"
    result = invoke(npz_file, "-o", out, "--model", model_dir)
    assert result.exit_code == 0, result.output
    meta = Table.read(out).meta
    weights = (model_dir / "model.safetensors").read_bytes()
    assert meta["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert meta["model_name"] == str(model_dir) and meta["model_revision"] == ""
    assert meta["untrained"] is False
    fits_out = tmp_path / "out.fits"
    assert invoke(npz_file, "-o", fits_out, "--model", model_dir).exit_code == 0
    assert fits.getheader(fits_out, 1)["WEIGHTS_SHA256"] == meta["weights_sha256"]
    csv_out = tmp_path / "out.csv"
    assert invoke(npz_file, "-o", csv_out, "--model", model_dir).exit_code == 0
    rows = csv_out.read_text().splitlines()
    column = rows[0].split(",").index("log_g")
    for row in rows[1:]:
        digits = re.sub(r"[-+.]|e.*", "", row.split(",")[column]).strip("0")
        assert len(digits) <= 9, row  # float32 has 6–9 significant digits, not float64's 17
    assert Table.read(out)["log_g"].dtype == np.float32


def test_pfs_targets_keep_their_ra_and_dec(tmp_path):
    coadd = PFS_DIR / "pfsCoadd-10092-007.fits.gz"
    single = next(PFS_DIR.glob("mr-grid_pfsObject-*.fits.gz"))
    out = tmp_path / "out.ecsv"
    result = invoke(coadd, single, "-o", out, "--no-physics")
    assert result.exit_code == 0, result.output
    table = Table.read(out)
    target = fits.getdata(coadd, "TARGET")
    header = fits.getheader(single, "TARGET")
    np.testing.assert_array_equal(table["ra"][:-1], target["ra"])
    np.testing.assert_array_equal(table["dec"][:-1], target["dec"])
    assert (table["ra"][-1], table["dec"][-1]) == (header["RA"], header["DEC"])


def test_the_summary_line_counts_flags_in_words(tmp_path, model_dir, predictor):
    npz_file = tmp_path / "s.npz"
    np.savez(npz_file, flux=noisy(predictor.wavelength, np.array([1.0, 2.5, 4.0]), 9))
    result = invoke(npz_file, "-o", tmp_path / "o.csv", "--model", model_dir)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("specvit-predict:"))
    assert line.endswith("flags: none set (3 clean)"), line
    short = noisy(predictor.wavelength, np.array([2.0, 3.0]), 10)
    short[0, :700] = np.nan  # too few pixels
    np.savez(npz_file, flux=short)
    result = invoke(npz_file, "-o", tmp_path / "p.csv", "--model", model_dir)
    line = next(x for x in result.output.splitlines() if x.startswith("specvit-predict:"))
    assert line.endswith("flags: 1 clean, 1 flagged (TOO_FEW_PIXELS 1)"), line
