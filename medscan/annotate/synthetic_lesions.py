"""Synthetic lesion insertion: more positive training slices from normal anatomy, with exactly known masks.

Two lesion sources: a real tumour cut from a TRAINING subject's slice (its FLAIR texture and mask, randomly
rotated, flipped and rescaled) and a procedural lesion (a noise-deformed ellipse, hyperintense by a random factor,
with an optional darker necrotic core). Either is alpha-blended into brain tissue of a tumour-free slice, so the
pasted region keeps the target's anatomy at its border; the mask is clipped to the brain.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_noise(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-sd noise with structures about ``scale`` pixels wide."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), scale)
    return (field - field.mean()) / (field.std() + 1e-8)


def procedural_lesion(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(mask, multiplicative intensity factor) of a lesion in a ``size`` x ``size`` box."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    ry, rx = rng.uniform(0.25, 0.45, 2) * size
    angle = rng.uniform(0, np.pi)
    c, s = np.cos(angle), np.sin(angle)
    u, v = (c * xx + s * yy) / rx, (-s * xx + c * yy) / ry
    distance = np.sqrt(u * u + v * v) + 0.25 * smooth_noise((size, size), size / 8, rng)
    mask = distance < 1.0
    factor = rng.uniform(1.35, 2.1) * (1 + 0.12 * smooth_noise((size, size), 2.0, rng))
    if rng.random() < 0.35:  # necrotic / cystic core: darker than normal tissue inside the bright rim
        factor = np.where(distance < rng.uniform(0.3, 0.6), rng.uniform(0.4, 0.9), factor)
    return mask, factor.astype(np.float32)


def cut_tumour(image: np.ndarray, mask: np.ndarray, margin: int = 3) -> tuple[np.ndarray, np.ndarray] | None:
    """The tumour's bounding box (with margin) from a slice: (texture, mask), or None without tumour."""
    if mask.sum() < 30:
        return None
    js, is_ = np.nonzero(mask)
    j0, j1 = max(js.min() - margin, 0), min(js.max() + margin + 1, mask.shape[0])
    i0, i1 = max(is_.min() - margin, 0), min(is_.max() + margin + 1, mask.shape[1])
    return image[j0:j1, i0:i1].copy(), mask[j0:j1, i0:i1].copy()


def _transform(texture: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k = int(rng.integers(4))
    texture, mask = np.rot90(texture, k), np.rot90(mask, k)
    if rng.random() < 0.5:
        texture, mask = texture[:, ::-1], mask[:, ::-1]
    zoom = rng.uniform(0.7, 1.3)
    texture = ndimage.zoom(texture, zoom, order=1)
    mask = ndimage.zoom(mask.astype(np.float32), zoom, order=1) > 0.5
    return texture, mask


def insert_lesion(image: np.ndarray, brain: np.ndarray, rng: np.random.Generator,
                  tumour: tuple[np.ndarray, np.ndarray] | None = None, size_px: tuple[int, int] = (12, 56)
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (brain-normalised FLAIR slice) with one lesion blended into ``brain``; returns (image, mask).

    ``tumour`` is a (texture, mask) cut from a training subject's slice; without it the lesion is procedural, its
    box ``size_px`` (low inclusive, high exclusive) pixels wide: tumour-sized by default, a few pixels for the
    small white-matter lesions of MS.
    """
    if tumour is not None:
        texture, lesion = _transform(*tumour, rng)
        factor = None
    else:
        size = int(rng.integers(*size_px))
        lesion, factor = procedural_lesion(size, rng)
        texture = None
    h, w = lesion.shape
    js, is_ = np.nonzero(ndimage.binary_erosion(brain, iterations=6))
    out, out_mask = image.copy(), np.zeros(image.shape, bool)
    if js.size == 0 or h >= image.shape[0] or w >= image.shape[1] or lesion.sum() == 0:
        return out, out_mask
    pick = int(rng.integers(js.size))
    j0 = int(np.clip(js[pick] - h // 2, 0, image.shape[0] - h))
    i0 = int(np.clip(is_[pick] - w // 2, 0, image.shape[1] - w))
    region = (slice(j0, j0 + h), slice(i0, i0 + w))
    inside = lesion & brain[region]
    alpha = np.clip(ndimage.gaussian_filter(inside.astype(np.float32), 1.2) * 1.3, 0, 1) * brain[region]
    pasted = texture if texture is not None else image[region] * factor
    out[region] = (1 - alpha) * image[region] + alpha * pasted
    out_mask[region] = inside
    return out.astype(np.float32), out_mask
