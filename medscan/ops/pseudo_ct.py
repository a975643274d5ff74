"""Pseudo-CT (EXPERIMENTAL): a CT-like image in HU predicted from an MR series, slice by slice.

No CT and MR of the same patient exist in this project, so the model (``pseudo_ct_cyclegan2d``) was trained
UNPAIRED, CycleGAN-style, on mostly brain MR and mostly chest/abdomen CT with a single head-CT patient
(``scripts/train_pseudo_ct.py``; see the card). Nothing ties a predicted HU value to the patient's real
attenuation: it is an MR->CT intensity and texture mapping whose output looks like CT. It is never validated
and must not be used for dose planning, attenuation correction or diagnosis; every output says so
(SeriesDescription, provenance, notes).

How it runs: the MR volume is normalised over its own 0.5-99.5 percentile window, each plane of the
acquisition (voxel axis 0) is resampled in-plane to the model's 2 mm grid, padded with air, translated, and
resampled back, so the output has the input's shape, affine and spacing. The answer is the mean over the four
flips of each plane (``tta_planes``) and the uncertainty map their spread, both in HU.

Refused, in one line naming the file: CT input ("already CT"), non-MR, 4-D series, a series named T2 or FLAIR
(the MR side of training was T1-weighted only) and skull-stripped MR (held-out evaluation: the brain comes out at
bone HU, median ~750 HU).

``medscan generate translate PATH -o OUT --to CT`` runs this (``medscan.ops.translate``);
``EXPERIMENTAL_NOTE`` is the wording the CLI and GUI show for that choice.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from medscan import __version__
from medscan.ops.registry import ProgressCallback, Result
from medscan.scan import MedscanError, ProvenanceEntry, Scan

PSEUDO_CT_MODEL = "pseudo_ct_cyclegan2d"
EXPERIMENTAL_NOTE = ("EXPERIMENTAL pseudo-CT, not validated: trained unpaired (no CT+MR of one patient), mostly "
                     "brain MR vs chest/abdomen CT with one head CT; HU are plausible-looking, not measured — not "
                     "for dose planning, attenuation correction or diagnosis")
DESCRIPTION = "EXPERIMENTAL pseudo-CT - not validated"  # export prefixes SYNTHETIC; ASCII for DICOM LO
HU_RANGE = (-1024.0, 3071.0)  # int16-safe CT range (the model's window lies inside it)
AIR_PAD_PX = 8  # air margin around each plane so the network's edge handling never touches the body
CHUNK = 8
SKULL_STRIPPED_ZERO = 0.5  # raw MR has at most ~15% exactly-zero voxels; skull-stripped brains over 80%



def named_contrasts(scan: Scan) -> set[str]:
    """The MR contrasts (T1, T1c, T2, FLAIR) the series description, protocol or file name name; empty if none."""
    from pathlib import Path

    from medscan.ops.contrast import contrast_from_text

    header = scan.header
    texts = [str(getattr(header, key, "") or "") for key in ("SeriesDescription", "ProtocolName")] if header else []
    texts += [scan.description or "", Path(scan.source_path).name if scan.source_path else ""]
    return {c for c in map(contrast_from_text, texts) if c}


def check_mr(scan: Scan) -> None:
    """Refuse all but a 3-D, T1-weighted (or unnamed), not skull-stripped MR series, in one line naming the file."""
    if scan.modality == "CT" or scan.units == "HU":
        raise MedscanError(scan.where, "already CT — pseudo-CT turns an MR series into a CT-like one")
    if scan.modality != "MR":
        raise MedscanError(scan.where, f"pseudo-CT needs an MR series, not {scan.modality or 'an unknown modality'}")
    if scan.voxels.ndim != 3:
        raise MedscanError(scan.where, f"pseudo-CT needs one 3-D volume; this series has {scan.n_volumes} "
                                         "volumes — pick one first")
    if float(np.ptp(scan.voxels)) == 0.0:
        raise MedscanError(scan.where, "the series is uniform (no image to translate)")
    contrast = named_contrasts(scan)
    if contrast and contrast <= {"T2", "FLAIR"}:
        raise MedscanError(scan.where, f"this series is {'/'.join(sorted(contrast))}: the pseudo-CT model was "
                                         "trained on T1-weighted MR only")
    zero = float(np.mean(scan.voxels == 0))
    if zero > SKULL_STRIPPED_ZERO:
        # Held-out evaluation: a skull-stripped brain comes out at bone HU (median ~750 HU inside the brain).
        raise MedscanError(scan.where, f"looks skull-stripped ({100 * zero:.0f}% of voxels exactly 0): the "
                                         "pseudo-CT model needs the whole head (its brain comes out at bone HU)")


def resample_planes(planes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, H, W) -> (N, *shape), bilinear with antialiasing when shrinking (in-plane only)."""
    import torch
    import torch.nn.functional as F

    if planes.shape[1:] == tuple(shape):
        return np.asarray(planes, np.float32)
    x = torch.from_numpy(np.ascontiguousarray(planes, np.float32))[:, None]
    shrink = shape[0] < planes.shape[1] or shape[1] < planes.shape[2]
    y = F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False, antialias=shrink)
    return y[:, 0].numpy()


