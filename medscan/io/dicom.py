"""DICOM reading: walk a folder, group instances into series, sort by geometry, decode to a Scan.

Every image plane — a classic single-frame instance, one frame of an enhanced multi-frame object,
or one tile of a Siemens MOSAIC — becomes a ``Frame`` record read from the headers alone. Series
are groups of frames; a series is stacked by projecting each frame's position on the slice
normal (never by file name or InstanceNumber alone), and repeated positions make a 4-D series.
Pixels are decoded only when a series is loaded.

Each file's header is read once (``list_series``); for uncompressed little-endian pixel data that pass also
notes where the values lie in the file (``NativePixels``), so loading reads them straight into the output
array without parsing the file again. Files are decoded on a thread pool, and a series whose rescaled values
are integers within int16 (CT in HU, most MR) is held as int16 until something reads it as float32.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import struct
import threading
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medscan.io.pixels import decode_pixels
from medscan.scan import MedscanError, Scan, SourceRef, affine_from_dicom

# Attributes kept in Scan.header: enough to write a derived series into the same study.
HEADER_KEYWORDS = (
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
    "PatientSex", "PatientAge", "PatientWeight", "PatientSize", "PatientIdentityRemoved",
    "DeidentificationMethod", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
    "AccessionNumber", "ReferringPhysicianName", "StudyDescription", "Modality", "SeriesInstanceUID",
    "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime", "BodyPartExamined",
    "PatientPosition", "Laterality", "ProtocolName", "FrameOfReferenceUID",
    "PositionReferenceIndicator", "Manufacturer", "ManufacturerModelName", "InstitutionName",
    "StationName", "SoftwareVersions", "DeviceSerialNumber", "MagneticFieldStrength",
    "KVP", "ConvolutionKernel", "SliceThickness", "SOPClassUID", "WindowCenter", "WindowWidth",
    "RepetitionTime", "EchoTime", "ImageType", "PhotometricInterpretation", "InstitutionAddress",
    "WindowCenterWidthExplanation", "AcquisitionNumber", "XRayTubeCurrent", "ExposureTime", "Exposure",
    "DeidentificationMethodCodeSequence", "ScanningSequence", "SequenceVariant", "ScanOptions",
    "MRAcquisitionType", "EchoTrainLength", "InversionTime", "FlipAngle", "ImagingFrequency", "ImagedNucleus",
    "SequenceName", "InPlanePhaseEncodingDirection", "LossyImageCompression", "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
)
# Transfer syntaxes that lose information: derived series must keep saying so (LossyImageCompression 01).
LOSSY_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.102",
}

ENHANCED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy converted enhanced CT
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy converted enhanced MR
    "1.2.840.10008.5.1.4.1.1.128.1",  # Legacy converted enhanced PET
}
FRAME_TYPE_SEQUENCES = ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence", "PETFrameTypeSequence")
NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.1.3.10",  # Media storage directory (DICOMDIR)
}
NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # implicit and explicit VR little endian
# One read holds a typical header, Siemens CSA included; a longer one (enhanced multi-frame: per-frame sequences)
# gets one more, larger read; only a header beyond that is parsed from the file itself (each element then costs a
# file-position system call, which made parsing from the file twice as slow as from memory).
HEADER_CHUNKS = (64 * 1024, 4 * 1024 * 1024)
PIXEL_TAGS = {b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00"}  # (7FE0,0010/0008/0009) LE
POSITION_TOLERANCE_MM = 0.01
SPACING_TOLERANCE = 0.01  # relative deviation of slice steps that earns a warning


@dataclass(frozen=True)
class NativePixels:
    """Where a file's uncompressed little-endian pixel values lie, found during the header pass."""

    offset: int  # file position of the first pixel value
    dtype: str  # numpy dtype of a stored value, e.g. "<u2"
    bits_stored: int
    frames: int
    rows: int
    columns: int

    @property
    def frame_bytes(self) -> int:
        """Bytes of one stored frame (rows x columns values of ``dtype``)."""
        return self.rows * self.columns * np.dtype(self.dtype).itemsize


@dataclass
class Frame:
    """One image plane as described by the headers; pixels are fetched at load time."""

    path: str
    sop_instance_uid: str
    sop_class_uid: str
    rows: int
    columns: int
    frame_index: int | None = None  # 0-based frame in a multi-frame object
    tile: int | None = None  # 0-based tile of a MOSAIC
    mosaic_grid: int = 0
    position: np.ndarray | None = None
    row_cosine: np.ndarray | None = None
    column_cosine: np.ndarray | None = None
    pixel_spacing: tuple[float, float] | None = None
    slice_step: float | None = None  # SpacingBetweenSlices or SliceThickness
    slope: float = 1.0
    intercept: float = 0.0
    split_key: tuple = ()
    order_key: tuple = ()
    label: str = ""
    native: NativePixels | None = None  # uncompressed pixel data: read from here without parsing again
    integer_grey: bool = False  # one sample of at most 16-bit integers, MONOCHROME2: int16 may hold it exactly

    @property
    def has_geometry(self) -> bool:
        """True when the frame carries position, orientation and pixel spacing (enough to place it in space)."""
        return self.position is not None and self.row_cosine is not None and self.pixel_spacing is not None


