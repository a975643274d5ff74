"""The review workflow for AI annotations: drafts until a person accepts, edits or rejects them; all audited.

Each finding of a segmentation becomes one ``Annotation`` row (kind "mask", source "ai", status "draft"): its
mask (cropped to the finding's box) is a blob; ``geometry`` holds the box, the label, the measurements, how
it was made (task, method, version, SegmentAlgorithmType) and the review history. State changes:

- ``accept``: draft -> accepted (radiologist), reviewer and time recorded; the mask is untouched (AUTOMATIC).
- ``reject``: draft/accepted -> rejected (radiologist); a rejected annotation is never exported.
- ``edit``: a person replaces the mask (brush/erase); the annotation becomes source "human", algorithm type
  MANUAL, status accepted by that person, measurements recomputed; the AI's mask blob id is kept in history.

A finding's explanation map (``store_explanation``) is kept as an ``Overlay`` of its annotation: the map of one
slice (float32 in [0, 1], an encrypted blob like the masks), the slice index and how it was made; it goes with
its annotation (cascade) and ``load_explanations`` gives it back for display.

``export`` writes DICOM SEG (+ SR) over the source series. As *accepted* it takes only annotations a user
accepted or edited and refuses when there are none — an AI draft can never leave as accepted without a
user action. As *drafts* it writes every non-rejected annotation into an UNVERIFIED SR and a SEG labelled
"AI DRAFT not reviewed".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from medscan.db.models import Annotation, Overlay, Series
from medscan.scan import MedscanError, Scan

DRAFT_ROLES = ("radiologist", "technician", "admin")  # who may run a task and keep its drafts
REVIEW_ROLES = ("radiologist",)  # who may accept, reject or edit: a clinical sign-off
EXPORT_ROLES = ("radiologist", "technician", "admin")  # as Database.export_series(identifiable=True)


@dataclass
class AnnotationView:
    """An annotation as the CLI and the review panel show it."""

    id: int
    label: str
    status: str  # draft | accepted | rejected
    source: str  # ai | human
    algorithm_type: str  # AUTOMATIC | MANUAL
    measurements: dict[str, Any]
    method: str = ""
    version: str = ""
    task: str = ""
    reviewed_by: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        """One line for ``medscan review list``: id, label, status and reviewer, source, algorithm type, volume (ml),
        maximum diameter (mm) and mean intensity.
        """
        m = self.measurements
        unit = f" {m.get('units')}" if m.get("units") else ""
        who = f" by {self.reviewed_by}" if self.reviewed_by else ""
        return (f"[{self.id}] {self.label} ({self.status}{who}, {self.source}, {self.algorithm_type}): "
                f"{m.get('volume_ml', 0):.1f} ml, max diameter {m.get('max_diameter_mm', 0):.1f} mm, "
                f"mean {m.get('mean', 0):.0f}{unit}")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _who(database: Any) -> str:
    return database.user.name if database.user else "-"


def _view(row: Annotation) -> AnnotationView:
    g = row.geometry or {}
    return AnnotationView(id=row.id, label=row.label, status=row.status, source=row.source,
                          algorithm_type=g.get("algorithm_type", "AUTOMATIC"), measurements=g.get("measurements", {}),
                          method=g.get("method", ""), version=g.get("version", ""), task=g.get("task", ""),
                          reviewed_by=g.get("reviewed_by", ""), history=list(g.get("history", [])))


def add_drafts(database: Any, series_id: int, segmentation: Any, findings: list[Any], *, task: str) -> list[int]:
    """Keep each finding as an AI draft of ``series_id``; returns the annotation ids in finding order."""
    database.require_role("annotate", f"series {series_id}", DRAFT_ROLES)
    blobs = [database.blobs.put_array(np.packbits(f.mask)) for f in findings]  # durable before the rows
    ids: list[int] = []
    with database.transaction() as session:
        if session.get(Series, series_id) is None:
            raise MedscanError(database.label, f"no series with id {series_id}")
        for finding, blob in zip(findings, blobs, strict=True):
            geometry = {
                "box": [[s.start, s.stop] for s in finding.box], "mask_shape": list(finding.mask.shape),
                "label_value": finding.label, "measurements": finding.measurements(), "task": task,
                "method": segmentation.method, "version": segmentation.version, "algorithm_type": "AUTOMATIC",
                "history": [{"action": "draft", "by": _who(database), "at": _now(),
                             "detail": f"{segmentation.source} {segmentation.method} {segmentation.version}".strip()}],
            }
            row = Annotation(series_ref=series_id, kind="mask", label=finding.name[:128], geometry=geometry,
                             blob_id=blob, author_ref=database.user.id if database.user else None, source="ai",
                             status="draft")
            session.add(row)
            session.flush()
            ids.append(row.id)
    database.audit("annotate-draft", f"series {series_id}",
                   detail=f"task {task}: {len(ids)} draft(s) {ids[:20]} by {segmentation.method}")
    return ids


def list_annotations(database: Any, series_id: int, *, include_rejected: bool = True) -> list[AnnotationView]:
    """The annotations of a series, oldest first.

    Args:
        database: an open, signed-in :class:`~medscan.db.store.Database`.
        series_id: the series' database id.
        include_rejected: also list rejected annotations.

    Returns:
        Read-only views of the annotations.
    """
    with database.transaction() as session:
        rows = session.scalars(select(Annotation).where(Annotation.series_ref == series_id)
                               .order_by(Annotation.id)).all()
        views = [_view(row) for row in rows]
    return [v for v in views if include_rejected or v.status != "rejected"]


def load_mask(database: Any, annotation_id: int, shape: tuple[int, int, int]) -> np.ndarray:
    """An annotation's mask as a bool volume of the series' ``shape``."""
    with database.transaction() as session:
        row = session.get(Annotation, annotation_id)
        if row is None:
            raise MedscanError(database.label, f"no annotation with id {annotation_id}")
        geometry, blob_id = dict(row.geometry), row.blob_id
    box = tuple(slice(a, b) for a, b in geometry["box"])
    crop_shape = tuple(geometry["mask_shape"])
    packed = database.blobs.get_array(blob_id)
    crop = np.unpackbits(packed, count=int(np.prod(crop_shape))).reshape(crop_shape).astype(bool)
    out = np.zeros(shape, bool)
    out[box] = crop
    return out


EXPLANATION_KIND = "explanation"


@dataclass
class Explanation:
    """A stored explanation overlay: the map of slice ``k`` (the series' in-plane shape, values in [0, 1])."""

    id: int
    annotation_id: int
    k: int
    method: str
    heat: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)


