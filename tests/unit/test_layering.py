"""The pure layers (keys/, providers/ outside providers/resources/) must never import pulumi."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PURE = ("keys", "providers")
EXEMPT = ROOT / "providers" / "resources"


def _pure_files() -> list[pathlib.Path]:
    files = []
    for package in PURE:
        for path in sorted((ROOT / package).rglob("*.py")):
            if EXEMPT not in path.parents:
                files.append(path)
    return files


def _imported_modules(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


def test_pure_layers_do_not_import_pulumi() -> None:
    files = _pure_files()
    assert any(path.parent.name == "keys" for path in files)  # guard against a vacuous pass
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for module in _imported_modules(tree):
            if module == "pulumi" or module.startswith("pulumi.") or module.startswith("pulumi_"):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_checker_catches_pulumi_imports() -> None:
    for source in ("import pulumi", "import pulumi.dynamic as d", "from pulumi import Output", "import pulumi_aws"):
        modules = _imported_modules(ast.parse(source))
        assert any(m == "pulumi" or m.startswith(("pulumi.", "pulumi_")) for m in modules), source