@dataclass
class SeriesRecord:
    """A series found on disk: its frames, a header for metadata and the files it came from."""

    series_uid: str
    header: Dataset
    frames: list[Frame]
    warnings: list[str] = field(default_factory=list)
    split_note: str = ""
    sub_index: int = 0  # 1-based when one SeriesInstanceUID splits into several sub-series
    fallback_key: str = ""  # 'n3' for a series with no SeriesNumber, by its place in the listing

    @property
    def key(self) -> str:
        """What --series accepts besides the UID: the series number, '.n' added for a sub-series."""
        number = self.fallback_key if self.series_number is None else str(self.series_number)
        return f"{number}.{self.sub_index}" if self.sub_index else number

    @property
    def series_number(self) -> int | None:
        """SeriesNumber as an int, or ``None`` when the files have none."""
        value = self.header.get("SeriesNumber")
        return int(value) if value not in (None, "") else None

    @property
    def modality(self) -> str:
        """DICOM Modality, ``"OT"`` when missing."""
        return str(self.header.get("Modality", "OT") or "OT")

    @property
    def description(self) -> str:
        """SeriesDescription (else ProtocolName), followed by the note on how the series was split, if it was."""
        text = str(self.header.get("SeriesDescription", "") or self.header.get("ProtocolName", "") or "")
        return f"{text} {self.split_note}".strip()

    @property
    def files(self) -> list[str]:
        """Paths of the files holding the series' frames, sorted, each once."""
        return sorted({f.path for f in self.frames})


@dataclass
class FolderListing:
    """What a folder walk found: series plus the files that were skipped and why."""

    series: list[SeriesRecord]
    skipped: list[str]  # "file: reason" for files that looked like DICOM but could not be used
    ignored: int  # files that are not DICOM at all (notes, PDFs, ...)


# ---------------------------------------------------------------------------------------------
# Reading headers
# ---------------------------------------------------------------------------------------------
def _float_list(value: Any) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in (value if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value])]
    except (TypeError, ValueError):
        return None


def _first_float(value: Any, default: float | None = None) -> float | None:
    values = _float_list(value)
    return values[0] if values else default


def _item(ds: Dataset | None, keyword: str) -> Dataset | None:
    """First item of a sequence attribute, or None."""
    if ds is None:
        return None
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _philips_scale_slope(ds: Dataset | None) -> float | None:
    """Philips private ScaleSlope (2005,100E), used for precise floating-point values like dcm2niix."""
    if ds is None:
        return None
    elem = ds.get((0x2005, 0x100E))
    if elem is None:
        return None
    try:
        value = float(elem.value if not isinstance(elem.value, bytes) else np.frombuffer(elem.value, "<f4")[0])
    except (TypeError, ValueError, IndexError):
        return None
    return value if math.isfinite(value) and value != 0 else None


def _image_type_key(image_type: Any) -> tuple[str, ...]:
    """The part of ImageType that separates magnitude, phase, real and imaginary images."""
    values = [str(v).upper() for v in (image_type or [])]
    return tuple(values[2:4]) if len(values) > 2 else ()


def _read_header(path: str) -> Dataset | None:
    """Header of a DICOM file, or None when the file is not DICOM. Raises for broken DICOM."""
    return _read_header_and_pixels(path)[0]


def _read_header_and_pixels(path: str) -> tuple[Dataset | None, NativePixels | None]:
    """Header of a DICOM file (None when not DICOM) and, for uncompressed pixel data, where it lies.

    A read of ``HEADER_CHUNKS[0]`` bytes usually holds the whole header: parsing from memory is about twice as
    fast as from the file. A parse is trusted only when it reached the pixel data inside the bytes read (or they
    are the whole file); otherwise the file is parsed as before, so broken files raise as they did.
    """
    with open(path, "rb") as fh:
        head = fh.read(HEADER_CHUNKS[0])
        if len(head) < 132 or head[128:132] != b"DICM":
            # Not Part-10; accept raw datasets only when they parse as such (old ACR-NEMA style).
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            except Exception:
                return None, None
            if "SOPClassUID" not in ds and "Rows" not in ds:
                return None, None
            return ds, None
        ds = None
        for size in HEADER_CHUNKS:
            if len(head) < size:
                head += fh.read(size - len(head))
            whole_file = len(head) < size
            try:
                buffer = io.BytesIO(head)
                parsed = pydicom.dcmread(buffer, stop_before_pixels=True)
                end = buffer.tell()
                if head[end:end + 4] in PIXEL_TAGS or (whole_file and end >= len(head)):
                    ds, element = parsed, head[end:end + 12]
            except Exception:  # a header longer than these bytes, or a broken one: read more, or the file decides
                ds = None
            if ds is not None or whole_file:
                break
        if ds is None:
            fh.seek(0)
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            end = fh.tell()
            element = fh.read(12)
    return ds, _native_pixels(ds, end, element)


def _native_pixels(ds: Dataset, position: int, element: bytes) -> NativePixels | None:
    """Uncompressed little-endian greyscale PixelData at ``position`` (its element header), else None."""
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if syntax not in NATIVE_LITTLE_ENDIAN or len(element) < 12 or element[:4] != b"\xe0\x7f\x10\x00":
        return None
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        stored = int(ds.get("BitsStored", bits) or bits)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    if bits not in (8, 16) or samples != 1 or not 0 < stored <= bits or frames < 1:
        return None
    if element[4:6] in (b"OB", b"OW"):  # explicit VR: 2 reserved bytes, then a 4-byte length
        (length,), offset = struct.unpack("<I", element[8:12]), position + 12
    else:  # implicit VR: a 4-byte length right after the tag
        (length,), offset = struct.unpack("<I", element[4:8]), position + 8
    pixels = NativePixels(offset, f"<{'i' if signed else 'u'}{bits // 8}", stored, frames, rows, columns)
    if length == 0xFFFFFFFF or length < pixels.frame_bytes * frames:
        return None  # encapsulated despite the syntax, or truncated: pydicom's decoder reports it
    return pixels


def _is_integer_grey(ds: Dataset) -> bool:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").upper()
    try:
        return (int(ds.get("SamplesPerPixel", 1) or 1) == 1 and photometric == "MONOCHROME2"
                and int(ds.get("BitsAllocated", 16) or 16) <= 16)
    except (TypeError, ValueError):
        return False


