"""specvit-bounds and crlb_ceilings: reproducible defaults, options that take effect, labels."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

import specvit
from specvit.bounds.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:PFSNoiseModel.default")


def test_crlb_ceilings_default_population_is_seeded_and_fast():
    start = time.perf_counter()
    first = specvit.crlb_ceilings(mag=21.5, n_stars=500)
    again = specvit.crlb_ceilings(mag=21.5, n_stars=500)
    elapsed = time.perf_counter() - start
    assert first.median_r2_max == again.median_r2_max
    assert (first.labels == again.labels).all()
    assert elapsed < 10  # 2000 stars take ≈0.5 s on the 2-core development CPU


def _header(*args: str) -> str:
    result = CliRunner().invoke(main, ["--n-stars", "20", "--snr", "5", *args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()[0]


def test_n_exposures_applies_without_etc_dir():
    assert "8 exposures" in _header("--n-exposures", "8")
    assert "12 exposures" in _header()


def test_plot_axis_names_the_target(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.figure

    labels = []
    save = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        labels.append(fig.axes[0].get_ylabel())
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    _header("--target", "M_H", "--plot", str(tmp_path / "m_h.png"))
    _header("--plot", str(tmp_path / "log_g.png"))
    assert labels == ["R² ([M/H])", "R² (log g)"]
