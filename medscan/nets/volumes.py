"""Volume preparation that inference and training share, one definition of what a network sees.

Inference (``medscan.ops``, ``medscan.annotate``) and training (``medscan.train``, ``scripts/``) both import these,
so neither imports the other: the canonical axial orientation and its flips, resampling planes to a network's pixel
size, padding to the network's stride, the body and brain masks, brain intensity scaling, the intensity tables of
the translator's prior, and the checks that a series is the axial skull-stripped brain the brain models saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medscan.scan import MedscanError, Scan

if TYPE_CHECKING:
    import torch

MIN_SLICES = 10  # a brain model refuses a stack thinner than this
BRAIN_PERCENTILE = 50.0  # the median of the brain is the unit
CLIP = 8.0  # normalised intensities above this are stray pixels (T2 CSF reaches about 4 x the median)
QUANTILES = np.linspace(0.0, 1.0, 1001)

# -- geometry ------------------------------------------------------------------------------------------------------


def axial_flips(scan: Scan) -> tuple[bool, bool]:
    """(flip rows, flip columns) that bring an axial slice to columns -> patient left, rows -> posterior."""
    d = scan.direction
    return bool(d[1, 1] < 0), bool(d[0, 0] < 0)


def canonical_volume(volume: np.ndarray, scan: Scan) -> np.ndarray:
    """The (k, j, i) volume with each axial slice flipped to the LPS in-plane orientation (no resampling)."""
    flip_rows, flip_cols = axial_flips(scan)
    out = volume[:, ::-1] if flip_rows else volume
    out = out[:, :, ::-1] if flip_cols else out
    return np.ascontiguousarray(out)


def resample_planes(planes: np.ndarray, spacing: tuple[float, float], target_mm: float,
                    shape: tuple[int, int] | None = None, mode: str = "bilinear") -> np.ndarray:
    """(N[, C], H, W) planes from (column, row) spacing to ``target_mm`` pixels, or back to ``shape`` when given."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))
    squeeze = x.ndim == 3
    if squeeze:
        x = x[:, None]
    if shape is None:
        shape = (max(1, round(x.shape[-2] * spacing[1] / target_mm)),
                 max(1, round(x.shape[-1] * spacing[0] / target_mm)))
    if tuple(shape) != tuple(x.shape[-2:]):
        kwargs = {"align_corners": False} if mode != "nearest" else {}
        x = F.interpolate(x, size=tuple(shape), mode=mode, **kwargs)
    return (x[:, 0] if squeeze else x).numpy()


def pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``x`` (..., H, W) padded at the bottom and right to multiples of ``multiple`` (a network's total stride),
    reflected where the image is large enough, else replicated; returns it and the original (H, W) to crop back."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    return x, (h, w)

# -- masks and intensity scales --------------------------------------------------------------------------------

def body_mask(image: np.ndarray) -> np.ndarray:
    """Foreground (the patient) of a slice: Otsu threshold, largest connected component, holes filled.

    Background air/empty k-space is trivially easy to denoise and dominates whole-image PSNR on small bodies;
    scoring inside the body tells whether anatomy got better. Lungs and ventricles are holes, so they count.
    """
    # scipy and scikit-image here, not at import: the annotation tasks register through this module at start-up
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    image = np.asarray(image, dtype=np.float64)
    if float(image.max()) == float(image.min()):
        return np.zeros(image.shape, dtype=bool)
    mask = image > threshold_otsu(image)
    mask = ndimage.binary_opening(mask, iterations=2)  # cut thin bridges to the table / coil
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(image.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == int(np.argmax(sizes))
    largest = ndimage.binary_closing(largest, iterations=2)
    return ndimage.binary_fill_holes(largest)


def brain_scale(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(normalised volume, brain mask, scale): brain = non-zero voxels, scale = their median.

    The scale is returned so an output can be written back in the input's units.
    """
    volume = np.asarray(volume, np.float32)
    brain = volume != 0
    if not brain.any():
        return np.zeros_like(volume), brain, 1.0
    scale = float(np.percentile(volume[brain], BRAIN_PERCENTILE))
    scale = scale if scale > 0 else 1.0
    return np.clip(volume / scale, 0.0, CLIP) * brain, brain, scale


@dataclass
class IntensityLUT:
    """Piecewise-linear map from normalised source to normalised target intensity, on bin centres.

    With ``source_quantiles`` (the training subject's brain source histogram) the new source is first
    histogram-matched to the training subject (its own brain quantiles onto those), so a subject whose
    grey/white matter sits at other percentile-scaled values still lands on the right part of the table.
    """

    centres: np.ndarray
    values: np.ndarray
    kind: str
    source_quantiles: np.ndarray | None = None

    def __call__(self, source: np.ndarray, brain_values: np.ndarray | None = None) -> np.ndarray:
        """Map ``source``; ``brain_values`` (all brain voxels of its volume) are needed with histogram matching."""
        if self.source_quantiles is not None:
            if brain_values is None:
                raise ValueError("a histogram-matched LUT needs the brain values of the source volume")
            own = np.quantile(brain_values, QUANTILES)
            source = np.interp(source, own, self.source_quantiles)
        return np.interp(source, self.centres, self.values).astype(np.float32)

    def to_json(self) -> dict:
        """The table as JSON-able data (rounded to 5 decimals), as the model card stores it."""
        return {"kind": self.kind, "centres": [round(float(c), 5) for c in self.centres],
                "values": [round(float(v), 5) for v in self.values]}

    @classmethod
    def from_json(cls, data: dict) -> IntensityLUT:
        """A table from :meth:`to_json` output."""
        return cls(np.asarray(data["centres"], np.float64), np.asarray(data["values"], np.float64), data["kind"])

# -- what the brain models were trained on ----------------------------------------------------------------------

def require_axial_stack(scan: Scan, task: str, max_thickness: float) -> None:
    """One 3-D axial volume of at least ``MIN_SLICES`` slices no thicker than ``max_thickness`` mm; else a one-line
    MedscanError naming ``task`` and what to do."""
    where = scan.where
    if scan.voxels.ndim != 3:
        raise MedscanError(where, f"{task} needs one 3-D volume, not a {scan.voxels.ndim}-D series")
    normal = np.abs(scan.direction[:, 2])
    if normal[2] < 0.8:
        plane = "sagittal" if normal[0] >= normal[1] else "coronal"
        raise MedscanError(where, f"{task} was trained on axial slices; this series is {plane} — reformat it axially")
    if scan.volume_shape[0] < MIN_SLICES:
        raise MedscanError(where, f"{task} needs at least {MIN_SLICES} slices; this series has {scan.volume_shape[0]}")
    if scan.spacing[2] > max_thickness:
        raise MedscanError(where, f"{task} was trained on slices up to {max_thickness:g} mm; these are "
                                  f"{scan.spacing[2]:.1f} mm")


def require_skull_stripped_brain(scan: Scan, task: str, max_thickness: float = 3.0) -> None:
    """An axial stack of a skull-stripped brain (BraTS-style): what every brain model trained on paired/ saw."""
    require_axial_stack(scan, task, max_thickness=max_thickness)
    require_brain_foreground(scan, task)


def require_brain_foreground(scan: Scan, task: str) -> None:
    """Mostly background with a brain-sized foreground (100-200 x 120-240 mm): a skull-stripped brain."""
    where = scan.where
    volume = scan.voxels
    positive = volume[volume > 0]
    if positive.size == 0:
        raise MedscanError(where, f"{task}: the series is empty (no positive voxels)")
    brain = volume > 0.05 * np.percentile(positive, 99)
    background = 1.0 - brain.mean()
    _ks, js, is_ = np.nonzero(brain)
    sx, sy, _sz = scan.spacing
    extent = ((is_.max() - is_.min() + 1) * sx, (js.max() - js.min() + 1) * sy)
    if background < 0.4 or not (100 <= extent[0] <= 200 and 120 <= extent[1] <= 240):
        raise MedscanError(where, f"{task} needs a skull-stripped brain MR (zero outside the brain); this series "
                                  f"has {100 * background:.0f}% background and a {extent[0]:.0f}x{extent[1]:.0f} mm "
                                  "foreground — not a skull-stripped brain")