def frames_from_header(ds: Dataset, path: str, native: NativePixels | None = None) -> list[Frame]:
    """Describe every image plane in one instance (``native``: where its uncompressed pixels lie, if known)."""
    sop_class = str(ds.get("SOPClassUID", "") or getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID", ""))
    if sop_class in NON_IMAGE_SOP_CLASSES:
        return []
    if "Rows" not in ds or "Columns" not in ds:
        raise MedscanError(path, "no image (no Rows/Columns): not an image object")
    meta = getattr(ds, "file_meta", None) or Dataset()
    base = Frame(
        path=path,
        # Anonymisers sometimes blank the UIDs in the dataset but leave the file meta intact.
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or meta.get("MediaStorageSOPInstanceUID", "")),
        sop_class_uid=sop_class,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        native=native,
        integer_grey=_is_integer_grey(ds),
    )
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" in ds or (sop_class in ENHANCED_SOP_CLASSES and n_frames >= 1):
        return _enhanced_frames(ds, base, n_frames)
    if _is_mosaic(ds):
        return _mosaic_frames(ds, base)
    if n_frames > 1:
        return _classic_multiframe(ds, base, n_frames)
    frame = _classic_frame(ds, base)
    return [frame]


def _geometry_from(ds: Dataset | None, frame: Frame) -> None:
    if ds is None:
        return
    ipp = _float_list(ds.get("ImagePositionPatient"))
    iop = _float_list(ds.get("ImageOrientationPatient"))
    spacing = _float_list(ds.get("PixelSpacing"))
    if ipp and len(ipp) == 3:
        frame.position = np.array(ipp)
    if iop and len(iop) == 6:
        frame.row_cosine = np.array(iop[:3])
        frame.column_cosine = np.array(iop[3:])
    if spacing and len(spacing) == 2:
        frame.pixel_spacing = (spacing[0], spacing[1])
    step = _first_float(ds.get("SpacingBetweenSlices")) or _first_float(ds.get("SliceThickness"))
    if step:
        frame.slice_step = abs(step)


def _rescale_from(ds: Dataset | None, frame: Frame, manufacturer: str, modality: str) -> None:
    if ds is None:
        return
    slope = _first_float(ds.get("RescaleSlope"))
    intercept = _first_float(ds.get("RescaleIntercept"))
    if slope is not None:
        frame.slope = slope if slope != 0 else 1.0
    if intercept is not None:
        frame.intercept = intercept
    if "PHILIPS" in manufacturer.upper() and modality == "MR":
        scale = _philips_scale_slope(ds)
        if scale is not None:
            _apply_philips_precise(frame, scale)


def _apply_philips_precise(frame: Frame, scale_slope: float) -> None:
    """Philips "precise" floating-point values, (SV*RS + RI) / (RS*SS), as dcm2niix writes them."""
    frame.intercept = frame.intercept / (frame.slope * scale_slope)
    frame.slope = 1.0 / scale_slope


def _classic_frame(ds: Dataset, base: Frame) -> Frame:
    frame = Frame(**{**base.__dict__})
    _geometry_from(ds, frame)
    _rescale_from(ds, frame, str(ds.get("Manufacturer", "")), str(ds.get("Modality", "")))
    frame.split_key = _classic_split_key(ds, frame)
    frame.order_key = _classic_order_key(ds)
    frame.label = _classic_label(ds)
    return frame


def _orientation_key(frame: Frame) -> tuple:
    if frame.row_cosine is None or frame.column_cosine is None:
        return ()
    return tuple(np.round(np.r_[frame.row_cosine, frame.column_cosine], 3))


def _classic_split_key(ds: Dataset, frame: Frame) -> tuple:
    return (
        frame.rows, frame.columns, _orientation_key(frame), _image_type_key(ds.get("ImageType")), "",
        str(ds.get("EchoNumbers", "") or ""), "",
    )