def store_explanation(database: Any, annotation_id: int, k: int, heat: np.ndarray, method: str,
                      details: dict[str, Any] | None = None) -> int:
    """Keep ``heat`` (slice k's explanation map, values in [0, 1]) as an overlay of the annotation; an earlier
    explanation of the same annotation and slice is replaced. Returns the overlay id."""
    heat = np.asarray(heat, np.float32)
    target = f"annotation {annotation_id}"
    if heat.ndim != 2 or not np.isfinite(heat).all() or heat.min() < 0 or heat.max() > 1:
        raise MedscanError(target, f"an explanation map is one slice with values in [0, 1], not {heat.shape}")
    database.require_role("annotation-explain", target, DRAFT_ROLES)
    blob = database.blobs.put_array(heat)  # durable before the row
    with database.transaction() as session:
        row = session.get(Annotation, annotation_id)
        if row is None:
            raise MedscanError(database.label, f"no annotation with id {annotation_id}")
        box = (row.geometry or {}).get("box")
        if box and not box[0][0] <= k < box[0][1]:
            raise MedscanError(target, f"slice {k} is outside the finding (slices {box[0][0]}-{box[0][1] - 1})")
        for old in list(row.overlays):
            if old.kind == EXPLANATION_KIND and old.slices == [int(k)]:
                session.delete(old)  # its blob goes with the next orphan collection
        overlay = Overlay(annotation_ref=annotation_id, kind=EXPLANATION_KIND, slices=[int(k)], blob_id=blob,
                          details={"method": method, "by": _who(database), "at": _now(), "shape": list(heat.shape),
                                   **(details or {})})
        session.add(overlay)
        session.flush()
        overlay_id = overlay.id
    database.audit("annotation-explain", target, detail=f"slice {k}: {method} -> overlay {overlay_id}")
    return overlay_id


