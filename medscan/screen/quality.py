"""Quality triage of a loaded series: cheap, robust measures with stated thresholds, reported as badges.

Five checks, each pure numpy/scipy on a subsample of slices (a 120x512x512 CT screens in a few seconds):

* **noise** — Donoho's MAD of the finest diagonal Haar detail inside the body (eroded, so edges barely count):
  CT in HU; MR relative to the body's 1-99 % intensity range (MR units are arbitrary).
* **ghosting** (MR) — the ghost ratio: the fraction of the object's signal replicated into the air beyond it
  along the phase-encoding axis (slope of the air band's read-out profile against the object's projection).
  Motion and pulsation replicate the object along the phase-encoding axis only; noise and coil shading do not
  follow the object's profile. The axis comes from InPlanePhaseEncodingDirection, or both axes are scored and
  the worse counts.
* **slices** — gaps from the slice positions (a missing slice makes one step twice the others; from the DICOM
  frames when the caller has them, otherwise from the loader's non-uniform spacing warning) and blank (constant)
  slices between slices with content.
* **field of view** — how far the body (its largest part: a cut arm is not a truncated study) spans an image
  edge, averaged over the sampled slices. Edges that cut the patient's long (S-I) axis are exempt: a sagittal
  head or a coronal chest always leaves the field there.
* **orientation** — non-finite, degenerate or non-orthogonal affines, sheared (tilted) stacks, and the loader's
  notes about orientations split apart or guessed.

Thresholds are module constants. They were set on the clean CT and MR volumes in ``../shared/data`` and on
degraded copies of them (``scripts/evaluate_screen.py`` prints both): each flag threshold sits above the highest
clean value with a margin and below the stated detection floor of its degradation.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from medscan.scan import Scan

LEVELS = ("ok", "warn", "flag")
VERSION = "2"  # bump when a measure or threshold changes: stored badges then say which rules made them

# -- thresholds (how they were chosen: see each comment; figures from scripts/evaluate_screen.py) ---------------
# CT noise, HU, as ``medscan.ops.noise_level`` reads it (an ROI in flat soft tissue). Clean CTs here: 6-17 HU, and
# 37 HU for the 1.5 mm CT angiogram (labelled/ct_aorta), noisy by design; white noise of 50 HU added reads 50 HU or
# more on every CT (the detection floor). Version 1 read the finest-scale MAD, which sees a fraction of correlated
# CT noise (the angiogram read 27 HU), with the thresholds at 32 and 38 HU.
CT_NOISE_WARN_HU = 40.0
CT_NOISE_FLAG_HU = 48.0
# MR noise relative to the body's 1-99 % intensity range. Clean MR here: 0.5-2.9 %; Rician noise with sigma 5 % of
# the body's 99th percentile (the detection floor) gives 4.7 % or more, 2 % gives 2.0-4.7 % (mostly ok).
MR_NOISE_WARN = 0.035
MR_NOISE_FLAG = 0.040
# MR ghost ratio (fraction of the object's signal replicated into the air along phase encoding). Clean MR here:
# 0-0.6 %; "mild" k-space motion of medscan.degrade.motion gives 2 % or more, "moderate" 5 % or more.
GHOST_WARN = 0.010
GHOST_FLAG = 0.015
# Slice gaps: largest step over the median step. One missing slice gives 2.0; scanners' rounding < 1.01.
GAP_WARN = 1.05
GAP_FLAG = 1.5
# A slice is blank when its spread is below this fraction of the volume's 1-99 % range.
BLANK_FRACTION = 1e-4
# Truncation: per slice, the largest fraction of a (non-exempt) image edge the body spans; the series value is its
# mean over the body-bearing slices. Clean scans here: 0 when the body sits inside the field, 0.10 where arms or
# hips already reach the edge (mr02 chest, ct02 pelvis); cropping 10 % of the body's width gives 0.16 or more.
EDGE_SPAN_WARN = 0.07
EDGE_SPAN_FLAG = 0.13
CUT_SLICE_SPAN = 0.15  # a slice counts as cut (for the message) above this span
# Orientation: columns of the direction matrix more than this many degrees off 90 degrees are non-orthogonal.
ORTHOGONAL_WARN_DEG = 0.5
ORTHOGONAL_FLAG_DEG = 5.0

MAX_SLICES = 24  # slices sampled for the in-plane measures
SCREENED_MODALITIES = ("CT", "MR")
CT_BODY_HU = -500.0  # air/soft-tissue boundary for the CT body mask
CT_SOFT_TISSUE_HU = (-200.0, 300.0)  # fat to enhanced soft tissue: where CT noise is measured


@dataclass(frozen=True)
class Badge:
    """One check's outcome; ``value`` and ``threshold`` are in ``unit`` (the flag threshold)."""

    name: str
    level: str  # ok | warn | flag
    value: float | None
    threshold: float | None
    message: str
    unit: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The badge as plain JSON-able data (``--json`` output and the database)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Badge:
        """A badge from :meth:`to_dict` output; keys it does not know are ignored."""
        return cls(**{k: data.get(k) for k in ("name", "level", "value", "threshold", "message", "unit")})


