"""``medscan-gui [PATH] [--screenshot FILE.png [--operation NAME]]``: the workstation, or a picture of it.

With ``--screenshot`` the window opens PATH, shows its first series, waits until loading is done,
writes a PNG of the whole window (``QWidget.grab``) and exits 0; any error is one line on stderr
and exit status 1. ``--operation NAME`` first runs that registered operation (default parameters)
on the slice on screen and shows before/after at 200%, so docs can show a real comparison. Without a
display (no ``DISPLAY``/``WAYLAND_DISPLAY``) the screenshot mode uses Qt's offscreen platform by
itself, so it works in CI and docs builds.

Start-up stays fast because heavy modules load lazily: pydicom and nibabel in the first worker
job; torch not at all until something needs it (the About box on a CUDA build, an operation), and
then in a worker.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SCREENSHOT_SIZE = (1440, 900)
SCREENSHOT_TIMEOUT_MS = 120_000
COMPARE_ZOOM = 2.0  # --operation pictures: at fit-to-window a denoised slice looks like its input


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="medscan-gui", description="medscan workstation")
    parser.add_argument("path", nargs="?", help="DICOM folder or file, or NIfTI file, to open")
    parser.add_argument("--screenshot", metavar="FILE.png",
                        help="open PATH, wait for its first series, save a PNG of the window and exit")
    parser.add_argument("--operation", metavar="NAME",
                        help="with --screenshot: run NAME on the slice on screen and show before/after first")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation, the window included (offscreen without a display), and exit")
    return parser.parse_args(argv)


def _needs_offscreen() -> bool:
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# Harmless platform-plugin chatter that would otherwise break the one-line error contract.
_QUIET_QT_MESSAGES = ("does not support propagateSizeHints",)


def _install_qt_message_filter() -> None:
    from PyQt6.QtCore import qInstallMessageHandler

    def handler(_mode, _context, message: str) -> None:
        if not any(quiet in message for quiet in _QUIET_QT_MESSAGES):
            print(message, file=sys.stderr)

    qInstallMessageHandler(handler)


def install_error_hook(window) -> None:
    """A slip in our own code while handling an event becomes a one-line dialog, not an abort.

    PyQt6 aborts the process on an exception escaping a slot unless ``sys.excepthook`` was replaced;
    the traceback goes to the ``medscan.ui`` log for us, the message to the person at the window.
    """
    import logging

    from ui.qt_workers import describe_error

    def hook(kind, value, traceback) -> None:
        logging.getLogger("medscan.ui").error("unexpected error", exc_info=(kind, value, traceback))
        window.report_error("Unexpected error", describe_error(value))

    sys.excepthook = hook


def check_window() -> str:
    """Self-test check: the window opens the sample and renders it (offscreen without a display), as a user would
    see it. Skipped, and said so, where PyQt6 is not installed (``pip install medscan`` without the gui extra)."""
    import tempfile

    import numpy as np
    from PIL import Image

    from medscan.resources import resource_path
    from medscan.selftest import SAMPLE_CT, Skipped, gui_installed

    if not gui_installed():
        raise Skipped(f"PyQt6 is not installed ({GUI_EXTRA})")
    with tempfile.TemporaryDirectory(prefix="medscan-selftest-", ignore_cleanup_errors=True) as tmp:
        png = Path(tmp) / "window.png"
        if main([str(resource_path(*SAMPLE_CT)), "--screenshot", str(png)]) != 0 or not png.is_file():
            raise RuntimeError("the window did not render the sample (see the line above)")
        with Image.open(png) as image:
            size = image.size
            contrast = float(np.asarray(image.convert("L"), dtype=float).std())
    if contrast < 20:
        raise RuntimeError(f"the screenshot is nearly blank (grey-level std {contrast:.1f})")
    return f"window rendered the sample, screenshot {size[0]}x{size[1]}"


GUI_EXTRA = "the window needs it: pip install 'medscan[gui]'"


def main(argv: list[str] | None = None) -> int:
    """Start the window (or take a screenshot, or run the self-test); returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.version:
        import medscan

        print(f"medscan-gui {medscan.__version__}")
        return 0
    if args.self_test:
        from medscan.selftest import run_self_test

        return run_self_test(extra_checks=[("gui", check_window)])
    if args.screenshot and not args.path:
        print("medscan-gui: --screenshot needs a PATH to open", file=sys.stderr)
        return 1
    if args.operation and not args.screenshot:
        print("medscan-gui: --operation is for --screenshot (in the window, use the Operations dock)",
              file=sys.stderr)
        return 1
    if args.screenshot and _needs_offscreen():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from medscan.selftest import gui_installed

    if not gui_installed():
        print(f"medscan-gui: PyQt6 is not installed; {GUI_EXTRA}", file=sys.stderr)
        return 1

    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

    _install_qt_message_filter()

    from ui.qt_main_window import MainWindow
    from ui.qt_theme import apply_dark_theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("medscan-gui")
    app.setOrganizationName("medscan")
    app.setApplicationDisplayName("medscan")
    apply_dark_theme(app)

    window = MainWindow(persist=not args.screenshot)
    previous_hook = sys.excepthook
    install_error_hook(window)
    outcome = {"status": 0}

    def finish(status: int) -> None:
        outcome["status"] = status
        window.close()
        app.exit(status)

    if args.screenshot:
        target = Path(args.screenshot)

        def fail(_title: str, message: str) -> None:
            if outcome.get("failed"):
                return
            outcome["failed"] = 1
            print(f"medscan-gui: {message}", file=sys.stderr)
            QTimer.singleShot(0, lambda: finish(1))

        def capture() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not window.grab().save(str(target), "PNG"):
                fail("", f"{target}: could not write the PNG")
                return
            finish(0)

        def shown(_scan) -> None:
            if outcome.get("started"):
                return  # showing the result's source again is not a new series
            outcome["started"] = 1
            if not args.operation:
                QTimer.singleShot(300, capture)
            else:
                window.opsPanel.show_operation(args.operation)
                if window.workflow.preview(args.operation) is None and not outcome.get("failed"):
                    fail("", f"{args.operation}: nothing on screen to run it on")

        window.error_handler = fail
        window.resize(*SCREENSHOT_SIZE)
        # Wait for the series (and the result) to be shown, then one paint.
        window.scanShown.connect(shown)
        def compared(_entry) -> None:
            window.viewer.zoom_by(COMPARE_ZOOM)  # linked: both views, so that fine texture can be compared
            QTimer.singleShot(300, capture)

        window.workflow.resultShown.connect(compared)
        QTimer.singleShot(SCREENSHOT_TIMEOUT_MS,
                          lambda: fail("", f"{args.path}: timed out after {SCREENSHOT_TIMEOUT_MS // 1000} s"))
    window.show()
    if args.path:
        QTimer.singleShot(0, lambda: window.open_path(args.path))
    if not args.screenshot and window.settings.value("database/target"):
        # Someone here works with a study database: sign in now (Cancel works without one).
        QTimer.singleShot(0, window.database.sign_in)
    try:
        status = app.exec()
    finally:
        sys.excepthook = previous_hook  # the window is gone (the self-test goes on in this process)
    return outcome["status"] or status


if __name__ == "__main__":
    sys.exit(main())
