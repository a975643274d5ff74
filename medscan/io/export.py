"""Write a Scan as a new derived DICOM series that PACS, 3D Slicer, OHIF and dcm2niix accept.

The series is written the most conservative way: classic single-frame instances, Explicit VR
Little Endian, uncompressed MONOCHROME2, with proper file meta. Patient, study, equipment and
frame-of-reference attributes come from ``scan.header`` through an explicit allow-list (never
private or pixel-related tags), so the new series lands in the same study and the same patient
coordinate system as its source, while every series and instance UID is new.

Geometry is written from ``scan.affine`` alone, and the pixel values are scaled with
RescaleSlope/Intercept chosen so that reloading gives the float voxels back exactly (integers
within int16/uint16) or within half a quantum.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import secrets
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset, validate_file_meta
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from medscan.scan import MedscanError, Scan

__all__ = ["PixelEncoding", "choose_pixel_encoding", "write_derived_series"]

_SOP_CLASS_BY_MODALITY = {"CT": CTImageStorage, "MR": MRImageStorage}

# Copied verbatim from the source header when present and non-empty. Patient, study, equipment,
# frame of reference and acquisition descriptors only: these stay true for a derived image.
_PATIENT_STUDY_TAGS = (
    # Patient
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    # General study / patient study
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber", "StudyDescription", "PatientAge", "PatientSize", "PatientWeight",
    # General equipment
    "Manufacturer", "InstitutionName", "InstitutionAddress", "StationName",
    "InstitutionalDepartmentName", "ManufacturerModelName", "DeviceSerialNumber",
    # Frame of reference
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    # General series descriptors that do not change when the voxels do
    "PatientPosition", "BodyPartExamined", "Laterality",
    # Lossy compression is inherited: a derivative of a lossy image is lossy too (PS3.3 C.7.6.1.1.5)
    "LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod",
)
_CT_ACQUISITION_TAGS = ("KVP", "ConvolutionKernel", "XRayTubeCurrent", "ExposureTime", "Exposure")
_MR_ACQUISITION_TAGS = (
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "SequenceName",
    "RepetitionTime", "EchoTime", "InversionTime", "EchoTrainLength", "FlipAngle",
    "MagneticFieldStrength", "ImagingFrequency", "ImagedNucleus",
)
# Type 2 attributes of the IODs written here: they must be present, empty when unknown.
_TYPE2_COMMON = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "Manufacturer",
    "PositionReferenceIndicator", "SliceThickness",
)
_TYPE2_CT = ("KVP", "AcquisitionNumber")
_TYPE2_MR = ("ScanOptions", "MRAcquisitionType", "EchoTime", "EchoTrainLength")
_TYPE2_SC = ("PatientOrientation",)

_DERIVATION_DESCRIPTION_MAX = 1024  # ST
_SERIES_DESCRIPTION_MAX = 64  # LO


@dataclass(frozen=True)
class PixelEncoding:
    """How float voxels are stored: ``stored = round((value - intercept) / slope)``.

    ``slope`` and ``intercept`` are the values exactly as written to the DS strings, so a
    reader applying them reproduces what this module quantised against.
    """

    dtype: np.dtype
    slope: float
    intercept: float
    slope_text: str
    intercept_text: str

    @property
    def pixel_representation(self) -> int:
        """DICOM PixelRepresentation: 1 for signed integers, 0 for unsigned."""
        return 1 if self.dtype.kind == "i" else 0

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Stored integers for ``values`` (clipped into the dtype's range)."""
        info = np.iinfo(self.dtype)
        stored = np.rint((np.asarray(values, np.float64) - self.intercept) / self.slope)
        return np.clip(stored, info.min, info.max).astype(self.dtype.newbyteorder("<"))


def _ds_text(value: float) -> str:
    """The closest DS string (at most 16 characters) to ``value``."""
    value = float(value)
    text = format_number_as_ds(0.0 if value == 0 else value)  # no '-0'
    return text[:-2] if text.endswith(".0") else text


def _ds_geometry(value: float) -> str:
    """DS text for a coordinate or cosine; round-off below 1e-10 (mm or unit) is written as 0."""
    value = float(value)
    return _ds_text(0.0 if abs(value) < 1e-10 else value)


