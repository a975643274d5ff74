"""The window's thread only paints the first slice of a study: conversion and heavy imports happen elsewhere.

Each test runs the workstation offscreen in a fresh interpreter, so ``sys.modules`` and the timing are its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PyQt6")

SAMPLE_CT = Path(__file__).resolve().parents[1] / "samples" / "ct_abdomen_siemens"

SCRIPT = """
import json, os, sys, tempfile, threading, time
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QApplication
app = QApplication([])
import ui.qt_main_window as main_window
from ui.qt_main_window import MainWindow

converted_in = []
real_load_job = main_window.load_job


def load_job(ctx, record):
    scan = real_load_job(ctx, record)
    converted_in.append(scan.exact_integers() is None and threading.current_thread() is not threading.main_thread())
    return scan


main_window.load_job = load_job
window = MainWindow(settings=QSettings(os.path.join(tempfile.mkdtemp(), "g.ini"), QSettings.Format.IniFormat),
                    persist=False)
window.show()
app.processEvents()
before = "sqlalchemy" in sys.modules
seen = {}


def shown(scan):
    seen.update(dtype=str(scan.voxels.dtype), shape=list(scan.voxels.shape), sqlalchemy=("sqlalchemy" in sys.modules),
                painted=window.viewer.grab().width() > 0)
    app.quit()


window.scanShown.connect(shown)
window.errorReported.connect(lambda message: (seen.update(error=message), app.quit()))
window.open_path(sys.argv[1])
app.exec()
# flush: os._exit skips it, and a pipe is block-buffered unless PYTHONUNBUFFERED is set (CI's environment has none)
print(json.dumps({**seen, "sqlalchemy_before": before, "converted_in_worker": converted_in}), flush=True)
os._exit(0)
"""


def test_first_slice_is_shown_without_sqlalchemy_and_with_float32_made_in_the_worker() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(SAMPLE_CT)], capture_output=True, text=True,
                            timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert "error" not in seen, seen
    assert seen["shape"] == [20, 512, 512] and seen["dtype"] == "float32" and seen["painted"]
    assert seen["converted_in_worker"] == [True]  # the int16 -> float32 copy is made off the window's thread
    if not seen["sqlalchemy_before"]:  # nothing database-related was open: showing a study must not load it
        assert seen["sqlalchemy"] is False
