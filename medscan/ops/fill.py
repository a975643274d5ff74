"""Fill what was never measured: holes in slices (``inpaint``) and missing slices (``fill_slices``).

Both are Generate operations: the output is SYNTHETIC, carries an uncertainty map (the spread of the model
over flipped copies of the input; exactly 0 on measured voxels, which are copied bit-identical) and the mask
of the generated voxels. Inpainting runs the 2.5-D masked U-Net on each affected slice with its neighbours.
Missing slices come from the measured slices either side, moved along their optical flow to the missing depth
and corrected by a U-Net, after the measured slices have been placed on the finest regular grid their positions
allow, so no measured slice moves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medscan import __version__
from medscan.ops.generated import tta_planes
from medscan.ops.registry import ProgressCallback, Result
from medscan.scan import MedscanError, ProvenanceEntry, Scan

PAD_MULTIPLE = 16  # the U-Net pools four times
CHUNK = 16  # planes per TTA pass: bounds memory on 512x512 CT
MAX_ENCLOSED_GAP = 8  # auto: a constant region counts as missing when measured data lies within this many slices
STEP_TOLERANCE = 0.1  # a slice step may differ from a whole multiple of the finest step by this share of it



# -- running the masked models ---------------------------------------------------------------------------------

def fill_stacks(stacks: np.ndarray, masks: np.ndarray, model, device, *, batch: int = 4) -> np.ndarray:
    """(N, C, H, W) stacks in their units (channel C//2 the plane to fill) and masks (True = missing) ->
    (N, H, W) float32: masked pixels generated, every other pixel the input's value, bit for bit.

    Each stack is normalised to the intensity window of its centre plane's measured pixels, like training.
    """
    import torch

    from medscan.nets.inpainter import masked_fill
    from medscan.nets.normalize import intensity_window, window_span
    from medscan.nets.volumes import pad_to

    n, channels, h, w = stacks.shape
    centre = channels // 2
    out = np.array(stacks[:, centre], dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, n, batch):
            chunk = np.asarray(stacks[start:start + batch], np.float32)
            hole = np.asarray(masks[start:start + batch], bool)
            windows = []
            for plane, missing in zip(chunk[:, centre], hole[:, centre], strict=True):
                measured = plane[~missing]
                windows.append(intensity_window(measured if measured.size else plane))
            lo = np.array([wd[0] for wd in windows], np.float32).reshape(-1, 1, 1, 1)
            hi = np.array([wd[1] for wd in windows], np.float32).reshape(-1, 1, 1, 1)
            span = window_span(lo, hi)
            x, _ = pad_to(torch.from_numpy((chunk - lo) / span).to(device), PAD_MULTIPLE)
            m, _ = pad_to(torch.from_numpy(hole.astype(np.float32)).to(device), PAD_MULTIPLE)
            y = masked_fill(model, x, m > 0.5)[:, 0, :h, :w].float().cpu().numpy()
            generated = y * span[:, 0] + lo[:, 0]
            out[start:start + batch] = np.where(hole[:, centre], generated, chunk[:, centre])
    return out


def fill_with_uncertainty(stacks: np.ndarray, masks: np.ndarray, model, device,
                          progress: ProgressCallback | None = None) -> tuple[np.ndarray, np.ndarray]:
    """TTA mean and spread of ``fill_stacks`` in chunks; measured pixels exact, their spread exactly 0."""
    n, channels = stacks.shape[:2]
    filled = np.empty((n, *stacks.shape[-2:]), np.float32)
    spread = np.zeros_like(filled)
    for start in range(0, n, CHUNK):
        packed = np.concatenate([stacks[start:start + CHUNK], masks[start:start + CHUNK].astype(np.float32)], axis=1)

        def predict(x: np.ndarray) -> np.ndarray:
            return fill_stacks(x[:, :channels], x[:, channels:] > 0.5, model, device)

        mean, sd = tta_planes(predict, packed)
        hole = masks[start:start + CHUNK, channels // 2]
        filled[start:start + CHUNK] = np.where(hole, mean, stacks[start:start + CHUNK, channels // 2])
        spread[start:start + CHUNK] = np.where(hole, sd, 0.0)
        if progress is not None:
            progress(min(start + CHUNK, n), n)
    return filled, spread


def fill_missing_slices(volume: np.ndarray, missing: np.ndarray, model, device,
                        progress: ProgressCallback | None = None, only: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) ``volume`` in its units with ``missing`` (K,) interior slices -> the filled volume and the
    uncertainty (TTA spread; exactly 0 on measured slices, which are returned bit-identical).

    Each missing slice comes from the nearest measured slices either side, moved along their optical flow to
    its depth in the gap (``medscan.nets.slice_flow``), in the intensity window of that pair. With ``only``
    (K,) bool, a subset of ``missing``, just those slices are generated; the other missing slices keep the
    input's values and zero uncertainty (another method fills them).
    """
    import torch

    from medscan.nets.normalize import intensity_window, window_span
    from medscan.nets.slice_flow import flow_estimates, flow_fill
    from medscan.nets.volumes import pad_to

    if missing[0] or missing[-1]:
        raise ValueError("the first and last slices must be measured: a missing slice needs one on either side")
    measured = np.flatnonzero(~missing)
    out = np.array(volume, dtype=np.float32)
    spread = np.zeros_like(out)
    targets = np.flatnonzero(missing if only is None else missing & only)
    for done, z in enumerate(targets, start=1):
        before, after = int(measured[measured < z].max()), int(measured[measured > z].min())
        depth = (z - before) / (after - before)
        pair = out[[before, after]]
        lo, hi = intensity_window(pair)
        span = window_span(lo, hi)

        def predict(planes: np.ndarray, depth: float = depth) -> np.ndarray:
            estimates = flow_estimates(planes[0, 0], planes[0, 1], depth)
            x, (h, w) = pad_to(torch.from_numpy(np.concatenate([planes[0], estimates])[None]).to(device),
                                PAD_MULTIPLE)
            with torch.inference_mode():
                y = flow_fill(model, x[:, :1], x[:, 1:2], x[:, 2:], torch.tensor([depth], device=device))
            return y[:, 0, :h, :w].float().cpu().numpy()

        mean, sd = tta_planes(predict, ((pair - lo) / span)[None].astype(np.float32))
        out[z], spread[z] = mean[0] * span + lo, sd[0] * span
        if progress is not None:
            progress(done, len(targets))
    return out, spread


# -- classical interpolation and when the model is used instead ------------------------------------------------

INTERPOLATION_ROWS = 32  # image rows per cubic-spline pass: its coefficients are 4 float64 copies of the stack
SAME_SPACING = 0.05  # a slice step within this share of a measured spacing counts as that spacing
WIN_MARGIN_DB = 0.2  # the model must beat cubic by this much on held-out data (a margin for unseen subjects)
MIN_SUBJECTS = 2  # held-out subjects a spacing needs before it can decide: one subject is an anecdote
PATTERNS = ("single-slice gaps", "every other slice", "2-3-slice gaps")
LONGEST_GAP = 3  # slices; longer runs of missing slices were never measured, so cubic fills them


def interpolate_slices(volume: np.ndarray, missing: np.ndarray, method: str) -> np.ndarray:
    """(K, H, W) ``volume`` with its ``missing`` (K,) slices replaced by ``"linear"`` or ``"cubic"`` interpolation
    along axis 0 (``scipy.interpolate.CubicSpline``, not-a-knot ends, through every measured slice); float32,
    measured slices unchanged. The first and last slices must be measured."""
    from scipy.interpolate import CubicSpline

    if missing[0] or missing[-1]:
        raise ValueError("the first and last slices must be measured: a missing slice needs one on either side")
    measured = np.flatnonzero(~missing)
    targets = np.flatnonzero(missing)
    out = np.array(volume, dtype=np.float32)
    if not targets.size:
        return out
    if method == "linear":
        after = np.searchsorted(measured, targets)
        lo, hi = measured[after - 1], measured[after]
        t = ((targets - lo) / (hi - lo)).reshape(-1, 1, 1)
        out[targets] = (1 - t) * volume[lo].astype(np.float64) + t * volume[hi].astype(np.float64)
    elif method == "cubic":
        for row in range(0, volume.shape[1], INTERPOLATION_ROWS):
            rows = slice(row, row + INTERPOLATION_ROWS)
            spline = CubicSpline(measured, np.asarray(volume[measured, rows], np.float64), axis=0)
            out[targets, rows] = spline(targets)
    else:
        raise ValueError(f"unknown interpolation {method!r} (have: linear, cubic)")
    return out


def gap_patterns(missing: np.ndarray) -> list[str | None]:
    """The gap pattern of each slice of a (K,) missing-slice mask (None for measured slices): a lone missing
    slice between measured runs is a ``single-slice gap``; a lone one whose measured neighbours have missing
    neighbours themselves is part of ``every other slice``; runs of 2-3 are ``2-3-slice gaps``; longer runs
    ``longer gaps``. These are the patterns the model card measures against cubic interpolation."""
    k = len(missing)
    patterns: list[str | None] = [None] * k
    z = 0
    while z < k:
        if not missing[z]:
            z += 1
            continue
        end = z
        while end + 1 < k and missing[end + 1]:
            end += 1
        length = end - z + 1
        if length == 1:
            alternating = (z >= 2 and missing[z - 2]) or (z + 2 < k and missing[z + 2])
            pattern = "every other slice" if alternating else "single-slice gaps"
        else:
            pattern = "2-3-slice gaps" if length <= LONGEST_GAP else "longer gaps"
        patterns[z:end + 1] = [pattern] * length
        z = end + 1
    return patterns


def _gains(row: dict, prefix: str) -> dict[str, float]:
    """``{modality: dB}`` from a table row's ``<prefix><modality>_db`` entries (e.g. ``gain_CT_db``)."""
    return {k[len(prefix):-3]: float(v) for k, v in row.items()
            if k.startswith(prefix) and k.endswith("_db") and v is not None
            and k[len(prefix):-3] not in ("", "body", "over_linear")}


def measured_win(row: dict, modality: str) -> tuple[bool, str]:
    """Whether one row of the card's by-spacing table shows the model beating cubic on a series of ``modality``,
    and the figures that say so.

    The model wins when, on held-out subjects, it beats the cubic spline by ``WIN_MARGIN_DB`` in whole-slice PSNR
    pooled over modalities and by more than 0 dB inside the body, and by more than 0 dB on this modality's
    held-out subjects where they were measured; a loss on this modality's training subjects
    (``training_gain_<modality>_db``) vetoes it: a model that loses on what it saw will lose on new subjects too.
    Rows without held-out slices from at least ``MIN_SUBJECTS`` subjects never let the model in.
    """
    gain = row.get("gain_db")
    if gain is None or not row.get("slices"):
        return False, "no held-out measurement"
    if int(row.get("subjects") or 0) < MIN_SUBJECTS:
        return False, f"card: {gain:+.1f} dB on {int(row.get('subjects') or 0)} held-out subject(s) only"
    figure = f"card: {gain:+.1f} dB"
    if gain < WIN_MARGIN_DB:
        return False, figure
    body = float(row.get("gain_body_db") or 0.0)
    if body <= 0.0:
        return False, f"{figure}, inside the body {body:+.1f} dB"
    held = _gains(row, "gain_").get(modality)
    if held is not None and held <= 0.0:
        return False, f"{figure}, {modality} {held:+.1f} dB"
    training = _gains(row, "training_gain_").get(modality)
    if training is not None and training <= 0.0:
        return False, f"{figure}, {modality} training subjects {training:+.1f} dB"
    return True, figure


def _measured_modalities(row: dict) -> set[str]:
    return set(_gains(row, "gain_")) | set(_gains(row, "training_gain_"))


def choose_fill_method(card: dict, pattern: str, spacing: float, modality: str) -> tuple[str, str]:
    """``("model" | "cubic", why)`` for missing slices of ``pattern`` on a grid of ``spacing`` mm in a series of
    ``modality``, from the card's measured table (``evaluation.by_spacing.rows``: pattern, spacing_mm, gains
    over cubic pooled and per modality, on held-out and on training subjects).

    Decided on the rows with held-out slices from ``MIN_SUBJECTS`` subjects or more (``measured_win``; the
    other rows only veto, like training subjects), conservatively between and beyond them: a spacing within
    ``SAME_SPACING`` of a measured one is decided there; between two measured spacings the model must win at
    both; thicker than the thickest, the thickest decides; and no row passed on the way may show a loss
    (held-out, or this modality's training subjects). Thinner than the thinnest spacing measured, or than the
    thinnest measured on this modality (held-out or training subjects), cubic fills: cubic gets stronger as
    slices get thinner, and one modality's thin-slice win says nothing about another's. A pattern, modality or
    card without measurements gets cubic. ``why`` is one line for the provenance.
    """
    rows = ((card.get("evaluation") or {}).get("by_spacing") or {}).get("rows") or []
    rows = sorted((r for r in rows if r.get("pattern") == pattern), key=lambda r: r["spacing_mm"])
    held = [r for r in rows if r.get("slices") and int(r.get("subjects") or 0) >= MIN_SUBJECTS]
    name = f"{pattern} at {spacing:.1f} mm spacing"
    if not held:
        return "cubic", f"cubic spline: the model card has no measurement for {pattern}"
    own = [r["spacing_mm"] for r in rows if modality in _measured_modalities(r)]
    if not own:
        return "cubic", f"cubic spline: the model card has no {modality} measurement for {pattern}"
    spacings = np.array([r["spacing_mm"] for r in held], float)
    thinnest = max(float(spacings[0]), float(min(own)))
    if spacing < thinnest * (1 - SAME_SPACING):
        return "cubic", (f"cubic spline: {name} is thinner than any spacing the model was measured at on "
                         f"{modality} (from {thinnest:.1f} mm)")
    near = np.flatnonzero(np.abs(spacings - spacing) <= SAME_SPACING * spacings)
    between: list[dict] = []
    if near.size:
        deciding = [held[int(near[np.argmin(np.abs(spacings[near] - spacing))])]]
    elif spacing > spacings[-1]:
        deciding = [held[-1]]
        between = [r for r in rows if deciding[0]["spacing_mm"] < r["spacing_mm"] <= spacing]
    else:
        upper = int(np.searchsorted(spacings, spacing))
        deciding = [held[upper - 1], held[upper]]
        between = [r for r in rows if deciding[0]["spacing_mm"] < r["spacing_mm"] < deciding[1]["spacing_mm"]]
    verdicts = [(r, *measured_win(r, modality)) for r in deciding]
    where = " and ".join(f"{r['spacing_mm']:.1f} mm ({figure})" for r, _, figure in verdicts)
    if not all(win for _, win, _ in verdicts):
        return "cubic", f"cubic spline: the model does not beat it for {pattern} at {where}"
    for row in between:  # rows that cannot decide can still show a loss
        losses = [(f"{modality} training subjects", _gains(row, "training_gain_").get(modality)),
                  ("held-out subjects", row.get("gain_db"))]
        for who, loss in losses:
            if loss is not None and loss <= 0.0:
                return "cubic", (f"cubic spline: the model does not beat it for {pattern} at "
                                 f"{row['spacing_mm']:.1f} mm on {who} (card: {loss:+.1f} dB)")
    return "model", f"model: it beats cubic spline for {pattern} at {where}"


# -- inpaint: where the hole is ---------------------------------------------------------------------------------

def _read_mask_file(path: Path, scan: Scan) -> np.ndarray:
    """A NIfTI mask or DICOM SEG over this scan's grid -> (K, H, W) bool (any label / segment counts)."""
    from medscan.io.nifti import is_nifti, read_nifti

    if not path.exists():
        raise MedscanError(path, "no such mask file")
    shape = scan.volume_shape
    if is_nifti(path):
        mask_scan = read_nifti(path)
        data = mask_scan.voxels if mask_scan.voxels.ndim == 3 else mask_scan.voxels.max(axis=0)
        if data.shape != shape:
            raise MedscanError(path, f"mask has shape {data.shape} (slices, rows, columns); the image has {shape}")
        if not np.allclose(mask_scan.affine, scan.affine, atol=0.05):
            raise MedscanError(path, "mask geometry (affine) differs from the image's: not drawn on this series")
        return data > 0
    return _read_seg(path, scan)


def _read_seg(path: Path, scan: Scan) -> np.ndarray:
    """A DICOM SEG: each frame placed on the slice its ImagePositionPatient falls on."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:
        raise MedscanError(path, f"neither NIfTI nor DICOM ({str(exc).splitlines()[0][:120]})") from None
    if str(ds.get("Modality", "")) != "SEG":
        raise MedscanError(path, f"a DICOM {ds.get('Modality', '?')} object, not a SEG or NIfTI mask")
    k, h, w = scan.volume_shape
    if (int(ds.Rows), int(ds.Columns)) != (h, w):
        raise MedscanError(path, f"SEG frames are {ds.Rows}x{ds.Columns}; the image slices are {h}x{w}")
    try:
        frames = np.asarray(ds.pixel_array).reshape(-1, h, w)
        groups = ds.PerFrameFunctionalGroupsSequence
        positions = [np.array(g.PlanePositionSequence[0].ImagePositionPatient, float) for g in groups]
    except Exception as exc:
        raise MedscanError(path, f"SEG without readable frames and plane positions ({str(exc)[:100]})") from None
    inverse = np.linalg.inv(scan.affine)
    mask = np.zeros((k, h, w), bool)
    for frame, position in zip(frames, positions, strict=True):
        ijk = inverse[:3, :3] @ position + inverse[:3, 3]
        if np.any(np.abs(ijk[:2]) > 0.5) or abs(ijk[2] - round(ijk[2])) > 0.25 or not 0 <= round(ijk[2]) < k:
            raise MedscanError(path, f"SEG frame at {np.round(position, 1).tolist()} mm lies off this series' slices")
        mask[round(float(ijk[2]))] |= frame > 0
    return mask


def _box_mask(box: str, scan: Scan) -> np.ndarray:
    shape = scan.volume_shape
    try:
        values = [int(v) for v in box.split(",")]
    except ValueError:
        values = []
    if len(values) != 6:
        raise MedscanError("--box", f"expects z0,y0,x0,z1,y1,x1 (six voxel indices, end exclusive), got {box!r}")
    start, end = values[:3], values[3:]
    if any(s < 0 or e > n or s >= e for s, e, n in zip(start, end, shape, strict=True)):
        raise MedscanError("--box", f"{box} lies outside the volume of {shape[0]} slices x {shape[1]} rows x "
                                    f"{shape[2]} columns (each start must be below its end, ends exclusive)")
    mask = np.zeros(shape, bool)
    mask[start[0]:end[0], start[1]:end[1], start[2]:end[2]] = True
    return mask


def constant_regions(image: np.ndarray, min_pixels: int) -> list[np.ndarray]:
    """Connected regions of one exact value (zero-filled blocks, a blank slice, padding) of at least
    ``min_pixels`` in a 2-D ``image``: real measurements, even integer-valued noise, are never that flat.

    Candidate values are those of pixels whose four neighbours all share their value, which keeps noisy air
    (thousands of distinct HU values) from costing one labelling pass per value.
    """
    from scipy import ndimage  # here, not at import: the window builds its tabs from the registry without it

    core = np.zeros(image.shape, bool)
    core[1:-1, 1:-1] = ((image[1:-1, 1:-1] == image[:-2, 1:-1]) & (image[1:-1, 1:-1] == image[2:, 1:-1])
                        & (image[1:-1, 1:-1] == image[1:-1, :-2]) & (image[1:-1, 1:-1] == image[1:-1, 2:]))
    values, counts = np.unique(image[core], return_counts=True)
    regions = []
    for value in values[counts >= min_pixels // 2]:
        labels, _ = ndimage.label(image == value)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        regions += [labels == i for i in np.flatnonzero(sizes >= min_pixels)]
    return regions


def find_missing_regions(volume: np.ndarray, max_gap: int = MAX_ENCLOSED_GAP, min_fraction: float = 0.002,
                         tissue_share: float = 0.25) -> np.ndarray:
    """Constant regions of (K, H, W) ``volume`` where the nearest measured slices on both sides (at most
    ``max_gap`` apart) show tissue: a zero-filled block, a blanked slice, a field of view truncated on a few slices.

    Padding outside the reconstruction circle, zero background around a head or empty slices beyond the end of
    the body are constant too, but the slices around them show background there (or nothing), so they stay.
    Tissue is above the volume's lowest three-class Otsu threshold; a region counts when ``tissue_share`` of it
    is enclosed by tissue (a blank slice: when half of it is enclosed by measured slices at all).
    """
    from skimage.filters import threshold_multiotsu

    k, h, w = volume.shape
    min_pixels = int(max(16, min_fraction * h * w))
    regions = [(z, region) for z in range(k) for region in constant_regions(volume[z], min_pixels)]
    found = np.zeros(volume.shape, bool)
    if not regions:
        return found
    flat = np.zeros(volume.shape, bool)
    for z, region in regions:
        flat[z] |= region
    index = np.arange(k).reshape(-1, 1, 1)
    before = np.maximum.accumulate(np.where(~flat, index, -1), axis=0)
    after = np.minimum.accumulate(np.where(~flat, index, k)[::-1], axis=0)[::-1]
    # Tissue: above the lowest of three Otsu classes, so lung (CT) and dark tissue (MR) count, air does not.
    threshold = float(threshold_multiotsu(volume[:, ::4, ::4], classes=3)[0])
    for z, region in regions:
        # The nearest measured slice below and above z at each pixel of the region.
        below = before[z - 1][region] if z > 0 else np.full(int(region.sum()), -1)
        above = after[z + 1][region] if z < k - 1 else np.full(int(region.sum()), k)
        enclosed = (below >= 0) & (above < k) & (above - below - 1 <= max_gap)
        ys, xs = np.nonzero(region)
        tissue = np.zeros_like(enclosed)
        tissue[enclosed] = ((volume[below[enclosed], ys[enclosed], xs[enclosed]] > threshold)
                            & (volume[above[enclosed], ys[enclosed], xs[enclosed]] > threshold))
        blank_slice = region.mean() > 0.95 and enclosed.mean() > 0.5
        if blank_slice or tissue.mean() >= tissue_share:
            found[z][region] = enclosed
    return found


def _region(scan: Scan, mask, box: str, auto: bool) -> tuple[np.ndarray, str]:
    """The (K, H, W) or full-shape region to fill and how it was given; exactly one source allowed."""
    given = [name for name, on in (("--mask", isinstance(mask, np.ndarray) or bool(mask)), ("--box", bool(box)),
                                   ("--auto", bool(auto))) if on]
    if len(given) != 1:
        got = f" (got {' and '.join(given)})" if given else ""
        raise MedscanError(scan.where, f"inpaint needs exactly one of --mask, --box or --auto{got}")
    if isinstance(mask, np.ndarray):
        if mask.shape not in (scan.volume_shape, scan.voxels.shape):
            raise MedscanError("mask", f"drawn mask has shape {mask.shape}; the image has {scan.voxels.shape}")
        return mask.astype(bool), "drawn mask"
    if mask:
        return _read_mask_file(Path(mask), scan), f"mask {Path(mask).name}"
    if box:
        return _box_mask(box, scan), f"box {box}"
    volumes = scan.voxels.reshape(-1, *scan.volume_shape)
    found = np.stack([find_missing_regions(v) for v in volumes]).reshape(scan.voxels.shape)
    if not found.any():
        raise MedscanError(scan.where, "--auto found no zero-filled or constant region enclosed by measured "
                                         "slices (nothing to fill); give --mask or --box")
    return found, "auto"


def inpaint(scan: Scan, *, mask, box: str, auto: bool, model: str, device: str,
            progress: ProgressCallback | None) -> Result:
    """The ``inpaint`` operation: fill a region from its surroundings and the neighbouring slices.

    Args:
        scan: the series (CT in HU, MR in its own units).
        mask: the region as a path to a NIfTI mask or DICOM SEG on this series, or a boolean array drawn in the
            window (shape of ``scan.voxels``); ``""`` when ``box`` or ``auto`` gives it.
        box: ``"z0,y0,x0,z1,y1,x1"`` voxel indices (slice, row, column; ends exclusive), or ``""``.
        auto: find zero-filled or constant regions enclosed by measured data.
        model: the shipped inpainting model.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: called as ``progress(done, total)`` after each slice; raising from it cancels the run.

    Returns:
        A SYNTHETIC :class:`Result` on the input's grid: measured voxels copied bit for bit, the region generated,
        with the generated-region mask and the flip-spread uncertainty (input units).

    Raises:
        MedscanError: not exactly one of ``mask``, ``box``, ``auto``; a mask of another shape or geometry; or a
        region that is empty or covers the whole image.
    """
    from medscan.nets.device import pick_device
    from medscan.ops.generated import synthetic_result
    from medscan.ops.inference import cached_model

    region, how = _region(scan, mask, box, auto)
    region = np.broadcast_to(region, scan.voxels.shape)
    label = mask if isinstance(mask, str) and mask else scan.where
    if not region.any():
        raise MedscanError(label, "the mask is empty: nothing to fill")
    if region.all():
        raise MedscanError(label, "the mask covers the whole image: nothing measured is left to fill from")
    torch_device = pick_device(device)
    network, card = cached_model(model, torch_device)
    k = scan.volume_shape[0]
    volumes = scan.voxels.reshape(-1, *scan.volume_shape)
    holes = region.reshape(volumes.shape)
    output = volumes.copy()
    uncertainty = np.zeros(volumes.shape, np.float32)
    jobs = [(t, z) for t in range(len(volumes)) for z in range(k) if holes[t, z].any()]
    for start in range(0, len(jobs), CHUNK):
        batch = jobs[start:start + CHUNK]
        # Neighbours beyond the first or last slice are the slice itself with its hole: pure 2-D there.
        index = [[z + d if 0 <= z + d < k else z for d in (-1, 0, 1)] for _, z in batch]
        stacks = np.stack([volumes[t, i] for (t, _), i in zip(batch, index, strict=True)])
        masks = np.stack([holes[t, i] for (t, _), i in zip(batch, index, strict=True)])
        filled, spread = fill_with_uncertainty(stacks, masks, network, torch_device)
        for (t, z), plane, sd in zip(batch, filled, spread, strict=True):
            output[t, z], uncertainty[t, z] = plane, sd
        if progress is not None:
            progress(min(start + CHUNK, len(jobs)), len(jobs))
    entry = ProvenanceEntry("inpaint", {"region": how, "slices_filled": len(jobs)}, model=model,
                            model_version=str(card.get("version")), software=f"medscan {__version__}")
    return synthetic_result(scan, output.reshape(scan.voxels.shape), entry,
                            uncertainty=uncertainty.reshape(scan.voxels.shape), generated=np.array(region))


# -- fill slices: which slices are missing ----------------------------------------------------------------------

def slice_positions(scan: Scan) -> np.ndarray | None:
    """Each slice's distance (mm) along the slice direction from the DICOM headers, or None (NIfTI, or the
    series cannot be found again). The loader keeps only the mean step in the affine; gaps need the real ones."""
    from medscan.io.dicom import list_series, plan_layout

    if not scan.source_refs or not scan.source_path:
        return None
    folder = Path(scan.source_path)
    try:
        listing = list_series(folder if folder.is_dir() else folder.parent)
    except MedscanError:
        return None
    wanted = {ref.sop_instance_uid for ref in scan.source_refs}
    for record in listing.series:
        if record.series_uid != scan.series_uid or {f.sop_instance_uid for f in record.frames} != wanted:
            continue
        column = plan_layout(record).grid[0]
        if len(column) != scan.volume_shape[0]:
            return None
        direction = scan.affine[:3, 2] / np.linalg.norm(scan.affine[:3, 2])
        return np.array([float(np.dot(f.position - scan.affine[:3, 3], direction)) for f in column])
    return None


def regular_grid(positions: np.ndarray, where: str) -> tuple[np.ndarray, float]:
    """New index of each measured slice on the finest regular grid through them, and that grid's step (mm)."""
    steps = np.diff(positions)
    finest = float(steps.min())
    if finest <= 0:
        raise MedscanError(where, "two slices share a position: not a single stack")
    multiples = np.round(steps / finest)
    if np.any(np.abs(steps / finest - multiples) > STEP_TOLERANCE):
        raise MedscanError(where, f"slice steps {steps.min():.2f}-{steps.max():.2f} mm are not whole multiples of "
                                  f"{finest:.2f} mm: the measured slices cannot keep their positions on one grid")
    return np.concatenate([[0], np.cumsum(multiples)]).astype(int), finest


