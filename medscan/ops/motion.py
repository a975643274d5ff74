"""Motion correct (a Generate operation): remove MR motion ghosting and blur slice by slice with a trained model.

The model (``motion_unet2d``, task ``motion_correct``) learned on k-space simulated motion whose phase-encoding
axis is the image's vertical axis (-2), so each slice is turned until its phase-encoding axis is there: from the
DICOM header's InPlanePhaseEncodingDirection when present (COL: phase encoded along the columns, ghosts run
vertically; ROW: along the rows, ghosts run horizontally), else as the user says, else estimated from where the
ghosts fall outside the body. What the model removes was measured; what it puts back is its estimate of the
still slice, so the whole output is SYNTHETIC, with the spread over flipped inputs as the uncertainty map.
"""

from __future__ import annotations

import numpy as np

from medscan import __version__
from medscan.ops.registry import ProgressCallback, Result
from medscan.scan import ProvenanceEntry, Scan

PAD_MULTIPLE = 16  # four stride-2 levels of the UNet


def phase_encoding_axis(scan: Scan, requested: str, planes: np.ndarray) -> tuple[str, str]:
    """('COL' or 'ROW', where it came from): the header wins over ``requested``; 'auto' without one estimates."""
    header = scan.header
    value = str(header.get("InPlanePhaseEncodingDirection", "") or "").strip().upper() if header is not None else ""
    if value in ("COL", "ROW"):
        return value, "DICOM header"
    if requested in ("COL", "ROW"):
        return requested, "parameter"
    return estimate_phase_encoding(planes), "estimated from ghost energy"


def estimate_phase_encoding(planes: np.ndarray) -> str:
    """Guess the phase-encoding axis from the background: motion ghosts spill outside the body along it only.

    Compares the mean signal in the bands above/below the body (same columns) with the bands left/right of it
    (same rows), on the mean of the planes. No clear difference (no visible ghosts) gives COL, the usual
    axial choice.
    """
    from medscan.nets.volumes import body_mask

    image = np.asarray(planes, np.float64).mean(axis=0)
    mask = body_mask(image)
    if not mask.any():
        return "COL"
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    vertical = np.concatenate([image[:r0, c0:c1].ravel(), image[r1:, c0:c1].ravel()])
    horizontal = np.concatenate([image[r0:r1, :c0].ravel(), image[r0:r1, c1:].ravel()])
    if vertical.size == 0 or horizontal.size == 0:
        return "COL"
    h, v = float(horizontal.mean()), float(vertical.mean())
    clear = abs(h - v) > 0.005 * float(np.median(image[mask]))  # background noise alone is not evidence
    return "ROW" if clear and h > 1.2 * v else "COL"


def correct_planes(planes: np.ndarray, model, device, *, batch: int = 4,
                   progress: ProgressCallback | None = None) -> np.ndarray:
    """The model's still estimate of (N, H, W) planes whose phase-encoding axis is -2, in the planes' units."""
    from medscan.nets.residual import apply_model
    from medscan.ops.inference import windowed_planes

    return windowed_planes(planes, lambda x: apply_model(model, x), device, pad_multiple=PAD_MULTIPLE,
                           batch=batch, progress=progress)


def motion_correct_planes(planes: np.ndarray, model, device, axis: str,
                          progress: ProgressCallback | None = None) -> tuple[np.ndarray, np.ndarray]:
    """TTA mean and spread of the still estimate of (N, H, W) planes whose phase encoding is ``axis`` (COL/ROW).

    ROW planes are transposed so the phase-encoding axis lies on -2, where the model learned it; the four flips
    of ``tta_planes`` keep it there, so their spread measures the model's doubt, not a wrong direction.
    """
    from medscan.ops.generated import tta_planes

    turned = planes if axis == "COL" else np.ascontiguousarray(planes.transpose(0, 2, 1))
    total = len(turned) * 4
    done = [0]

    def predict(x: np.ndarray) -> np.ndarray:
        def step(finished: int, _: int) -> None:
            if progress is not None:
                progress(done[0] + finished, total)

        y = correct_planes(x, model, device, progress=step)
        done[0] += len(x)
        return y

    mean, spread = tta_planes(predict, turned)
    if axis == "ROW":
        mean, spread = mean.transpose(0, 2, 1), spread.transpose(0, 2, 1)
    return mean, spread


def motion_correct(scan: Scan, *, strength: float, phase_encoding: str, model: str, device: str,
                   progress: ProgressCallback | None) -> Result:
    """The ``motion_correct`` operation (MR): remove motion ghosting and blur along the phase-encoding axis.

    Args:
        scan: an MR series (magnitude images).
        strength: share of the correction applied, 0..1.5 (0 returns the input).
        phase_encoding: ``"COL"``, ``"ROW"`` or ``"auto"`` when the header has no InPlanePhaseEncodingDirection
            (the header wins when it has one).
        model: the shipped motion model.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: called as ``progress(done, total)`` after each slice; raising from it cancels the run.

    Returns:
        A SYNTHETIC :class:`Result` on the input's grid with the flip-spread uncertainty map; never below the
        input's own floor.
    """
    from medscan.nets.device import pick_device
    from medscan.ops.generated import synthetic_result
    from medscan.ops.inference import cached_model

    torch_device = pick_device(device)
    network, card = cached_model(model, torch_device)
    planes = scan.voxels.reshape(-1, *scan.volume_shape[1:])
    axis, source = phase_encoding_axis(scan, phase_encoding, planes)
    mean, spread = motion_correct_planes(planes, network, torch_device, axis, progress=progress)
    corrected = planes + strength * (mean - planes)
    # Magnitude images are non-negative: the model must not dig below the input's own floor.
    corrected = np.maximum(corrected, min(float(planes.min()), 0.0))
    entry = ProvenanceEntry("motion_correct", {"strength": strength, "phase_encoding": axis,
                                               "phase_encoding_source": source, "tta": "flips x4"},
                            model=model, model_version=str(card.get("version")), software=f"medscan {__version__}")
    notes = [f"phase encoding {axis} ({source})"]
    return synthetic_result(scan, corrected.reshape(scan.voxels.shape), entry,
                            uncertainty=(strength * spread).reshape(scan.voxels.shape), notes=notes)
