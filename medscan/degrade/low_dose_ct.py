"""Low-dose CT noise inserted in the projection domain (Zeng et al., IEEE Trans. Nucl. Sci. 2015).

A full-dose slice in HU is turned into linear attenuation, forward-projected, and measured again at a lower
photon count: Beer-Lambert counts ``I0 exp(-p)`` with Poisson quantum noise plus Gaussian electronic noise,
then ``-log``. Filtered back-projection of the difference between the noisy and the clean sinogram (FBP is
linear, so this equals the difference of the two reconstructions) is the noise a scanner would have added;
it is added to the original slice, whose own fine detail stays untouched. The noise is therefore correlated
the way real CT noise is (its power spectrum follows the reconstruction filter), stronger behind dense
anatomy, and streaky where few photons get through.

The projector is scikit-image's parallel-beam ``radon``/``iradon`` (CPU, in the ``dev`` extra): astra-toolbox's
CPU projectors and deepinv's ``Tomography`` would add fan-beam geometry but bring a compiled toolbox or
torchvision with them, and for noise *insertion* fan- and parallel-beam differ little once the fan data are
rebinned, which is what most scanners do before their FBP. Realisations are precomputed for training
(``scripts/simulate_low_dose_ct.py``) into a run folder, never into the repository.

Dose follows automatic exposure control: ``photons_for_noise`` picks I0 per slice so that the noise in soft
tissue reaches a target (e.g. 25 or 50 HU), from routine dose to about a tenth of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Linear attenuation of water at an effective energy of about 70 keV, per mm.
MU_WATER_PER_MM = 0.0192
# Reconstruction filters of the kernels we simulate (scikit-image's names).
KERNEL_FILTERS = {"sharp": "ramp", "standard": "shepp-logan", "soft": "hann"}
SOFT_TISSUE_HU = (-150.0, 150.0)
# Exposure-control iterations: the first sets I0 from quantum noise alone, the rest correct for electronic noise,
# which grows faster than 1/sqrt(I0) once rays behind dense anatomy are photon-starved.
ITERATIONS = 5
# Detector read-out noise in counts per ray of our (coarser than a scanner's) views and bins.
ELECTRONIC_SD = 5.0


@dataclass(frozen=True)
class LowDoseSetting:
    """One simulated acquisition: ``photons`` I0 per ray, ``electronic_sd`` in counts, the kernel's name."""

    photons: float
    electronic_sd: float = ELECTRONIC_SD
    kernel: str = "standard"


def check_kernel(kernel: str) -> str:
    """The scikit-image filter of ``kernel``; a ValueError naming the known kernels otherwise."""
    try:
        return KERNEL_FILTERS[kernel]
    except KeyError:
        raise ValueError(f"unknown CT kernel {kernel!r} (one of {', '.join(KERNEL_FILTERS)})") from None


def projection_angles(size: int) -> np.ndarray:
    """Projection angles in degrees over 180: about as many views as the slice has pixels across."""
    return np.linspace(0.0, 180.0, max(180, size), endpoint=False)


