"""The packages import one way: data_loaders <- models <- trainer <- tune; cluster talks to Ray only.

Every import statement counts, including those inside functions (a lazy import is still a
dependency), so a layer cannot reach upward by hiding an import in a function body.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data_loaders", "models", "trainer", "tune", "cluster")
# What each package may import from the project (itself included).
ALLOWED: dict[str, set[str]] = {
    "data_loaders": {"data_loaders"},
    "models": {"data_loaders", "models"},
    "trainer": {"data_loaders", "models", "trainer"},
    "tune": {"data_loaders", "models", "trainer", "tune"},
    "cluster": {"cluster"},
}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level project package) for every import of a project package in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name.split(".")[0]) for name in names
                  if name.split(".")[0] in PACKAGES]
    return found


def test_project_imports_finds_every_import_form(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import os\nimport models.causal\nfrom trainer import config\n"
                      "def f():\n    from tune.search import run\n    import torch\n")
    assert project_imports(source) == [(2, "models"), (3, "trainer"), (5, "tune")]


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_lower_layers(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {target}"
             for path in files for line, target in project_imports(path)
             if target not in ALLOWED[package]]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)