def load_explanations(database: Any, annotation_id: int) -> list[Explanation]:
    """An annotation's stored explanation maps, oldest first."""
    with database.transaction() as session:
        row = session.get(Annotation, annotation_id)
        if row is None:
            raise MedscanError(database.label, f"no annotation with id {annotation_id}")
        kept = [(o.id, o.slices[0], dict(o.details or {}), o.blob_id)
                for o in sorted(row.overlays, key=lambda o: o.id) if o.kind == EXPLANATION_KIND and o.slices]
    return [Explanation(id=i, annotation_id=annotation_id, k=int(k), method=str(d.get("method", "")),
                        heat=np.asarray(database.blobs.get_array(blob), np.float32), details=d)
            for i, k, d, blob in kept]


def _change(database: Any, annotation_id: int, action: str, allowed_from: tuple[str, ...], status: str,
            extra: dict[str, Any] | None = None, *, update: Any = None) -> AnnotationView:
    target = f"annotation {annotation_id}"
    database.require_role(f"annotation-{action}", target, REVIEW_ROLES)
    refused = ""
    with database.transaction() as session:
        row = session.get(Annotation, annotation_id)
        if row is None:
            raise MedscanError(database.label, f"no annotation with id {annotation_id}")
        before = row.status
        if before not in allowed_from:
            refused = before
        else:
            view = _apply(database, row, action, status, extra, update)
    if refused:
        database.audit(f"annotation-{action}", target, outcome="refused", detail=f"status {refused}")
        raise MedscanError(target, f"cannot {action} an annotation that is {refused}")
    database.audit(f"annotation-{action}", target, detail=f"{view.label}: {before} -> {status}")
    return view


def _apply(database: Any, row: Annotation, action: str, status: str, extra: dict[str, Any] | None,
           update: Any) -> AnnotationView:
    """The state change itself, inside the caller's transaction."""
    before = row.status
    geometry = dict(row.geometry or {})
    geometry["history"] = [*geometry.get("history", []),
                           {"action": action, "by": _who(database), "at": _now(), "from": before, **(extra or {})}]
    if status == "accepted":
        geometry["reviewed_by"], geometry["reviewed_at"] = _who(database), _now()
    if update is not None:
        update(row, geometry)
    row.geometry = geometry  # a new dict: SQLAlchemy sees the JSON change
    row.status = status
    return _view(row)


def accept(database: Any, annotation_id: int) -> AnnotationView:
    """A radiologist accepts the mask as it is (it stays AUTOMATIC: the algorithm drew it)."""
    return _change(database, annotation_id, "accept", ("draft", "rejected"), "accepted")


def reject(database: Any, annotation_id: int, reason: str = "") -> AnnotationView:
    """Reject a draft or accepted annotation (audited; the reviewer and ``reason`` are recorded).

    Returns:
        The annotation as it is now.

    Raises:
        MedscanError: no such annotation, the signed-in user may not review, or it is already rejected.
    """
    return _change(database, annotation_id, "reject", ("draft", "accepted"), "rejected",
                   {"reason": reason} if reason else None)


