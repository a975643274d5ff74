"""Seeded masks of what goes missing in real scans, for training and evaluating the Generate models.

Region masks (inpainting) mimic what clinics see: metal or corrupted blobs, round and elliptic dropouts,
rectangular zero-filled blocks (de-identification burns, PACS tiling errors), irregular strokes and a field
of view truncated from one edge. Each covers a requested share of the slice (default 10-30 %).
Row masks (missing slices) mark the rows of a reformatted view (rows = slice direction) that were not
acquired: every other slice, single dropped slices, or short gaps of 2-3 slices; the first and last rows
are always measured, because a gap can only be detected, and filled, between two measured slices.

Everything is numpy with a ``np.random.Generator`` so that an evaluation draws the same masks every run.
"""

from __future__ import annotations

import numpy as np

REGION_KINDS = ("blob", "ellipse", "box", "strokes", "edge")
ROW_PATTERNS = ("alternate", "single", "short")


def _target_pixels(shape: tuple[int, int], rng: np.random.Generator, area: tuple[float, float]) -> float:
    return float(rng.uniform(*area)) * shape[0] * shape[1]


def _ellipse(shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float], angle: float,
             wobble: np.ndarray | None = None) -> np.ndarray:
    """Pixels inside a rotated ellipse; ``wobble`` (harmonic amplitudes, phases) makes its edge irregular."""
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = (c * dx + s * dy) / radii[1], (-s * dx + c * dy) / radii[0]
    r = np.sqrt(u * u + v * v)
    if wobble is not None:
        theta = np.arctan2(v, u)
        scale = 1.0 + sum(a * np.cos((k + 2) * theta + p) for k, (a, p) in enumerate(wobble))
        r = r / np.maximum(scale, 0.3)
    return r <= 1.0


def _scaled_to_area(make, target: float, shape: tuple[int, int]) -> np.ndarray:
    """Call ``make(size_factor)`` and correct the size factor twice so the mask has about ``target`` pixels."""
    factor = 1.0
    mask = make(factor)
    for _ in range(2):
        got = max(int(mask.sum()), 1)
        factor *= float(np.sqrt(target / got))
        mask = make(factor)
    return mask


def region_mask(shape: tuple[int, int], rng: np.random.Generator, area: tuple[float, float] = (0.10, 0.30),
                kind: str | None = None) -> np.ndarray:
    """A boolean (H, W) mask of one realistic missing region covering ``area`` (fractions) of the slice."""
    kind = kind or str(rng.choice(REGION_KINDS))
    h, w = shape
    target = _target_pixels(shape, rng, area)
    if kind == "box":
        aspect = float(np.exp(rng.uniform(-0.7, 0.7)))
        bh = int(np.clip(round(np.sqrt(target * aspect)), 2, h - 1))
        bw = int(np.clip(round(target / bh), 2, w - 1))
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        mask = np.zeros(shape, bool)
        mask[y:y + bh, x:x + bw] = True
        return mask
    if kind in ("ellipse", "blob"):
        aspect = float(np.exp(rng.uniform(-0.6, 0.6)))
        angle = float(rng.uniform(0, np.pi))
        centre = (float(rng.uniform(0.25, 0.75) * h), float(rng.uniform(0.25, 0.75) * w))
        wobble = None
        if kind == "blob":
            wobble = np.stack([rng.uniform(0, 0.25, 4) / np.arange(1, 5), rng.uniform(0, 2 * np.pi, 4)], axis=1)
        base = np.sqrt(target / np.pi)

        def make(f: float) -> np.ndarray:
            return _ellipse(shape, centre, (f * base * np.sqrt(aspect), f * base / np.sqrt(aspect)), angle, wobble)

        return _scaled_to_area(make, target, shape)
    if kind == "strokes":
        width = max(2.0, float(rng.uniform(0.03, 0.08)) * min(h, w))
        radius = int(np.ceil(width / 2))
        yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
        disk = yy * yy + xx * xx <= (width / 2) ** 2
        padded = np.zeros((h + 2 * radius, w + 2 * radius), bool)
        y, x = float(rng.uniform(0.2, 0.8) * h), float(rng.uniform(0.2, 0.8) * w)
        heading = float(rng.uniform(0, 2 * np.pi))
        for step in range(2000):
            if step % 8 == 0 and padded.sum() >= target:
                break
            heading += float(rng.normal(0, 0.4))
            y = float(np.clip(y + 0.5 * width * np.sin(heading), 0, h - 1))
            x = float(np.clip(x + 0.5 * width * np.cos(heading), 0, w - 1))
            if y in (0, h - 1) or x in (0, w - 1):
                heading += np.pi / 2  # turn away from the edge
            iy, ix = int(y), int(x)
            padded[iy:iy + 2 * radius + 1, ix:ix + 2 * radius + 1] |= disk
        return padded[radius:radius + h, radius:radius + w].copy()
    if kind == "edge":
        # A truncated field of view: everything beyond a (slightly curved) line parallel to one edge.
        side = int(rng.integers(4))
        length = h if side < 2 else w
        across = w if side < 2 else h
        depth = target / length
        bend = float(rng.uniform(-0.15, 0.15)) * depth
        t = np.linspace(-1, 1, length)
        profile = np.clip(depth + bend * (1 - 2 * t * t), 1, across - 1)  # mean depth ~ depth
        cols = np.arange(across)[None, :]
        band = cols < profile[:, None]  # (length, across), measured from the chosen edge
        if side % 2:
            band = band[:, ::-1]
        return np.ascontiguousarray(band.T if side < 2 else band)
    raise ValueError(f"unknown region mask kind {kind!r} (have: {', '.join(REGION_KINDS)})")


def slab_extent(rng: np.random.Generator, neighbours: int = 1, slab_probability: float = 0.5) -> np.ndarray:
    """Which of the 2*``neighbours``+1 slices (centre in the middle) share the centre slice's hole.

    A hole extruded over a random number of slices: with ``slab_probability`` it extends to one or more
    neighbours (a corrupted slab, where the model must work from the slice alone), otherwise it is in-plane.
    """
    count = 2 * neighbours + 1
    extent = np.zeros(count, bool)
    extent[neighbours] = True
    if rng.random() < slab_probability:
        below, above = int(rng.integers(0, neighbours + 1)), int(rng.integers(0, neighbours + 1))
        if below + above == 0:
            below = above = neighbours
        extent[neighbours - below:neighbours + above + 1] = True
    return extent


def row_mask(rows: int, rng: np.random.Generator, pattern: str | None = None) -> np.ndarray:
    """A boolean (rows,) mask of missing slices; first and last rows stay measured (``pattern`` random if None)."""
    if rows < 3:
        raise ValueError("a missing-slice mask needs at least 3 rows")
    pattern = pattern or str(rng.choice(ROW_PATTERNS))
    missing = np.zeros(rows, bool)
    if pattern == "alternate":
        start = 1 + int(rng.integers(2)) if rows > 3 else 1  # which parity is lost
        missing[start::2] = True
    elif pattern in ("single", "short"):
        longest = 1 if pattern == "single" else 3
        shortest = 1 if pattern == "single" else 2
        row = 1 + int(rng.integers(0, 3))
        while row < rows - 1:
            length = int(rng.integers(shortest, longest + 1))
            missing[row:min(row + length, rows - 1)] = True
            row += length + 1 + int(rng.integers(1, 6))  # at least one measured slice between gaps
    else:
        raise ValueError(f"unknown row pattern {pattern!r} (have: {', '.join(ROW_PATTERNS)})")
    missing[0] = missing[-1] = False
    if not missing.any():
        missing[rows // 2] = True
    return missing
