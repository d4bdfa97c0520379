"""Where the training scripts find the repository and the shared data beside it.

``../shared`` means the ``shared`` folder beside the repository root, whatever the working
directory: :func:`resolve_path` reads every relative path of a training config from the
repository root.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_ETC_DIR", "REPO_ROOT", "SHARED_DIR", "resolve_path"]

#: The repository root (the folder holding ``specvit/`` and ``training/``).
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The shared data folder beside the repository (``../shared``).
SHARED_DIR = REPO_ROOT.parent / "shared"
#: The PFS exposure-time-calculator tables of the noise model.
DEFAULT_ETC_DIR = SHARED_DIR / "data" / "pfs_etc"


def resolve_path(path: str | Path) -> Path:
    """``path`` itself if absolute (``~`` expanded), else the path relative to the repo root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path
