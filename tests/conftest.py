"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from training import paths

#: ../shared beside the repository root (CI lays a copy there); override with SPECVIT_SHARED.
SHARED_DIR = Path(os.environ.get("SPECVIT_SHARED", paths.SHARED_DIR))
#: The PFS ETC tables the tests read (specvit may not redistribute them), and their source.
ETC_TABLES = ("noise_mr.dat", "snc_mr.dat")
ETC_SOURCE = (
    "the PFS exposure-time calculator's medium-resolution output, tests/master_results/ of the "
    "public repository https://github.com/Subaru-PFS/spt_ExposureTimeCalculator (MIT)"
)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ../shared folder; tests that need it skip when it is absent."""
    if not (SHARED_DIR / "data").is_dir():
        pytest.skip(
            f"needs the shared reference data at {SHARED_DIR} (or set SPECVIT_SHARED to its "
            f"folder): data/pfs_etc/ holds {' and '.join(ETC_TABLES)} from {ETC_SOURCE}"
        )
    return SHARED_DIR


def require_etc_tables(folder: Path) -> Path:
    """``folder`` when it holds the PFS ETC tables; else skip, saying where they come from."""
    if not all((folder / name).is_file() for name in ETC_TABLES):
        pytest.skip(
            f"needs the PFS ETC tables {' and '.join(ETC_TABLES)} in {folder} (or set "
            f"SPECVIT_SHARED to the folder holding data/pfs_etc/): copy them from {ETC_SOURCE}"
        )
    return folder


@pytest.fixture(scope="session")
def etc_dir() -> Path:
    """The PFS exposure-time-calculator tables in ../shared/data/pfs_etc."""
    return require_etc_tables(SHARED_DIR / "data" / "pfs_etc")


@pytest.fixture(scope="session")
def tiny_eval_settings():
    """Evaluation-set settings of ``n`` stars with a miniature posterior (coarse grid, few
    samples): seconds, not minutes."""
    from training.evaluation.eval_sets import EvalSetSettings

    def settings(n: int, split: str = "validation") -> EvalSetSettings:
        return EvalSetSettings(split, n, grid=(6, 6, 5), n_samples=16, n_rounds=2)

    return settings


@pytest.fixture(scope="session")
def tiny_eval_set(tmp_path_factory, etc_dir, tiny_eval_settings):
    """Write an evaluation set of :func:`tiny_eval_settings` ``(n)``; returns its path."""
    from training.evaluation.eval_sets import generate

    def write(n: int) -> Path:
        path = tmp_path_factory.mktemp("eval_set") / f"validation-{n}.h5"
        return generate(tiny_eval_settings(n), path, etc_dir, log=lambda _: 0)

    return write


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Seed torch for every test and keep thread counts small on shared CI machines."""
    torch.manual_seed(0)
    yield
