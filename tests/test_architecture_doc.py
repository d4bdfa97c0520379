"""docs/architecture.md names every module file of specvit/ and training/, and nothing stale.

The page lists each module by its path from the repository root (``training/engine/simulate.py``);
package ``__init__.py`` files are not required. Every path it gives under ``specvit/`` or
``training/`` (module, folder or data file) must exist, and every dotted name it gives
(``training.evaluation.scoring``, ``specvit.predict``) must resolve to a module, or to a name
defined or imported at the top of one.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("specvit", "training")

#: a path under specvit/ or training/, not inside a longer path
PATH = re.compile(r"(?<![\w./-])((?:specvit|training)/[\w./-]*)")
#: a dotted name under specvit or training (``specvit.inference.predictor.predict``)
DOTTED = re.compile(r"(?<![\w./-])((?:specvit|training)(?:\.[A-Za-z_]\w*)+)")
#: file suffixes: ``training.md`` in a link is a page, not a module
SUFFIXES = {"md", "py", "yaml", "yml", "json", "txt", "png", "h5", "npz", "csv"}


def module_files() -> list[str]:
    """Every ``.py`` file under specvit/ and training/ but ``__init__.py``, as a path."""
    files = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path.name != "__init__.py" and "__pycache__" not in path.parts:
                files.append(path.relative_to(ROOT).as_posix())
    return sorted(files)


def doc_paths(text: str) -> set[str]:
    """The paths under specvit/ or training/ the page gives (trailing punctuation dropped)."""
    return {m.rstrip(".,;:") for m in PATH.findall(text)}


@cache
def defined_names(source: Path) -> frozenset[str]:
    """Names a module defines or imports at its top level (``if`` / ``try`` bodies included)."""
    names: set[str] = set()
    statements = list(ast.parse(source.read_text(encoding="utf-8")).body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.If | ast.Try):
            statements += node.body + node.orelse + getattr(node, "finalbody", [])
            for handler in getattr(node, "handlers", []):
                statements += handler.body
    return frozenset(names)


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module or package, or a name defined at the top of one."""
    parts = dotted.split(".")
    where = ROOT / parts[0]
    i = 1
    while i < len(parts) and where.is_dir():
        if (where / parts[i] / "__init__.py").is_file():
            where = where / parts[i]
        elif (where / f"{parts[i]}.py").is_file():
            where = where / f"{parts[i]}.py"
        else:
            break
        i += 1
    if i == len(parts):
        return True
    source = where / "__init__.py" if where.is_dir() else where
    return parts[i] in defined_names(source)


def test_every_module_file_is_named():
    text = DOC.read_text(encoding="utf-8")
    named = doc_paths(text)
    missing = [path for path in module_files() if path not in named]
    assert not missing, f"docs/architecture.md does not name these module files: {missing}"


def test_every_path_named_exists():
    text = DOC.read_text(encoding="utf-8")
    stale = sorted(p for p in doc_paths(text) if not (ROOT / p).exists())
    assert not stale, f"docs/architecture.md names paths that do not exist: {stale}"


def test_every_dotted_name_resolves():
    text = DOC.read_text(encoding="utf-8")
    names = {n for n in DOTTED.findall(text) if n.rsplit(".", 1)[1] not in SUFFIXES}
    stale = sorted(n for n in names if not resolves(n))
    assert not stale, f"docs/architecture.md names modules or objects that do not exist: {stale}"


def test_the_checks_see_the_tree():
    """Guards against a check that passes because it looked at nothing."""
    files = module_files()
    assert "training/trainer/rundir.py" in files and "specvit/inference/predictor.py" in files
    assert "specvit/__init__.py" not in files
    assert resolves("training.evaluation.scoring") and resolves("specvit.predict")
    assert not resolves("training.benchmark") and not resolves("specvit.inference.nothing")
    assert doc_paths("see `training/engine/seeding.py`, and training/configs/.") == {
        "training/engine/seeding.py",
        "training/configs/",
    }


def test_every_module_lists_its_public_names():
    """The page's convention: every module of specvit and training has ``__all__`` (the
    docstring-only package ``__init__.py`` files of training excepted)."""
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {
                t.id
                for n in tree.body
                if isinstance(n, ast.Assign)
                for t in n.targets
                if isinstance(t, ast.Name)
            }
            relative = path.relative_to(ROOT).as_posix()
            docstring_only = path.name == "__init__.py" and all(
                isinstance(n, ast.Expr) for n in tree.body
            )
            if "__all__" not in names and not (package == "training" and docstring_only):
                missing.append(relative)
    assert missing == []