def _level(value: float, warn: float, flag: float) -> str:
    return "flag" if value >= flag else "warn" if value >= warn else "ok"


def worst(badges: list[Badge]) -> str:
    """The worst level among ``badges`` (ok when empty)."""
    return max((b.level for b in badges), key=LEVELS.index, default="ok")


# -- sampling and masks ------------------------------------------------------------------------------------------
def _volume(scan: Scan) -> np.ndarray:
    """The first volume in physical units: the loader's int16 array while the scan still holds one (the values of
    ``voxels`` at half the memory; screening a just-opened 1000-slice series must not make a float32 copy of it).
    Callers convert what they sample to float32, so the badges are those of the float32 voxels."""
    voxels = scan.exact_integers()
    if voxels is None:
        voxels = scan.voxels
    return voxels if voxels.ndim == 3 else voxels[0]


def _sample_indices(n: int, limit: int = MAX_SLICES) -> np.ndarray:
    """Evenly spread slices, the outer 10 % skipped where there are enough (end slices are often partial)."""
    if n <= limit:
        return np.arange(n)
    lo, hi = int(0.1 * n), math.ceil(0.9 * n)
    return np.unique(np.linspace(lo, hi - 1, limit).round().astype(int))


def _stride(shape: tuple[int, int]) -> int:
    return max(1, round(max(shape) / 256))


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(float)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def body_threshold(scan: Scan, planes: np.ndarray) -> float:
    """Air/body boundary: -500 HU for CT; for MR Otsu over smoothed sampled planes, never below 5 % of p99."""
    if scan.modality == "CT":
        return CT_BODY_HU
    values = planes[:, ::2, ::2].ravel()
    high = float(np.percentile(values, 99))
    values = values[values < high]
    otsu = _otsu(values) if values.size else 0.0
    return max(0.5 * otsu, 0.05 * high)


def body_mask(plane: np.ndarray, threshold: float) -> np.ndarray:
    """Filled body of one (downsampled, smoothed) plane: thin things (a CT table, noise specks) opened away,
    components smaller than a tenth of the largest dropped."""
    mask = plane > threshold
    if not mask.any():
        return mask
    mask = ndimage.binary_opening(mask, iterations=2)
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    keep = np.flatnonzero(sizes >= 0.1 * sizes.max()) + 1
    return ndimage.binary_fill_holes(np.isin(labels, keep))


@dataclass
class _Sampled:
    indices: np.ndarray
    planes: np.ndarray  # (n, H, W) full resolution
    small: np.ndarray  # (n, h, w) downsampled and smoothed
    masks: np.ndarray  # (n, h, w) body masks on ``small``
    stride: int
    threshold: float


def _sample(scan: Scan) -> _Sampled:
    volume = _volume(scan)
    indices = _sample_indices(volume.shape[0])
    planes = np.asarray(volume[indices], dtype=np.float32)
    stride = _stride(planes.shape[1:])
    small = ndimage.uniform_filter(planes[:, ::stride, ::stride], size=(1, 3, 3))
    threshold = body_threshold(scan, small)
    masks = np.stack([body_mask(p, threshold) for p in small])
    return _Sampled(indices, planes, small, masks, stride, threshold)


