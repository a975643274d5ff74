"""DICOM SEG and SR (TID 1500) over the source DICOM series: annotations out, and back into medscan.

Both objects reference the images the user opened (the scan's ``source_refs`` looked up by SOP Instance UID
under ``scan.source_path``), so any PACS viewer overlays them on that series. One SEG segment per annotation;
the SR holds one volumetric measurement group per segment (volume, maximum in-plane diameter, mean and sd of
the scan's values) referencing that segment and the source series, and a per-finding review status.

How a segment was made is in its ``SegmentAlgorithmType``: AUTOMATIC for an untouched AI/rule draft (also
after a person accepted it unchanged — the mask is still the algorithm's), MANUAL once a person edited the mask.
Review is recorded in the SR: ``VerificationFlag`` VERIFIED with the verifying observer only when every finding
in it was accepted by a signed-in user; a draft export is UNVERIFIED and every group carries "Review status:
draft". ``medscan.db.annotations`` decides what may be exported as accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medscan.scan import MedscanError, Scan

PRIVATE = "99MEDSCAN"
ALGORITHM_TYPES = ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL")
# Segment property (category, type) by label name: SNOMED CT where a standard code exists (DICOM CID 7150/7151),
# a private code otherwise. Keys are lower-case label names as tasks declare them.
_ANATOMY = ("123037004", "SCT", "Anatomical Structure")
_TISSUE = ("85756007", "SCT", "Tissue")
_SUBSTANCE = ("105590001", "SCT", "Substance")
_ABNORMAL = ("49755003", "SCT", "Morphologically Abnormal Structure")
PROPERTIES: dict[str, tuple[tuple[str, str, str], tuple[str, str, str]]] = {
    "body": (_ANATOMY, ("38266002", "SCT", "Entire body")),
    "lungs": (_ANATOMY, ("39607008", "SCT", "Lung")),
    "lung": (_ANATOMY, ("39607008", "SCT", "Lung")),
    "bone": (_TISSUE, ("272673000", "SCT", "Bone")),
    "fat": (_TISSUE, ("55603005", "SCT", "Adipose tissue")),
    "air": (_SUBSTANCE, ("15158005", "SCT", "Air")),
    "liver": (_ANATOMY, ("10200004", "SCT", "Liver")),
    "spleen": (_ANATOMY, ("78961009", "SCT", "Spleen")),
    "kidney": (_ANATOMY, ("64033007", "SCT", "Kidney")),
    "kidneys": (_ANATOMY, ("64033007", "SCT", "Kidney")),
    "kidney_left": (_ANATOMY, ("18639004", "SCT", "Left kidney")),
    "kidney_right": (_ANATOMY, ("9846003", "SCT", "Right kidney")),
    "aorta": (_ANATOMY, ("15825003", "SCT", "Aorta")),
    "tumour": (_ABNORMAL, ("108369006", "SCT", "Neoplasm")),
    "tumor": (_ABNORMAL, ("108369006", "SCT", "Neoplasm")),
    "lesion": (_ABNORMAL, ("52988006", "SCT", "Lesion")),
    "oedema": (_ABNORMAL, ("79654002", "SCT", "Edema")),
    "edema": (_ABNORMAL, ("79654002", "SCT", "Edema")),
    "necrosis": (_ABNORMAL, ("6574001", "SCT", "Necrosis")),
    "enhancing": (_ABNORMAL, ("108369006", "SCT", "Neoplasm")),
}
REVIEW_STATUS = ("REVIEW", PRIVATE, "Review status")
UNITS_HU = ("[hnsf'U]", "UCUM", "Hounsfield unit")


@dataclass
class SegmentItem:
    """One annotation to export: its mask over the scan and what the SR says about it."""

    mask: np.ndarray  # bool, the scan's (k, j, i) shape
    name: str  # the label's name, e.g. "lungs"
    label_text: str  # the segment label shown by viewers, e.g. "#2 lungs"
    algorithm_type: str = "AUTOMATIC"
    method: str = ""  # algorithm name (for AUTOMATIC/SEMIAUTOMATIC)
    version: str = ""
    status: str = "draft"  # draft | accepted
    reviewer: str = ""
    measurements: dict[str, Any] = field(default_factory=dict)


def _concept(code: tuple[str, str, str]):
    import highdicom as hd

    return hd.sr.CodedConcept(*code)


def segment_property(name: str) -> tuple[Any, Any]:
    """(category, type) coded concepts for a label name; a private code when no standard one is known."""
    key = re.sub(r"\(.*?\)", "", name).strip().lower().replace(" ", "_")  # "tumour (FLAIR abnormality)" -> tumour
    if key in PROPERTIES:
        category, kind = PROPERTIES[key]
    else:
        category, kind = _ANATOMY, (key.upper()[:16], PRIVATE, name[:64])
    return _concept(category), _concept(kind)


# -- the source images ---------------------------------------------------------------------------------
def source_datasets(scan: Scan) -> tuple[list[Any], list[int]]:
    """The scan's source DICOM datasets (headers, no pixels) and, per plane k, the frame index in their order.

    For a classic series the datasets are one per plane in plane order; for one enhanced multi-frame object
    the list holds that object once and the frame list maps planes to its frames.
    """
    import pydicom

    where = scan.source_path or scan.description
    if not scan.source_refs or scan.header is None:
        raise MedscanError(where, "SEG/SR reference DICOM images; this scan was not read from a DICOM series "
                                  "(write the labels as NIfTI instead: -o OUT.nii.gz)")
    if scan.voxels.ndim != 3 or len(scan.source_refs) != scan.voxels.shape[0]:
        raise MedscanError(where, "SEG/SR need the series as loaded: one 3-D volume with one source image per slice")
    root = Path(scan.source_path)
    if not root.exists():
        raise MedscanError(root, "the source DICOM files are no longer there; SEG/SR must reference them")
    from medscan.io.dicom import iter_files

    wanted = {ref.sop_instance_uid for ref in scan.source_refs}
    found: dict[str, Any] = {}
    for path in ([str(root)] if root.is_file() else iter_files(root)):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        meta = getattr(ds, "file_meta", None) or {}
        uid = str(ds.get("SOPInstanceUID", "") or getattr(meta, "MediaStorageSOPInstanceUID", "") or "")
        if uid in wanted and not ds.get("SOPInstanceUID"):  # as the loader does: the file meta names the image
            ds.SOPInstanceUID = uid
            ds.SOPClassUID = ds.get("SOPClassUID") or meta.MediaStorageSOPClassUID
        if uid in wanted:
            found[uid] = ds
        if len(found) == len(wanted):
            break
    missing = wanted - set(found)
    if missing:
        raise MedscanError(root, f"{len(missing)} source image(s) of this series are missing; SEG/SR need them all")
    uids = [ref.sop_instance_uid for ref in scan.source_refs]
    if len(set(uids)) == len(uids):
        rows, cols = int(found[uids[0]].Rows), int(found[uids[0]].Columns)
        if (rows, cols) != tuple(scan.voxels.shape[1:]):
            raise MedscanError(where, f"the scan's planes {scan.voxels.shape[1:]} are not the source images' "
                                      f"{rows}x{cols}; SEG must be written over the series as loaded")
        return [found[u] for u in uids], list(range(len(uids)))
    if len(set(uids)) == 1 and all(ref.frame for ref in scan.source_refs):
        return [found[uids[0]]], [int(ref.frame) - 1 for ref in scan.source_refs]  # type: ignore[arg-type]
    raise MedscanError(where, "planes come from several multi-frame objects; SEG over them is not supported")


def _frames(masks: list[np.ndarray], n_frames: int, frame_of_plane: list[int]) -> np.ndarray:
    """(frames, rows, cols, segments) uint8 in the source frame order."""
    shape = masks[0].shape
    out = np.zeros((n_frames, shape[1], shape[2], len(masks)), np.uint8)
    for s, mask in enumerate(masks):
        out[frame_of_plane, :, :, s] = mask
    return out


def _n_frames(sources: list[Any]) -> int:
    return len(sources) if len(sources) > 1 else int(sources[0].get("NumberOfFrames", 1) or 1)


# -- SEG -------------------------------------------------------------------------------------------------
def write_seg(sources: list[Any], frames: np.ndarray, descriptions: list[Any], path: str | Path, *,
              series_description: str, series_number_offset: int = 500, content_label: str | None = None,
              content_description: str | None = None) -> Any:
    """A binary DICOM SEG over ``sources``: ``frames`` is (frames, rows, cols[, segments]) in their frame order.

    The one SEG writer of medscan (the generated-region SEG of a synthetic result goes through it too).
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    from medscan import __version__

    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=int(sources[0].get("SeriesNumber", 0) or 0) + series_number_offset,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="medscan",
        manufacturer_model_name="medscan",
        software_versions=__version__,
        device_serial_number="none",
        series_description=series_description[:64],
        content_label=content_label[:16] if content_label else None,
        content_description=content_description[:64] if content_description else None,
    )
    seg.save_as(path)
    return seg


