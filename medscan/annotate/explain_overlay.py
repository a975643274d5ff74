"""A finding's explanation map on its slice, and the PNG a radiologist checks it on.

Which explanation:

- brain tumour (learned segmenter): ``medscan.annotate.explain.explain_slice`` — Seg-Grad-CAM (Captum layer
  gradients and activations) of the segmenter for that finding's pixels; it passes both sanity checks on the
  held-out subject, where IntegratedGradients and occlusion of the segmenter fail the randomisation check
  (tests/test_explain.py, the tumour_seg2d card);
- any other task (HU rules, organs, brain-lesions): occlusion sensitivity over the task's own ``run``: a grid of
  patches around the finding is replaced, one at a time, by a neutral value (0 HU = water for CT; the slab mean for
  MR) through the slices k-2..k+2, the task is run again on that slab, and a patch's value is how much of the
  finding's pixels on slice k lose their label. Model-agnostic, so rules and networks are explained alike.
  The lesion segmenter keeps occlusion: its Seg-Grad-CAM's maximum missed the expert lesions on the held-out
  MS subjects (pointing game in ``scripts/evaluate_lesions.py``, the lesion_seg2d card).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medscan.scan import MedscanError, Scan


def explain_finding(scan: Scan, task: Any, segmentation: Any, finding: Any, k: int, *,
                    device: str = "auto", grid: int = 6) -> tuple[np.ndarray, str]:
    """(map in [0, 1] the shape of slice k, the method's name) for ``finding``."""
    plane = finding.full_mask(scan.voxels.shape)[k]
    if not plane.any():
        raise MedscanError(scan.source_path or "series", f"finding {finding.number} has no voxels on slice {k}")
    if task.name == "brain-tumour":
        from medscan.annotate.explain import explain_slice

        try:
            maps = explain_slice(scan, k, finding=plane)
            return np.asarray(maps["seg_gradcam"], np.float32), "Seg-Grad-CAM (tumour segmenter, Captum)"
        except MedscanError as exc:  # e.g. the slice classifier it also runs is not shipped: occlusion instead
            fallback = f" (Captum unavailable: {exc.problem[:60]})"
    else:
        fallback = ""
    del segmentation
    return occlusion_sensitivity(scan, task, plane, finding.label, k, device=device, grid=grid), \
        f"occlusion sensitivity over {task.name}{fallback}"


def occlusion_sensitivity(scan: Scan, task: Any, plane: np.ndarray, label: int, k: int, *, grid: int = 6,
                          slab: int = 2, device: str = "auto") -> np.ndarray:
    """How much occluding each patch around the finding removes it from slice k (0..1, the slice's shape)."""
    k0, k1 = max(0, k - slab), min(scan.voxels.shape[0], k + slab + 1)
    affine = scan.affine.copy()
    affine[:3, 3] = scan.index_to_world([0, 0, k0])[0]
    sub = Scan(voxels=scan.voxels[k0:k1].copy(), affine=affine, modality=scan.modality, units=scan.units,
               description=f"slab {k0}-{k1 - 1} of {scan.description}", source_path=scan.source_path)
    local = k - k0
    neutral = 0.0 if scan.modality == "CT" else float(sub.voxels.mean())

    def kept(voxels: np.ndarray) -> float:
        sub.voxels = voxels
        labels = task.run(sub, device=device).labels[local]
        return float((labels[plane] == label).mean())

    base = kept(sub.voxels.copy())
    rows, cols = np.nonzero(plane)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    pad_r, pad_c = max(4, (r1 - r0) // 2), max(4, (c1 - c0) // 2)
    r0, r1 = max(0, r0 - pad_r), min(plane.shape[0], r1 + pad_r)
    c0, c1 = max(0, c0 - pad_c), min(plane.shape[1], c1 + pad_c)
    heat = np.zeros(plane.shape, np.float32)
    original = sub.voxels.copy()
    edges_r = np.linspace(r0, r1, grid + 1).round().astype(int)
    edges_c = np.linspace(c0, c1, grid + 1).round().astype(int)
    for a in range(grid):
        for b in range(grid):
            voxels = original.copy()
            patch = (slice(None), slice(edges_r[a], edges_r[a + 1]), slice(edges_c[b], edges_c[b + 1]))
            voxels[patch] = neutral
            heat[patch[1:]] = max(0.0, base - kept(voxels))
    sub.voxels = original
    top = float(heat.max())
    return heat / top if top > 0 else heat


def render_overlay(scan: Scan, k: int, heat: np.ndarray, finding_plane: np.ndarray, out: str | Path, *,
                   opacity: float = 0.5, title: str = "") -> Path:
    """Slice k in its default window, the map in a heat colour at ``opacity``, the finding outlined in green."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw
    from scipy import ndimage

    from medscan.io.png import apply_window, default_window

    values = (scan.voxels if scan.voxels.ndim == 3 else scan.voxels[0])[k]
    grey = apply_window(values, *default_window(scan)).astype(np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    heat = np.clip(np.asarray(heat, np.float32), 0.0, 1.0)
    colour = colormaps["inferno"](heat)[..., :3] * 255.0
    alpha = (opacity * heat)[..., None]
    rgb = rgb * (1 - alpha) + colour * alpha
    edge = finding_plane & ~ndimage.binary_erosion(finding_plane)
    rgb[edge] = (40, 230, 90)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    if image.width < 512:
        scale = 512 // image.width + 1
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    if title:
        ImageDraw.Draw(image).text((6, 6), title, fill=(255, 255, 0))
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    image.save(tmp, format="PNG")
    tmp.replace(out)
    return out
