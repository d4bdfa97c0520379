"""specvit-bounds and crlb_ceilings: reproducible defaults, options that take effect, labels,
bad options refused before any work."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

import specvit
from specvit.bounds.cli import main


def test_crlb_ceilings_default_population_is_seeded_and_fast():
    start = time.perf_counter()
    with pytest.warns(UserWarning, match="PFSNoiseModel.default"):  # no noise_model given
        first = specvit.crlb_ceilings(mag=21.5, n_stars=500)
        again = specvit.crlb_ceilings(mag=21.5, n_stars=500)
    elapsed = time.perf_counter() - start
    assert first.median_r2_max == again.median_r2_max
    assert (first.labels == again.labels).all()
    assert elapsed < 10  # 2000 stars take ≈0.5 s on the 2-core development CPU


def _header(*args: str) -> str:
    result = CliRunner().invoke(main, ["--n-stars", "20", "--snr", "5", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[0]


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


@pytest.mark.parametrize(
    ("args", "option", "message"),
    [
        (["--n-stars", "-5"], "--n-stars", "n_stars must be an integer >= 1, got -5"),
        (["--n-stars", "0"], "--n-stars", "n_stars must be an integer >= 1, got 0"),
        (["--mag", "nan"], "--mag", "within 12–28, got nan"),
        (["--mag", "inf"], "--mag", "within 12–28, got inf"),
        (["--mag", "-50"], "--mag", "within 12–28, got -50"),
        (["--snr", "inf"], "--snr", "snr must be > 0 and finite, got inf"),
        (["--snr", "-3"], "--snr", "snr must be > 0 and finite, got -3"),
        (["--nuisance", "T_eff,vrad"], "--nuisance", "unknown nuisance parameter 'vrad'"),
        (["--plot", "{tmp}/x.xyz"], "--plot", "its suffix is none of the formats"),
        (["--plot", "{tmp}/x"], "--plot", "it has no suffix naming one of the formats"),
        (["--plot", "{tmp}/nodir/x.png"], "--plot", "no folder"),
        (["--etc-dir", "{tmp}"], "--etc-dir", "PFS ETC table not found"),
    ],
)
def test_bad_options_are_usage_errors_before_any_work(tmp_path, monkeypatch, args, option, message):
    if option == "--plot":
        pytest.importorskip("matplotlib")

    def no_work(*args, **kwargs):
        raise AssertionError("the table was computed before the options were checked")

    monkeypatch.setattr("specvit.bounds.cli.ceiling_table", no_work)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(main, ["--n-stars", "20", *args])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a usage error, not a traceback
    assert f"Invalid value for '{option}'" in result.output
    assert message in result.output


def test_the_approximate_noise_is_a_one_line_note_not_a_warning(recwarn):
    result = CliRunner().invoke(main, ["--n-stars", "20", "--mag", "21"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line]
    assert len(notes) == 1 and notes[0].startswith("note: without --etc-dir"), notes
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    assert "|" in result.stdout and "note" not in result.stdout  # the table stays clean