def _corrupted(slices: str, k: int, where: str) -> set[int]:
    try:
        indices = {int(v) for v in slices.replace(" ", "").split(",") if v}
    except ValueError:
        raise MedscanError("--slices", f"expects comma-separated slice indices, got {slices!r}") from None
    outside = sorted(i for i in indices if not 0 < i < k - 1)
    if outside:
        raise MedscanError("--slices", f"{outside} not inside 1..{k - 2}: only slices with measured slices on both "
                                       f"sides can be filled ({k} slices)")
    return indices


def fill_slices(scan: Scan, *, slices: str, model: str, device: str, progress: ProgressCallback | None) -> Result:
    """The ``fill_slices`` operation: generate missing slices (gaps in the positions, blank slices) and the
    corrupted slices named in ``slices``, on a regular grid.

    Args:
        scan: the series, at least 3 slices.
        slices: extra slices to replace, comma-separated 0-based indices, or ``""``.
        model: the shipped missing-slice model.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: called as ``progress(done, total)`` after each slice; raising from it cancels the run.

    Returns:
        A SYNTHETIC :class:`Result`: measured slices keep their values and positions, the generated slices are
        marked in the generated-region mask, the slice step is the series' finest regular step. Each missing
        slice is generated by the model only where its card measured the model beating a cubic spline through
        the measured slices at this slice step and gap pattern (``choose_fill_method``); elsewhere the cubic
        spline fills it, with ``|cubic - linear|`` as its uncertainty. The provenance (``filled_by``,
        ``method_reason``) and the notes say which method filled how many slices and why.

    Raises:
        MedscanError: fewer than 3 slices, positions that fit no regular grid (shared positions, steps that are
        not whole multiples of one step), or ``slices`` not inside the stack.
    """
    from medscan.nets.device import pick_device
    from medscan.ops.generated import synthetic_result
    from medscan.ops.inference import cached_model

    where = scan.where
    k = scan.volume_shape[0]
    if k < 3:
        raise MedscanError(where, f"{k} slice(s): filling needs measured slices on both sides of a gap")
    positions = slice_positions(scan)
    if positions is not None:
        placed, step = regular_grid(positions, where)
    else:
        placed, step = np.arange(k), float(np.linalg.norm(scan.affine[:3, 2]))
    volumes = scan.voxels.reshape(-1, *scan.volume_shape)
    corrupted = _corrupted(slices, k, where) if slices else set()
    blank = {z for z in range(1, k - 1) if all(float(v[z].max()) == float(v[z].min()) for v in volumes)}
    new_k = int(placed[-1]) + 1
    missing = np.ones(new_k, bool)
    missing[placed] = False
    missing[placed[sorted(corrupted | blank)]] = True
    if not missing.any():
        raise MedscanError(where, f"no missing slices: {k} slices evenly spaced ({step:.2f} mm) and none blank; "
                                  "name corrupted slices with --slices")
    from medscan.nets.weights import load_card

    card = load_card(model).data
    patterns = gap_patterns(missing)
    decisions = {p: choose_fill_method(card, p, step, scan.modality) for p in dict.fromkeys(p for p in patterns if p)}
    by_model = np.array([p is not None and decisions[p][0] == "model" for p in patterns])
    network = torch_device = None
    if by_model.any():
        torch_device = pick_device(device)
        network, card = cached_model(model, torch_device)
    _, h, w = scan.volume_shape
    output = np.zeros((len(volumes), new_k, h, w), np.float32)
    uncertainty = np.zeros_like(output)
    by_cubic = missing & ~by_model
    for t, volume in enumerate(volumes):
        output[t, placed] = volume
        if by_cubic.any():
            # Cubic's uncertainty: how far it strays from the other classical answer, linear interpolation.
            cubic = interpolate_slices(output[t], missing, "cubic")
            linear = interpolate_slices(output[t], missing, "linear")
            output[t, by_cubic] = cubic[by_cubic]
            uncertainty[t, by_cubic] = np.abs(cubic[by_cubic] - linear[by_cubic])
        if by_model.any():

            def step_progress(done: int, total: int, t: int = t) -> None:
                if progress is not None:
                    progress(t * total + done, len(volumes) * total)

            output[t], spread = fill_missing_slices(output[t], missing, network, torch_device, step_progress,
                                                    only=by_model)
            uncertainty[t, by_model] = spread[by_model]
        elif progress is not None:
            progress(t + 1, len(volumes))
    affine = np.array(scan.affine, np.float64)
    affine[:3, 2] = affine[:3, 2] / np.linalg.norm(affine[:3, 2]) * step  # origin = first measured slice, kept
    shape = (*scan.voxels.shape[:-3], new_k, h, w)
    generated = np.broadcast_to(missing[:, None, None], (len(volumes), new_k, h, w)).reshape(shape)
    methods = [name for name, used in (("model", by_model.any()), ("cubic spline", by_cubic.any())) if used]
    reasons = [why for _, why in decisions.values()]
    entry = ProvenanceEntry("fill_slices", {"measured_slices": k, "output_slices": new_k,
                                            "inserted": int(new_k - k), "replaced": sorted(corrupted | blank),
                                            "slice_step_mm": round(step, 4), "filled_by": " and ".join(methods),
                                            "slices_by_model": int(by_model.sum()),
                                            "slices_by_cubic": int(by_cubic.sum()),
                                            "method_reason": "; ".join(reasons)},
                            model=model if by_model.any() else None,
                            model_version=str(card.get("version")) if by_model.any() else None,
                            software=f"medscan {__version__}")
    notes = [f"fill-slices: {int(new_k - k)} missing slice(s) inserted, {len(corrupted | blank)} replaced",
             *(f"fill-slices: {why}" for why in reasons)]
    return synthetic_result(scan, output.reshape(shape), entry, uncertainty=uncertainty.reshape(shape),
                            generated=generated, affine=affine, notes=notes)