def line_integrals(slice_hu: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Sinogram of attenuation line integrals (dimensionless) of a (H, W) slice in HU with square pixels."""
    from skimage.transform import radon

    mu = MU_WATER_PER_MM * (1.0 + np.clip(np.asarray(slice_hu, np.float64), -1000.0, None) / 1000.0)
    return radon(mu * pixel_mm, projection_angles(max(slice_hu.shape)), circle=False)


def tube_current_modulation(sinogram: np.ndarray) -> np.ndarray:
    """Relative tube current per view (mean 1), as angular exposure control sets it: proportional to the square
    root of the view's strongest attenuation (Gies et al., Med. Phys. 1999), which evens out the noise between
    lateral and anterior-posterior views. Without it the lateral views through both arms starve and the slice is
    crossed by streaks no modern scanner shows at that dose."""
    strongest = np.percentile(sinogram, 98, axis=0)
    weights = np.exp(0.5 * (strongest - strongest.max()))
    return weights / weights.mean()


def noise_from_sinogram(sinogram: np.ndarray, shape: tuple[int, int], pixel_mm: float, setting: LowDoseSetting,
                        rng: np.random.Generator) -> np.ndarray:
    """One realisation of the reconstructed noise (H, W) in HU for ``sinogram`` (``line_integrals``) at ``setting``;
    ``setting.photons`` is the mean I0 per ray over the views (``tube_current_modulation``)."""
    from skimage.transform import iradon

    filter_name = check_kernel(setting.kernel)
    unattenuated = setting.photons * tube_current_modulation(sinogram)[None, :]  # I0 of each view
    expected = unattenuated * np.exp(-sinogram)
    counts = rng.poisson(expected).astype(np.float64) + rng.normal(0.0, setting.electronic_sd, sinogram.shape)
    # A detector reading at or below zero has no logarithm: clip it at a fraction of a photon, as scanners
    # do before their log step (the bright streaks of photon starvation come from here).
    measured = -np.log(np.clip(counts, 0.5, None) / unattenuated)
    # -log of a noisy count is biased upwards by about its relative variance over two (the delta method), which
    # a scanner's calibration takes out; left in, the noise would raise soft tissue by several HU at low dose.
    measured -= (expected + setting.electronic_sd**2) / (2 * np.maximum(expected, 1.0) ** 2)
    angles = projection_angles(max(shape))
    noise_mu = iradon(measured - sinogram, angles, filter_name=filter_name, circle=False,
                      output_size=max(shape)) / pixel_mm
    h, w = shape
    top, left = (max(shape) - h) // 2, (max(shape) - w) // 2
    return (1000.0 * noise_mu / MU_WATER_PER_MM)[top:top + h, left:left + w].astype(np.float32)


def soft_tissue_sd(slice_hu: np.ndarray, noise_hu: np.ndarray) -> float:
    """Standard deviation of ``noise_hu`` where the clean slice is soft tissue (the AEC's reference region)."""
    tissue = (slice_hu > SOFT_TISSUE_HU[0]) & (slice_hu < SOFT_TISSUE_HU[1])
    values = noise_hu[tissue] if tissue.sum() >= 100 else noise_hu[slice_hu > -500]
    return float(np.std(values)) if values.size else float(np.std(noise_hu))


def photons_for_noise(slice_hu: np.ndarray, sinogram: np.ndarray, pixel_mm: float, target_sd_hu: float,
                      kernel: str, rng: np.random.Generator, reference_photons: float = 1e6,
                      electronic_sd: float = ELECTRONIC_SD) -> tuple[float, np.ndarray]:
    """I0 that gives about ``target_sd_hu`` of noise in soft tissue with ``kernel``, like automatic exposure
    control, and the noise realisation (H, W, HU) made at that I0.

    Quantum noise scales as 1/sqrt(I0), so a realisation at ``reference_photons`` without electronic noise sets
    the dose; further realisations with electronic noise correct it where photon starvation adds to it (the
    lowest doses behind dense anatomy) until the target is met within 10 %.
    """
    if target_sd_hu <= 0:
        raise ValueError(f"target noise must be positive, not {target_sd_hu}")
    photons = reference_photons
    setting = LowDoseSetting(photons, 0.0, kernel)
    for _ in range(ITERATIONS):
        noise = noise_from_sinogram(sinogram, slice_hu.shape, pixel_mm, setting, rng)
        measured = soft_tissue_sd(slice_hu, noise)
        if setting.electronic_sd == electronic_sd and abs(measured / target_sd_hu - 1) < 0.1:
            break
        photons = photons * (measured / target_sd_hu) ** 2 if measured > 0 else photons
        setting = LowDoseSetting(photons, electronic_sd, kernel)
    else:
        noise = noise_from_sinogram(sinogram, slice_hu.shape, pixel_mm, setting, rng)
    return photons, noise


def simulate_low_dose(slice_hu: np.ndarray, pixel_mm: float, target_sd_hu: float, kernel: str = "standard",
                      rng: np.random.Generator | None = None, electronic_sd: float = ELECTRONIC_SD,
                      sinogram: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """A low-dose version of a full-dose (H, W) slice in HU: (noisy slice in HU, the I0 used).

    Args:
        slice_hu: the full-dose slice, HU.
        pixel_mm: in-plane pixel size in mm (square pixels).
        target_sd_hu: noise standard deviation in soft tissue the dose is chosen for (automatic exposure control).
        kernel: ``sharp`` (ramp filter), ``standard`` (Shepp-Logan) or ``soft`` (Hann).
        rng: the random stream (seed it for reproducible realisations).
        electronic_sd: detector read-out noise in counts per ray.
        sinogram: ``line_integrals(slice_hu, pixel_mm)`` when the caller already has it (it costs most of the time).

    Example:
        >>> noisy, photons = simulate_low_dose(ct_slice, 0.78, 25.0, "soft", np.random.default_rng(0))
    """
    rng = rng or np.random.default_rng()
    check_kernel(kernel)
    slice_hu = np.asarray(slice_hu, np.float32)
    sinogram = line_integrals(slice_hu, pixel_mm) if sinogram is None else sinogram
    photons, noise = photons_for_noise(slice_hu, sinogram, pixel_mm, target_sd_hu, kernel, rng,
                                       electronic_sd=electronic_sd)
    return slice_hu + noise, photons
