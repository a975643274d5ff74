"""Findings from a segmentation: each connected piece of a label, measured the way a radiologist reports it.

Measurements come from the scan's affine (never from the voxel count alone):

- volume (ml): voxels x |det(affine[:3, :3])| / 1000;
- maximum in-plane diameter (mm): the longest chord of the piece within one acquired slice (plane k), over
  all its slices, between pixel centres on the piece's convex hull in patient millimetres;
- mean and standard deviation of the scan's values inside the piece (HU for CT; the scanner's arbitrary
  scale for MR, where ``units`` is empty);
- slice range (first and last k) and the centroid in patient LPS millimetres.

Pieces are 26-connected in 3-D. A size floor drops specks; ``max_per_label`` keeps the largest pieces of a label
(a rib cage would otherwise be dozens of findings) and says how many were left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from medscan.annotate.registry import Segmentation
from medscan.scan import Scan


@dataclass
class Finding:
    """One connected piece of one label with its measurements; ``mask`` covers ``box`` only."""

    number: int  # 1-based, in the order findings are listed
    label: int
    name: str
    volume_ml: float
    max_diameter_mm: float
    diameter_slice: int  # k of the slice where the maximum diameter was measured
    mean: float
    sd: float
    units: str
    slice_range: tuple[int, int]
    centroid_mm: tuple[float, float, float]  # LPS
    voxels: int
    box: tuple[slice, slice, slice]
    mask: np.ndarray = field(repr=False)

    def full_mask(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The piece as a bool volume of the scan's shape."""
        out = np.zeros(shape, bool)
        out[self.box] = self.mask
        return out

    def measurements(self) -> dict[str, Any]:
        """JSON-safe measurements (for the database, the SR and ``--json`` output)."""
        data = asdict(self)
        for key in ("box", "mask"):
            data.pop(key)
        data["slice_range"] = list(self.slice_range)
        data["centroid_mm"] = list(self.centroid_mm)
        data["box"] = [[s.start, s.stop] for s in self.box]
        return data

    def describe(self) -> str:
        """One line for people: number, name, volume (ml), maximum diameter (mm), mean and sd (in ``units``)
        and the slice range.
        """
        unit = f" {self.units}" if self.units else ""
        return (f"#{self.number} {self.name}: {self.volume_ml:.1f} ml, max diameter {self.max_diameter_mm:.1f} mm, "
                f"mean {self.mean:.0f}{unit} (sd {self.sd:.0f}), slices {self.slice_range[0]}-{self.slice_range[1]}")


def max_inplane_diameter(mask: np.ndarray, affine: np.ndarray) -> tuple[float, int]:
    """Longest in-plane chord (mm) of a bool volume ``[k, j, i]`` over its slices, and the slice k where found.

    Measured between pixel centres on the piece's convex hull (what a caliper from edge pixel to edge pixel
    reads); a piece one pixel across measures one pixel spacing, not zero.
    """
    ivec, jvec = np.asarray(affine)[:3, 0], np.asarray(affine)[:3, 1]
    best, best_k = 0.0, -1
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        plane = mask[k]
        edge = plane & ~ndimage.binary_erosion(plane)  # the hull of the piece is the hull of its edge pixels
        jj, ii = np.nonzero(edge)
        points = np.stack([ii, jj], 1).astype(np.float64)
        xyz = points[:, :1] * ivec + points[:, 1:] * jvec
        try:
            hull = xyz[ConvexHull(points).vertices] if len(points) > 3 else xyz
        except QhullError:  # all points on a line
            hull = xyz
        if len(hull) > 2000:
            hull = hull[:: len(hull) // 2000 + 1]
        d = float(np.sqrt(((hull[:, None, :] - hull[None, :, :]) ** 2).sum(-1)).max())
        d = max(d, float(min(np.linalg.norm(ivec), np.linalg.norm(jvec))))
        if d > best:
            best, best_k = d, int(k)
    return best, best_k


def find_findings(scan: Scan, segmentation: Segmentation, *, min_volume_ml: float = 0.5,
                  max_per_label: int | None = None, labels: list[int] | None = None) -> list[Finding]:
    """Connected pieces of each label above ``min_volume_ml`` with their measurements, largest first per label."""
    values = scan.voxels if scan.voxels.ndim == 3 else scan.voxels[0]
    voxel_ml = float(abs(np.linalg.det(scan.affine[:3, :3]))) / 1000.0
    found: list[Finding] = []
    dropped: dict[str, int] = {}
    structure = np.ones((3, 3, 3), bool)
    for label in labels if labels is not None else sorted(segmentation.names):
        pieces, n = ndimage.label(segmentation.labels == label, structure=structure)
        if n == 0:
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        order = [int(i) + 1 for i in np.argsort(-sizes, kind="stable") if sizes[i] * voxel_ml >= min_volume_ml]
        if max_per_label is not None and len(order) > max_per_label:
            dropped[segmentation.names[label]] = len(order) - max_per_label
            order = order[:max_per_label]
        boxes = ndimage.find_objects(pieces)
        for piece in order:
            box = boxes[piece - 1]
            mask = pieces[box] == piece
            inside = values[box][mask].astype(np.float64)
            kk, jj, ii = np.nonzero(mask)
            centre = np.array([ii.mean() + box[2].start, jj.mean() + box[1].start, kk.mean() + box[0].start])
            centroid = scan.index_to_world(centre)[0]
            local = np.array(scan.affine, float)
            local[:3, 3] = scan.index_to_world([box[2].start, box[1].start, box[0].start])[0]
            diameter, dk = max_inplane_diameter(mask, local)
            found.append(Finding(
                number=0, label=int(label), name=segmentation.names[label],
                volume_ml=float(mask.sum() * voxel_ml), max_diameter_mm=diameter, diameter_slice=dk + box[0].start,
                mean=float(inside.mean()), sd=float(inside.std()), units=scan.units,
                slice_range=(int(box[0].start), int(box[0].stop - 1)),
                centroid_mm=tuple(float(c) for c in centroid),  # type: ignore[arg-type]
                voxels=int(mask.sum()), box=box, mask=mask))
    for number, finding in enumerate(found, start=1):
        finding.number = number
    if dropped:
        segmentation.notes.append("smaller pieces not listed: " + ", ".join(f"{v} {k}" for k, v in dropped.items()))
    return found
