"""Property-based tests (hypothesis): over random shapes, dtypes, NaN/inf patterns and wavelength
grids, ``predict`` and the readers either work or raise one of their documented exceptions.

``predict`` documents ``ValueError`` and ``TypeError``; the readers (``open_spectra``)
``ValueError`` and ``OSError``. When ``predict`` works it returns one row per spectrum, labels
NaN exactly when a "no result" flag is set, and only known flag bits. The examples are
derandomized (the same on every run); ``SPECVIT_HYPOTHESIS_EXAMPLES=500`` searches further.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import specvit
from specvit.inference import Predictor
from specvit.inference.flags import PredictFlag
from specvit.io.readers import open_spectra

LENGTH = 64
MODEL_GRID = {"input_length": LENGTH, "wave_start": 7500.0, "wave_stop": 7500.0 + 63 * 0.4272}
SETTINGS = settings(
    max_examples=int(os.environ.get("SPECVIT_HYPOTHESIS_EXAMPLES", 40)),
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout
    derandomize=os.environ.get("SPECVIT_HYPOTHESIS_EXAMPLES") is None,  # CI: same examples
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
DTYPES = st.sampled_from(["float16", "float32", "float64", "int16", "int32", "uint8"])
#: Values with NaN, inf, huge (beyond float32) and tiny numbers mixed in.
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 1.0, -1.0, 1e39, -1e39, 1e-50, 3.4e38]),
)
KNOWN_BITS = int(sum(PredictFlag))


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    model = specvit.create_model(
        "specvit_tiny", label_names=("log_g",), patch_size=8, patch_stride=8, **MODEL_GRID
    )
    # a 64-pixel grid the emulator cannot describe: no physical context to ask for
    return Predictor(model, device="cpu", batch_size=3, physics=False)


def _cast(values: np.ndarray, dtype: str) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            return values.astype(dtype)
    info = np.iinfo(dtype)
    return (
        np.nan_to_num(values, nan=0, posinf=info.max, neginf=info.min)
        .clip(info.min, info.max)
        .astype(dtype)
    )


@st.composite
def spectra(draw):
    n = draw(st.integers(0, 4))
    on_grid = draw(st.booleans())
    length = LENGTH if on_grid else draw(st.integers(1, 90))
    shape = (n, length) if n or draw(st.booleans()) else (length,)
    base = draw(hnp.arrays(np.float64, shape, elements=VALUES))
    clean = 1.0 + 0.01 * np.arange(base.size).reshape(shape) % 3
    pick = draw(hnp.arrays(np.bool_, shape))
    flux = _cast(np.where(pick, base, clean), draw(DTYPES))
    kwargs = {}
    if draw(st.booleans()):
        err = draw(hnp.arrays(np.float64, shape, elements=VALUES))
        kwargs["error"] = _cast(np.where(draw(hnp.arrays(np.bool_, shape)), err, 0.01), "float64")
        kwargs["uncertainty"] = draw(st.sampled_from(["std", "var", "ivar"]))
    if not on_grid or draw(st.booleans()):
        start = draw(st.floats(7000.0, 8000.0))
        step = draw(st.sampled_from([0.05, 0.4272, 2.0, -0.4272, 0.0]))
        wave = start + step * np.arange(length)
        if draw(st.booleans()):  # per-spectrum grids, some of them broken
            rows = max(n, 1)
            wave = np.tile(wave, (rows, 1))
            noise = draw(hnp.arrays(np.float64, wave.shape, elements=VALUES))
            wave = np.where(draw(hnp.arrays(np.bool_, wave.shape)), noise, wave)
            wave = wave if n else wave[0]
        kwargs["wavelength"] = wave
    if draw(st.booleans()):
        kwargs["mask"] = draw(hnp.arrays(draw(st.sampled_from(["bool", "int32"])), shape))
    return flux, kwargs


# The fixture model is deliberately untrained: this test checks input handling (documented
# errors, row count, flags), not labels, so its UntrainedModelWarning is expected here.
@pytest.mark.filterwarnings("ignore::specvit.UntrainedModelWarning")
@SETTINGS
@given(spectra())
def test_predict_raises_only_documented_errors(predictor, case):
    flux, kwargs = case
    try:
        table = predictor.predict(flux, **kwargs)
    except (ValueError, TypeError):
        return
    n = 1 if flux.ndim == 1 else flux.shape[0]
    assert len(table) == n
    flags = np.asarray(table["flags"], dtype=np.int64)
    assert not np.any(flags & ~KNOWN_BITS)
    no_result = (flags & int(PredictFlag.no_result())) != 0
    labels = np.asarray(table["log_g"], dtype=np.float64)
    assert np.array_equal(np.isnan(labels), no_result)
    assert np.all(np.isfinite(labels[~no_result]))
    assert np.all((table["n_valid"] >= 0) & (table["n_valid"] <= LENGTH))


@st.composite
def files(draw, tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    n = draw(st.integers(0, 3))
    length = draw(st.integers(1, 20))
    dtype = draw(st.sampled_from(["float32", "float64", "int16", "int32"]))
    flux = _cast(draw(hnp.arrays(np.float64, (n, length), elements=VALUES)), dtype)
    kind = draw(st.sampled_from(["npz", "image", "table"]))
    damage = draw(st.sampled_from(["none", "empty", "truncated", "garbage"]))
    names = draw(
        st.lists(
            st.sampled_from(["flux", "FLUX", "wl", "e_flux", "ivar", "mask", "id", "x", "wave"]),
            min_size=1,
            max_size=4,
            unique_by=str.lower,
        )
    )
    if kind == "npz":
        path = folder / "s.npz"
        np.savez(path, **{name: flux for name in names})
    elif kind == "image":
        path = folder / "s.fits"
        hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(flux, name=name) for name in names]
        fits.HDUList(hdus).writeto(path)
    else:
        path = folder / "s.fits"
        fmt = f"{max(length, 1)}{'E' if dtype.startswith('float') else 'J'}"
        cols = [fits.Column(name, fmt, array=flux) for name in names]
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(path)
    if damage != "none":  # empty the file, cut it short, or cut it and append junk
        data = path.read_bytes()
        cut = 0 if damage == "empty" else draw(st.integers(0, len(data)))
        junk = draw(st.binary(max_size=64))
        path.write_bytes(data[:cut] + (junk if damage == "garbage" else b""))
    return path


@SETTINGS
@given(st.data())
def test_readers_raise_only_documented_errors(tmp_path_factory, data):
    path = data.draw(files(tmp_path_factory))
    try:
        with open_spectra(path) as spectra:
            total = 0
            for _, block in spectra.blocks(0, len(spectra)):
                total += len(block)
                kwargs = block.predict_kwargs()
                assert kwargs["flux"].shape[0] == len(block)
            assert total == len(spectra)
    except (ValueError, OSError):
        pass
