"""The intensity normalisation every 2-D model is trained and run with: one definition for both."""

from __future__ import annotations

import numpy as np


def intensity_window(image: np.ndarray) -> tuple[float, float]:
    """The slice's intensity window: 0.5th to 99.5th percentile (robust to a few hot pixels)."""
    lo, hi = np.percentile(image, [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))


def window_span(lo, hi):
    """The divisor that maps a window (scalars or arrays) onto 0..1: its width, but never so small that a nearly
    constant slice (its window a float32 rounding step wide) is blown up by 1e6."""
    return np.maximum(hi - lo, np.maximum(1e-3 * np.maximum(np.abs(lo), np.abs(hi)), 1e-6))
