"""Seeded, physically motivated degradations that turn clean slices into training inputs.

All functions take torch tensors shaped (N, 1, H, W) in normalised intensity (0..1 over the
slice's intensity window) and a ``torch.Generator`` so that every training pair is reproducible.
"""

from medscan.degrade.blur import blur_each, gaussian_blur, gaussian_kernel
from medscan.degrade.noise import (
    add_ct_noise,
    add_gaussian,
    add_noncentral_chi,
    add_poisson_gaussian,
    add_rician,
    coil_noise_map,
    estimate_flat_sd,
    estimate_noise_sd,
    estimate_sigma,
    looks_like_magnitude,
)
from medscan.degrade.resample import downsample, downsample_rows, downsample_slices

__all__ = [
    "add_ct_noise",
    "add_gaussian",
    "add_noncentral_chi",
    "add_poisson_gaussian",
    "add_rician",
    "blur_each",
    "coil_noise_map",
    "downsample",
    "downsample_rows",
    "downsample_slices",
    "estimate_flat_sd",
    "estimate_noise_sd",
    "estimate_sigma",
    "gaussian_blur",
    "gaussian_kernel",
    "looks_like_magnitude",
]