def segment_description(number: int, label: str, category: Any, kind: Any, algorithm_type: str,
                        algorithm_name: str, algorithm_version: str, family: Any | None = None) -> Any:
    """A highdicom SegmentDescription for one segment of a DICOM SEG.

    Args:
        number: segment number (1-based).
        label: segment label (cut to 64 characters).
        category: segmented property category (a coded concept).
        kind: segmented property type (a coded concept).
        algorithm_type: ``"AUTOMATIC"``, ``"SEMIAUTOMATIC"`` or ``"MANUAL"``; a manual segment names no algorithm.
        algorithm_name: the algorithm (model) name.
        algorithm_version: its version.
        family: the algorithm family code; "Artificial Intelligence" when ``None``.

    Raises:
        ValueError: an unknown algorithm type.
    """
    import highdicom as hd

    if algorithm_type not in ALGORITHM_TYPES:
        raise ValueError(f"algorithm type {algorithm_type!r}")
    algorithm = None
    if algorithm_type != "MANUAL":  # a manual segment names no algorithm (PS3.3 C.8.20.4)
        algorithm = hd.AlgorithmIdentificationSequence(
            name=algorithm_name[:64] or "medscan", version=algorithm_version[:64] or "1",
            family=family or hd.sr.CodedConcept("123110", "DCM", "Artificial Intelligence"))
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label[:64], segmented_property_category=category,
        segmented_property_type=kind, algorithm_type=getattr(hd.seg.SegmentAlgorithmTypeValues, algorithm_type),
        algorithm_identification=algorithm)


