"""The intensity normalisation every 2-D model is trained and run with: one definition for both."""

from __future__ import annotations

import numpy as np


def intensity_window(image: np.ndarray) -> tuple[float, float]:
    """The slice's intensity window: 0.5th to 99.5th percentile (robust to a few hot pixels)."""
    lo, hi = np.percentile(image, [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))
