"""Where shipped files (``models/``, ``samples/``) live: inside the PyInstaller bundle when frozen,
else at the checkout's root. One helper, so the self-test and the app look in the same place."""

from __future__ import annotations

import sys
from pathlib import Path


def resource_root() -> Path:
    """``sys._MEIPASS`` in a frozen bundle (the one-folder bundle's ``_internal``), else the repo root."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and frozen_root:
        return Path(frozen_root)
    return Path(__file__).resolve().parent.parent


def resource_path(*parts: str) -> Path:
    """A shipped file or folder, e.g. ``resource_path("samples", "ct_abdomen_siemens")``."""
    return resource_root().joinpath(*parts)