# -- noise -------------------------------------------------------------------------------------------------------
def _diagonal_detail(planes: np.ndarray) -> np.ndarray:
    h, w = (planes.shape[-2] // 2) * 2, (planes.shape[-1] // 2) * 2
    y = planes[..., :h, :w]
    return (y[..., 0::2, 0::2] - y[..., 0::2, 1::2] - y[..., 1::2, 0::2] + y[..., 1::2, 1::2]) / 2


def noise_level(scan: Scan, sampled: _Sampled | None = None) -> tuple[float, float]:
    """(sigma in the scan's units, sigma relative to the body's 1-99 % intensity range) from the body's interior."""
    s = sampled or _sample(scan)
    detail = _diagonal_detail(s.planes)
    values, signal = [], []
    for plane, d, mask in zip(s.planes, detail, s.masks, strict=True):
        inner = ndimage.binary_erosion(mask, iterations=3)
        if inner.sum() < 50:
            continue
        full = np.kron(inner, np.ones((s.stride, s.stride), dtype=bool))
        full = np.pad(full, [(0, max(0, plane.shape[0] - full.shape[0])), (0, max(0, plane.shape[1] - full.shape[1]))])
        full = full[:plane.shape[0], :plane.shape[1]]
        block = full[: d.shape[0] * 2: 2, : d.shape[1] * 2: 2]
        if scan.modality == "CT":  # soft tissue and fat only: lung and bone texture is anatomy, not noise
            quad = plane[: d.shape[0] * 2, : d.shape[1] * 2].reshape(d.shape[0], 2, d.shape[1], 2)
            block &= (quad.min(axis=(1, 3)) > CT_SOFT_TISSUE_HU[0]) & (quad.max(axis=(1, 3)) < CT_SOFT_TISSUE_HU[1])
            if block.sum() < 50:
                continue
        values.append(d[block])
        signal.append(plane[full])
    if not values:
        return float("nan"), float("nan")
    sigma = float(np.median(np.abs(np.concatenate(values))) / 0.6745)
    if scan.modality == "CT":
        # CT noise is correlated: read it as a reader's ROI in flat soft tissue does (the estimator the fidelity
        # report uses too); the finest-scale reading above stands only where no flat soft tissue is found.
        from medscan.ops.noise_level import ct_noise_sd

        measured = ct_noise_sd(s.planes)
        sigma = measured if np.isfinite(measured) else sigma
    body = np.concatenate(signal)
    low, high = np.percentile(body, (1, 99))
    reference = float(high - low)  # the body's intensity range: what a window shows, whatever the MR contrast
    return sigma, sigma / reference if reference > 0 else float("inf")


def noise_badge(scan: Scan, sampled: _Sampled | None = None) -> Badge:
    """The noise badge: MAD of the finest diagonal wavelet detail inside the body.

    Args:
        scan: the series.
        sampled: slices already sampled for the other badges (computed when ``None``).

    Returns:
        CT: value in HU, flagged above ``CT_NOISE_FLAG_HU``. Other modalities: value as a fraction of the body's
        intensity range, flagged above ``MR_NOISE_FLAG``. ``warn`` with no value when no body is found.
    """
    sigma, relative = noise_level(scan, sampled)
    if not math.isfinite(sigma):
        return Badge("noise", "warn", None, None, "no body found to measure noise in")
    if scan.modality == "CT":
        level = _level(sigma, CT_NOISE_WARN_HU, CT_NOISE_FLAG_HU)
        return Badge("noise", level, round(sigma, 2), CT_NOISE_FLAG_HU,
                     f"noise {sigma:.1f} HU inside the body (flag at {CT_NOISE_FLAG_HU:g} HU)", "HU")
    level = _level(relative, MR_NOISE_WARN, MR_NOISE_FLAG)
    return Badge("noise", level, round(relative, 4), MR_NOISE_FLAG,
                 f"noise {100 * relative:.1f} % of the body's intensity range (flag at {100 * MR_NOISE_FLAG:g} %)",
                 "fraction")


# -- ghosting ----------------------------------------------------------------------------------------------------
def phase_encoding_axes(scan: Scan) -> tuple[list[int], str]:
    """In-plane axes (-2 rows/vertical, -1 columns/horizontal) along which phase encoding may run."""
    header = scan.header
    value = str(header.get("InPlanePhaseEncodingDirection", "") or "").strip().upper() if header is not None else ""
    if value == "COL":
        return [-2], "phase encoding COL (header)"
    if value == "ROW":
        return [-1], "phase encoding ROW (header)"
    return [-2, -1], "phase encoding unknown: both axes scored"


def ghost_ratio(small: np.ndarray, mask: np.ndarray, axis: int) -> float | None:
    """Fraction of the object's signal replicated into the air beyond it along phase-encoding ``axis``.

    A motion or pulsation ghost is the object shifted along the phase-encoding axis, so in the background band
    above and below the object (its rows' extent plus a margin of 3 % of the image, past the skin's blur) each
    read-out column carries ghost signal in proportion to the object's projection along that column. The ghost
    ratio is the least-squares slope of the band's column means against that projection (mean over the plane's
    height): noise, a constant background or coil shading of the air give no slope; any ghost level does.
    """
    plane = small if axis == -2 else small.T
    obj = mask if axis == -2 else mask.T
    if obj.sum() < 100:
        return None
    h, w = obj.shape
    margin = max(2, round(0.03 * max(h, w)))
    rows = np.flatnonzero(obj.any(axis=1))
    r0, r1 = max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, h)
    band = np.concatenate([plane[:r0], plane[r1:]], axis=0)
    if band.shape[0] < 4:
        return None  # the object fills the phase-encoding extent: no air to see ghosts in
    projection = (plane * obj).sum(axis=0) / h
    variance = float(projection.var())
    if variance <= 0:
        return None
    columns = band.mean(axis=0)
    return float(np.mean((projection - projection.mean()) * (columns - columns.mean())) / variance)