def _int_or(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _classic_order_key(ds: Dataset) -> tuple:
    """Orders repeated positions into volumes: acquisition order first, InstanceNumber to break ties."""
    return (
        _int_or(ds.get("TemporalPositionIdentifier")),
        _int_or(ds.get("AcquisitionNumber")),
        _first_float(ds.get("TriggerTime"), 0.0),
        _int_or(ds.get("InstanceNumber")),
        str(ds.get("AcquisitionTime", "")),
    )


def _classic_label(ds: Dataset) -> str:
    bvalue = ds.get("DiffusionBValue")
    if bvalue is not None:
        return f"b={float(bvalue):g}"
    if "TemporalPositionIdentifier" in ds:
        return f"t={ds.TemporalPositionIdentifier}"
    return f"acq={ds.get('AcquisitionNumber', '')}"


def _classic_multiframe(ds: Dataset, base: Frame, n_frames: int) -> list[Frame]:
    """Multi-frame objects without functional groups (US cine, NM, multi-frame SC): one plane each."""
    template = _classic_frame(ds, base)
    frames = []
    for index in range(n_frames):
        frame = Frame(**{**template.__dict__})
        frame.frame_index = index
        frame.order_key = (index,)
        frame.label = f"frame={index + 1}"
        if frame.position is not None:
            # No per-frame positions: frames are a time series at one plane.
            frame.position = template.position
        frames.append(frame)
    return frames


# -- Siemens MOSAIC -----------------------------------------------------------------------------
def _is_mosaic(ds: Dataset) -> bool:
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "MOSAIC" in image_type and ((0x0019, 0x100A) in ds or (0x0029, 0x1010) in ds)


def _mosaic_frames(ds: Dataset, base: Frame) -> list[Frame]:
    with warnings.catch_warnings():  # nibabel warns about its experimental DICOM readers on import
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader  # nibabel parses the Siemens CSA header

        csa = csareader.get_csa_header(ds, "image")
    n_tiles = None
    if (0x0019, 0x100A) in ds:
        n_tiles = int(ds[0x0019, 0x100A].value)
    elif csa is not None:
        n_tiles = csareader.get_n_mosaic(csa)
    if not n_tiles:
        raise MedscanError(base.path, "MOSAIC image without NumberOfImagesInMosaic")
    grid = math.ceil(math.sqrt(n_tiles))
    template = _classic_frame(ds, base)
    if template.rows % grid or template.columns % grid:
        size = f"{template.rows}x{template.columns}"
        raise MedscanError(base.path, f"MOSAIC of {size} does not split into {grid}x{grid} tiles")
    tile_rows, tile_cols = template.rows // grid, template.columns // grid
    if not template.has_geometry:
        raise MedscanError(base.path, "MOSAIC image without ImagePositionPatient/ImageOrientationPatient")
    normal = None
    if csa is not None:
        normal = csareader.get_slice_normal(csa)
    if normal is None:
        normal = np.cross(template.row_cosine, template.column_cosine)
    normal = np.asarray(normal, float)
    normal /= np.linalg.norm(normal)
    # ImagePositionPatient names the corner of the whole mosaic; move it to the corner of a tile.
    row_spacing, col_spacing = template.pixel_spacing
    origin = (
        template.position
        + template.row_cosine * (template.columns - tile_cols) / 2 * col_spacing
        + template.column_cosine * (template.rows - tile_rows) / 2 * row_spacing
    )
    step = template.slice_step or 1.0
    frames = []
    for tile in range(n_tiles):
        frame = Frame(**{**template.__dict__})
        frame.rows, frame.columns = tile_rows, tile_cols
        frame.tile = tile
        frame.mosaic_grid = grid
        frame.position = origin + tile * step * normal
        frame.split_key = (tile_rows, tile_cols, *template.split_key[2:])
        frames.append(frame)
    return frames


# -- Enhanced multi-frame ---------------------------------------------------------------------
def _enhanced_frames(ds: Dataset, base: Frame, n_frames: int) -> list[Frame]:
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if per_frame and len(per_frame) != n_frames:
        raise MedscanError(base.path, f"{len(per_frame)} per-frame groups for {n_frames} frames")
    manufacturer = str(ds.get("Manufacturer", ""))
    modality = str(ds.get("Modality", ""))
    frames = []
    for index in range(n_frames):
        groups = per_frame[index] if per_frame else None
        frame = Frame(**{**base.__dict__})
        frame.frame_index = index
        # Functional groups: per-frame values override shared ones; top-level attributes are fallbacks.
        philips_scale = None
        for source in (ds, shared, groups):
            if source is None:
                continue
            _geometry_from(_item(source, "PlanePositionSequence"), frame)
            _geometry_from(_item(source, "PlaneOrientationSequence"), frame)
            _geometry_from(_item(source, "PixelMeasuresSequence"), frame)
            _rescale_from(_item(source, "PixelValueTransformationSequence"), frame, "", modality)
            private = _item_by_tag(source, (0x2005, 0x140F))
            philips_scale = _philips_scale_slope(private) or philips_scale
        if philips_scale is not None and "PHILIPS" in manufacturer.upper() and modality == "MR":
            _apply_philips_precise(frame, philips_scale)
        frame_type = _lookup(groups, shared, FRAME_TYPE_SEQUENCES, "FrameType")
        complex_part = _lookup(groups, shared, ("MRImageFrameTypeSequence",), "ComplexImageComponent")
        echo_time = _lookup(groups, shared, ("MREchoSequence",), "EffectiveEchoTime")
        content = _item(groups, "FrameContentSequence") or _item(shared, "FrameContentSequence")
        stack = str(content.get("StackID", "")) if content is not None else ""
        frame.split_key = (
            frame.rows, frame.columns,
            _orientation_key(frame),
            _image_type_key(frame_type),
            str(complex_part or ""),
            f"TE {float(echo_time):g}" if echo_time is not None else "",
            stack,
        )
        temporal = _int_or(content.get("TemporalPositionIndex")) if content is not None else 0
        dims = tuple(int(v) for v in _float_list(content.get("DimensionIndexValues")) or []) if content else ()
        bvalue = _lookup(groups, shared, ("MRDiffusionSequence",), "DiffusionBValue")
        frame.order_key = (temporal, float(bvalue) if bvalue is not None else 0.0, dims, index)
        frame.label = f"b={float(bvalue):g}" if bvalue is not None else f"t={temporal}"
        frames.append(frame)
    return frames


def _item_by_tag(ds: Dataset, tag: tuple[int, int]) -> Dataset | None:
    elem = ds.get(tag)
    if elem is None or not elem.value:
        return None
    try:
        return elem.value[0]
    except (TypeError, IndexError):
        return None


def _lookup(groups: Dataset | None, shared: Dataset | None, sequences: Iterable[str], keyword: str) -> Any:
    for source in (groups, shared):
        for seq in sequences:
            item = _item(source, seq)
            if item is not None and keyword in item:
                return item.get(keyword)
    return None


# ---------------------------------------------------------------------------------------------
# Finding series
# ---------------------------------------------------------------------------------------------
def iter_files(root: Path) -> Iterator[str]:
    """All regular files under root (or root itself), in a stable order."""
    if root.is_file():
        yield str(root)
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield os.path.join(dirpath, name)


def list_series(path: str | Path, files: Iterable[str] | None = None) -> FolderListing:
    """Walk ``path`` (a file or a folder, recursively) and group what is found into series.

    ``files`` restricts the walk to those files (e.g. the instances a database holds for one
    series), so a batch task need not walk a whole study folder again; ``path`` then only names it.
    """
    root = Path(path)
    if files is None and not root.exists():
        raise MedscanError(root, "no such file or folder")
    by_series: dict[tuple[str, str], list[tuple[Frame, tuple]]] = defaultdict(list)
    headers: dict[tuple, Dataset] = {}
    skipped: list[str] = []
    ignored = 0
    with _values_unvalidated():
        for file in iter_files(root) if files is None else files:
            ignored += _list_file(file, by_series, headers, skipped)
    series: list[SeriesRecord] = []
    for (group, number), items in by_series.items():
        records = _split_series(group if not group.startswith("folder:") else "", items,
                                {key: headers[(group, number, key)] for _, key in items})
        if group.startswith("folder:"):
            for record in records:
                record.warnings.append("no SeriesInstanceUID: images grouped by folder")
        series.extend(records)
    series.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.series_uid, s.sub_index))
    for index, record in enumerate(series, start=1):
        if record.series_number is None:
            record.fallback_key = f"n{index}"
    return FolderListing(series=series, skipped=skipped, ignored=ignored)


