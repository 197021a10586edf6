"""The import plan of docs/CONVENTIONS.md, checked on the source itself (``ast``, so an import inside a function,
under ``if TYPE_CHECKING:`` or in a ``try`` counts too, and so does ``importlib.import_module("...")``):

- ``reference/`` (the reference stack, which runs in production unchanged) imports nothing of ``tradedrill``,
  ``faults``, ``scenarios`` or ``reports``;
- ``faults/`` imports nothing of ``scenarios`` or ``reports``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "reference": {"tradedrill", "faults", "scenarios", "reports"},
    "faults": {"scenarios", "reports"},
}


def imported_modules(source: str, package: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, module) of every import in ``source`` (a module of ``package``), at any depth; relative imports
    resolved to absolute names."""
    tree = ast.parse(source, filename=filename)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return sorted(found)


def file_imports(path: Path) -> list[tuple[int, str]]:
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    return imported_modules(path.read_text(encoding="utf-8"), package, str(path))


def violations(package: str) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in file_imports(path):
            if module.split(".")[0] in FORBIDDEN[package]:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_climbs_the_layers(package):
    files = list((ROOT / package).rglob("*.py"))
    assert len(files) > 5, f"{package}/ has its files"
    assert violations(package) == []


def test_the_checker_sees_every_form_of_import():
    source = ("import os\n"
              "def f():\n    from tradedrill.process import ProcessNode\n"
              "if False:\n    import scenarios.runner as r\n"
              "try:\n    from faults import core\nexcept ImportError:\n    pass\n"
              "import importlib\nimportlib.import_module('reports.build')\n"
              "from .mt5 import constants\n"
              "from .. import cli\n")
    found = [m for _, m in imported_modules(source, "reference.engine")]
    assert found == ["os", "tradedrill.process", "scenarios.runner", "faults", "importlib", "reports.build",
                     "reference.engine.mt5", "reference"]
    assert {m.split(".")[0] for m in found} & FORBIDDEN["reference"] == {"tradedrill", "scenarios", "faults",
                                                                         "reports"}