def grid_shape(shape: tuple[int, int], spacing_rc: tuple[float, float], grid_mm: float) -> tuple[int, int]:
    """Plane size on the model grid for a plane of ``shape`` with (row, column) pixel spacing in mm."""
    return (max(8, round(shape[0] * spacing_rc[0] / grid_mm)), max(8, round(shape[1] * spacing_rc[1] / grid_mm)))


def translate_unit_planes(model, planes: np.ndarray, device, progress: ProgressCallback | None = None,
                          flips: tuple[tuple[int, ...], ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """TTA mean and spread of ``model`` on (N, H, W) planes already in [-1, 1] on the model grid
    (``flips``: the flips to average, default all four; ``((),)`` is one plain pass).

    Planes are padded with -1 (air for CT, background for MR) to the network's multiple plus a margin.
    """
    import torch

    from medscan.ops.generated import FLIPS, tta_planes

    multiple = int(getattr(model, "pad_multiple", 4))
    n, h, w = planes.shape
    ph, pw = AIR_PAD_PX + (-(h + 2 * AIR_PAD_PX)) % multiple, AIR_PAD_PX + (-(w + 2 * AIR_PAD_PX)) % multiple
    flips = FLIPS if flips is None else flips
    total, done = len(flips) * n, [0]

    def predict(x: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape, np.float32)
        padded = np.pad(x, ((0, 0), (AIR_PAD_PX, ph), (AIR_PAD_PX, pw)), constant_values=-1.0)
        with torch.inference_mode():
            for start in range(0, len(x), CHUNK):
                chunk = torch.from_numpy(padded[start:start + CHUNK])[:, None].to(device)
                y = model(chunk)[:, 0, AIR_PAD_PX:AIR_PAD_PX + h, AIR_PAD_PX:AIR_PAD_PX + w]
                out[start:start + CHUNK] = y.float().cpu().numpy()
                done[0] += len(chunk)
                if progress is not None:
                    progress(done[0], total)
        return out

    return tta_planes(predict, np.ascontiguousarray(planes, np.float32), flips)


def mr_volume_to_ct(model, volume: np.ndarray, spacing: tuple[float, float, float], device,
                    progress: ProgressCallback | None = None, window: tuple[float, float] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(pseudo-CT in HU, uncertainty in HU) of a (K, H, W) MR volume with spacing (col, row, slice) mm.

    ``window``: the MR intensity window (default: this volume's percentiles; pass the whole series' window when
    ``volume`` is a few of its slices)."""
    from medscan.nets.cyclegan import CT_WINDOW_HU, GRID_MM, mr_to_unit, unit_to_ct

    _, h, w = volume.shape
    unit = mr_to_unit(volume, window)
    small = grid_shape((h, w), (spacing[1], spacing[0]), GRID_MM)
    mean, spread = translate_unit_planes(model, resample_planes(unit, small), device, progress)
    mean, spread = resample_planes(mean, (h, w)), resample_planes(spread, (h, w))
    hu = np.clip(unit_to_ct(mean), *HU_RANGE)
    return hu.astype(np.float32), (spread * (CT_WINDOW_HU[1] - CT_WINDOW_HU[0]) / 2).astype(np.float32)


def pseudo_ct(scan: Scan, device: str = "auto", *, progress: ProgressCallback | None = None) -> Result:
    """EXPERIMENTAL pseudo-CT of an MR series: SYNTHETIC, in HU, on the input's grid, with a TTA uncertainty map."""
    from medscan.nets.device import pick_device
    from medscan.ops.generated import synthetic_result
    from medscan.ops.inference import cached_model

    check_mr(scan)
    torch_device = pick_device(device)
    model, card = cached_model(PSEUDO_CT_MODEL, torch_device)
    hu, spread = mr_volume_to_ct(model, scan.voxels, scan.spacing, torch_device, progress)
    entry = ProvenanceEntry("pseudo_ct", {"from": "MR", "to": "CT", "tta": "flips x4", "units": "HU",
                                          "validated": False, "training": "unpaired (CycleGAN-style)"},
                            model=PSEUDO_CT_MODEL, model_version=str(card.get("version")),
                            software=f"medscan {__version__}")
    result = synthetic_result(scan, hu, entry, uncertainty=spread, experimental=EXPERIMENTAL_NOTE,
                              notes=["pseudo-CT in HU from an MR series; air, soft tissue and bone values are a "
                                     "learned intensity mapping, not measured attenuation"])
    source = f" (from MR {scan.description})" if scan.description else " (from MR)"
    result.scan = dataclasses.replace(result.scan, modality="CT", units="HU", description=DESCRIPTION + source)
    return result
