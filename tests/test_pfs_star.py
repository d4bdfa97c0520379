"""pfsStar files (specvit.io.pfs_star, ``specvit-predict --format pfsStar``) against the file the
PFS data-model package itself wrote.

The reference, ``tests/data/pfs/pfsStar-…fits.gz``, is a gzipped copy of
``../shared/data/pfs_datamodel/pfsStar-…fits``: ``PfsStar.write`` of Subaru-PFS/datamodel (GA
branch ``tickets/DAMD-162``, commit 218cc5a) applied to the mr-grid pfsObject fixture, with the
star's true labels, v_los = 0, σ = (80, 0.5, 0.2, 5) and a made-up correlation. Given the same
values, specvit's writer must reproduce that file byte for byte, but for the card the input
pfsObject holds and the data model's reader drops (``SPECVITT``).
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

from specvit.inference.cli import EXIT_CODES, main
from specvit.inference.flags import PredictFlag
from specvit.io import open_spectra
from specvit.io import pfs_star as ps
from specvit.io.pfs_star import (
    PfsStarError,
    PfsStarIdentity,
    build_pfs_star,
    pfs_star_identities,
    pfs_visit_hash,
    read_pfs_star,
    stellar_params,
    write_pfs_stars,
)
from tests.conftest import SHARED_DIR

DATA = Path(__file__).parent / "data" / "pfs"
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "data" / "pfsCoadd-engine-example.fits"
EXAMPLE_MODEL = ROOT / "examples" / "models" / "specvit-tiny-engine"
NAME = "pfsStar-10092-09813-3,4-5a3c000000000011-012-0x0ca81b47139e7fb0.fits"
REFERENCE = DATA / f"{NAME}.gz"
SHARED_REFERENCE = SHARED_DIR / "data" / "pfs_datamodel" / NAME
OBJECT = DATA / "mr-grid_pfsObject-10092-09813-3,4-5a3c000000000011-012-0x0ca81b47139e7fb0.fits.gz"
CONTAINERS = {
    "pfsCoadd": DATA / "pfsCoadd-10092-007.fits.gz",
    "pfsCalibrated": DATA / "pfsCalibrated-123400.fits.gz",
    "mixed-length pfsCoadd": DATA / "pfsCoadd-10092-008-mixedlen.fits.gz",
}
LABELS = ("T_eff", "log_g", "M_H")
#: The reference's names and HDU types, written out (the tests also read them from the file).
REFERENCE_HDUS = [
    ("PRIMARY", "PrimaryHDU"),
    ("FLUX", "ImageHDU"),
    ("MASK", "CompImageHDU"),
    ("TARGET", "BinTableHDU"),
    ("SKY", "ImageHDU"),
    ("COVAR", "ImageHDU"),
    ("COVAR2", "ImageHDU"),
    ("OBSERVATIONS", "BinTableHDU"),
    ("NOTES", "BinTableHDU"),
    ("STELLARPARAM", "BinTableHDU"),
    ("STELLARCOVAR", "ImageHDU"),
    ("MEASFLAG", "BinTableHDU"),
]
#: The reference's STELLARPARAM and MEASFLAG columns and their FITS formats.
PARAM_FORMATS = {
    "method": "7A",
    "frame": "PA(5)",
    "param": "PA(5)",
    "covarId": "B",
    "unit": "PA(6)",
    "value": "E",
    "valueErr": "E",
    "flag": "L",
    "status": "PA(0)",
}
MEASFLAG_FORMATS = {"method": "7A", "flag": "L", "status": "PA(0)"}


def reference_row() -> dict[str, float]:
    """specvit's table row that stands for the reference's values (exact mode's columns)."""
    with fits.open(REFERENCE) as ref:
        value = ref["STELLARPARAM"].data["value"]
    return {
        "T_eff": value[0],
        "T_eff_err": 80.0,
        "log_g": value[1],
        "log_g_err": 0.5,
        "M_H": value[2],
        "M_H_err": 0.2,
        "flags": 0,
        "v_rad": value[3],
        "v_rad_err": 5.0,
        "cov_T_eff_log_g": 0.5 * 80.0 * 0.5,
        "cov_T_eff_M_H": 0.3 * 80.0 * 0.2,
        "cov_log_g_M_H": 0.2 * 0.5 * 0.2,
    }


def file_bytes(hdus: fits.HDUList) -> bytes:
    buffer = io.BytesIO()
    hdus.writeto(buffer)
    return buffer.getvalue()


def hdu_bytes(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(header, data) bytes of every HDU of a FITS file's bytes."""
    out = []
    with fits.open(io.BytesIO(raw)) as hdul:
        starts = [hdul.fileinfo(i)["hdrLoc"] for i in range(len(hdul))] + [len(raw)]
        for i in range(len(hdul)):
            data_start = hdul.fileinfo(i)["datLoc"]
            out.append((raw[starts[i] : data_start], raw[data_start : starts[i + 1]]))
    return out


def cards(header: fits.Header) -> dict[str, tuple]:
    return {c.keyword: (c.value, c.comment) for c in header.cards}


def run(*args) -> object:
    return CliRunner().invoke(main, [*map(str, args)], catch_exceptions=False)


# ------------------------------------------------------------------- the reference itself
def test_the_reference_fixture_is_the_shared_file():
    if not SHARED_REFERENCE.is_file():
        pytest.skip(
            f"needs {SHARED_REFERENCE} (the shared reference data, ../shared beside the "
            "repository, or SPECVIT_SHARED): the pfsStar file the PFS data-model package wrote"
        )
    assert gzip.decompress(REFERENCE.read_bytes()) == SHARED_REFERENCE.read_bytes()


def test_the_reference_layout_is_what_the_tests_assume():
    """The constants above, read back from the data model's own file (so a changed fixture
    cannot leave the other tests checking a stale layout)."""
    with fits.open(REFERENCE) as ref:
        assert [(h.name, type(h).__name__) for h in ref] == REFERENCE_HDUS
        assert {c.name: c.format for c in ref["STELLARPARAM"].columns} == PARAM_FORMATS
        assert {c.name: c.format for c in ref["MEASFLAG"].columns} == MEASFLAG_FORMATS
        assert ref["STELLARCOVAR"].data.dtype == np.dtype(">f4")
        assert ref["STELLARCOVAR"].data.shape == (4, 4)
        assert ref["STELLARPARAM"].data["covarId"].dtype == np.uint8


# ----------------------------------------------------------------------- identities
def test_file_names_and_visit_hashes_are_the_data_models():
    with fits.open(REFERENCE) as ref:
        visits = ref["OBSERVATIONS"].data["visit"]
        (identity,) = pfs_star_identities(ref)
    assert identity.filename == NAME
    assert pfs_visit_hash(visits) == 0x0CA81B47139E7FB0 == identity.pfsVisitHash
    assert PfsStarIdentity.from_filename(NAME) == identity
    with fits.open(OBJECT) as obj:
        assert [i.filename for i in pfs_star_identities(obj)] == [NAME]
    # The data model's own test (tests/test_PfsStar.py on its GA branch): two visits.
    example = PfsStarIdentity.from_visits(12345, 1, "1,1", 123456789, [83219, 83220])
    assert (
        example.filename == "pfsStar-12345-00001-1,1-00000000075bcd15-002-0x05a95bc24d8ce16f.fits"
    )
    # repeats count once (several arms of one visit), in any order; nVisit wraps at 1000
    again = PfsStarIdentity.from_visits(12345, 1, "1,1", 123456789, [83220, 83219, 83220])
    assert again == example
    assert PfsStarIdentity.from_visits(1, 2, "0,0", 3, range(1003)).nVisit == 3
    with pytest.raises(ValueError, match="not a pfsStar file name"):
        PfsStarIdentity.from_filename("pfsObject-10092-09813-3,4-5a3c000000000011-012-0x0.fits")


@pytest.mark.parametrize("layout", list(CONTAINERS))
def test_every_container_row_names_its_star(layout):
    with fits.open(CONTAINERS[layout]) as hdul:
        identities = pfs_star_identities(hdul)
        target = hdul["TARGET"].data
        observations = hdul["OBSERVATIONS"].data
        for i, identity in enumerate(identities):
            visits = observations["visit"][observations["targetId"] == target["targetId"][i]]
            assert identity.objId == int(target["objId"][i])
            assert identity.nVisit == len(set(visits.tolist()))
            assert identity.pfsVisitHash == pfs_visit_hash(visits)
    assert len({i.filename for i in identities}) == len(identities)
    if layout == "pfsCoadd":  # its first star is the reference's (same twelve visits)
        assert identities[0].filename == NAME


# ------------------------------------------------------------- the file, byte for byte
def test_the_reference_values_give_the_reference_file():
    with fits.open(OBJECT) as obj:
        identity, hdus = build_pfs_star(obj, 0, reference_row(), LABELS, frame="helio")
        input_cards = {h.name: cards(h.header) for h in obj}
    assert identity.filename == NAME
    mine = hdu_bytes(file_bytes(hdus))
    ref_raw = gzip.decompress(REFERENCE.read_bytes())
    ref = hdu_bytes(ref_raw)
    with fits.open(io.BytesIO(ref_raw)) as r, fits.open(io.BytesIO(file_bytes(hdus))) as m:
        assert [(h.name, type(h).__name__) for h in m] == REFERENCE_HDUS
        for i in range(1, len(r)):
            name = r[i].name
            assert mine[i][1] == ref[i][1], f"{name}: data differ"
            theirs, ours = cards(r[i].header), cards(m[i].header)
            for key, value in theirs.items():
                assert ours.get(key) == value, (name, key, ours.get(key), value)
            # Extra cards: only those the input's HDU holds (the data model's reader drops
            # them; STELLARCOVAR repeats SKY's, as the data model's writer does).
            source = input_cards.get("SKY" if name == "STELLARCOVAR" else name, {})
            extra = {k: v for k, v in ours.items() if k not in theirs}
            assert all(source.get(k) == v for k, v in extra.items()), (name, extra)
            if not extra:
                assert mine[i][0] == ref[i][0], f"{name}: header bytes differ"
        for name in ("STELLARPARAM", "MEASFLAG"):
            assert not set(cards(m[name].header)) - set(cards(r[name].header))


def test_specvit_reads_the_reference_and_keeps_inner_blanks():
    star = read_pfs_star(REFERENCE)
    assert star.identity.filename == NAME
    assert list(star.params["param"]) == ["T_eff", "log_g", "M_H", "v_los"]
    assert list(star.params["unit"]) == ["K", "dex", "dex", "km s-1"]  # not "kms-1"
    assert list(star.params["frame"]) == ["", "", "", "helio"]
    assert list(star.params["covarId"]) == [0, 1, 2, 3]
    assert star.value("log_g") == (pytest.approx(2.1459498), 0.5)
    np.testing.assert_allclose(np.diag(star.covar), [80.0**2, 0.25, 0.04, 25.0], rtol=1e-6)
    assert list(star.measflags["method"]) == ["specvit"] and not star.measflags["flag"][0]


# --------------------------------------------------------- values, covariance, flags
def test_exact_mode_covariance_and_velocity_error_are_written():
    params, covar, (flag, status) = stellar_params(reference_row(), LABELS)
    with fits.open(REFERENCE) as ref:
        np.testing.assert_array_equal(covar, ref["STELLARCOVAR"].data)
    assert [p.covarId for p in params] == [0, 1, 2, 3]
    assert [p.frame for p in params] == ["", "", "", "bary"]  # the PFS DRP's frame, by default
    assert covar.dtype == np.float32 and np.array_equal(covar, covar.T)
    assert not flag and status == ""


def test_without_exact_mode_the_labels_are_independent_and_missing_values_nan():
    row = {"T_eff": 4500.0, "T_eff_err": 50.0, "log_g": 2.5, "log_g_err": 0.3}
    row |= {"M_H": -1.0, "M_H_err": 0.1, "flags": 0}  # no v_rad column: --no-physics
    params, covar, (flag, _) = stellar_params(row, LABELS)
    np.testing.assert_allclose(np.diag(covar)[:3], [2500.0, 0.09, 0.01], rtol=1e-6)
    assert np.all(covar[:3, :3][~np.eye(3, dtype=bool)] == 0)
    v_los = params[3]
    assert v_los.param == "v_los" and np.isnan(v_los.value) and np.isnan(v_los.valueErr)
    assert v_los.flag and v_los.status == "NOT_MEASURED" and v_los.unit == "km s-1"
    assert np.isnan(covar[3]).all() and np.isnan(covar[:, 3]).all()
    assert not flag  # a missing velocity does not make specvit's measurement bad
    # a point-head model: labels, no σ
    params, covar, _ = stellar_params({"T_eff": 4500.0, "log_g": 2.5, "M_H": -1.0}, LABELS)
    assert all(np.isnan(p.valueErr) for p in params) and not params[0].flag


def test_every_flag_has_a_role():
    every = 0
    for flag in PredictFlag:
        every |= int(flag)
    roles = int(PredictFlag.no_result()) | int(ps.LABEL_FLAGS) | int(ps.INFORMATIONAL_FLAGS)
    assert roles == every, "a PredictFlag the pfsStar writer does not classify"
    assert not int(ps.LABEL_FLAGS) & int(ps.INFORMATIONAL_FLAGS)


ROW = {"T_eff": 4500.0, "T_eff_err": 50.0, "log_g": 2.5, "log_g_err": 0.3, "M_H": -1.0}
ROW |= {"M_H_err": 0.1, "v_rad": 12.0}


@pytest.mark.parametrize(
    ("flags", "bad", "status", "v_status"),
    [
        (0, [False] * 4, "", ""),
        (PredictFlag.LOW_SNR, [False, True, False, False], "LOW_SNR", ""),
        (PredictFlag.PARTIAL_COVERAGE, [False] * 4, "PARTIAL_COVERAGE", ""),
        (PredictFlag.OUTSIDE_PRIOR, [True, True, True, False], "OUTSIDE_PRIOR", ""),
        (PredictFlag.LOW_ESS, [True, True, True, False], "LOW_ESS", ""),
        (PredictFlag.OUT_OF_DOMAIN, [True] * 4, "OUT_OF_DOMAIN", "OUT_OF_DOMAIN"),
        (
            PredictFlag.RV_OUTSIDE_TRAINING | PredictFlag.LOW_SNR,
            [True, True, True, False],
            "LOW_SNR RV_OUTSIDE_TRAINING",
            "RV_OUTSIDE_TRAINING",
        ),
    ],
)
def test_flags_map_onto_flag_and_status(flags, bad, status, v_status):
    params, _, (flag, overall) = stellar_params(ROW | {"flags": int(flags)}, LABELS)
    assert [p.flag for p in params] == bad
    assert [p.status for p in params] == [status] * 3 + [v_status]
    assert flag == any(bad[:3]) and overall == status


def test_no_result_flags_every_row():
    row = {name: np.nan for name in ROW} | {"flags": int(PredictFlag.TOO_FEW_PIXELS)}
    params, covar, (flag, status) = stellar_params(row, LABELS)
    assert all(p.flag for p in params) and flag and status == "TOO_FEW_PIXELS"
    assert [p.status for p in params] == ["TOO_FEW_PIXELS"] * 4
    assert np.isnan(covar).all()


def test_text_columns_follow_the_data_model_rule():
    """Fixed width where every row holds the same text, variable-length otherwise (and when
    that text is empty): MEASFLAG's status becomes '7A' when the star is LOW_SNR."""
    with fits.open(OBJECT) as obj:
        row = reference_row() | {"flags": int(PredictFlag.LOW_SNR)}
        _, hdus = build_pfs_star(obj, 0, row, LABELS)
    back = fits.open(io.BytesIO(file_bytes(hdus)))
    formats = {c.name: c.format for c in back["STELLARPARAM"].columns}
    assert formats["status"] == "PA(7)" and formats["frame"] == "PA(4)"
    assert {c.name: c.format for c in back["MEASFLAG"].columns}["status"] == "7A"
    assert back["MEASFLAG"].data["status"][0] == "LOW_SNR"
    statuses = [ps._text(v) for v in back["STELLARPARAM"].data["status"]]
    assert statuses == ["LOW_SNR"] * 3 + [""]
    back.close()


# ------------------------------------------------------------------- containers
@pytest.mark.parametrize("layout", list(CONTAINERS))
def test_a_container_row_becomes_a_single_spectrum_file(tmp_path, layout):
    """What specvit reads from the pfsStar file is what it reads from the container's row; the
    HDUs are the reference's, with the WAVELENGTH HDU the data model writes for wavelengths
    that are not a WCS."""
    path = CONTAINERS[layout]
    with fits.open(path) as hdul:
        n = len(pfs_star_identities(hdul))
        index = n - 1
        identity, hdus = build_pfs_star(hdul, index, ROW | {"flags": 0}, LABELS)
        target_id = hdul["TARGET"].data["targetId"][index]
        n_visits = int(np.sum(hdul["OBSERVATIONS"].data["targetId"] == target_id))
    out = tmp_path / identity.filename
    hdus.writeto(out)
    expected = [*REFERENCE_HDUS[:3], ("WAVELENGTH", "ImageHDU"), *REFERENCE_HDUS[3:]]
    with fits.open(out) as star:
        assert [(h.name, type(h).__name__) for h in star] == expected
        assert {c.name: c.format for c in star["OBSERVATIONS"].columns} == {
            "visit": "J",
            "arm": "1A",
            "spectrograph": "J",
            "fiberId": "J",
            "pfsDesignId": "K",
            "pfiNominal": "2E",
            "pfiCenter": "2E",
            "obsTime": "23A",
            "expTime": "E",
        }
        assert len(star["OBSERVATIONS"].data) == n_visits
        assert star["TARGET"].header["PATCH"] == "3,4"
        assert star["FLUX"].header["DAMD_VER"] == 2 and "MP_CR" in star["MASK"].header
    with open_spectra(path) as source, open_spectra(out) as written:
        (_, a), (_, b) = next(source.blocks(index, index + 1)), next(written.blocks(0, 1))
        for name in ("flux", "error", "wavelength", "mask"):
            np.testing.assert_array_equal(np.ravel(getattr(a, name)), np.ravel(getattr(b, name)))
        assert a.unit == b.unit and list(a.ids[0]) == list(b.ids[0])
    assert read_pfs_star(out).identity == identity


# ------------------------------------------------------------------ the command
#: The bundled rest-frame model: exact mode (the covariances) serves it.
REST = "specvit-tiny-pfs"


def test_cli_writes_the_table_values_into_the_pfs_star_file(tmp_path):
    """End to end on the pfsObject fixture, exact mode (covariances) with the bundled model:
    the file is named and laid out as the reference, and holds the table's numbers."""
    table_path = tmp_path / "labels.ecsv"
    assert run(OBJECT, "-o", table_path, "--exact", "--model", REST).exit_code == 0
    table = Table.read(table_path)
    folder = tmp_path / "stars"
    folder.mkdir()
    result = run(OBJECT, "--format", "pfsStar", "-o", folder, "--exact", "--model", REST)
    assert result.exit_code == 0, result.output
    assert "1 pfsStar file(s) in" in result.output and "Warning" not in result.output
    assert sorted(p.name for p in folder.iterdir()) == [NAME]
    row = table[0]
    with fits.open(folder / NAME) as star, fits.open(REFERENCE) as ref:
        assert [(h.name, type(h).__name__) for h in star] == REFERENCE_HDUS
        formats = {c.name: c.format for c in star["STELLARPARAM"].columns}
        assert formats == PARAM_FORMATS | {"frame": "PA(4)"}  # "bary", not "helio"
        assert {c.name: c.format for c in star["MEASFLAG"].columns} == MEASFLAG_FORMATS
        for name in ("FLUX", "MASK", "SKY", "COVAR", "COVAR2", "OBSERVATIONS"):
            assert np.array_equal(star[name].data, ref[name].data), name
        assert star[0].header["SVSHA256"] == table.meta["weights_sha256"]
        assert star[0].header["SVEXACT"] is True
    got = read_pfs_star(folder / NAME)
    for k, label in enumerate(LABELS):
        value, error = got.value(label)
        assert value == np.float32(row[label]) and error == np.float32(row[f"{label}_err"])
        assert got.covar[k, k] == np.float32(np.float32(row[f"{label}_err"]) ** 2)
    assert got.covar[0, 1] == got.covar[1, 0] == np.float32(row["cov_T_eff_log_g"])
    assert got.covar[1, 2] == np.float32(row["cov_log_g_M_H"])
    assert got.value("v_los")[0] == np.float32(row["v_rad"])
    assert list(got.params["flag"]) == [False] * 4 and int(row["flags"]) == 0


def test_cli_writes_one_file_per_star_of_a_container(tmp_path):
    table_path = tmp_path / "labels.ecsv"
    path = CONTAINERS["pfsCoadd"]
    assert run(path, "-o", table_path, "--model", EXAMPLE_MODEL).exit_code == 0
    table = Table.read(table_path)
    folder = tmp_path / "stars"
    folder.mkdir()
    result = run(path, "--format", "PFSSTAR", "-o", folder, "--model", EXAMPLE_MODEL)
    assert result.exit_code == 0, result.output
    with fits.open(path) as hdul:
        names = [i.filename for i in pfs_star_identities(hdul)]
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    for i, name in enumerate(names):
        star = read_pfs_star(folder / name)
        assert star.identity.objId == table["objId"][i]
        assert star.value("log_g")[0] == np.float32(table["log_g"][i])
        low_snr = bool(table["flags"][i] & PredictFlag.LOW_SNR)
        assert list(star.params["flag"]) == [False, low_snr, False, False]
    # --shard: only its block of stars
    shard = tmp_path / "shard"
    shard.mkdir()
    assert run(path, "--format", "pfsStar", "-o", shard, "--model", EXAMPLE_MODEL,
               "--shard", "1/4").exit_code == 0  # fmt: skip
    assert sorted(p.name for p in shard.iterdir()) == sorted(names[5:10])


# ------------------------------------------------------------------- bad inputs
def no_files(folder: Path) -> bool:
    return not any(folder.iterdir())


def test_inputs_without_the_identifiers_are_refused_before_any_work(tmp_path):
    """The example coadd has no tract, patch or OBSERVATIONS: exit 2 naming them, the model
    never loaded (a missing model would be exit 5), nothing written."""
    result = run(EXAMPLE, "--format", "pfsStar", "-o", tmp_path, "--model", tmp_path / "none")
    assert result.exit_code == EXIT_CODES["usage"], result.output
    assert "pfsCoadd-engine-example.fits" in result.output
    assert "tract, patch" in result.output and "OBSERVATIONS" in result.output
    assert "Traceback" not in result.output and no_files(tmp_path)


def test_a_single_spectrum_file_without_tract_is_named(tmp_path):
    with fits.open(OBJECT) as obj:
        obj = fits.HDUList([h.copy() for h in obj])
    del obj["TARGET"].header["TRACT"]
    with pytest.raises(PfsStarError, match=r"no tract:"):
        pfs_star_identities(obj, "x.fits")
    del obj["OBSERVATIONS"]
    with pytest.raises(PfsStarError, match=r"no tract, visits \(OBSERVATIONS\)"):
        pfs_star_identities(obj, "x.fits")


def test_non_pfs_inputs_are_refused(tmp_path):
    out = tmp_path / "stars"
    out.mkdir()
    flux = 1.0 + 0.01 * np.random.default_rng(0).standard_normal((2, 4096))
    npz = tmp_path / "s.npz"
    np.savez(npz, flux=flux)
    image = tmp_path / "image.fits"
    fits.PrimaryHDU(flux.astype(np.float32)).writeto(image)
    for path in (npz, image):
        result = run(path, "--format", "pfsStar", "-o", out)
        assert result.exit_code == EXIT_CODES["usage"], result.output
        assert path.name in result.output and "PFS data-model file" in result.output
    assert no_files(out)
    with fits.open(image) as hdul, pytest.raises(PfsStarError, match="not a PFS"):
        pfs_star_identities(hdul)


def test_output_folder_overwrite_and_duplicate_stars(tmp_path):
    out = tmp_path / "stars"
    result = run(OBJECT, "--format", "pfsStar", "-o", out, "--model", tmp_path / "none")
    assert result.exit_code == EXIT_CODES["output"] and "no such folder" in result.output
    out.write_text("a file")
    result = run(OBJECT, "--format", "pfsStar", "-o", out)
    assert result.exit_code == EXIT_CODES["output"] and "not a folder" in result.output
    out.unlink()
    out.mkdir()
    (out / NAME).write_bytes(b"earlier")
    result = run(OBJECT, "--format", "pfsStar", "-o", out, "--model", tmp_path / "none")
    assert result.exit_code == EXIT_CODES["output_exists"] and NAME in result.output
    assert (out / NAME).read_bytes() == b"earlier"
    result = run(OBJECT, "--format", "pfsStar", "-o", out, "--model", EXAMPLE_MODEL, "--overwrite")
    assert result.exit_code == 0 and read_pfs_star(out / NAME).identity.filename == NAME
    # the same star from two inputs: refused before the model is loaded, nothing touched
    before = (out / NAME).read_bytes()
    args = [OBJECT, CONTAINERS["pfsCoadd"], "--format", "pfsStar", "-o", out, "--overwrite"]
    result = run(*args, "--model", tmp_path / "none")
    assert result.exit_code == EXIT_CODES["usage"] and "same star" in result.output
    assert (out / NAME).read_bytes() == before and len(list(out.iterdir())) == 1
    # a column chosen by hand would no longer be the file's own FLUX
    result = run(OBJECT, "--format", "pfsStar", "-o", out, "--flux-col", "SKY")
    assert result.exit_code == EXIT_CODES["usage"] and "--flux-col" in result.output


def test_all_or_none_when_a_file_fails(tmp_path, monkeypatch):
    """An error while the files are written leaves no file and no temporary file behind."""
    table = Table({"input": [str(CONTAINERS["pfsCoadd"])] * 3, "index": [0, 1, 2]})
    for name in LABELS:
        table[name], table[f"{name}_err"] = [1.0, 2.0, 3.0], [0.1, 0.1, 0.1]
    table["flags"] = [0, 0, 0]
    calls = []
    real = ps.build_pfs_star

    def fail_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(ps, "build_pfs_star", fail_on_the_third)
    with pytest.raises(RuntimeError, match="disk full"):
        write_pfs_stars(table, tmp_path, LABELS)
    assert no_files(tmp_path)
    monkeypatch.setattr(ps, "build_pfs_star", real)
    written = write_pfs_stars(table, tmp_path, LABELS)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    with pytest.raises(FileExistsError):
        write_pfs_stars(table, tmp_path, LABELS)
    assert len(list(tmp_path.iterdir())) == 3
