"""Sharpen (a Clean operation) and super-resolve (a Generate operation): the residual-upsampler models.

Both run slice by slice in each slice's own intensity window and write back in the input's units.
Sharpening keeps the grid and goes through the fidelity guard like every Clean result; super-resolution
creates samples that were never measured, so its output is marked synthetic and gets a new affine whose
voxel centres tile exactly the field of view of the input. Super-resolution returns through
``synthetic_result`` with the spread over flipped copies as its uncertainty map; ``--gan`` swaps the
fidelity-first model for the adversarially trained one (sharper, lower PSNR, texture that was never measured).
"""

from __future__ import annotations

import numpy as np

from medscan import __version__
from medscan.ops.registry import ProgressCallback, Result
from medscan.scan import MedscanError, ProvenanceEntry, Scan

SUPERRES_MODELS = {("in-plane", 2): "superres_x2", ("in-plane", 4): "superres_x4", ("through-plane", 2): "superres_z2"}


def run_planes(planes: np.ndarray, model, device, *, batch: int = 4, condition: float = 0.0,
               progress: ProgressCallback | None = None) -> np.ndarray:
    """Apply a residual-upsampler to (N, h, w) planes in their own units; returns (N, h*sy, w*sx) float32.

    ``condition`` is the degradation level a conditioned model is told (the PSF sigma; 0 = blind).
    """
    import torch

    from medscan.nets.device import autocast
    from medscan.ops.inference import windowed_planes

    def apply(x: torch.Tensor) -> torch.Tensor:
        with autocast(device):
            level = torch.full((len(x),), float(condition), device=device) if model.conditioned else None
            return model(x, level)

    return windowed_planes(planes, apply, device, pad_multiple=model.pad_multiple, scale=tuple(model.scale),
                           batch=batch, progress=progress)


def sharpen(scan: Scan, *, strength: float, psf_sigma: float, model: str, device: str,
            progress: ProgressCallback | None) -> Result:
    """The ``sharpen`` operation (Clean): deblur slice by slice, blind or given the PSF.

    Args:
        scan: the series (CT in HU, MR in its own units).
        strength: share of the restored detail added, 0..1.5 (0 returns the input).
        psf_sigma: Gaussian PSF sigma in pixels when known; 0 is blind (the sigma is fitted for the guard).
        model: the shipped sharpening model.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: called as ``progress(done, total)`` after each slice; raising from it cancels the run.

    Returns:
        A :class:`Result` in the input's units and geometry with method-noise and change maps and the fidelity
        report (the restoration blurred again by the PSF must give back the input); a flagged result says so in
        its provenance (``fidelity=FLAGGED``) and notes.
    """
    from medscan.nets.device import pick_device
    from medscan.ops.clean import scan_planes
    from medscan.ops.inference import cached_model

    torch_device = pick_device(device)
    network, card = cached_model(model, torch_device)
    planes = scan_planes(scan)
    restored = sharpen_planes(planes, network, torch_device, psf_sigma=psf_sigma, progress=progress)
    # strength blends the learned detail: 0 returns the input, 1 the model's estimate of the unblurred slice.
    sharpened = planes + strength * (restored - planes)
    sigma = psf_sigma if psf_sigma > 0 else fit_psf_sigma(planes, restored)
    entry = ProvenanceEntry("sharpen", {"strength": strength, "psf_sigma_px": psf_sigma,
                                        "consistency_sigma_px": round(sigma, 2)}, model=model,
                            model_version=str(card.get("version")), software=f"medscan {__version__}")
    return _finish_sharpen(scan, sharpened.reshape(scan.voxels.shape), reblur(restored, sigma), entry)


CONSISTENCY_ITERATIONS = 5


def sharpen_planes(planes: np.ndarray, model, device, *, psf_sigma: float = 0.0,
                   progress: ProgressCallback | None = None) -> np.ndarray:
    """The model's deblurred planes; with a known PSF, pulled back to agree with the measurement.

    A few Landweber iterations (x += B(y - Bx), B the symmetric Gaussian PSF) remove what the network got
    inconsistent with the data at low and middle frequencies, where they converge fast, while barely touching
    the high frequencies where noise would be amplified. Blind (psf_sigma 0), the PSF is not known well
    enough to enforce it, so the network's output is returned as is.
    """
    restored = run_planes(planes, model, device, condition=psf_sigma, progress=progress)
    if psf_sigma > 0:
        measured = np.asarray(planes, np.float32)
        for _ in range(CONSISTENCY_ITERATIONS):
            restored = restored + reblur(measured - reblur(restored, psf_sigma), psf_sigma)
    return restored


def reblur(planes: np.ndarray, sigma: float) -> np.ndarray:
    """(N, H, W) planes convolved with the Gaussian PSF of ``sigma`` px (reflect edges), in their units."""
    import torch

    from medscan.degrade import gaussian_blur

    if sigma <= 0:
        return np.asarray(planes, np.float32)
    x = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[:, None]
    return torch.cat([gaussian_blur(x[i:i + 8], sigma) for i in range(0, len(x), 8)])[:, 0].numpy()