def write_annotation_seg(scan: Scan, items: list[SegmentItem], path: str | Path, *, draft: bool) -> Any:
    """SEG of ``items`` (segment n = items[n-1]) over the scan's source series; returns the highdicom object."""
    if not items:
        raise MedscanError(path, "nothing to export: no annotations")
    sources, frame_of_plane = source_datasets(scan)
    for item in items:
        if item.mask.shape != scan.voxels.shape:
            raise MedscanError(path, f"mask {item.mask.shape} does not match the series {scan.voxels.shape}")
    descriptions = []
    for number, item in enumerate(items, start=1):
        category, kind = segment_property(item.name)
        descriptions.append(segment_description(number, item.label_text, category, kind, item.algorithm_type,
                                                f"medscan {item.method}", item.version or "1"))
    state = "AI DRAFT not reviewed" if draft else "reviewed annotations"
    return write_seg(sources, _frames([i.mask for i in items], _n_frames(sources), frame_of_plane), descriptions,
                     path, series_description=f"medscan {state}", series_number_offset=600,
                     content_label="DRAFT" if draft else "REVIEWED",
                     content_description=f"medscan segmentation: {state}")


def read_seg(path: str | Path, scan: Scan) -> tuple[np.ndarray, dict[int, dict[str, str]]]:
    """A SEG over ``scan``'s series back as a label volume aligned with the scan (value = segment number).

    Returns the labels (uint16, the scan's shape; where segments overlap the higher number wins) and per
    segment its label, property type and algorithm type. Refuses a SEG that references another series.
    """
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:
        raise MedscanError(path, f"not a readable DICOM SEG ({type(exc).__name__}: {str(exc)[:120]})") from exc
    refs = {str(item.SeriesInstanceUID) for item in seg.ReferencedSeriesSequence}
    if scan.series_uid and scan.series_uid not in refs:
        raise MedscanError(path, f"this SEG references series {', '.join(sorted(refs))}, not the one shown "
                                 f"({scan.series_uid})")
    segments = {int(d.SegmentNumber): {"label": str(d.SegmentLabel),
                                       "type": str(d.SegmentedPropertyTypeCodeSequence[0].CodeMeaning),
                                       "algorithm_type": str(d.SegmentAlgorithmType)}
                for d in seg.SegmentSequence}
    uids = [ref.sop_instance_uid for ref in scan.source_refs]
    labels = np.zeros(scan.voxels.shape, np.uint16)
    if len(set(uids)) == len(uids):
        pixels = seg.get_pixels_by_source_instance(uids, assert_missing_frames_are_empty=True,
                                                   skip_overlap_checks=True)
    else:
        frames = [int(ref.frame) for ref in scan.source_refs]  # type: ignore[arg-type]
        pixels = seg.get_pixels_by_source_frame(uids[0], frames, assert_missing_frames_are_empty=True,
                                                skip_overlap_checks=True)
    numbers = sorted(segments)
    for index, number in enumerate(numbers):
        labels[pixels[..., index] > 0] = number
    return labels, segments


