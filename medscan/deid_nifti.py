"""De-identified export to NIfTI: voxels, geometry, modality and repetition time leave; nothing else.

A NIfTI-1 header has no field for a patient, but it has free text (``descrip``, ``aux_file``,
``intent_name``, ``db_name``) and extensions that converters fill with DICOM headers. medscan's
writer fills only ``descrip`` with the modality; ``check_anonymous_nifti`` proves that on the file
written (so a future change to the writer cannot leak silently) before it is moved into place.
Images that may show burned-in text are refused as for DICOM export.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import pydicom

from medscan.deid import burned_in_risk
from medscan.scan import MedscanError

TEXT_FIELDS = ("descrip", "aux_file", "intent_name", "db_name")
_ALLOWED_DESCRIP = "medscan modality="


def _ours(descrip: str) -> bool:
    """medscan's own descrip: the modality tag, optionally followed by the SYNTHETIC mark."""
    words = descrip.split()
    return descrip.startswith(_ALLOWED_DESCRIP) and len(words) in (2, 3) and words[2:] in ([], ["SYNTHETIC"])


def check_anonymous_nifti(path: str | Path) -> None:
    """Raise MedscanError unless every free-text field is empty (or our modality tag) and no extension exists."""
    image = nib.load(str(path))
    header = image.header
    for name in TEXT_FIELDS:
        text = header[name].tobytes().decode("latin-1", "replace").strip("\x00 ")
        if text and not (name == "descrip" and _ours(text)):
            raise MedscanError(path, f"NIfTI header field {name} holds text ({text[:40]!r}); not exported")
    if len(header.extensions):
        raise MedscanError(path, f"NIfTI file carries {len(header.extensions)} header extension(s); not exported")


def burned_in_refusal(files: Iterable[str]) -> str | None:
    """The first reason why one of ``files`` may show burned-in text, as 'file: why', or None."""
    for file in sorted(set(files)):
        try:
            header = pydicom.dcmread(file, stop_before_pixels=True, force=True)
        except Exception:
            continue  # unreadable headers never reach the loader either
        risk = burned_in_risk(header, has_pixels=True)
        if risk:
            return f"{file}: {risk}"
    return None


def deidentify_to_nifti(src: str | Path, out: str | Path, *, series: str | None = None,
                        files: Iterable[str] | None = None, allow_burned_in: bool = False) -> tuple[Path, list[str]]:
    """Write one DICOM series under ``src`` (``files`` restricts it) as a de-identified NIfTI file.

    Returns the path and warnings. The file appears complete or not at all.
    """
    from medscan.io.dicom import list_series, load_series, select_series
    from medscan.io.nifti import write_nifti

    src, out = Path(src), Path(out)
    if not src.exists():
        raise MedscanError(src, "no such file or folder")
    if out.exists():
        raise MedscanError(out, "already exists; choose a new file")
    if not out.parent.is_dir():
        raise MedscanError(out, "output folder does not exist")
    record = select_series(list_series(src, files=files), src, series)
    warnings: list[str] = []
    risk = burned_in_refusal(record.files)
    if risk and not allow_burned_in:
        raise MedscanError(src, f"{risk}; refusing to export (--allow-burned-in to export with a warning)")
    if risk:
        warnings.append(f"{risk}; exported, check the pixels")
    scan = load_series(record)
    suffix = ".nii.gz" if out.name.lower().endswith(".gz") else ".nii"
    fd, tmp_name = tempfile.mkstemp(prefix=".medscan-deid-", suffix=suffix, dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write_nifti(scan, tmp)
        check_anonymous_nifti(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out, warnings