@contextlib.contextmanager
def _values_unvalidated() -> Iterator[None]:
    """pydicom's reading validation off while headers are listed: it only warns about (never changes) a value,
    and took about a third of the header pass's time; the values medscan uses are checked where they are used."""
    before = pydicom.config.settings.reading_validation_mode
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        yield
    finally:
        pydicom.config.settings.reading_validation_mode = before


def _list_file(file: str, by_series: dict[tuple[str, str], list[tuple[Frame, tuple]]],
               headers: dict[tuple, Dataset], skipped: list[str]) -> int:
    """Add the frames of one file to ``by_series`` (or its problem to ``skipped``); 1 when it is not DICOM.

    Each frame goes in with its sub-series key; ``headers`` keeps the header of the first file of each sub-series
    only (a series' metadata comes from it), so a long series does not hold every file's header in memory.
    """
    try:
        ds, native = _read_header_and_pixels(file)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        skipped.append(f"{file}: unreadable DICOM ({_short(exc)})")
        return 0
    if ds is None:
        return 1
    try:
        frames = frames_from_header(ds, file, native)
    except MedscanError as exc:
        skipped.append(str(exc))
        return 0
    except Exception as exc:  # a malformed header must not stop the walk
        skipped.append(f"{file}: malformed header ({_short(exc)})")
        return 0
    # SeriesNumber as well as the UID: anonymisers and converters reuse UIDs across series.
    # Anonymised files may lack the UID: then the folder stands in for the series.
    uid = str(ds.get("SeriesInstanceUID", "") or "")
    group, number = uid or f"folder:{os.path.dirname(file)}", str(ds.get("SeriesNumber", ""))
    modality = str(ds.get("Modality", ""))
    for frame in frames:
        key = _sub_series_key(frame, modality)
        headers.setdefault((group, number, key), ds)
        by_series[(group, number)].append((frame, key))
    return 0


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


CROSS_SECTIONAL = {"CT", "MR", "PT", "NM"}


def _sub_series_key(frame: Frame, modality: str) -> tuple:
    """What splits one SeriesInstanceUID: matrix, orientation, echo, image type (see ``_split_series``).

    Projection images without patient geometry (radiographs, captures, ultrasound) are separate
    pictures, so each file becomes its own record; cross-sectional images without geometry stay
    together so that loading them is refused rather than guessed.
    """
    if frame.position is None and modality not in CROSS_SECTIONAL:
        return (*frame.split_key, frame.path)
    return frame.split_key


def _split_series(uid: str, items: list[tuple[Frame, tuple]], headers: dict[tuple, Dataset]) -> list[SeriesRecord]:
    """Split one SeriesInstanceUID by the frames' sub-series keys; ``headers[key]``: the first file's header."""
    groups: dict[tuple, list[Frame]] = defaultdict(list)
    for frame, key in items:
        groups[key].append(frame)
    keys = list(groups)
    records = []
    for index, key in enumerate(keys, start=1):
        frames = groups[key]
        header = _slim_header(headers[key])
        split = len(keys) > 1
        records.append(SeriesRecord(
            series_uid=uid, header=header, frames=frames,
            split_note=_describe_split(key, keys) if split else "", sub_index=index if split else 0,
        ))
    return records


SPLIT_KEY_FIELDS = ("rows", "columns", "orientation", "image type", "component", "echo", "stack", "file")


def _describe_split(key: tuple, keys: list[tuple]) -> str:
    """A short label naming what sets this sub-series apart, e.g. '[P]' or '[echo 2]'."""
    parts = []
    for position, value in enumerate(key):
        if len({k[position] for k in keys}) == 1 or value in ((), ""):
            continue
        name = SPLIT_KEY_FIELDS[position]
        if name in ("rows", "columns"):
            parts.append(f"{key[1]}x{key[0]}")
        elif name == "orientation":
            parts.append("orientation " + ",".join(f"{v:g}" for v in value))
        elif name == "file":
            parts.append(os.path.basename(value))
        elif name == "image type":
            parts.append("/".join(value))
        elif name in ("echo", "stack") and not str(value).startswith("TE"):
            parts.append(f"{name} {value}")
        else:
            parts.append(str(value).lower() if name == "component" else str(value))
    return "[" + " ".join(dict.fromkeys(parts)) + "]" if parts else ""


def _slim_header(ds: Dataset) -> Dataset:
    header = Dataset()
    for keyword in HEADER_KEYWORDS:
        if keyword in ds:
            header.add(ds.data_element(keyword))
    if "SOPClassUID" not in header and "SOPClassUID" in ds:
        header.SOPClassUID = ds.SOPClassUID
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if syntax in LOSSY_TRANSFER_SYNTAXES:
        header.LossyImageCompression = "01"
    return header


# ---------------------------------------------------------------------------------------------
# Stacking and decoding
# ---------------------------------------------------------------------------------------------
@dataclass
class Layout:
    """How the frames of a series fill the [t, k] grid, and the resulting affine."""

    grid: list[list[Frame]]  # grid[t][k]
    affine: np.ndarray
    warnings: list[str]