# -- SR --------------------------------------------------------------------------------------------------
def _measurement(name: tuple[str, str, str], value: float, unit: tuple[str, str, str],
                 derivation: tuple[str, str, str] | None = None) -> Any:
    import highdicom as hd

    return hd.sr.Measurement(name=_concept(name), value=float(value), unit=_concept(unit),
                             derivation=_concept(derivation) if derivation else None)


VOLUME = ("118565006", "SCT", "Volume")
DIAMETER = ("81827009", "SCT", "Diameter")
MAXIMUM = ("56851009", "SCT", "Maximum")
MEAN = ("373098007", "SCT", "Mean")
SD = ("386136009", "SCT", "Standard Deviation")
ATTENUATION = ("112031", "DCM", "Attenuation Coefficient")
INTENSITY = ("SIGNAL", PRIVATE, "Image intensity")


def write_measurement_sr(scan: Scan, seg: Any, items: list[SegmentItem], path: str | Path, *,
                         observer: str = "", verified_by: str = "", organization: str = "medscan") -> Any:
    """TID 1500 Comprehensive 3D SR: one volumetric group per SEG segment with its measurements.

    ``verified_by`` (a user who accepted every item) makes the document VERIFIED/COMPLETE; otherwise it is
    an UNVERIFIED, PARTIAL report of AI drafts.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    sources, _ = source_datasets(scan)
    series_uid = str(sources[0].SeriesInstanceUID)
    groups = []
    ct = scan.modality == "CT"
    value_name = ATTENUATION if ct else INTENSITY
    value_unit = UNITS_HU if ct else ("1", "UCUM", "no units")
    for number, item in enumerate(items, start=1):
        m = item.measurements
        _, kind = segment_property(item.name)
        measurements = [_measurement(VOLUME, m["volume_ml"], ("ml", "UCUM", "milliliter")),
                        _measurement(DIAMETER, m["max_diameter_mm"], ("mm", "UCUM", "millimeter"), MAXIMUM),
                        _measurement(value_name, m["mean"], value_unit, MEAN),
                        _measurement(value_name, m["sd"], value_unit, SD)]
        status = "EDITED" if item.algorithm_type == "MANUAL" else item.status.upper()
        evaluations = [hd.sr.QualitativeEvaluation(
            name=_concept(REVIEW_STATUS), value=_concept((status, PRIVATE, status.lower())))]
        algorithm = None
        if item.algorithm_type != "MANUAL":
            algorithm = hd.sr.AlgorithmIdentification(name=f"medscan {item.method}"[:64], version=item.version or "1")
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=item.label_text[:64]),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
                source_series=hd.sr.SourceSeriesForSegmentation(series_uid)),
            finding_type=kind, algorithm_id=algorithm, measurements=measurements,
            qualitative_evaluations=evaluations))
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="medscan", manufacturer_name="medscan"))
    person = None
    if observer:
        person = hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=_person_name(observer)))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device),
        procedure_reported=_concept(("25045-6", "LN", "CT unspecified body region") if ct
                                    else ("25056-3", "LN", "MRI unspecified body region")),
        imaging_measurements=groups)
    verified = bool(verified_by) and all(i.status == "accepted" for i in items)
    verified_by = _person_name(verified_by)
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*sources, seg], content=report, series_instance_uid=generate_uid(),
        series_number=int(sources[0].get("SeriesNumber", 0) or 0) + 700, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer="medscan", is_complete=verified, is_verified=verified,
        verifying_observer_name=verified_by if verified else None,
        verifying_organization=organization if verified else None)
    sr.SeriesDescription = f"medscan measurements ({'verified' if verified else 'AI DRAFT unverified'})"[:64]
    sr.save_as(path)
    return sr


def _person_name(name: str) -> str:
    """A user account as a DICOM PN: one component, made explicit with a trailing caret (PS3.5 6.2.1.2)."""
    return name if not name or "^" in name else f"{name}^"


def read_sr(path: str | Path) -> dict[str, Any]:
    """An SR written by ``write_measurement_sr`` back: verification and, per group, segment and measurements."""
    import highdicom as hd

    try:
        sr = hd.sr.srread(str(path))
    except Exception as exc:
        raise MedscanError(path, f"not a readable DICOM SR ({type(exc).__name__}: {str(exc)[:120]})") from exc
    from highdicom.sr.templates import MeasurementReport

    try:
        report = MeasurementReport.from_sequence([sr])
    except Exception as exc:
        raise MedscanError(path, f"not a TID 1500 measurement report ({str(exc)[:120]})") from exc
    findings = [_read_group(group) for group in report.get_volumetric_roi_measurement_groups()]
    observer = ""
    if "VerifyingObserverSequence" in sr:
        observer = str(sr.VerifyingObserverSequence[0].VerifyingObserverName).rstrip("^")
    return {"verified": str(sr.VerificationFlag) == "VERIFIED", "complete": str(sr.CompletionFlag) == "COMPLETE",
            "verifying_observer": observer, "series_description": str(sr.get("SeriesDescription", "")),
            "findings": findings}


def _read_group(group: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"tracking_id": str(group.tracking_identifier), "measurements": {}}
    segment = group.referenced_segment
    if segment is not None:
        out["segment_number"] = int(segment.referenced_segment_numbers[0])
        out["seg_sop_instance_uid"] = str(segment.referenced_sop_instance_uid)
        source = segment.source_series_for_segmentation
        out["source_series_uid"] = str(source.value) if source is not None else ""
    for measurement in group.get_measurements():
        name = str(measurement.name.meaning)
        derivation = getattr(measurement, "derivation", None)
        key = f"{derivation.meaning} {name}" if derivation is not None else name
        out["measurements"][key] = (float(measurement.value), str(measurement.unit.value))
    for evaluation in group.get_qualitative_evaluations():
        if evaluation.name.value == REVIEW_STATUS[0]:
            out["status"] = str(evaluation.value.meaning)
    return out
