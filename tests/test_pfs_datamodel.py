"""Real PFS files, written by the PFS data-model package: every layout gives the labels of a
direct ``predict`` call on the file's true arrays, with the ids of every spectrum.

The fixtures (tests/data/pfs, see its README) hold 20 engine spectra with known labels
(truth.ecsv); each has 20–39 pixels flagged CR, SAT or BAD|BAD_FLAT with their flux set to 1e6.
The true arrays are read here with astropy alone, following the data model's definitions.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

import specvit
from specvit.inference.cli import EXIT_CODES, main
from specvit.inference.flags import PredictFlag

DATA = Path(__file__).parent / "data" / "pfs"
MODEL = Path(__file__).resolve().parents[1] / "examples" / "models" / "specvit-tiny-engine"
TRUTH = Table.read(DATA / "truth.ecsv")
LABELS = ("T_eff", "log_g", "M_H")
#: The documented default bad planes (specvit.io.fits.DEFAULT_BAD_MASK_BITS), spelled out here.
BAD = ("NO_DATA", "CR", "BAD_SKY", "BAD_FLUXCAL", "INTRP", "SAT", "BAD", "BAD_FLAT", "UNMASKEDNAN")
SINGLE = "-10092-09813-3,4-5a3c000000000011-012-0x0ca81b47139e7fb0.fits.gz"
FILES = {
    "mr-grid pfsObject": f"mr-grid_pfsObject{SINGLE}",
    "merged-grid pfsObject": f"merged-grid_pfsObject{SINGLE}",
    "WAVELENGTH-HDU pfsObject": f"wavelength-hdu_pfsObject{SINGLE}",
    "FIBERTRACE pfsObject": f"fibertrace-bit_pfsObject{SINGLE}",
    "pfsSingle": "pfsSingle-10092-09813-3,4-5a3c000000000011-123400.fits.gz",
    "pfsCoadd": "pfsCoadd-10092-007.fits.gz",
    "pfsCalibrated": "pfsCalibrated-123400.fits.gz",
    "mixed-length pfsCoadd": "pfsCoadd-10092-008-mixedlen.fits.gz",
}


@pytest.fixture(scope="module")
def model():
    return specvit.load(MODEL)


def _rows(hdu) -> list[np.ndarray]:
    """One array per spectrum: an image's rows, or a table's variable-length ``value`` cells."""
    if hdu.is_image:
        data = hdu.data
        return [data] if data.ndim == 1 else list(data)
    return [np.asarray(v) for v in hdu.data["value"]]


def true_arrays(path: Path) -> list[dict[str, np.ndarray]]:
    """flux, variance, wavelength (Å) and bad-pixel mask of each spectrum, read directly."""
    with fits.open(path) as h:
        flux = _rows(h["FLUX"])
        if h["COVAR"].is_image:
            cov = h["COVAR"].data
            var = [cov[0]] if cov.ndim == 2 else list(cov[:, 0])
        else:
            var = [np.asarray(v) for v in h["COVAR"].data["row_0"]]
        if "WAVELENGTH" in h:
            wave = [w * 10.0 for w in _rows(h["WAVELENGTH"])]  # nm
        else:  # the data model's WCS: element 0 at FITS pixel 2, metres
            hd = h["FLUX"].header
            pix = np.arange(flux[0].size) + 2.0 - hd["CRPIX1"]
            wave = [(hd["CRVAL1"] + pix * hd["CDELT1"]) * 1e10]
        wave = wave * len(flux) if len(wave) == 1 else wave
        planes = [{k[3:]: v for k, v in h["MASK"].header.items() if k.startswith("MP_")}]
        if not planes[0]:  # multi-spectrum files: per-target metadata strings
            text = ["".join(np.asarray(m).astype(str)) for m in h["METADATA"].data["metadata"]]
            planes = [{k: int(v) for k, v in re.findall(r"MP_(\w+?):\s*(\d+)", t)} for t in text]
        planes = planes * len(flux) if len(planes) == 1 else planes
        masks = _rows(h["MASK"])
        out = []
        for i, f in enumerate(flux):
            bad_bits = sum(1 << planes[i][name] for name in BAD)
            out.append(
                {"flux": f, "var": var[i], "wave": wave[i], "bad": (masks[i] & bad_bits) != 0}
            )
        return out


def direct(model, arrays: list[dict[str, np.ndarray]]) -> Table:
    from astropy.table import vstack

    rows = [
        specvit.predict(
            a["flux"], a["var"], uncertainty="var", wavelength=a["wave"], mask=a["bad"], model=model
        )
        for a in arrays
    ]
    return vstack(rows)


def run_cli(tmp_path: Path, *args) -> tuple[Table, str]:
    out = tmp_path / "labels.ecsv"
    result = CliRunner().invoke(
        main, [*map(str, args), "-o", str(out), "--model", str(MODEL)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return Table.read(out), result.output


@pytest.mark.parametrize("layout", list(FILES))
def test_every_layout_gives_the_direct_labels_and_every_id(tmp_path, model, layout):
    path = DATA / FILES[layout]
    table, output = run_cli(tmp_path, path)
    arrays = true_arrays(path)
    expected = direct(model, arrays)
    assert len(table) == len(arrays)
    for name in LABELS:
        np.testing.assert_allclose(table[name], expected[name], rtol=1e-5, atol=1e-4)
    assert list(table["n_valid"]) == list(expected["n_valid"])
    assert list(table["flags"]) == list(expected["flags"])
    assert list(table["index"]) == list(range(len(arrays)))
    ids = list(TRUTH["objId"][: len(arrays)])
    assert list(table["objId"]) == ids and set(table["catId"]) == {10092}
    assert set(table["patch"]) == {"3,4"}
    # Masked pixels (flux 1e6) are dropped: exactly truth's n_flagged on the MR grid.
    mr = np.array([a["wave"].size == 4096 for a in arrays])
    n_bad = np.array([int(a["bad"].sum()) for a in arrays])
    np.testing.assert_array_equal(n_bad[mr], TRUTH["n_flagged"][: len(arrays)][mr])
    # predicted, in the model's domain, fully covered (LOW_SNR may flag the faintest)
    bad = int(PredictFlag.no_result() | PredictFlag.OUT_OF_DOMAIN | PredictFlag.PARTIAL_COVERAGE)
    assert not (table["flags"][mr] & bad).any()
    assert "wavelength=" in output and "mask=MASK bits NO_DATA,CR" in output
    assert "sky=" not in output  # read only in exact mode


def test_multi_spectrum_labels_follow_the_truth(tmp_path):
    table, _ = run_cli(tmp_path, DATA / FILES["pfsCoadd"])
    r = np.corrcoef(np.asarray(table["T_eff"]), np.asarray(TRUTH["T_eff"]))[0, 1]
    assert r > 0.8, r  # S/N 1.8–9 per pixel: T_eff is well measured even so


def test_fibertrace_is_informational_unless_asked(tmp_path):
    trace, _ = run_cli(tmp_path, DATA / FILES["FIBERTRACE pfsObject"])
    plain, _ = run_cli(tmp_path, DATA / FILES["mr-grid pfsObject"], "--overwrite")
    for name in LABELS:
        np.testing.assert_allclose(trace[name], plain[name], rtol=1e-6)
    every, output = run_cli(
        tmp_path, DATA / FILES["FIBERTRACE pfsObject"], "--overwrite", "--mask-bits", "ALL"
    )
    assert every["flags"][0] & PredictFlag.TOO_FEW_PIXELS and np.isnan(every["T_eff"][0])
    assert "MASK bits ALL" in output
    only_cr, output = run_cli(
        tmp_path, DATA / FILES["mr-grid pfsObject"], "--overwrite", "--mask-bits", "cr,sat"
    )
    assert "MASK bits CR,SAT" in output
    assert only_cr["n_valid"][0] > plain["n_valid"][0]  # BAD|BAD_FLAT pixels are kept


def test_unknown_mask_plane_names_are_listed(tmp_path):
    args = [DATA / FILES["pfsCoadd"], "-o", tmp_path / "o.csv", "--model", MODEL]
    result = CliRunner().invoke(main, [*map(str, args), "--mask-bits", "CR,COSMIC"])
    assert result.exit_code == EXIT_CODES["input"]
    assert "COSMIC" in result.output and "FIBERTRACE" in result.output
    assert "pfsCoadd-10092-007" in result.output and "Traceback" not in result.output


def test_exact_mode_reads_the_sky_hdu(tmp_path):
    """``--exact`` hands predict the file's SKY (the default model's exact mode shifts it to the
    rest frame with the flux): with half the sky left in the file's flux, the command's labels
    are predict's given that sky, not predict's without it (a bright star: 5.6 K apart)."""
    path = tmp_path / "pfsObject.fits"
    with fits.open(DATA / FILES["mr-grid pfsObject"]) as h:
        h["FLUX"].data = h["FLUX"].data + 0.5 * h["SKY"].data
        sky = h["SKY"].data.astype(np.float64)
        h.writeto(path)
    out = tmp_path / "labels.ecsv"
    args = [str(path), "-o", str(out), "--exact", "--exact-samples", "64"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "sky=SKY" in result.output
    table = Table.read(out)
    a = true_arrays(path)[0]
    kwargs = dict(uncertainty="var", wavelength=a["wave"], mask=a["bad"])
    given = specvit.predict(a["flux"], a["var"], sky=sky, exact=True, exact_samples=64, **kwargs)
    blind = specvit.predict(a["flux"], a["var"], exact=True, exact_samples=64, **kwargs)
    for name in LABELS:
        np.testing.assert_allclose(table[name], given[name], rtol=1e-5)
    # far beyond the agreement asked of the command (rtol 1e-5: 0.05 K)
    assert abs(float(blind["T_eff"][0] - given["T_eff"][0])) > 1.0


def test_the_readers_carry_the_sky_and_check_its_shape():
    from specvit.io.readers import open_spectra
    from specvit.io.spectra import SpectrumSet

    for layout in ("pfsCoadd", "mixed-length pfsCoadd"):  # one grid, and spectra of two lengths
        path = DATA / FILES[layout]
        with fits.open(path) as h:
            skies = _rows(h["SKY"])
        with open_spectra(path) as spectra:
            blocks = list(spectra.blocks(0, len(spectra)))
        got = [row for _, block in blocks for row in block.sky]
        assert len(got) == len(skies)
        for a, b in zip(got, skies, strict=True):
            np.testing.assert_array_equal(a, b)
    flux = np.ones((2, 5))
    with pytest.raises(ValueError, match=r"sky has shape \(2, 4\) for flux of shape \(2, 5\)"):
        SpectrumSet(flux=flux, sky=np.ones((2, 4)))