def ghost_badge(scan: Scan, sampled: _Sampled | None = None) -> Badge | None:
    """The ghosting badge (MR only): the fraction of the object's signal replicated into the air along the
    phase-encoding axis (from InPlanePhaseEncodingDirection, else both in-plane axes, the worse one counts).

    Returns:
        The badge (flagged above ``GHOST_FLAG``), or ``None`` for a modality other than MR.
    """
    if scan.modality != "MR":
        return None
    s = sampled or _sample(scan)
    axes, source = phase_encoding_axes(scan)
    scores = []
    for axis in axes:
        ratios = [r for p, m in zip(s.small, s.masks, strict=True) if (r := ghost_ratio(p, m, axis)) is not None]
        if ratios:
            scores.append(float(np.median(ratios)))
    if not scores:
        return Badge("ghosting", "ok", None, GHOST_FLAG,
                     "ghosting not measurable: no air beyond the object along phase encoding", "fraction")
    score = max(scores)
    level = _level(score, GHOST_WARN, GHOST_FLAG)
    return Badge("ghosting", level, round(score, 4), GHOST_FLAG,
                 f"ghost ratio {100 * score:.2f} % of the object signal ({source}; flag at {100 * GHOST_FLAG:g} %)",
                 "fraction")


# -- slices ------------------------------------------------------------------------------------------------------
_SPACING_WARNING = re.compile(r"non-uniform slice spacing: steps from ([\d.]+) to ([\d.]+) mm \(mean ([\d.]+)")


def slice_steps_from_record(record: Any) -> np.ndarray | None:
    """Distances in mm between consecutive slice positions of a DICOM series (None without geometry)."""
    frames = [f for f in record.frames if f.has_geometry]
    if len(frames) < 2 or len(frames) != len(record.frames):
        return None
    first = frames[0]
    normal = np.cross(first.row_cosine, first.column_cosine)
    norm = np.linalg.norm(normal)
    if norm == 0:
        return None
    distances = np.unique(np.round([float(np.dot(f.position, normal / norm)) for f in frames], 2))
    return np.diff(distances) if distances.size > 1 else None


def gap_ratio(scan: Scan, steps: np.ndarray | None) -> tuple[float, str]:
    """Largest slice step over the median step, from positions or, lacking them, the loader's warning."""
    if steps is not None and steps.size:
        median = float(np.median(steps))
        if median > 0:
            return float(steps.max() / median), f"steps {steps.min():.2f}-{steps.max():.2f} mm"
    for warning in scan.warnings:
        match = _SPACING_WARNING.search(warning)
        if match:
            low, high, _ = (float(g) for g in match.groups())
            return (high / low if low > 0 else float("inf")), f"steps {low:.2f}-{high:.2f} mm"
    return 1.0, "uniform slice spacing"


