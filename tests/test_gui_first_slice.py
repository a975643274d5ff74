"""The first slice of a study on screen: the middle one, decoded first; no float32 copy and no heavy imports.

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
import json, os, sys, tempfile, time
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QApplication
app = QApplication([])
from ui.qt_main_window import MainWindow

window = MainWindow(settings=QSettings(os.path.join(tempfile.mkdtemp(), "g.ini"), QSettings.Format.IniFormat),
                    persist=False)
window.show()
app.processEvents()
before = "sqlalchemy" in sys.modules
seen = {}


def first(partial):
    viewer = window.viewer
    painted = viewer.grab().width() > 0  # the paint is part of the time to the first slice
    seen.update(first_s=time.perf_counter() - began, first_index=viewer.slice_index, count=viewer.slice_count,
                first_ready=viewer.slice_ready(), scan_while_loading=window.scan is not None, painted=painted,
                sqlalchemy=("sqlalchemy" in sys.modules), matplotlib=("matplotlib" in sys.modules))


def shown(scan):
    integers = scan.exact_integers()  # read before anything here asks for float32 voxels
    seen.update(complete_s=time.perf_counter() - began, int16_kept=integers is not None,
                shape=list(scan.shape), viewer_int16=str(window.viewer.current_plane().dtype))
    app.quit()


window.firstSliceShown.connect(first)
window.scanShown.connect(shown)
window.errorReported.connect(lambda message: (seen.update(error=message), app.quit()))
began = time.perf_counter()
window.open_path(sys.argv[1])
app.exec()
# flush: os._exit skips it, and a pipe is block-buffered unless PYTHONUNBUFFERED is set (CI's environment has none)
print(json.dumps({**seen, "sqlalchemy_before": before}), flush=True)
os._exit(0)
"""


def test_middle_slice_is_shown_first_and_no_float32_copy_is_made() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(SAMPLE_CT)], capture_output=True, text=True,
                            timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert "error" not in seen, seen
    assert (seen["first_index"], seen["count"], seen["first_ready"], seen["painted"]) == (10, 20, True, True)
    assert seen["scan_while_loading"] is False  # the half-loaded series is never the window's scan
    assert seen["first_s"] <= seen["complete_s"]
    assert seen["shape"] == [20, 512, 512] and seen["int16_kept"] and seen["viewer_int16"] == "int16"
    if not seen["sqlalchemy_before"]:  # nothing database-related was open: showing a study must not load it
        assert seen["sqlalchemy"] is False
    assert seen["matplotlib"] is False  # the first paint does not import it (0.8 s on this machine)
