"""What import-linter (`lint-imports` in scripts/test.sh) cannot see: a private helper (``_name``) imported from
another package. Such a helper has no contract; make it public, with a docstring, in the lower package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "ui" else ".".join(parts[:2])


def private_imports_across_packages(roots: tuple[str, ...] = ("medscan", "ui")) -> list[str]:
    """``path:line: from X import _name`` for every private name imported from another package (any depth)."""
    found = []
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                        and node.module.split(".")[0] in roots and _package(node.module) != _package(module)):
                    continue
                found += [f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {alias.name}"
                          for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def test_no_private_helper_is_imported_from_another_package() -> None:
    assert private_imports_across_packages() == []


def test_the_check_sees_a_private_import(tmp_path, monkeypatch) -> None:
    package = tmp_path / "medscan" / "a"
    package.mkdir(parents=True)
    (package / "x.py").write_text("from medscan.b.y import _helper\nfrom medscan import __version__\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert private_imports_across_packages(("medscan",)) == ["medscan/a/x.py:1: from medscan.b.y import _helper"]