def plan_layout(record: SeriesRecord) -> Layout:
    """Sort frames by position along the slice normal; repeated positions become volumes."""
    frames = record.frames
    first = frames[0]
    name = first.path
    warnings_: list[str] = []
    if len(frames) == 1 or not all(f.has_geometry for f in frames):
        if len({f.path for f in frames}) > 1:
            raise MedscanError(
                name, f"{len(frames)} images without ImagePositionPatient/ImageOrientationPatient: "
                "slice order and spacing unknown, refusing to guess"
            )
        if len(frames) > 1:
            # Frames of one object with no per-frame positions (cine, stripped multi-frame): keep the
            # file's frame order as a sequence of planes rather than inventing a slice spacing.
            warnings_.append(f"{len(frames)} frames without per-frame positions: kept in file order as time points")
        grid = [[f] for f in sorted(frames, key=lambda f: (f.frame_index or 0, f.order_key))]
        return Layout(grid=grid, affine=_plane_affine(first, warnings_), warnings=warnings_)
    normal = np.cross(first.row_cosine, first.column_cosine)
    normal /= np.linalg.norm(normal)
    distances = np.array([float(np.dot(f.position, normal)) for f in frames])
    order = np.argsort(distances, kind="stable")
    # Cluster positions that coincide within tolerance.
    clusters: list[list[int]] = []
    last = None
    for idx in order:
        if last is None or distances[idx] - last > POSITION_TOLERANCE_MM:
            clusters.append([])
        clusters[-1].append(int(idx))
        last = distances[idx]
    counts = {len(c) for c in clusters}
    if len(counts) != 1:
        raise MedscanError(
            name,
            f"incomplete 4-D series: {len(frames)} images at {len(clusters)} positions with "
            f"{min(counts)} to {max(counts)} images each",
        )
    n_volumes = counts.pop()
    for cluster in clusters:
        cluster.sort(key=lambda i: frames[i].order_key)
    grid = [[frames[cluster[t]] for cluster in clusters] for t in range(n_volumes)]
    positions = np.array([frames[c[0]].position for c in clusters])
    if len(clusters) > 1:
        steps = np.diff(positions, axis=0)
        slice_vector = (positions[-1] - positions[0]) / (len(clusters) - 1)
        step_lengths = np.linalg.norm(steps, axis=1)
        mean_step = float(np.linalg.norm(slice_vector))
        if mean_step < POSITION_TOLERANCE_MM:
            raise MedscanError(name, "all slices at one position")
        if np.max(np.abs(step_lengths - mean_step)) > SPACING_TOLERANCE * mean_step:
            warnings_.append(
                f"non-uniform slice spacing: steps from {step_lengths.min():.3f} to {step_lengths.max():.3f} mm "
                f"(mean {mean_step:.3f} mm used)"
            )
        cos_tilt = abs(float(np.dot(slice_vector / mean_step, normal)))
        tilt = math.degrees(math.acos(min(1.0, cos_tilt)))
        if tilt > 0.1:
            warnings_.append(f"gantry tilt or sheared stack: slices step {tilt:.2f} degrees off the slice normal")
    else:
        slice_vector = normal * (first.slice_step or 1.0)
    affine = affine_from_dicom(positions[0], first.row_cosine, first.column_cosine, first.pixel_spacing, slice_vector)
    return Layout(grid=grid, affine=affine, warnings=warnings_)


def _plane_affine(frame: Frame, warnings_: list[str]) -> np.ndarray:
    """Affine of a lone plane; radiographs and captures get pixel spacing only, flagged as such."""
    if frame.has_geometry:
        normal = np.cross(frame.row_cosine, frame.column_cosine)
        return affine_from_dicom(frame.position, frame.row_cosine, frame.column_cosine,
                                 frame.pixel_spacing, normal * (frame.slice_step or 1.0))
    spacing = frame.pixel_spacing
    warnings_.append("no patient geometry (2-D image): pixel grid only, not placed in patient space")
    if spacing is None:
        spacing = (1.0, 1.0)
        warnings_.append("no pixel spacing: 1 mm pixels assumed for display only")
    return affine_from_dicom(np.zeros(3), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), spacing, np.array([0, 0, 1.0]))


def _plane_of(pixels: np.ndarray, frame: Frame) -> np.ndarray:
    """The plane of ``frame`` in its file's decoded pixels (a frame of a multi-frame object, a MOSAIC tile)."""
    if frame.frame_index is not None:
        plane = pixels if pixels.ndim == 2 and frame.frame_index == 0 else pixels[frame.frame_index]
    else:
        plane = pixels if pixels.ndim == 2 else pixels[0]
    if frame.tile is not None:
        row, col = divmod(frame.tile, frame.mosaic_grid)
        plane = plane[row * frame.rows:(row + 1) * frame.rows, col * frame.columns:(col + 1) * frame.columns]
    if plane.shape != (frame.rows, frame.columns):
        raise MedscanError(frame.path, f"pixel data is {plane.shape}, header says {frame.rows}x{frame.columns}")
    return plane


def _correct_unused_bits(values: np.ndarray, bits_stored: int) -> np.ndarray:
    """What pydicom does to native data when BitsStored < BitsAllocated: drop (unsigned) or sign-extend the top."""
    shift = values.dtype.itemsize * 8 - bits_stored
    if shift:
        np.left_shift(values, shift, out=values)
        np.right_shift(values, shift, out=values)
    return values


def _read_native(frame: Frame) -> np.ndarray:
    """All frames of an uncompressed file as (frames, rows, columns), read from the offset the header pass found."""
    native = frame.native
    assert native is not None
    count = native.rows * native.columns * native.frames
    try:
        with open(frame.path, "rb") as fh:
            fh.seek(native.offset)
            values = np.fromfile(fh, dtype=native.dtype, count=count)
    except OSError as exc:
        raise MedscanError(frame.path, f"unreadable DICOM ({_short(exc)})") from None
    if values.size != count:
        raise MedscanError(frame.path, "no pixel data (missing, or the file is truncated)")
    return _correct_unused_bits(values, native.bits_stored).reshape(native.frames, native.rows, native.columns)


class _NotInt16(Exception):
    """A plane's rescaled values are not exact in int16: the series is decoded again as float32."""


def _int16_rescale(frame: Frame) -> tuple[int, int] | None:
    """(slope, intercept) as integers when int16 can hold the rescaled values of ``frame`` exactly, else None."""
    if not frame.integer_grey or not float(frame.slope).is_integer() or not float(frame.intercept).is_integer():
        return None
    return int(frame.slope), int(frame.intercept)


