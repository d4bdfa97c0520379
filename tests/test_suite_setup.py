"""The test suite and the docs site themselves: skips that say where data come from, a site
without the figure scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_etc_tables

ROOT = Path(__file__).resolve().parents[1]


def test_a_skip_without_the_etc_tables_says_where_they_come_from(tmp_path):
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_etc_tables(tmp_path)
    reason = str(skipped.value)
    assert "noise_mr.dat and snc_mr.dat" in reason and str(tmp_path) in reason
    assert "https://github.com/Subaru-PFS/spt_ExposureTimeCalculator" in reason
    assert "tests/master_results/" in reason and "SPECVIT_SHARED" in reason


def test_the_site_leaves_out_the_scripts_that_draw_its_figures():
    from mkdocs.config import load_config

    config = load_config(str(ROOT / "mkdocs.yml"))
    scripts = sorted((ROOT / "docs" / "figures").glob("*.py"))
    assert scripts  # the figures' scripts are there, beside their figures
    for script in scripts:
        assert config.exclude_docs.match_file(f"figures/{script.name}"), script.name
    assert not config.exclude_docs.match_file("figures/predict_physics.png")