def choose_pixel_encoding(voxels: np.ndarray) -> PixelEncoding:
    """Pick int16/uint16 storage and rescale so the float voxels survive a DICOM round trip.

    Integers that fit int16 (or uint16) are stored exactly with slope 1; anything else is
    spread linearly over the 65536 uint16 codes, so the error after reloading is at most
    slope/2. The slope and intercept are rounded to their DS text *before* quantising, so
    the bound holds for the numbers a reader actually sees.
    """
    values = np.asarray(voxels)
    lo = float(np.min(values))
    hi = float(np.max(values))
    integral = bool(np.all(values == np.rint(values)))
    if integral and lo >= -32768 and hi <= 32767:
        return PixelEncoding(np.dtype(np.int16), 1.0, 0.0, "1", "0")
    if integral and lo >= 0 and hi <= 65535:
        return PixelEncoding(np.dtype(np.uint16), 1.0, 0.0, "1", "0")
    intercept_text = _ds_text(lo)
    slope_text = "1" if hi == lo else _ds_text((hi - lo) / 65535.0)
    return PixelEncoding(
        np.dtype(np.uint16), float(slope_text), float(intercept_text), slope_text, intercept_text
    )


def _robust_window(values: np.ndarray) -> tuple[float, float]:
    """(center, width) spanning the 1st-99th percentile; width >= 1 as PS3.3 C.11.2.1.2 requires."""
    flat = values.ravel()
    step = max(1, flat.size // 2_000_000)  # a strided sample is plenty for percentiles
    lo, hi = np.percentile(flat[::step], [1.0, 99.0])
    return float(lo + hi) / 2.0, max(float(hi - lo), 1.0)


def _header_window(header: Dataset | None) -> list[tuple[float, float, str]]:
    """The source's VOI windows as (center, width, explanation) triples; [] when absent or broken."""
    if header is None or "WindowCenter" not in header or "WindowWidth" not in header:
        return []
    centers = header.WindowCenter
    widths = header.WindowWidth
    centers = list(centers) if isinstance(centers, Iterable) and not isinstance(centers, str) else [centers]
    widths = list(widths) if isinstance(widths, Iterable) and not isinstance(widths, str) else [widths]
    explanations = header.get("WindowCenterWidthExplanation", [])
    if isinstance(explanations, str):
        explanations = [explanations]
    explanations = list(explanations)
    if len(centers) != len(widths) or not centers:
        return []
    try:
        pairs = [(float(c), float(w)) for c, w in zip(centers, widths, strict=True)]
    except (TypeError, ValueError):
        return []
    if any(not np.isfinite(c) or not np.isfinite(w) or w < 1 for c, w in pairs):
        return []
    texts = explanations if len(explanations) == len(pairs) else [""] * len(pairs)
    return [(c, w, str(t)) for (c, w), t in zip(pairs, texts, strict=True)]


def _windows(scan: Scan) -> list[tuple[float, float, str]]:
    """Keep the source's window while it still fits the data (its center inside the 1st-99th
    percentile), e.g. a denoised CT in HU; otherwise, e.g. rescaled MR, compute one."""
    center, width = _robust_window(scan.voxels)
    lo, hi = center - width / 2.0, center + width / 2.0
    inherited = _header_window(scan.header)
    if inherited and lo <= inherited[0][0] <= hi:
        return inherited
    return [(center, width, "")]


def _now() -> tuple[str, str]:
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")


def _software_version() -> str:
    try:
        return f"medscan {metadata.version('medscan')}"
    except metadata.PackageNotFoundError:
        return "medscan"


def _copy_allowed(target: Dataset, header: Dataset, keywords: Iterable[str]) -> None:
    """Copy the listed public attributes that the header holds with a value."""
    for keyword in keywords:
        if keyword in header:
            element = header[keyword]  # converts a raw element with the header's character set
            if element.value not in (None, "", b"") and not element.tag.is_private:
                target[element.tag] = copy.deepcopy(element)


def _uid_or_none(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _source_uid_seed(scan: Scan) -> list[str]:
    """Entropy for UIDs that must be stable per source series (study / frame of reference
    missing from an anonymised header), so repeated exports of one source share them."""
    seeds = [scan.series_uid] + [ref.sop_instance_uid for ref in scan.source_refs[:1]]
    return [s for s in seeds if s]


def _geometry(scan: Scan) -> tuple[np.ndarray, np.ndarray, float, float, np.ndarray]:
    """Unit row/column direction cosines, column/row spacing and the slice step vector."""
    columns = scan.affine[:3, :3]
    norms = np.linalg.norm(columns, axis=0)
    if not np.all(np.isfinite(scan.affine)) or np.any(norms <= 0):
        raise MedscanError(scan.source_path or "scan", "affine is degenerate; cannot write DICOM geometry")
    return columns[:, 0] / norms[0], columns[:, 1] / norms[1], float(norms[0]), float(norms[1]), columns[:, 2]


def _series_description(scan: Scan, prefix: str) -> str:
    text = " ".join(part for part in (prefix, scan.description) if part).strip()
    if scan.synthetic:
        text = f"SYNTHETIC {text}".strip()
    return text[:_SERIES_DESCRIPTION_MAX]


def _derivation_description(scan: Scan) -> str:
    text = "; ".join(entry.describe() for entry in scan.provenance) or "exported by medscan"
    if scan.synthetic:
        text = f"SYNTHETIC: {text}"
    if len(text) > _DERIVATION_DESCRIPTION_MAX:
        text = text[: _DERIVATION_DESCRIPTION_MAX - 3] + "..."
    return text


def _source_item(scan: Scan, t: int, k: int, nk: int) -> Dataset | None:
    """SourceImageSequence item for slice k of volume t, or None when the source is unknown.

    ``source_refs`` holds one ref per slice of the first volume (or, if a reader supplies
    them, one per instance, volume-major); later volumes are not pointed at volume 0's files.
    """
    refs = scan.source_refs
    if len(refs) == nk * scan.n_volumes and scan.n_volumes > 1:
        ref = refs[t * nk + k]
    elif len(refs) == nk and t == 0:
        ref = refs[k]
    else:
        return None
    class_uid = _uid_or_none(ref.sop_class_uid)
    if class_uid is None and scan.header is not None:
        class_uid = _uid_or_none(scan.header.get("SOPClassUID"))
    instance_uid = _uid_or_none(ref.sop_instance_uid)
    if class_uid is None or instance_uid is None:
        return None
    item = Dataset()
    item.ReferencedSOPClassUID = class_uid
    item.ReferencedSOPInstanceUID = instance_uid
    if ref.frame is not None:
        item.ReferencedFrameNumber = int(ref.frame)
    return item


def _series_template(
    scan: Scan, sop_class: str, encoding: PixelEncoding, series_number_offset: int, prefix: str
) -> Dataset:
    """Every attribute shared by all instances of the new series."""
    header = scan.header
    ds = Dataset()
    if header is not None:
        _copy_allowed(ds, header, _PATIENT_STUDY_TAGS)
        if sop_class == CTImageStorage:
            _copy_allowed(ds, header, _CT_ACQUISITION_TAGS)
        elif sop_class == MRImageStorage:
            _copy_allowed(ds, header, _MR_ACQUISITION_TAGS)
    else:
        ds.PatientName = "ANONYMOUS"
        ds.PatientID = "ANONYMOUS"

    seed = _source_uid_seed(scan) if header is not None else []
    if "StudyInstanceUID" not in ds:
        # NIfTI input, or a header anonymised down to an empty UID: a new study of our own.
        ds.StudyInstanceUID = generate_uid(entropy_srcs=["medscan-study", *seed] if seed else None)
    if "FrameOfReferenceUID" not in ds:
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["medscan-for", *seed] if seed else None)
    today, now = _now()
    if "StudyDate" not in ds and header is None:
        ds.StudyDate, ds.StudyTime = today, now

    ds.SOPClassUID = sop_class
    ds.Modality = scan.modality or "OT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = int(scan.series_number or 0) + int(series_number_offset)
    ds.SeriesDescription = _series_description(scan, prefix)
    ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = today
    ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = now
    ds.SoftwareVersions = _software_version()
    ds.ImageType = ["DERIVED", "SECONDARY", *(["SYNTHETIC"] if scan.synthetic else [])]
    ds.DerivationDescription = _derivation_description(scan)
    ds.BurnedInAnnotation = "NO"
    if sop_class == SecondaryCaptureImageStorage:
        ds.ConversionType = "SYN" if scan.synthetic else "WSD"  # SC Equipment module, Type 1
    if sop_class == MRImageStorage:
        # Type 1 in the MR Image module; 'RM' (research mode) / 'NONE' when the source is unknown.
        if "ScanningSequence" not in ds:
            ds.ScanningSequence = "RM"
        if "SequenceVariant" not in ds:
            ds.SequenceVariant = "NONE"

    # Image plane
    row_cosine, column_cosine, column_spacing, row_spacing, step = _geometry(scan)
    ds.ImageOrientationPatient = [_ds_geometry(v) for v in (*row_cosine, *column_cosine)]
    ds.PixelSpacing = [_ds_geometry(row_spacing), _ds_geometry(column_spacing)]  # (delta j, delta i)
    # The reconstructed thickness is a property of the acquisition (3 mm slices may sit 2 mm apart);
    # keep the source's while the slice grid is unchanged (Scan.derive drops it on resampling).
    source_thickness = scan.header.get("SliceThickness") if scan.header is not None else None
    ds.SliceThickness = source_thickness if source_thickness else _ds_geometry(float(np.linalg.norm(step)))
    ds.SpacingBetweenSlices = _ds_geometry(float(np.linalg.norm(step)))

    # Image pixel + modality LUT + VOI LUT
    _, nj, ni = scan.volume_shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = nj, ni
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = encoding.pixel_representation
    ds.RescaleIntercept = encoding.intercept_text
    ds.RescaleSlope = encoding.slope_text
    ds.RescaleType = "HU" if scan.modality == "CT" else (scan.units or "US")
    windows = _windows(scan)
    ds.WindowCenter = [_ds_text(c) for c, _, _ in windows]
    ds.WindowWidth = [_ds_text(w) for _, w, _ in windows]
    if any(text for _, _, text in windows):
        ds.WindowCenterWidthExplanation = [text[:64] for _, _, text in windows]

    if scan.n_volumes > 1:
        ds.NumberOfTemporalPositions = scan.n_volumes

    type2 = list(_TYPE2_COMMON)
    type2 += {CTImageStorage: _TYPE2_CT, MRImageStorage: _TYPE2_MR}.get(sop_class, _TYPE2_SC)
    for keyword in type2:
        if keyword not in ds:
            setattr(ds, keyword, None)

    # Generated text may need more than the source's character set: switch to UTF-8 then.
    generated = (ds.SeriesDescription, ds.DerivationDescription, *scan.volume_labels)
    if any(not text.isascii() for text in generated):
        ds.SpecificCharacterSet = "ISO_IR 192"
    elif header is not None and header.get("SpecificCharacterSet"):
        ds.SpecificCharacterSet = copy.deepcopy(header.SpecificCharacterSet)
    return ds


def _instance(
    template: Dataset, scan: Scan, encoding: PixelEncoding, t: int, k: int, instance_number: int
) -> Dataset:
    """One single-frame instance: slice k of volume t."""
    nk = scan.volume_shape[0]
    ds = copy.deepcopy(template)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = instance_number
    position = scan.affine @ np.array([0.0, 0.0, float(k), 1.0])
    ds.ImagePositionPatient = [_ds_geometry(v) for v in position[:3]]
    normal = np.cross(scan.direction[:, 0], scan.direction[:, 1])
    ds.SliceLocation = _ds_geometry(float(np.dot(normal, position[:3])))
    if scan.n_volumes > 1:
        ds.TemporalPositionIdentifier = t + 1
        ds.AcquisitionNumber = t + 1
    elif scan.header is not None and scan.header.get("AcquisitionNumber") not in (None, ""):
        ds.AcquisitionNumber = scan.header.AcquisitionNumber
    comments = []
    if scan.synthetic:
        comments.append("SYNTHETIC image computed by medscan; not acquired from the patient")
    if t < len(scan.volume_labels) and scan.volume_labels[t]:
        comments.append(f"volume {t + 1}: {scan.volume_labels[t]}")
    if comments:
        ds.ImageComments = "; ".join(comments)
    item = _source_item(scan, t, k, nk)
    if item is not None:
        ds.SourceImageSequence = Sequence([item])

    plane = scan.voxels[k] if scan.voxels.ndim == 3 else scan.voxels[t, k]
    ds.add_new(0x7FE00010, "OW", np.ascontiguousarray(encoding.encode(plane)).tobytes())

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = "MEDSCAN"
    validate_file_meta(meta, enforce_standard=True)  # fills group length, version, implementation UID
    ds.file_meta = meta
    return ds


def check_output_folder(out_dir: Path) -> None:
    """Refuse an output folder before any work is done: it must not exist, or be an empty folder.

    Raises:
        MedscanError: it is a file, or a folder that is not empty.
    """
    if out_dir.exists():
        if not out_dir.is_dir():
            raise MedscanError(out_dir, "exists and is not a folder; choose a new folder")
        if any(out_dir.iterdir()):
            raise MedscanError(out_dir, "already exists and is not empty; choose a new folder")


def publish_folder(tmp_dir: Path, out_dir: Path) -> None:
    """Move the finished series onto ``out_dir`` in one rename (an empty ``out_dir`` is replaced)."""
    try:
        os.rename(tmp_dir, out_dir)  # POSIX replaces an empty directory atomically
    except OSError:
        check_output_folder(out_dir)  # someone filled it meanwhile: report that instead
        if out_dir.is_dir():  # Windows refuses to rename onto an existing (empty) directory
            out_dir.rmdir()
            os.rename(tmp_dir, out_dir)
        else:
            raise


def write_derived_series(
    scan: Scan,
    out_dir: str | Path,
    *,
    series_number_offset: int = 1000,
    description_prefix: str = "medscan",
    extra: Callable[[Path, list[Path]], None] | None = None,
) -> Path:
    """Write ``scan`` as a new DICOM series (one file per slice and volume) into ``out_dir``.

    The files are written into a hidden sibling folder that is renamed onto ``out_dir`` only
    once complete, so a half-written series never appears there. ``out_dir`` must not exist
    or be empty. The input scan is not modified. Returns ``out_dir``.

    ``extra(folder, files)`` may add companion objects (e.g. an uncertainty series and a SEG of a
    generated region) to the staging folder before it is published, so they appear together or not at all.
    A synthetic series' file names say so.
    """
    out_dir = Path(out_dir)
    check_output_folder(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = out_dir.parent / f".tmp-{out_dir.name}-{secrets.token_hex(4)}"
    tmp_dir.mkdir()
    try:
        files = write_series_files(scan, tmp_dir, series_number_offset=series_number_offset,
                                   description_prefix=description_prefix,
                                   file_prefix="SYNTHETIC_IM" if scan.synthetic else "IM", label=out_dir)
        if extra is not None:
            extra(tmp_dir, files)
        publish_folder(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return out_dir


def write_series_files(scan: Scan, folder: Path, *, series_number_offset: int, description_prefix: str,
                       file_prefix: str, label: str | Path) -> list[Path]:
    """One new series' instances written into an existing (staging) ``folder``; returns their paths."""
    if not np.all(np.isfinite(scan.voxels)):
        raise MedscanError(label, "scan holds NaN or infinite values, which DICOM cannot store")
    sop_class = _SOP_CLASS_BY_MODALITY.get(scan.modality, SecondaryCaptureImageStorage)
    encoding = choose_pixel_encoding(scan.voxels)
    template = _series_template(scan, sop_class, encoding, series_number_offset, description_prefix)
    nk = scan.volume_shape[0]
    width = max(5, len(str(nk * scan.n_volumes)))
    files = []
    for t in range(scan.n_volumes):
        for k in range(nk):
            number = t * nk + k + 1
            ds = _instance(template, scan, encoding, t, k, number)
            files.append(folder / f"{file_prefix}_{number:0{width}d}.dcm")
            pydicom.dcmwrite(files[-1], ds, enforce_file_format=True)
    return files
