"""The PyInstaller spec must not exclude anything the application imports.

A module in the spec's ``excludes`` is silently left out of the bundle; the first user who reaches a feature
importing it (often lazily, inside a function) gets a crash that no build step reports. This test imports, in
a fresh interpreter, every medscan and ui module and every module they import anywhere (top level or inside a
function), then checks that none of what got loaded is excluded by ``installer/medscan.spec``. What ``import monai``
loads by itself is exempt: MONAI walks its own subpackages and skips any that fails to import (the spec drops
its training/federated extras on purpose, and the bundle's self-test proves MONAI still works without them).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Imported only when present, by design: the database picks its DB-API from the URL; Dask is an optional extra;
# training writes TensorBoard event files only where the train extra is installed (the bundle does not train).
OPTIONAL = ("sqlcipher3", "psycopg", "psycopg_binary", "pysqlcipher3", "distributed", "torch.utils.tensorboard")
# Modules that act when imported (run the CLI, run a migration) rather than define things.
SIDE_EFFECTS = ("medscan.__main__", "medscan.db.migrations.env")


def spec_excludes() -> list[str]:
    tree = ast.parse((ROOT / "installer" / "medscan.spec").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "excludes" for t in node.targets):
            return [ast.literal_eval(element) for element in node.value.elts]
    raise AssertionError("installer/medscan.spec has no 'excludes' list")


def imported_modules() -> set[str]:
    """Every absolute module name imported anywhere in medscan/ and ui/, plus those packages' own modules."""
    names: set[str] = set()
    for package in ("medscan", "ui"):
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            names.add(module)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module)
    return {n for n in names if not n.startswith(OPTIONAL) and n not in SIDE_EFFECTS and n != "__future__"}


def test_the_bundle_keeps_every_module_the_app_imports() -> None:
    excludes = spec_excludes()
    modules = imported_modules()
    direct = sorted(f"{name} (excluded as {rule})" for name in modules for rule in excludes
                    if name == rule or name.startswith(rule + "."))
    assert direct == [], f"medscan/ui import modules that installer/medscan.spec excludes: {direct}"
    program = (
        "import importlib, json, sys\n"
        "import monai\n"
        "own = set(sys.modules)\n"
        "failed = {}\n"
        f"for name in {sorted(modules)!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        "        failed[name] = str(exc)\n"
        "print(json.dumps({'loaded': sorted(set(sys.modules) - own), 'failed': failed}))\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}, f"modules the app imports are not installed: {report['failed']}"
    excluded = sorted(f"{module} (excluded as {rule})" for module in report["loaded"] for rule in excludes
                      if module == rule or module.startswith(rule + "."))
    assert excluded == [], f"installer/medscan.spec excludes modules the app imports: {excluded[:10]}"


def lazy_third_party_imports() -> set[str]:
    """Modules outside the standard library, medscan and ui that are imported inside a function body."""
    found: set[str] = set()
    for package in ("medscan", "ui"):
        for path in (ROOT / package).rglob("*.py"):
            for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(function):
                    if isinstance(node, ast.Import):
                        found.update(alias.name for alias in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        found.add(node.module)
    return {name for name in found if name.split(".")[0] not in sys.stdlib_module_names | {"medscan", "ui"}
            and not name.startswith(OPTIONAL)}


def test_the_self_test_imports_every_library_a_feature_loads_lazily() -> None:
    from medscan.selftest import GUI_IMPORTS, LAZY_IMPORTS, check_imports

    missing = sorted(lazy_third_party_imports() - set(LAZY_IMPORTS) - set(GUI_IMPORTS))
    assert missing == [], f"add to medscan.selftest.LAZY_IMPORTS (the bundle's self-test imports them): {missing}"
    assert "medscan modules" in check_imports()
