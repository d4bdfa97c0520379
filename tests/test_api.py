"""The public API: each package's ``__all__`` is what it exposes, and no arrow points back up."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import specvit

PACKAGES = [
    "specvit",
    *sorted(
        f"specvit.{p.name}"
        for p in Path(specvit.__file__).parent.iterdir()
        if p.is_dir() and (p / "__init__.py").is_file()
    ),
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name):
    module = importlib.import_module(name)
    public = {
        k
        for k, v in vars(module).items()
        if not k.startswith("_") and not inspect.ismodule(v) and k != "annotations"
    }
    exported = set(module.__all__) - {"__version__"}
    assert exported == public, (sorted(exported - public), sorted(public - exported))


def test_what_a_user_needs_is_exported():
    needed = {"LabelPrior", "PosteriorMean", "PredictFlag", "LABEL_NAMES", "predict", "load"}
    assert needed <= set(specvit.__all__)


def _imports_the_top(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "specvit":
            return True
        if isinstance(node, ast.Import) and any(a.name == "specvit" for a in node.names):
            return True
    return False


def test_no_module_imports_the_package_top():
    root = Path(specvit.__file__).parent
    modules = [p for p in root.rglob("*.py") if p != root / "__init__.py"]
    assert len(modules) > 40
    assert [str(p.relative_to(root)) for p in modules if _imports_the_top(p)] == []