def blank_slices(scan: Scan) -> list[int]:
    """Constant slices with content on both sides (end slices outside a skull-stripped brain are not missing)."""
    volume = _volume(scan)
    stride = _stride(volume.shape[1:])
    small = volume[:, ::stride, ::stride]
    # slice by slice: a float32 copy of every (strided) slice at once would be half the volume again
    spread = np.array([np.asarray(plane, dtype=np.float32).std() for plane in small], dtype=np.float32)
    lo, hi = np.percentile(np.asarray(small[:: max(1, small.shape[0] // 16)], dtype=np.float32), (1, 99))
    blank = spread <= BLANK_FRACTION * max(float(hi - lo), 1e-6)
    content = np.flatnonzero(~blank)
    if content.size == 0:
        return []
    return [int(k) for k in np.flatnonzero(blank) if content[0] < k < content[-1]]


def slices_badge(scan: Scan, steps: np.ndarray | None = None) -> Badge:
    """The slices badge: gaps from the slice positions and blank slices inside the stack.

    Args:
        scan: the series.
        steps: slice steps in mm when already known (computed from the affine and positions otherwise).

    Returns:
        Flagged for any blank slice, or when the largest step is ``GAP_FLAG`` times the usual one or more; the
        message says how many slices seem to be missing.
    """
    ratio, detail = gap_ratio(scan, steps)
    blanks = blank_slices(scan)
    if blanks:
        shown = ", ".join(str(k + 1) for k in blanks[:5]) + (" …" if len(blanks) > 5 else "")
        return Badge("slices", "flag", float(len(blanks)), 0.0,
                     f"{len(blanks)} blank slice(s) inside the stack (slice {shown}); {detail}", "slices")
    level = _level(ratio, GAP_WARN, GAP_FLAG)
    if level == "flag":
        missing = round(ratio) - 1
        message = f"gap of {ratio:.2f}x the usual slice step: about {missing} slice(s) missing ({detail})"
    elif level == "warn":
        message = f"uneven slice spacing, largest step {ratio:.2f}x the median ({detail})"
    else:
        message = f"{_volume(scan).shape[0]} slices, {detail}"
    return Badge("slices", level, round(ratio, 3), GAP_FLAG, message, "step ratio")


# -- field of view -----------------------------------------------------------------------------------------------
def exempt_edges(scan: Scan) -> set[str]:
    """Edges the body may leave through: those crossing the patient's S-I axis (z in LPS)."""
    direction = scan.direction
    exempt = set()
    if abs(direction[2, 0]) > 0.7:  # i (columns) runs S-I: the left/right image edges cut the long axis
        exempt |= {"left", "right"}
    if abs(direction[2, 1]) > 0.7:  # j (rows) runs S-I: top/bottom edges
        exempt |= {"top", "bottom"}
    return exempt


def edge_contact(mask: np.ndarray, exempt: set[str]) -> float:
    """Largest fraction of a non-exempt image edge spanned by the body (first to last body pixel on it).

    The span, not the covered pixels: a field of view cut through the lungs of an MR chest touches the edge
    with the chest wall in front and behind, and the dark lungs between are cut just the same.
    """
    edges = {"top": mask[0], "bottom": mask[-1], "left": mask[:, 0], "right": mask[:, -1]}
    values = []
    for name, edge in edges.items():
        if name in exempt or not edge.any():
            continue
        hits = np.flatnonzero(edge)
        values.append((hits[-1] - hits[0] + 1) / edge.size)
    return float(max(values, default=0.0))


def _largest(mask: np.ndarray) -> np.ndarray:
    """The main body part (trunk or head): arms or a hand at the edge are not a truncated study."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    return labels == int(np.argmax(sizes)) + 1


def fov_badge(scan: Scan, sampled: _Sampled | None = None) -> Badge:
    """The field-of-view badge: how much of the image edge the body touches (edges along the patient's long
    axis are exempt, where a body legitimately runs off the image).

    Returns:
        Value: the mean over sampled slices of the largest fraction of a non-exempt edge the body spans; flagged
    above ``EDGE_SPAN_FLAG``.
    """
    s = sampled or _sample(scan)
    exempt = exempt_edges(scan)
    with_body = [_largest(m) for m in s.masks if m.mean() > 0.01]
    if not with_body:
        return Badge("field of view", "warn", None, EDGE_SPAN_FLAG, "no body found in the sampled slices",
                     "edge fraction")
    contacts = np.array([edge_contact(m, exempt) for m in with_body])
    value = float(contacts.mean())
    level = _level(value, EDGE_SPAN_WARN, EDGE_SPAN_FLAG)
    note = f" ({'/'.join(sorted(exempt))} edges exempt: long axis)" if exempt else ""
    cut = float(np.mean(contacts > CUT_SLICE_SPAN))
    if level == "ok":
        message = f"body inside the field of view (mean edge span {100 * value:.0f} %){note}"
    else:
        message = (f"body cut by the image edge: mean span {100 * value:.0f} % of an edge, {100 * cut:.0f} % of "
                   f"slices cut, up to {100 * contacts.max():.0f} %{note}")
    return Badge("field of view", level, round(value, 3), EDGE_SPAN_FLAG, message, "edge fraction")


# -- orientation -------------------------------------------------------------------------------------------------
_ORIENTATION_NOTES = ("orientation", "no patient geometry", "gantry tilt", "sheared", "without per-frame positions")


def orientation_badge(scan: Scan, split_note: str = "") -> Badge:
    """The orientation badge: degenerate, non-orthogonal or sheared geometry, plus orientation notes from the loader.

    Args:
        scan: the series (its affine is checked).
        split_note: the loader's note on how the series was split; one about orientation raises the badge to warn.

    Returns:
        Value: the largest deviation from orthogonal axes in degrees; flagged above ``ORTHOGONAL_FLAG_DEG``.
    """
    affine = scan.affine
    if not np.all(np.isfinite(affine)):
        return Badge("orientation", "flag", None, ORTHOGONAL_FLAG_DEG, "affine has non-finite values", "deg")
    columns = affine[:3, :3]
    lengths = np.linalg.norm(columns, axis=0)
    if np.any(lengths < 1e-6) or abs(np.linalg.det(columns)) < 1e-9 * float(np.prod(np.maximum(lengths, 1e-6))):
        return Badge("orientation", "flag", None, ORTHOGONAL_FLAG_DEG, "degenerate affine (zero or parallel axes)",
                     "deg")
    unit = columns / lengths
    deviation = 0.0
    for a, b in ((0, 1), (0, 2), (1, 2)):
        cos = float(np.clip(abs(np.dot(unit[:, a], unit[:, b])), 0, 1))
        deviation = max(deviation, 90.0 - math.degrees(math.acos(cos)))
    notes = [w for w in scan.warnings if any(n in w for n in _ORIENTATION_NOTES)]
    if split_note and "orientation" in split_note:
        notes.append(f"series split by orientation {split_note}")
    level = _level(deviation, ORTHOGONAL_WARN_DEG, ORTHOGONAL_FLAG_DEG)
    if level == "ok" and notes:
        level = "warn"
    codes = scan.orientation_codes()
    if level == "flag" and any("gantry tilt" in n for n in notes):
        # A tilted gantry is a deliberate acquisition the loader measured from the positions: the affine holds the
        # shear exactly, so the geometry is sound; reformats and other tools must honour the shear.
        return Badge("orientation", "warn", round(deviation, 3), ORTHOGONAL_FLAG_DEG,
                     f"sheared stack ({deviation:.1f} degrees, gantry tilt) — {codes}", "deg")
    if level == "flag":
        message = f"axes {deviation:.1f} degrees off orthogonal: geometry unreliable ({codes})"
    elif notes:
        message = f"{codes}; " + "; ".join(notes)
    elif level == "warn":
        message = f"axes {deviation:.2f} degrees off orthogonal ({codes})"
    else:
        message = f"orthogonal {codes} grid"
    return Badge("orientation", level, round(deviation, 3), ORTHOGONAL_FLAG_DEG, message, "deg")


# -- all together ------------------------------------------------------------------------------------------------
def screen_scan(scan: Scan, *, steps: np.ndarray | None = None, split_note: str = "") -> list[Badge]:
    """Every badge for ``scan``: noise, ghosting (MR), slices, field of view, orientation.

    ``steps`` are the slice-to-slice distances from the DICOM positions (``slice_steps_from_record``); without
    them the loader's spacing warning is used.
    """
    if scan.modality not in SCREENED_MODALITIES:  # radiographs, ultrasound, captures: other physics, other checks
        return [Badge("scope", "ok", None, None, f"{scan.modality or 'unknown modality'}: noise, ghosting, slice and "
                      "field-of-view checks are made for CT and MR and were not applied"),
                orientation_badge(scan, split_note)]
    sampled = _sample(scan)
    badges = [noise_badge(scan, sampled)]
    ghost = ghost_badge(scan, sampled)
    if ghost is not None:
        badges.append(ghost)
    badges += [slices_badge(scan, steps), fov_badge(scan, sampled), orientation_badge(scan, split_note)]
    return badges


def screen_record(record: Any) -> tuple[Scan, list[Badge]]:
    """Load a DICOM series record and screen it with the exact slice positions of its frames."""
    from medscan.io.dicom import load_series

    scan = load_series(record)
    return scan, screen_scan(scan, steps=slice_steps_from_record(record), split_note=record.split_note)