def edit(database: Any, annotation_id: int, mask: np.ndarray, scan: Scan) -> AnnotationView:
    """Replace the mask with a person's (brush/erase): MANUAL, source human, accepted by that person."""
    from medscan.annotate.findings import Finding, find_findings
    from medscan.annotate.registry import Segmentation

    mask = np.asarray(mask, bool)
    if mask.shape != scan.voxels.shape[-3:]:
        raise MedscanError(f"annotation {annotation_id}", f"edited mask {mask.shape} does not match the series")
    if not mask.any():
        raise MedscanError(f"annotation {annotation_id}", "the edited mask is empty; reject the annotation instead")
    database.require_role("annotation-edit", f"annotation {annotation_id}", REVIEW_ROLES)
    with database.transaction() as session:
        row = session.get(Annotation, annotation_id)
        if row is None:
            raise MedscanError(database.label, f"no annotation with id {annotation_id}")
        label, label_value = row.label, int((row.geometry or {}).get("label_value", 1))
    # One finding over the whole edited mask (pieces the brush split stay one annotation).
    whole = find_findings(scan, Segmentation(mask.astype(np.uint8), {1: label}, "human", "edit"),
                          min_volume_ml=0.0)
    boxes = np.array([[s.start, s.stop] for f in whole for s in f.box]).reshape(-1, 3, 2)
    box = tuple(slice(int(boxes[:, a, 0].min()), int(boxes[:, a, 1].max())) for a in range(3))
    values = (scan.voxels if scan.voxels.ndim == 3 else scan.voxels[0])[mask].astype(np.float64)
    total_ml = sum(f.volume_ml for f in whole)
    largest = max(whole, key=lambda f: f.volume_ml)
    combined = Finding(number=0, label=label_value, name=label, volume_ml=total_ml,
                       max_diameter_mm=max(f.max_diameter_mm for f in whole), diameter_slice=largest.diameter_slice,
                       mean=float(values.mean()), sd=float(values.std()), units=scan.units,
                       slice_range=(box[0].start, box[0].stop - 1),
                       centroid_mm=tuple(float(c) for c in scan.index_to_world(
                           np.argwhere(mask).mean(0)[::-1])[0]),  # type: ignore[arg-type]
                       voxels=int(mask.sum()), box=box, mask=mask[box])
    blob = database.blobs.put_array(np.packbits(combined.mask))

    def update(row: Annotation, geometry: dict[str, Any]) -> None:
        geometry["history"][-1]["replaced_blob"] = row.blob_id
        geometry.update({"box": [[s.start, s.stop] for s in box], "mask_shape": list(combined.mask.shape),
                         "measurements": combined.measurements(), "algorithm_type": "MANUAL"})
        row.blob_id = blob
        row.source = "human"
        row.author_ref = database.user.id if database.user else None

    return _change(database, annotation_id, "edit", ("draft", "accepted", "rejected"), "accepted",
                   {"voxels": int(mask.sum())}, update=update)


def export(database: Any, series_id: int, scan: Scan, seg_path: str | Path, sr_path: str | Path | None = None, *,
           accepted_only: bool = True) -> list[Path]:
    """DICOM SEG (and SR) of the series' annotations over its source images; see the module docstring."""
    from medscan.io.seg_sr import SegmentItem, write_annotation_seg, write_measurement_sr

    target = f"series {series_id}"
    action = "export-annotations" if accepted_only else "export-drafts"
    # SEG and SR carry the source images' patient module: identifiable, so the roles of an identifiable export.
    database.require_role(action, target, EXPORT_ROLES)
    views = [v for v in list_annotations(database, series_id) if v.status != "rejected"]
    chosen = [v for v in views if v.status == "accepted"] if accepted_only else views
    if not chosen:
        drafts = sum(v.status == "draft" for v in views)
        database.audit(action, target, outcome="refused", detail=f"no accepted annotations ({drafts} draft(s))")
        raise MedscanError(target, f"no accepted annotations to export ({drafts} AI draft(s) wait for review: "
                                   "accept or edit them first, or export them as drafts)")
    for path in (seg_path, sr_path):
        if path is not None and Path(path).exists():
            raise MedscanError(path, "already exists; choose a new name")
    items = [SegmentItem(mask=load_mask(database, v.id, scan.voxels.shape), name=v.label,
                         label_text=f"#{v.id} {v.label}", algorithm_type=v.algorithm_type, method=v.method,
                         version=v.version, status=v.status, reviewer=v.reviewed_by,
                         measurements=v.measurements) for v in chosen]
    written: list[Path] = []
    try:
        seg = write_annotation_seg(scan, items, seg_path, draft=not accepted_only)
        written.append(Path(seg_path))
        if sr_path is not None:
            reviewers = sorted({i.reviewer for i in items if i.reviewer})
            verified_by = (_who(database) if _who(database) in reviewers else reviewers[0]) if accepted_only else ""
            write_measurement_sr(scan, seg, items, sr_path, observer=_who(database), verified_by=verified_by)
            written.append(Path(sr_path))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    database.audit(action, target, detail=f"{len(items)} annotation(s) {[v.id for v in chosen][:20]} -> "
                                          + ", ".join(str(p) for p in written))
    return written
