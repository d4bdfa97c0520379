"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from training import paths

#: ../shared beside the repository root (CI lays a copy there); override with SPECVIT_SHARED.
SHARED_DIR = Path(os.environ.get("SPECVIT_SHARED", paths.SHARED_DIR))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ../shared folder; tests that need it skip when it is absent."""
    if not (SHARED_DIR / "data").is_dir():
        pytest.skip(f"needs the shared reference data at {SHARED_DIR} (set SPECVIT_SHARED)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def etc_dir(shared_dir: Path) -> Path:
    """The PFS exposure-time-calculator tables in ../shared/data/pfs_etc."""
    return shared_dir / "data" / "pfs_etc"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Seed torch for every test and keep thread counts small on shared CI machines."""
    torch.manual_seed(0)
    yield
