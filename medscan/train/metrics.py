"""Image-quality metrics and the held-out evaluation protocol shared by every evaluation script.

One definition of PSNR, SSIM, the body mask, slice choice and timing, so that the denoise, sharpen and
super-resolution tables are measured the same way and can be compared.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from medscan.nets.volumes import body_mask
from medscan.train.data import DATA_ROOT


def psnr(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """PSNR in dB over all pixels or those in ``mask``; ``inf`` for identical images (no division warning)."""
    diff = np.asarray(reference, np.float64) - np.asarray(estimate, np.float64)
    if mask is not None:
        diff = diff[mask]
    if diff.size == 0:
        raise ValueError("empty mask: PSNR undefined")
    mse = float(np.mean(diff**2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def ssim(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """SSIM with Wang et al.'s settings; with ``mask`` the SSIM map is averaged over the mask only."""
    from skimage.metrics import structural_similarity

    _, ssim_map = structural_similarity(np.asarray(reference, np.float64), np.asarray(estimate, np.float64),
                                        data_range=data_range, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, full=True)
    if mask is None:
        return float(ssim_map.mean())
    if not mask.any():
        raise ValueError("empty mask: SSIM undefined")
    return float(ssim_map[mask].mean())


def summarize(values: list[float]) -> dict[str, float | int]:
    """Mean and sample sd over slices; infinite values (identical images) are kept out of both and counted."""
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    return {
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "sd": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        "n": int(arr.size),
        "n_infinite": int(arr.size - finite.size),
    }


def slice_seed(*parts: object) -> int:
    """A stable seed from names (crc32): the same slice and condition get the same noise in every run."""
    return zlib.crc32(":".join(str(p) for p in parts).encode())


@dataclass
class Timed:
    """A method's output with the time it took.

    Attributes:
        output: the result, float32.
        wall_s: wall-clock seconds.
        cpu_s: CPU seconds of this process (honest when another job shares the cores).
    """

    output: np.ndarray
    wall_s: float
    cpu_s: float


def timed(function: Callable[[], np.ndarray]) -> Timed:
    """Wall and process CPU seconds: CPU time stays honest when another job (training) shares the cores."""
    wall, cpu = time.perf_counter(), time.process_time()
    output = function()
    return Timed(np.asarray(output, dtype=np.float32), time.perf_counter() - wall, time.process_time() - cpu)


_WARMED: set[Any] = set()


def warm_timed(function: Callable[[], Any], key: Any, warm: Callable[[], Any] | None = None) -> Timed:
    """``timed(function)``, after one untimed call of ``warm`` (default: ``function``) the first time ``key`` (e.g.
    the input shape) is seen: oneDNN picks its kernels per shape on the first call, which is not what a user waits
    for on every slice."""
    if key not in _WARMED:
        (warm or function)()
        _WARMED.add(key)
    return timed(function)


def load_volume(item: str) -> tuple[np.ndarray, str]:
    """(slices, H, W) float32 in physical units and the modality of a data item."""
    from medscan.io import load

    scan = load(DATA_ROOT / item)
    volume = scan.voxels if scan.voxels.ndim == 3 else scan.voxels[0]
    return np.asarray(volume, dtype=np.float32), scan.modality


def heldout_slices(items: tuple[str, ...] | list[str], per_item: int
                   ) -> Iterator[tuple[str, str, np.ndarray, int]]:
    """(item, modality, volume, slice index) for the ``per_item`` slices :func:`choose_slices` picks in each item,
    item by item (one volume loaded at a time)."""
    for item in items:
        volume, modality = load_volume(item)
        for k in choose_slices(volume, per_item):
            yield item, modality, volume, k


def slice_record(item: str, modality: str, k: int, condition: str, **extra: Any) -> dict[str, Any]:
    """A per-slice evaluation record: where it comes from, its condition, ``extra`` entries and an empty
    ``methods`` dict that :func:`score_methods` fills."""
    return {"item": item, "modality": modality, "slice": k, "condition": condition, **extra, "methods": {}}


