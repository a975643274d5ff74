"""NIfTI read/write with nibabel. NIfTI is RAS; Scan is LPS: the flip happens here and only here."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from medscan.scan import LPS_TO_RAS, MedscanError, ProvenanceEntry, Scan

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_MODALITY_PREFIX = "medscan modality="
_SYNTHETIC_MARK = "SYNTHETIC"


def is_nifti(path: str | Path) -> bool:
    """True when ``path`` names a NIfTI file by its suffix (``.nii`` or ``.nii.gz``, any case); the file need not exist.

    Example:
        >>> is_nifti("ct.NII.GZ"), is_nifti("ct_dicom/")
        (True, False)
    """
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: str | Path) -> Scan:
    """Load a NIfTI volume (3-D or 4-D) as a Scan; modality comes from our own descrip or a guess."""
    path = Path(path)
    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj, dtype=np.float32)  # applies scl_slope/scl_inter
    except Exception as exc:
        raise MedscanError(path, f"unreadable NIfTI ({str(exc).splitlines()[0][:160]})") from None
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0, :]
    while data.ndim > 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim not in (3, 4):
        raise MedscanError(path, f"unsupported NIfTI shape {data.shape}: expected 3-D or 4-D")
    if not np.all(np.isfinite(data)):
        raise MedscanError(path, "voxels contain NaN or infinity")
    affine = LPS_TO_RAS @ image.affine  # RAS -> LPS (the flip is its own inverse)
    voxels = data.T  # (x, y, z[, t]) -> [t,] k, j, i
    warnings: list[str] = []
    modality = _modality_from_header(image)
    if modality is None:
        modality = _guess_modality(voxels)
        warnings.append(f"NIfTI carries no modality: guessed {modality} from the intensity range")
    zooms = image.header.get_zooms()
    tr = float(zooms[3]) if data.ndim == 4 and len(zooms) > 3 and zooms[3] > 0 else None
    return Scan(
        voxels=np.ascontiguousarray(voxels),
        affine=affine,
        modality=modality,
        description=path.name.split(".")[0],
        warnings=warnings,
        units="HU" if modality == "CT" else "",
        repetition_time_s=tr,
        source_path=str(path),
        provenance=[ProvenanceEntry("read_nifti", {"file": path.name})],
        synthetic=_SYNTHETIC_MARK in _descrip(image).split(),
    )


def _descrip(image: nib.Nifti1Image) -> str:
    descrip = image.header.get("descrip")
    return descrip.tobytes().decode("latin-1", "ignore").strip("\x00 ") if descrip is not None else ""


def _modality_from_header(image: nib.Nifti1Image) -> str | None:
    text = _descrip(image)
    if text.startswith(_MODALITY_PREFIX):
        return text[len(_MODALITY_PREFIX):].split()[0] or None
    return None


def _guess_modality(voxels: np.ndarray) -> str:
    """CT when the values look like Hounsfield units (air near -1000), else MR."""
    sample = voxels[..., ::4, ::4]
    low = float(np.percentile(sample, 1))
    integral = bool(np.all(np.mod(sample, 1) == 0))
    return "CT" if integral and -1100 <= low <= -500 else "MR"


def write_nifti(scan: Scan, path: str | Path) -> Path:
    """Write a Scan as NIfTI-1 (RAS affine in sform and qform); integers stay integers."""
    path = Path(path)
    voxels = scan.voxels
    data = voxels.T  # [t,] k, j, i -> (x, y, z[, t])
    integral = bool(np.all(np.mod(voxels, 1) == 0))
    if integral and voxels.min() >= -32768 and voxels.max() <= 32767:
        data = data.astype(np.int16)
    else:
        data = data.astype(np.float32)
    affine = LPS_TO_RAS @ scan.affine
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    header = image.header
    header.set_xyzt_units("mm", "sec")
    if voxels.ndim == 4 and scan.repetition_time_s:
        header.set_zooms((*scan.spacing, scan.repetition_time_s))
    # The SYNTHETIC mark travels in the header, so generated voxels stay marked when the file is reopened.
    mark = f" {_SYNTHETIC_MARK}" if scan.synthetic else ""
    header["descrip"] = f"{_MODALITY_PREFIX}{scan.modality}{mark}"[:79].encode()
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    if path.parent and not path.parent.exists():
        raise MedscanError(path, "output folder does not exist")
    suffix = ".nii.gz" if str(path).lower().endswith(".gz") else ".nii"
    fd, tmp = tempfile.mkstemp(prefix=".medscan-", suffix=suffix, dir=path.parent or ".")
    os.close(fd)
    try:
        nib.save(image, tmp)
        os.replace(tmp, path)
    except Exception:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