def _fits_int16(low: int, high: int, slope: int, intercept: int) -> bool:
    ends = (low * slope + intercept, high * slope + intercept)
    return min(ends) >= -32768 and max(ends) <= 32767


def _wrap16(value: int) -> np.int16:
    """``value`` modulo 2**16 as int16: int16 arithmetic wraps, so a result that fits comes out exact."""
    return np.int16((value + 32768) % 65536 - 32768)


def _store_int16(target: np.ndarray, plane: np.ndarray, frame: Frame) -> None:
    """``plane * slope + intercept`` into the int16 ``target``; raises _NotInt16 where that is not exact."""
    if plane.dtype.kind not in "iu":
        raise _NotInt16
    slope, intercept = _int16_rescale(frame)  # type: ignore[misc]  (checked before decoding)
    if plane.size and not _fits_int16(int(plane.min()), int(plane.max()), slope, intercept):
        raise _NotInt16
    np.copyto(target, plane, casting="unsafe")  # a uint16 above 32767 wraps here and back when rescaled
    if slope != 1:
        np.multiply(target, _wrap16(slope), out=target)
    if intercept:
        np.add(target, _wrap16(intercept), out=target)


def _read_into_int16(target: np.ndarray, frame: Frame) -> None:
    """A single-frame uncompressed 16-bit file read straight into its int16 slot of the output, then rescaled."""
    native = frame.native
    assert native is not None
    stored = target.view(native.dtype)
    try:
        with open(frame.path, "rb") as fh:
            fh.seek(native.offset)
            got = fh.readinto(memoryview(stored).cast("B"))
    except OSError as exc:
        raise MedscanError(frame.path, f"unreadable DICOM ({_short(exc)})") from None
    if got != stored.nbytes:
        raise MedscanError(frame.path, "no pixel data (missing, or the file is truncated)")
    _correct_unused_bits(stored, native.bits_stored)
    slope, intercept = _int16_rescale(frame)  # type: ignore[misc]
    if not _fits_int16(int(stored.min()), int(stored.max()), slope, intercept):
        raise _NotInt16
    if slope != 1:
        np.multiply(target, _wrap16(slope), out=target)
    if intercept:
        np.add(target, _wrap16(intercept), out=target)


def decode_workers(files: int) -> int:
    """Threads that decode a series: one per core (numpy, file reads and the codecs release the GIL)."""
    return max(1, min(files, os.cpu_count() or 1, 16))


