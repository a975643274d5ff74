"""NIfTI read/write with nibabel. NIfTI is RAS; Scan is LPS: the flip happens here and only here."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from medscan.scan import LPS_TO_RAS, MedscanError, ProvenanceEntry, Scan

if TYPE_CHECKING:
    import nibabel as nib

# nibabel is imported where a NIfTI file is read or written: ``medscan info`` on a DICOM folder never needs it.

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
    import nibabel as nib

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


# Scanners fill the corners outside the reconstruction circle with one value below air (GE -3024, others -2048 or
# -2000); dcm2niix keeps it. It is not tissue, so it must not decide whether the rest looks like HU.
PADDING_BELOW_HU = -1100


def _guess_modality(voxels: np.ndarray) -> str:
    """CT when the values look like Hounsfield units (integers, air near -1000), else MR.

    Values below ``PADDING_BELOW_HU`` are left out first when one padding value holds nearly all of them: a GE CT
    converted by dcm2niix has a quarter of its pixels at -3024 and was read as MR. (A phase image, integers
    spread over -4096..4096, has no such value and stays MR.)
    """
    sample = np.asarray(voxels[..., ::4, ::4]).ravel()
    if sample.size == 0 or not bool(np.all(np.mod(sample, 1) == 0)):
        return "MR"
    below = sample < PADDING_BELOW_HU
    if below.any() and not below.all():
        _, counts = np.unique(sample[below], return_counts=True)
        if counts.max() >= 0.9 * below.sum():
            sample = sample[~below]
    low = float(np.percentile(sample, 1))
    return "CT" if -1100 <= low <= -500 else "MR"


NIFTI1_DATA_OFFSET = 352  # 348-byte header and the 4-byte extension flag (no extensions)
GZIP_LEVEL = 2  # ISA-L's level 2: several times faster than zlib's default, files within a few % of its size
BLOCK_PLANES = 16  # planes per block when checking, converting and writing: bounds the temporaries


def _blocks(voxels: np.ndarray) -> Iterator[np.ndarray]:
    """``voxels`` as consecutive blocks of whole planes, in memory (NIfTI) order."""
    planes = voxels.reshape(-1, *voxels.shape[-2:])
    for start in range(0, len(planes), BLOCK_PLANES):
        yield planes[start:start + BLOCK_PLANES]


def _int16_exact(voxels: np.ndarray) -> bool:
    """True when every voxel is an integer in int16's range (checked a block at a time, no full-size temporary)."""
    for block in _blocks(voxels):
        if block.size and (block.min() < -32768 or block.max() > 32767 or not np.all(np.mod(block, 1) == 0)):
            return False
    return True


def _nifti_header(scan: Scan, data: np.ndarray, dtype: type) -> bytes:
    """The 352 bytes before the voxels, as nibabel writes them for ``data`` (x, y, z[, t]) stored as ``dtype``."""
    import nibabel as nib

    affine = LPS_TO_RAS @ scan.affine
    image = nib.Nifti1Image(data, affine, dtype=dtype)  # ``data`` is a view: nothing is copied
    header = image.header
    header.set_xyzt_units("mm", "sec")
    if data.ndim == 4 and scan.repetition_time_s:
        header.set_zooms((*scan.spacing, scan.repetition_time_s))
    # The SYNTHETIC mark travels in the header, so generated voxels stay marked when the file is reopened.
    mark = f" {_SYNTHETIC_MARK}" if scan.synthetic else ""
    header["descrip"] = f"{_MODALITY_PREFIX}{scan.modality}{mark}"[:79].encode()
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.update_header()
    header = image.header
    header["vox_offset"] = NIFTI1_DATA_OFFSET
    header.set_slope_inter(1.0, 0.0)  # values are stored unscaled
    return header.binaryblock + b"\x00" * (NIFTI1_DATA_OFFSET - len(header.binaryblock))


def _open_output(tmp: Path, compressed: bool) -> BinaryIO:
    if not compressed:
        return open(tmp, "wb")
    from isal import igzip_threaded  # ISA-L deflate on worker threads; any gzip reader decompresses it

    threads = max(1, min(os.cpu_count() or 1, 4))
    return igzip_threaded.open(tmp, "wb", compresslevel=GZIP_LEVEL, threads=threads)  # type: ignore[return-value]


def write_nifti(scan: Scan, path: str | Path) -> Path:
    """Write a Scan as NIfTI-1 (RAS affine in sform and qform); integers stay integers (int16 where they fit).

    The file is nibabel's NIfTI-1 byte for byte (header and voxels); ``.nii.gz`` is the same bytes gzip-compressed
    with ISA-L on several threads. Voxels are written block by block from the Scan's own array (int16 straight
    from a DICOM load), so the only copy is a block's conversion. The file appears complete or not at all.
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise MedscanError(path, "output folder does not exist")
    integers = scan.exact_integers()
    voxels = integers if integers is not None else scan.voxels
    dtype = np.int16 if integers is not None or _int16_exact(voxels) else np.float32
    header = _nifti_header(scan, voxels.T, dtype)  # [t,] k, j, i -> (x, y, z[, t]): NIfTI's order is this memory
    compressed = str(path).lower().endswith(".gz")
    suffix = ".nii.gz" if compressed else ".nii"
    tmp = (path.parent or Path(".")) / f".medscan-{uuid.uuid4().hex}{suffix}"
    try:
        with _open_output(tmp, compressed) as out:
            out.write(header)
            for block in _blocks(np.ascontiguousarray(voxels)):
                out.write(memoryview(block if block.dtype == dtype else block.astype(dtype)).cast("B"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
