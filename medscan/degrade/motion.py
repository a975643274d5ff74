"""MR motion artefacts simulated in k-space: rigid in-plane motion during the acquisition and periodic ghosting.

A 2-D Cartesian acquisition measures one phase-encoding line of k-space per repetition, in linear order
(``ky = -H/2 .. H/2-1``). When the patient moves between lines, each block of lines is measured from a different
pose; the assembled k-space is inconsistent and the image shows ghosts and blur along the phase-encoding axis
only (the read-out of one line takes milliseconds, so read-out stays clean). This module builds that k-space:

* **rigid motion**: the acquisition is cut at random times into segments; each segment has its own in-plane
  rotation (resampled in image space, bicubic) and translation (an exact linear phase ramp per line in k-space),
  plus a small per-line jitter. The segment that measures the centre of k-space keeps the reference pose,
  because the centre fixes the image's position and contrast: the clean slice is then the right target;
* **periodic ghosting** (like TorchIO's ``RandomGhosting``): every ``period``-th line is scaled by
  ``1 - intensity`` (the centre line spared), which places discrete ghosts ``H / period`` pixels apart, as
  pulsation or respiration do.

Own 2-D simulator in ``torch.fft`` instead of TorchIO's ``RandomMotion``: TorchIO works on 3-D ``Subject``s one
at a time through SimpleITK resampling (tens of ms per slice and a NumPy round-trip), whereas this runs batched
on the training tensors with a ``torch.Generator`` (reproducible pairs, like every degradation here) and models
the 2-D slice-by-slice acquisition that clinical MR uses. The phase-encoding axis is ``-2`` (rows of k-space are
phase-encoding lines, so ghosts run vertically); rotate other images so their phase-encoding axis is there.

Inputs are (N, 1, H, W) magnitude slices normalised to their window; outputs are magnitudes too (what a
scanner stores), so the simulation loses the phase exactly as a DICOM image does.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MotionSeverity:
    """Ranges the simulator draws from; translations are fractions of the field of view along each axis."""

    events: tuple[int, int]        # number of pose changes during the acquisition (inclusive range)
    rotation_deg: float            # largest |rotation| of a segment
    translation_fov: float         # largest |translation| of a segment, fraction of the FOV
    jitter_fov: float              # sd of the per-line translation jitter, fraction of the FOV
    ghost_probability: float       # chance that periodic ghosting is added as well
    ghost_intensity: tuple[float, float]
    ghost_period: tuple[int, int]  # every period-th phase-encoding line is modulated (inclusive range)


SEVERITIES: dict[str, MotionSeverity] = {
    # One small nod: a few pixels of blur and faint ghosts.
    "mild": MotionSeverity(events=(1, 2), rotation_deg=2.0, translation_fov=0.01, jitter_fov=0.0005,
                           ghost_probability=0.3, ghost_intensity=(0.1, 0.3), ghost_period=(2, 8)),
    # A restless patient: several moves of up to 5 degrees / 2 % of the FOV.
    "moderate": MotionSeverity(events=(2, 4), rotation_deg=5.0, translation_fov=0.02, jitter_fov=0.001,
                               ghost_probability=0.5, ghost_intensity=(0.2, 0.5), ghost_period=(2, 8)),
    # Non-diagnostic: many large moves and strong ghosts.
    "severe": MotionSeverity(events=(3, 6), rotation_deg=10.0, translation_fov=0.04, jitter_fov=0.002,
                             ghost_probability=0.7, ghost_intensity=(0.3, 0.8), ghost_period=(2, 8)),
}


def _uniform(lo: float, hi: float, generator: torch.Generator) -> float:
    return float(lo + (hi - lo) * torch.rand((), generator=generator))


def _rotate(image: torch.Tensor, degrees: float) -> torch.Tensor:
    """(1, 1, H, W) rotated about the image centre (bicubic, zero outside: the FOV does not move with the head)."""
    if degrees == 0.0:
        return image
    t = math.radians(degrees)
    h, w = image.shape[-2:]
    # affine_grid works in normalised coordinates; the aspect ratio keeps the rotation rigid on non-square grids.
    theta = torch.tensor([[math.cos(t), -math.sin(t) * h / w, 0.0],
                          [math.sin(t) * w / h, math.cos(t), 0.0]], dtype=image.dtype)[None]
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, mode="bicubic", padding_mode="zeros", align_corners=False)


def _shift_phase(h: int, w: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """(H, W) complex phase ramp: line ``ky`` shifted by (dy[ky], dx[ky]) pixels (centred k-space layout)."""
    ky = torch.arange(h, dtype=torch.float64) - h // 2
    kx = torch.arange(w, dtype=torch.float64) - w // 2
    angle = -2 * math.pi * (ky[:, None] * dy[:, None].double() / h + kx[None, :] * dx[:, None].double() / w)
    return torch.polar(torch.ones_like(angle), angle).to(torch.complex64)


def _kspace(image: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.fft2(image.to(torch.complex64), norm="ortho"), dim=(-2, -1))


def _image(kspace: torch.Tensor) -> torch.Tensor:
    return torch.fft.ifft2(torch.fft.ifftshift(kspace, dim=(-2, -1)), norm="ortho").abs()


def simulate_one(image: torch.Tensor, severity: MotionSeverity, generator: torch.Generator,
                 scale: float = 1.0) -> torch.Tensor:
    """One (H, W) slice corrupted with motion drawn from ``severity``; ``scale`` (0..1) shrinks every amplitude."""
    h, w = image.shape
    x = image[None, None].float()
    lo_e, hi_e = severity.events
    events = int(torch.randint(lo_e, hi_e + 1, (), generator=generator))
    # Pose-change times: distinct phase-encoding lines; the segment holding the k-space centre is the reference.
    cuts = sorted(int(c) for c in torch.randperm(h - 1, generator=generator)[:events] + 1)
    bounds = [0, *cuts, h]
    centre = h // 2
    dy = torch.zeros(h)
    dx = torch.zeros(h)
    kspace = torch.empty(h, w, dtype=torch.complex64)
    reference = _kspace(x)[0, 0]
    for start, stop in itertools.pairwise(bounds):
        if start <= centre < stop:
            kspace[start:stop] = reference[start:stop]
            continue
        angle = scale * _uniform(-severity.rotation_deg, severity.rotation_deg, generator)
        dy[start:stop] = scale * _uniform(-1, 1, generator) * severity.translation_fov * h
        dx[start:stop] = scale * _uniform(-1, 1, generator) * severity.translation_fov * w
        kspace[start:stop] = _kspace(_rotate(x, angle))[0, 0, start:stop]
    jitter = scale * severity.jitter_fov * torch.randn(2, h, generator=generator)
    dy = dy + jitter[0] * h
    dx = dx + jitter[1] * w
    kspace = kspace * _shift_phase(h, w, dy, dx)
    if float(torch.rand((), generator=generator)) < severity.ghost_probability:
        period = int(torch.randint(severity.ghost_period[0], severity.ghost_period[1] + 1, (), generator=generator))
        intensity = scale * _uniform(*severity.ghost_intensity, generator)
        lines = torch.zeros(h, dtype=torch.bool)
        lines[(centre % period)::period] = True
        lines[centre] = False
        kspace[lines] = kspace[lines] * (1.0 - intensity)
    return _image(kspace).to(image.dtype)


def add_motion(clean: torch.Tensor, severity: str | MotionSeverity, generator: torch.Generator,
               scale: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 1, H, W) slices with simulated motion along the phase-encoding axis -2 (ghosts run vertically).

    ``severity`` is one of ``SEVERITIES`` (mild/moderate/severe) or a ``MotionSeverity``; ``scale`` (N,) in 0..1
    shrinks each slice's amplitudes (training draws it so the model also sees slight motion). Seeded by
    ``generator``: the same generator state gives the same artefacts.
    """
    spec = SEVERITIES[severity] if isinstance(severity, str) else severity
    if clean.ndim != 4 or clean.shape[1] != 1:
        raise ValueError(f"add_motion expects (N, 1, H, W), got {tuple(clean.shape)}")
    out = torch.empty_like(clean)
    for i in range(clean.shape[0]):
        s = 1.0 if scale is None else float(scale[i])
        out[i, 0] = simulate_one(clean[i, 0], spec, generator, s)
    return out
