"""The test tiers of tests/conftest.py, run as a developer and CI run them: a plain `pytest` is the fast tier, a
named file runs whole, `--full` adds the model/gui/postgres tests, and CI without the shared data stops loudly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=600)


def _collected(output: str) -> tuple[int, int]:
    """(selected, deselected) from the summary line of --collect-only -q."""
    match = re.search(r"(\d+)/(\d+) tests collected \((\d+) deselected\)", output)
    if match:
        return int(match.group(1)), int(match.group(3))
    return int(re.search(r"(\d+) tests? collected", output).group(1)), 0


def test_plain_pytest_is_the_fast_tier_and_full_adds_the_rest() -> None:
    fast = _pytest("--collect-only", "-q")
    full = _pytest("--collect-only", "-q", "--full")
    fast_selected, fast_left = _collected(fast.stdout)
    full_selected, full_left = _collected(full.stdout)
    assert fast_selected + fast_left == full_selected + full_left  # the same tests, another choice
    assert 0 < fast_selected < full_selected and full_left < fast_left  # --full leaves out only the slow tests
    assert "tests/test_safety_rules.py" not in fast.stdout and "tests/test_safety_rules.py" in full.stdout
    assert "tests/test_gui.py" not in fast.stdout and "tests/test_layers.py" in fast.stdout


def test_a_named_file_runs_whole_and_m_decides_alone() -> None:
    named = _pytest("--collect-only", "-q", "tests/test_safety_rules.py")
    assert _collected(named.stdout)[1] == 0 and "test_window_refuses" in named.stdout
    gui_only = _pytest("--collect-only", "-q", "-m", "gui", "tests/test_safety_rules.py")
    assert _collected(gui_only.stdout)[0] == 1


def test_ci_without_the_shared_data_fails_instead_of_skipping(tmp_path) -> None:
    result = _pytest("-q", "tests/test_layers.py", CI="true", MEDSCAN_DATA=str(tmp_path / "absent"))
    assert result.returncode == 1
    assert f"{tmp_path / 'absent'}: the shared data folder is missing (CI=true)" in result.stdout + result.stderr
    local = _pytest("-q", "tests/test_layers.py", CI="", MEDSCAN_DATA=str(tmp_path / "absent"))
    assert local.returncode == 0, local.stdout
