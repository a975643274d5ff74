"""The Clean family: make a measured scan easier to read without inventing anything.

Every Clean result carries the method noise (input minus output) and a fidelity report; a result
the guard flags is returned with the flag set and a note, so the CLI and GUI can refuse or warn.
"""

from __future__ import annotations

import numpy as np

from medscan import __version__
from medscan.ops.catalog import DENOISE_MODEL
from medscan.ops.registry import ProgressCallback, Result
from medscan.scan import MedscanError, ProvenanceEntry, Scan

__all__ = ["DENOISE_MODEL", "clean_result", "denoise", "highlight", "is_rician", "scan_planes"]


def scan_planes(scan: Scan) -> np.ndarray:
    """All 2-D planes (slices of every volume) as (N, H, W) without copying."""
    return scan.voxels.reshape(-1, *scan.voxels.shape[-2:])


def clean_result(scan: Scan, cleaned: np.ndarray, entry: ProvenanceEntry, rician: bool = False) -> Result:
    """A Clean operation's result: ``cleaned`` (same shape and units as ``scan``) derived from ``scan`` with
    ``entry`` (plus the estimated noise level, and ``fidelity: FLAGGED`` where the guard objected), the method
    noise map and the fidelity report; ``rician``: the operation treated the data as magnitude images."""
    from medscan.degrade import looks_like_magnitude
    from medscan.ops.fidelity import assess

    cleaned = cleaned.reshape(scan.voxels.shape)
    # The Rician floor's removal is exempt only where the data have such a floor: told "rician" for data that
    # are not magnitude-like (negative values, no Rayleigh background), a moved background is a finding.
    floor = rician and looks_like_magnitude(scan.voxels)
    report, method_noise = assess(scan.voxels, cleaned, units=scan.units, rician=floor,
                                  correlated=scan.modality == "CT" and not rician)
    # The derived series records the input's estimated noise level, and says when the guard objected.
    extra = {"noise_sd": round(report.noise_sd, 4), **({"fidelity": "FLAGGED"} if report.flagged else {})}
    entry = ProvenanceEntry(entry.operation, {**entry.parameters, **extra}, entry.model, entry.model_version,
                            entry.software, entry.timestamp)
    derived = scan.derive(cleaned, entry)
    notes = [f"fidelity: {reason}" for reason in report.reasons]
    return Result(scan=derived, maps={"method_noise": method_noise}, fidelity=report, notes=notes)


def is_rician(scan: Scan, noise: str) -> bool:
    """Whether to denoise ``scan`` as magnitude data with Rician noise (which lifts dark regions).

    ``auto`` decides from the data, not the modality alone: an MR series is Rician only when it looks like a
    magnitude image (``looks_like_magnitude``). A skull-stripped or pipeline-processed MR with negative values
    or a zero-filled background is Gaussian; denoising it as Rician would move its background.
    """
    if noise != "auto":
        return noise == "rician"
    from medscan.degrade import looks_like_magnitude

    return scan.modality == "MR" and looks_like_magnitude(scan.voxels)


def denoise(scan: Scan, *, strength: float, noise: str, model: str, device: str,
            progress: ProgressCallback | None) -> Result:
    """Blind denoising of every plane of ``scan`` (CT or MR) with the shipped 2-D model; units and geometry kept.

    Args:
        scan: the series; CT in HU, MR in the scanner's units.
        strength: share of the estimated noise to remove (0 keeps the input, up to 1.5).
        noise: ``auto`` (Rician for MR magnitude data, else Gaussian; see ``is_rician``), ``gaussian`` or ``rician``.
        model: shipped model name; device: ``auto``, ``cpu`` or ``cuda``; progress: called with (done, total).

    Returns:
        ``clean_result``: the derived scan, its method noise and the fidelity report.
    """
    # torch and the model load here, not at import: the CLI and GUI start without them.
    from medscan.nets.device import pick_device
    from medscan.ops.inference import cached_model, denoise_planes

    if scan.modality not in ("CT", "MR"):
        where = scan.source_path or scan.description
        raise MedscanError(where, f"denoise is trained for CT and MR, not {scan.modality}")
    torch_device = pick_device(device)
    network, card = cached_model(model, torch_device)
    rician = is_rician(scan, noise)
    # CT noise after filtered back-projection is spatially correlated; MR noise is white.
    correlated = scan.modality == "CT" and not rician
    cleaned = denoise_planes(scan_planes(scan), network, torch_device, strength=strength, rician=rician,
                             correlated=correlated, progress=progress)
    entry = ProvenanceEntry("denoise", {"strength": strength, "noise": "rician" if rician else "gaussian"},
                            model=model, model_version=str(card.get("version")), software=f"medscan {__version__}")
    return clean_result(scan, cleaned, entry, rician)


def highlight(scan: Scan, *, strength: float, center: float, width: float, device: str,
              progress: ProgressCallback | None) -> Result:
    """CLAHE on the displayed window: local contrast a reader sees, mapped back into the window's units.

    The output reads correctly with the same window; its values are a display enhancement, not
    measurements, which the provenance says. The change map shows where and how much it differs.
    """
    import cv2

    from medscan.io.png import default_window

    if width <= 0:
        center, width = default_window(scan)
    lo, hi = center - width / 2, center + width / 2
    planes = scan_planes(scan)
    out = np.empty_like(planes)
    clahe = cv2.createCLAHE(clipLimit=float(strength), tileGridSize=(8, 8))
    for index, plane in enumerate(planes):
        display = np.clip((plane - lo) / (hi - lo), 0, 1)
        enhanced = clahe.apply((display * 65535).astype(np.uint16)).astype(np.float32) / 65535
        # Outside the window keep the measured value: only what the reader sees is re-mapped.
        inside = (plane >= lo) & (plane <= hi)
        out[index] = np.where(inside, lo + enhanced * (hi - lo), plane)
        if progress is not None:
            progress(index + 1, len(planes))
    entry = ProvenanceEntry("highlight", {"clip_limit": strength, "window": [center, width],
                                          "quantitative": False}, software=f"medscan {__version__}")
    result_scan = scan.derive(out.reshape(scan.voxels.shape), entry)
    change = (result_scan.voxels - scan.voxels).astype(np.float32)
    return Result(scan=result_scan, maps={"change": change},
                  notes=["highlight is a display enhancement: values inside the window are no longer measurements"])