def fit_psf_sigma(measured: np.ndarray, restored: np.ndarray, grid: tuple[float, ...] = tuple(
        np.round(np.arange(0.0, 3.01, 0.25), 2))) -> float:
    """The PSF width that best maps the restoration back onto the measurement (blind mode's consistency check)."""
    step = max(1, len(measured) // 8)
    sample_m, sample_r = measured[::step], restored[::step]
    errors = [float(np.mean((reblur(sample_r, s) - sample_m) ** 2)) for s in grid]
    return float(grid[int(np.argmin(errors))])


def _finish_sharpen(scan: Scan, sharpened: np.ndarray, reblurred: np.ndarray, entry: ProvenanceEntry) -> Result:
    """The fidelity guard for deblurring: the restoration, blurred again by the PSF, must give back the input.

    Sharpening adds coherent edge detail by design, so input minus output is not the test; input minus the
    re-blurred restoration is, and it must look like noise (nothing invented, no mean shift).
    """
    from medscan.ops.fidelity import assess

    report, method_noise = assess(scan.voxels, reblurred.reshape(scan.voxels.shape), units=scan.units)
    if report.flagged:
        entry = ProvenanceEntry(entry.operation, {**entry.parameters, "fidelity": "FLAGGED"}, entry.model,
                                entry.model_version, entry.software, entry.timestamp)
    derived = scan.derive(sharpened, entry)
    change = (derived.voxels - scan.voxels).astype(np.float32)
    notes = [f"fidelity: {reason}" for reason in report.reasons]
    return Result(scan=derived, maps={"method_noise": method_noise, "change": change}, fidelity=report, notes=notes)


def upsampled_affine(affine: np.ndarray, factors: tuple[float, float, float]) -> np.ndarray:
    """The affine of a grid refined by ``factors`` along (i, j, k), covering the same field of view.

    Voxel size divides by the factor; the first new centre sits half a new voxel inside the old voxel's
    edge, i.e. at old index (1/f - 1)/2, so the new voxels tile exactly the old voxels' extent.
    """
    refine = np.eye(4)
    for axis, f in enumerate(factors):
        refine[axis, axis] = 1.0 / f
        refine[axis, 3] = (1.0 / f - 1.0) / 2.0
    return np.asarray(affine, np.float64) @ refine


GAN_MODELS = {("in-plane", 4): "superres_gan_x4"}
TTA_CHUNK = 4  # planes per test-time-augmentation pass: bounds the float64 accumulators of tta_planes


CONSISTENCY_PASSES = 5


def measurement_consistent(refined: np.ndarray, planes: np.ndarray, iterations: int = CONSISTENCY_PASSES
                           ) -> np.ndarray:
    """Pull refined (N, s*h, s*w) planes back onto the measurement: area-averaged over s x s they give ``planes``.

    Iterative back-projection: the coarse residual, bicubic-upsampled (smooth, so the generated fine texture
    stays), is added back. An adversarial generator may shift local means (a CT came out 10 HU too bright);
    after this every measured coarse voxel's mean is kept to a small fraction of a HU.
    """
    import torch
    import torch.nn.functional as F

    s = refined.shape[-1] // planes.shape[-1]
    x = torch.from_numpy(np.ascontiguousarray(refined, np.float32))[:, None]
    measured = torch.from_numpy(np.ascontiguousarray(planes, np.float32))[:, None]
    for _ in range(iterations):
        residual = measured - F.avg_pool2d(x, s)
        x = x + F.interpolate(residual, scale_factor=s, mode="bicubic", align_corners=False)
    return x[:, 0].numpy()


def generate_planes(planes: np.ndarray, network, device, progress: ProgressCallback | None = None,
                    done: int = 0, total: int | None = None, consistent: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(N, h, w) -> the model's (N, h*sy, w*sx) planes and their uncertainty, both float32 in input units.

    The uncertainty is the spread over flipped copies (``tta_planes``). The returned planes are the un-flipped
    member, not the ensemble mean: averaging four GANs' textures would blur away exactly the detail the GAN
    model is for, and it keeps the fidelity model's output what it always was. ``consistent`` (in-plane GAN)
    passes every member through ``measurement_consistent``.
    """
    from medscan.ops.generated import FLIPS, tta_planes

    assert FLIPS[0] == (), "the first test-time augmentation must be the identity"
    total = len(planes) if total is None else total
    out = spread = None
    for start in range(0, len(planes), TTA_CHUNK):
        first: list[np.ndarray] = []

        def predict(x: np.ndarray, first: list[np.ndarray] = first) -> np.ndarray:
            y = run_planes(x, network, device)
            if consistent:
                y = measurement_consistent(y, x)
            if not first:
                first.append(y)
            return y

        _, chunk_spread = tta_planes(predict, np.asarray(planes[start:start + TTA_CHUNK], np.float32), FLIPS)
        if out is None:
            out = np.empty((len(planes), *first[0].shape[1:]), np.float32)
            spread = np.empty_like(out)
        out[start:start + TTA_CHUNK] = first[0]
        spread[start:start + TTA_CHUNK] = chunk_spread
        if progress is not None:
            progress(done + min(start + TTA_CHUNK, len(planes)), total)
    return out, spread


def super_resolve(scan: Scan, *, scale: str, axis: str, gan: bool, model: str, device: str,
                  progress: ProgressCallback | None) -> Result:
    """The ``super_resolve`` operation: refine the grid in-plane (x2, x4; x4 also by GAN) or through-plane (x2).

    Args:
        scan: the series.
        scale: ``"2"`` or ``"4"`` (through-plane: ``"2"`` only).
        axis: ``"in-plane"`` or ``"through-plane"``.
        gan: use the GAN model (in-plane x4): sharper, invented texture.
        model: a shipped model, or ``"auto"`` for the one made for ``scale`` and ``axis``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: called as ``progress(done, total)`` after each slice; raising from it cancels the run.

    Returns:
        A SYNTHETIC :class:`Result` on the finer grid: voxel size divided by the scale, origin moved so the new
        voxel centres tile the input's field of view exactly (:func:`upsampled_affine`), with the flip-spread
        uncertainty map.

    Raises:
        MedscanError: no model for that scale and axis.
    """
    from medscan.nets.device import pick_device
    from medscan.ops.generated import synthetic_result
    from medscan.ops.inference import cached_model

    factor = int(scale)
    if model != "auto":
        name = model
    elif gan:
        name = GAN_MODELS.get((axis, factor))
        if name is None:
            offered = ", ".join(f"{a} x{f}" for a, f in GAN_MODELS)
            raise MedscanError("--gan", f"a GAN model exists for {offered} only, not {axis} x{factor}")
    else:
        name = SUPERRES_MODELS.get((axis, factor))
        if name is None:
            raise MedscanError("--scale", f"{axis} super-resolution is available at x2 only, not x{factor}")
    torch_device = pick_device(device)
    network, card = cached_model(name, torch_device)
    expected = (factor, factor) if axis == "in-plane" else (factor, 1)
    if tuple(network.scale) != expected:
        raise MedscanError(name, f"model scales by {tuple(network.scale)}, {axis} x{factor} needs {expected}")
    is_gan = bool(card.get("task_args", {}).get("gan", False))
    volumes = scan.voxels.reshape(-1, *scan.volume_shape)
    if axis == "in-plane":
        planes = volumes.reshape(-1, *scan.volume_shape[1:])
        refined, spread = generate_planes(planes, network, torch_device, progress, consistent=is_gan)
        voxels = refined.reshape(*scan.voxels.shape[:-2], *refined.shape[-2:])
        uncertainty = spread.reshape(voxels.shape)
        factors = (factor, factor, 1)
    else:
        if scan.volume_shape[0] < 2:
            raise MedscanError(scan.where, "through-plane needs at least 2 slices")
        per_volume = scan.volume_shape[1]
        total = per_volume * len(volumes)
        stacked, spreads = [], []
        for i, volume in enumerate(volumes):
            # The model runs on the (K, W) reformats, rows along the slice direction: (H, K, W) -> (H, 2K, W).
            reformats = np.ascontiguousarray(volume.transpose(1, 0, 2))
            refined, spread = generate_planes(reformats, network, torch_device, progress, i * per_volume, total)
            stacked.append(refined.transpose(1, 0, 2))
            spreads.append(spread.transpose(1, 0, 2))
        shape = (*scan.voxels.shape[:-3], -1, *scan.volume_shape[1:])
        voxels = np.ascontiguousarray(np.stack(stacked).reshape(shape))
        uncertainty = np.ascontiguousarray(np.stack(spreads).reshape(shape))
        factors = (1, 1, factor)
    method = "GAN (adversarially trained: sharper, invented texture)" if is_gan else "fidelity-first"
    parameters = {"scale": factor, "axis": axis, "gan": is_gan, "method": method}
    if is_gan and axis == "in-plane":
        parameters["measurement_consistency"] = f"{CONSISTENCY_PASSES} back-projection passes (area average)"
    entry = ProvenanceEntry("super_resolve", parameters,
                            model=name, model_version=str(card.get("version")), software=f"medscan {__version__}")
    notes = [f"super-resolved x{factor} {axis} with {name} ({method}): the new samples are generated, not "
             "measured (SYNTHETIC)"]
    if is_gan:
        notes.append("GAN detail is plausible texture, not measured anatomy: do not measure or diagnose fine "
                     "structure from it; compare with the fidelity model (without --gan)")
    return synthetic_result(scan, voxels, entry, uncertainty=uncertainty,
                            affine=upsampled_affine(scan.affine, factors), notes=notes)