def normalise(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Map ``image`` so that ``window = (lo, hi)`` becomes 0..1 (values outside are not clipped); float32."""
    lo, hi = window
    return ((np.asarray(image, np.float64) - lo) / (hi - lo)).astype(np.float32)


def choose_slices(volume: np.ndarray, count: int) -> list[int]:
    """``count`` slice indices spread evenly (bin centres) over the slices with a substantial body section.

    The section is measured against one Otsu threshold for the whole volume: a per-slice threshold would
    call a nearly empty end slice "all body" (its own window is a few units wide).
    """
    from skimage.filters import threshold_otsu

    threshold = threshold_otsu(volume[:, ::4, ::4])
    areas = (volume > threshold).sum(axis=(1, 2))
    candidates = np.flatnonzero(areas >= 0.5 * areas.max())
    count = min(count, candidates.size)
    positions = ((np.arange(count) + 0.5) * candidates.size / count).astype(int)
    return [int(candidates[p]) for p in positions]


def pm(stat: dict[str, float | int], digits: int) -> str:
    """``mean ± sd`` of a ``summarize`` result, for the Markdown tables."""
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


# No-reference sharpness (compared with the high-resolution original, which a reference metric then is not
# needed for): how much fine detail an output carries, independent of whether that detail is in the right place.

def gradient_energy(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared forward difference along rows and columns (in the image's units squared), over ``mask``."""
    image = np.asarray(image, np.float64)
    dy = np.diff(image, axis=0)[:, :-1]
    dx = np.diff(image, axis=1)[:-1, :]
    energy = dy * dy + dx * dx
    if mask is not None:
        energy = energy[np.asarray(mask)[:-1, :-1]]
    return float(energy.mean())


def radial_power_spectrum(image: np.ndarray, bins: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of a Hann-windowed image: (bin centres in cycles/pixel, 0..0.5; power).

    The window keeps the image border (a jump under the periodic FFT) from leaking into the high frequencies.
    """
    image = np.asarray(image, np.float64)
    h, w = image.shape
    windowed = (image - image.mean()) * np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2(windowed)) ** 2 / (h * w)
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    radius = np.hypot(fy, fx).ravel()
    edges = np.linspace(0.0, 0.5, bins + 1)
    index = np.digitize(radius, edges) - 1
    inside = (index >= 0) & (index < bins)
    total = np.bincount(index[inside], power.ravel()[inside], minlength=bins)
    count = np.bincount(index[inside], minlength=bins)
    return (edges[:-1] + edges[1:]) / 2, total / np.maximum(count, 1)


def spectrum_match(reference: np.ndarray, estimate: np.ndarray, band: tuple[float, float]) -> tuple[float, float]:
    """(log-spectral distance, mean log power ratio) of ``estimate`` to ``reference`` in ``band`` (cycles/px), dB.

    The distance is the RMS over radial bins of 10·log10(P_est / P_ref): 0 when the estimate carries the
    original's energy at every frequency of the band. The signed mean says which way: negative is too smooth
    (missing high-frequency energy), positive too much (over-sharpened or noisy).
    """
    freq, p_ref = radial_power_spectrum(reference)
    _, p_est = radial_power_spectrum(estimate)
    keep = (freq >= band[0]) & (freq <= band[1]) & (p_ref > 0)
    ratio_db = 10 * np.log10(np.maximum(p_est[keep], 1e-30) / p_ref[keep])
    return float(np.sqrt(np.mean(ratio_db ** 2))), float(np.mean(ratio_db))


def area_downsample(image: np.ndarray, scale: int) -> np.ndarray:
    """Average s x s blocks; the image is cropped to a multiple of s first."""
    h, w = (image.shape[0] // scale) * scale, (image.shape[1] // scale) * scale
    return image[:h, :w].reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3)).astype(np.float32)


def in_plane_case(slice_phys: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
    """One in-plane super-resolution case: (the slice area-averaged over ``scale`` x ``scale`` blocks in physical
    units, the clean slice cropped to a multiple of ``scale`` and normalised to its window, the low-resolution
    slice normalised to that window, the window). The clean slice's shape is the output grid."""
    from medscan.nets.normalize import intensity_window

    low_phys = area_downsample(slice_phys, scale)
    cropped = slice_phys[:low_phys.shape[0] * scale, :low_phys.shape[1] * scale]
    window = intensity_window(cropped)
    return low_phys, normalise(cropped, window), normalise(low_phys, window), window


def resize(image: np.ndarray, shape: tuple[int, int], method: str) -> np.ndarray:
    """OpenCV resampling (pixel-centre aligned, like the scanner grid): 'bicubic', 'lanczos' or 'linear'."""
    import cv2

    flag = {"bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4, "linear": cv2.INTER_LINEAR}[method]
    return cv2.resize(np.ascontiguousarray(image, np.float32), (shape[1], shape[0]), interpolation=flag)


def score_methods(record: dict[str, Any], clean: np.ndarray, outputs: dict[str, Timed], per_slice: int = 1) -> None:
    """Score each method's output against ``clean`` into ``record["methods"][method]``: PSNR and SSIM over the
    whole slice and inside its body mask (``record["body_fraction"]`` is the mask's share), wall and CPU seconds
    per slice (the timing divided by ``per_slice`` when one run made that many slices)."""
    body = body_mask(clean)
    record["body_fraction"] = float(body.mean())
    for method, result in outputs.items():
        record["methods"][method] = {
            "psnr": psnr(clean, result.output), "psnr_body": psnr(clean, result.output, body),
            "ssim": ssim(clean, result.output), "ssim_body": ssim(clean, result.output, body),
            "wall_s": result.wall_s / per_slice, "cpu_s": result.cpu_s / per_slice,
        }
