"""Where medscan's files live: shipped files (``models/``, ``samples/``) and the research data folder.

Shipped files are inside the PyInstaller bundle when frozen, else at the checkout's root; one helper, so the
self-test and the app look in the same place. The data folder that training, evaluation and the tests read
(``../shared/data`` beside the checkout) is named by one setting, ``MEDSCAN_DATA``, read in one place.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DATA_ENV = "MEDSCAN_DATA"


def resource_root() -> Path:
    """The folder holding the shipped ``models/`` and ``samples/``.

    Returns:
        ``sys._MEIPASS`` in a frozen bundle (the one-folder bundle's ``_internal``), else the repository root.
    """
    frozen_root = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and frozen_root:
        return Path(frozen_root)
    return Path(__file__).resolve().parent.parent


def resource_path(*parts: str) -> Path:
    """A shipped file or folder below :func:`resource_root`.

    Args:
        parts: path components, e.g. ``resource_path("samples", "ct_abdomen_siemens")``.

    Returns:
        The path; it is not checked to exist.
    """
    return resource_root().joinpath(*parts)


def shared_data_dir() -> Path:
    """The research data folder that training, evaluation scripts and the tests read.

    Returns:
        ``$MEDSCAN_DATA`` when set (``~`` expanded), else ``../shared/data`` beside the checkout (for a checkout
        at ``/work/main`` that is ``/work/shared/data``). The folder is not checked to exist: callers that need
        it say so in their own error or skip message.

    Example:
        >>> from medscan.resources import shared_data_dir
        >>> ct = shared_data_dir() / "train" / "ct01_upper_abdomen_siemens.nii.gz"  # doctest: +SKIP
    """
    override = os.environ.get(DATA_ENV)
    if override:
        return Path(override).expanduser()
    return resource_root().parent / "shared" / "data"
