"""Where medscan's files live: shipped files (``models/``, ``samples/``) and the research data folder.

Shipped files are inside the PyInstaller bundle when frozen, at the checkout's root in a checkout, and in
``<prefix>/share/medscan`` after ``pip install medscan`` (the wheel's data files); one helper, so the self-test
and the app look in the same place. The data folder that training, evaluation and the tests read
(``../shared/data`` beside the checkout) is named by one setting, ``MEDSCAN_DATA``, read in one place.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DATA_ENV = "MEDSCAN_DATA"


def _checkout_root() -> Path:
    """The folder above the ``medscan`` package: the repository root in a checkout or an editable install."""
    return Path(__file__).resolve().parent.parent


def installed_root() -> Path:
    """Where ``pip install medscan`` puts the shipped models and samples (the wheel's data files):
    ``<prefix>/share/medscan``."""
    return Path(sys.prefix) / "share" / "medscan"


def resource_root() -> Path:
    """The folder holding the shipped ``models/`` and ``samples/``.

    Returns:
        ``sys._MEIPASS`` in a frozen bundle (the one-folder bundle's ``_internal``); the repository root in a
        checkout (or an editable install); else, after ``pip install medscan``, :func:`installed_root`.
    """
    frozen_root = getattr(sys, "frozen", False) and getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root)
    checkout = _checkout_root()
    if not (checkout / "models").is_dir() and installed_root().is_dir():
        return installed_root()
    return checkout


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
    frozen_root = getattr(sys, "frozen", False) and getattr(sys, "_MEIPASS", None)
    return (Path(frozen_root) if frozen_root else _checkout_root()).parent / "shared" / "data"


# The Stony Brook COVID-19 chest CT patients in the shared data: one axial slice per time point, both time points
# one patient. One split for every task that uses them (denoising, synthesis), so that a held-out patient is held
# out everywhere; the training package says why these (``medscan.train.data``).
CT05 = "train-extra/ct05_sbu_covid19"
CT05_TRAIN_SUBJECTS = ("A002304", "A027284", "A046441", "A048383", "A056642", "A058062")
CT05_HELDOUT_SUBJECTS = ("A062055", "A067967")


def ct05_axial(subjects: tuple[str, ...]) -> tuple[str, ...]:
    """The axial single-slice files of these ct05 subjects, as items under ``shared_data_dir()`` (sorted; empty
    without the data). Reformats are left out: they are not what a scanner reconstructs."""
    folder = shared_data_dir() / CT05
    names = sorted(p.name for p in folder.glob("*_axial_*.nii.gz")) if folder.is_dir() else []
    return tuple(f"{CT05}/{name}" for name in names if name.split("_")[0] in subjects)