def _decode_file(path: str, notes: set[str]) -> np.ndarray:
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise MedscanError(path, f"unreadable DICOM ({_short(exc)})") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise MedscanError(path, "no pixel data (missing, or the file is truncated)")
    try:
        pixels = decode_pixels(ds)
    except NotImplementedError as exc:
        ts = getattr(ds.file_meta, "TransferSyntaxUID", "unknown")
        name = getattr(ts, "name", str(ts))
        raise MedscanError(path, f"cannot decode transfer syntax {name} ({_short(exc)})") from None
    except Exception as exc:
        raise MedscanError(path, f"pixel data cannot be decoded ({_short(exc)})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        pixels = apply_color_lut(pixels, ds)
        if pixels.dtype == np.uint16:  # 16-bit palette entries: bring to the 8-bit range of other colour images
            pixels = pixels / 257.0
        samples = 3
    if samples > 1:
        pixels = _to_luminance(pixels)
        notes.add(f"colour image ({photometric}) converted to greyscale luminance")
    elif photometric == "MONOCHROME1":
        bits = int(ds.get("BitsStored", 16))
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        pixels = (low + high) - pixels.astype(np.float64)
        notes.add("MONOCHROME1 inverted so that higher values are brighter")
    return np.asarray(pixels)


def _to_luminance(rgb: np.ndarray) -> np.ndarray:
    weights = np.array([0.299, 0.587, 0.114])
    return rgb[..., :3].astype(np.float64) @ weights


def _cells_by_file(layout: Layout) -> dict[str, list[tuple[int, int, Frame]]]:
    """The ``(t, k, frame)`` cells of ``layout`` that each file holds (a multi-frame or MOSAIC file holds several)."""
    by_file: dict[str, list[tuple[int, int, Frame]]] = defaultdict(list)
    for t, row in enumerate(layout.grid):
        for k, frame in enumerate(row):
            by_file[frame.path].append((t, k, frame))
    return by_file


def _decode_cells(voxels: np.ndarray, cells: list[tuple[int, int, Frame]], notes: set[str],
                  lock: threading.Lock) -> None:
    """Decode one file and fill ``voxels[t, k]`` for each of its ``cells`` (all from that file).

    int16 ``voxels`` take exact rescaled integers only (_NotInt16 otherwise); float32 ones get
    ``float64(plane) * slope + intercept`` rounded once, as always. Notes on the conversion go into ``notes``
    under ``lock``. Every loader (whole series or streamed) decodes through here, so their voxels are identical.
    """
    as_int16 = voxels.dtype == np.int16
    first = cells[0][2]
    native = first.native if first.integer_grey else None  # colour, palette, MONOCHROME1: pydicom's path
    if (as_int16 and len(cells) == 1 and native is not None and native.frames == 1 and first.tile is None
            and native.dtype[-1] == "2" and (native.rows, native.columns) == voxels.shape[-2:]):
        _read_into_int16(voxels[cells[0][0], cells[0][1]], first)
        return
    if native is not None:
        pixels = _read_native(first)
    else:
        file_notes: set[str] = set()
        pixels = _decode_file(first.path, file_notes)
        if file_notes:
            with lock:
                notes.update(file_notes)
    for t, k, frame in cells:
        plane = _plane_of(pixels, frame)
        if as_int16:
            _store_int16(voxels[t, k], plane, frame)
        else:
            voxels[t, k] = plane.astype(np.float64) * frame.slope + frame.intercept


def _decode_into(voxels: np.ndarray, layout: Layout, workers: int) -> set[str]:
    """Fill ``voxels[t, k]`` from every frame of ``layout``, one file per task on ``workers`` threads."""
    by_file = _cells_by_file(layout)
    notes: set[str] = set()
    lock = threading.Lock()

    def decode(path: str) -> None:
        _decode_cells(voxels, by_file[path], notes, lock)

    paths = sorted(by_file)
    if workers <= 1 or len(paths) <= 1:
        for path in paths:
            decode(path)
    else:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medscan-decode")
        try:
            for future in [pool.submit(decode, path) for path in paths]:
                future.result()  # the first failure (in file order) is the one reported
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # after a failure, start no more files
    return notes


def voxel_dtype(record: SeriesRecord) -> np.dtype:
    """int16 when every frame's rescale could map its stored integers exactly into int16, else float32.

    int16 is a first guess: a plane whose values fall outside int16 after rescaling raises _NotInt16 while decoding,
    and the series is then decoded again as float32.
    """
    return np.dtype(np.int16 if all(_int16_rescale(f) is not None for f in record.frames) else np.float32)


def load_series(record: SeriesRecord, *, workers: int | None = None) -> Scan:
    """Decode a series into a Scan in physical units.

    ``workers`` threads decode files in parallel (default: one per core). The voxels are int16 when every
    frame's rescale maps its stored integers exactly into int16 (CT in HU, most MR): the Scan converts them to
    float32 when first read, and ``medscan convert`` writes them as they are. Otherwise they are float32.
    Peak memory is the output array plus a plane per thread (a whole file for multi-frame and compressed files).
    """
    layout = plan_layout(record)
    shape = voxel_shape(record, layout)
    workers = decode_workers(len(record.files)) if workers is None else workers
    try:
        if voxel_dtype(record) != np.int16:
            raise _NotInt16
        voxels = np.empty(shape, dtype=np.int16)
        notes = _decode_into(voxels, layout, workers)
    except _NotInt16:
        voxels = np.empty(shape, dtype=np.float32)
        notes = _decode_into(voxels, layout, workers)
    return scan_of(record, layout, voxels, notes)


def voxel_shape(record: SeriesRecord, layout: Layout) -> tuple[int, int, int, int]:
    """``(t, k, rows, columns)`` of the array a series decodes into (t is 1 for a 3-D series)."""
    first = record.frames[0]
    return len(layout.grid), len(layout.grid[0]), first.rows, first.columns


def scan_of(record: SeriesRecord, layout: Layout, voxels: np.ndarray, notes: Iterable[str] = ()) -> Scan:
    """The Scan of ``record`` around its decoded ``voxels`` (``(t, k, rows, columns)``; not copied).

    ``notes`` are the decoder's remarks (colour converted, MONOCHROME1 inverted), added to the warnings.
    """
    n_t = voxels.shape[0]
    modality = record.modality
    warnings_ = [*record.warnings, *layout.warnings, *sorted(notes)]
    return Scan(
        voxels=voxels[0] if n_t == 1 else voxels,
        affine=layout.affine,
        modality=modality,
        series_uid=record.series_uid,
        series_number=record.series_number,
        description=record.description,
        source_refs=[
            SourceRef(f.sop_instance_uid, f.sop_class_uid, None if f.frame_index is None else f.frame_index + 1)
            for row in layout.grid for f in row
        ],
        header=record.header,
        warnings=warnings_,
        units="HU" if modality == "CT" else "",
        volume_labels=[row[0].label for row in layout.grid] if n_t > 1 else [],
        repetition_time_s=_repetition_time(record.header),
        source_path=os.path.commonpath(record.files) if record.files else "",
        synthetic=_is_synthetic(record.header),
    )


def _is_synthetic(header: object) -> bool:
    """A series medscan (or another tool) generated says so in ImageType; it must stay marked when reopened."""
    image_type = getattr(header, "ImageType", None) or []
    values = [image_type] if isinstance(image_type, str) else list(image_type)
    return any(str(v).upper() == "SYNTHETIC" for v in values)


def _repetition_time(header: Dataset) -> float | None:
    tr = _first_float(header.get("RepetitionTime"))
    return tr / 1000.0 if tr else None


def series_shape(record: SeriesRecord) -> tuple[tuple[int, ...], tuple[float, float, float], list[str]]:
    """NIfTI-order shape, spacing and warnings of a series from its headers alone (no decoding)."""
    layout = plan_layout(record)
    n_t, n_k = len(layout.grid), len(layout.grid[0])
    first = record.frames[0]
    shape: tuple[int, ...] = (first.columns, first.rows, n_k) + ((n_t,) if n_t > 1 else ())
    spacing = tuple(float(s) for s in np.linalg.norm(layout.affine[:3, :3], axis=0))
    return shape, spacing, [*record.warnings, *layout.warnings]  # type: ignore[return-value]


def select_series(listing: FolderListing, path: str | Path, series: str | None) -> SeriesRecord:
    """Pick one series by UID or number; refuse ambiguity with a list a person can choose from."""
    found = listing.series
    if not found:
        detail = f"; skipped {len(listing.skipped)}: {listing.skipped[0]}" if listing.skipped else ""
        raise MedscanError(path, f"no readable DICOM series found{detail}")
    if series is None:
        if len(found) == 1:
            return found[0]
        choices = ", ".join(f"{s.key} ({s.modality} {s.description})".strip() for s in found[:12])
        raise MedscanError(path, f"{len(found)} series found; choose one with --series: {choices}")
    matches = [s for s in found if series in (s.series_uid, s.key)]
    if not matches and series.lstrip("-").isdigit():
        matches = [s for s in found if s.series_number == int(series)]
    if not matches:
        raise MedscanError(path, f"no series {series!r} here (have: {', '.join(s.key for s in found)})")
    if len(matches) > 1:
        notes = ", ".join(f"{s.key} {s.split_note}".strip() for s in matches)
        raise MedscanError(path, f"series {series} holds {len(matches)} sub-series; choose one of: {notes}")
    return matches[0]
