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


def _private_imports(path: Path) -> list[str]:
    """``module.name`` of every private name ``path`` imports from specvit or training."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "specvit",
            "training",
        ):
            found += [
                f"{node.module}.{a.name}"
                for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__")
            ]
    return found


def test_no_module_imports_a_private_name_of_another():
    """A helper used across modules is public (named, documented, in its module's __all__)."""
    root = Path(specvit.__file__).parents[1]
    modules = [*(root / "specvit").rglob("*.py"), *(root / "training").rglob("*.py")]
    found = {str(p.relative_to(root)): _private_imports(p) for p in modules}
    assert {k: v for k, v in found.items() if v} == {}


def test_predict_defaults_have_one_home():
    """Predictor, predict and specvit-predict read their defaults from the same constants."""
    from specvit.inference import predictor as home
    from specvit.inference import validate
    from specvit.inference.cli import main

    defaults = {
        "device": home.DEFAULT_DEVICE,
        "batch_size": home.DEFAULT_BATCH_SIZE,
        "precision": home.DEFAULT_PRECISION,
        "min_valid": home.DEFAULT_MIN_VALID,
        "physics": home.DEFAULT_PHYSICS,
        "medium": validate.DEFAULT_MEDIUM,
        "uncertainty": validate.DEFAULT_UNCERTAINTY,
    }
    for function in (home.Predictor.__init__, home.Predictor.predict, home.predict):
        params = inspect.signature(function).parameters
        got = {k: params[k].default for k in defaults if k in params}
        assert got == {k: defaults[k] for k in got}, function
    for name in ("medium", "uncertainty"):
        assert inspect.signature(validate.as_spectra).parameters[name].default == defaults[name]
    options = {p.name: p.default for p in main.params}
    shared = ("device", "batch_size", "precision", "physics")
    assert {k: options[k] for k in shared} == {k: defaults[k] for k in shared}
    precision = next(p for p in main.params if p.name == "precision")
    assert tuple(precision.type.choices) == home.PRECISIONS  # --precision: every value
