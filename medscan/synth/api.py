"""``synthesize``: sample slices of one class, convert to physical units, and run the memorisation check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medscan.scan import MedscanError
from medscan.synth.data import CLASSES, GRID, class_index, from_unit, pixel_spacing

DEFAULT_MODEL = "synth_diffusion2d"
MAX_COUNT = 500


@dataclass
class SynthBatch:
    """Generated slices in physical units with the verdict of the memorisation check and how they were made."""

    slices: np.ndarray  # (N, GRID, GRID) float32: HU for CT, arbitrary units for MR
    modality: str
    region: str
    label: int
    spacing_mm: float
    nn_ssim: np.ndarray  # (N,) SSIM of the nearest training slice (64 x 64 check grid)
    nn_index: np.ndarray  # (N,) which training slice (row of the model's reference)
    threshold: float  # memorised when nn_ssim >= threshold
    seed: int
    steps: int
    model: str
    model_version: str
    model_sha256: str
    mask: np.ndarray | None = None  # (GRID, GRID) bool
    mask_source: str = ""
    units: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def memorised(self) -> np.ndarray:
        """Per slice: True where the nearest training slice is as close as the threshold or closer (refused)."""
        return self.nn_ssim >= self.threshold

    @property
    def passed(self) -> np.ndarray:
        """Per slice: True for the slices that may be exported (not memorised)."""
        return ~self.memorised

    @property
    def class_name(self) -> str:
        """The class as people read it, e.g. ``"MR brain"``."""
        return f"{self.modality} {self.region}"

    def parameters(self) -> dict[str, Any]:
        """What reproduces the batch: goes into DerivationDescription / the NIfTI sidecar."""
        params: dict[str, Any] = {"class": self.class_name, "count": len(self.slices), "seed": self.seed,
                                  "steps": self.steps, "sampler": "DDIM", "sha256": self.model_sha256[:16],
                                  "noise": "numpy default_rng([seed, i]) for slice i",
                                  "mask": "none" if self.mask is None else
                                  f"{int(self.mask.sum())} px{' from ' + self.mask_source if self.mask_source else ''}",
                                  "memorisation_threshold_ssim": round(self.threshold, 4)}
        return params


def available_classes(model: str = DEFAULT_MODEL) -> list[tuple[str, str]]:
    """(modality, region) pairs the shipped model was trained on (from its card)."""
    from medscan.nets.weights import load_card

    card = load_card(model).data
    return [(c["modality"], c["region"]) for c in card["classes"]]


def _refuse_class(model: str, modality: str, region: str) -> None:
    known = ", ".join(f"{m} {r}" for m, r in available_classes(model))
    raise MedscanError(model, f"never trained on {modality} {region}; it knows {known}")


def load_mask(mask: object) -> tuple[np.ndarray, str]:
    """A lesion mask as (GRID, GRID) bool from an array or a file (.npy, NIfTI, DICOM); one-line errors."""
    source = ""
    if isinstance(mask, (str, Path)):
        path = Path(mask)
        source = str(path)
        if not path.exists():
            raise MedscanError(path, "mask file not found")
        if path.suffix.lower() == ".npy":
            try:
                array = np.load(path)
            except (OSError, ValueError) as exc:
                raise MedscanError(path, f"unreadable mask ({exc})") from None
        else:
            from medscan.io import load

            array = load(path).voxels
    else:
        array = np.asarray(mask)
    label = source or "mask"
    array = np.squeeze(np.asarray(array))
    if array.shape != (GRID, GRID):
        raise MedscanError(label, f"mask is {'x'.join(map(str, array.shape)) or 'a scalar'}, expected one "
                                  f"{GRID}x{GRID} slice (the class grid)")
    array = array > 0.5 if array.dtype != bool else array
    if not array.any():
        raise MedscanError(label, "mask is empty (no pixel set)")
    return array.astype(bool), source


def _reference(card: dict, model: str):
    """The training-slice reference and the calibrated thresholds; refuses an uncalibrated model."""
    from medscan.nets.weights import models_dir, sha256_of

    calibration = card.get("memorisation")
    if not calibration or "thresholds" not in calibration:
        raise MedscanError(model, "model card has no memorisation calibration (run scripts/evaluate_synth.py "
                                  "--cards); synthetic slices are not released unchecked")
    path = models_dir() / calibration["reference"]
    if not path.exists():
        raise MedscanError(path, "memorisation reference missing")
    if sha256_of(path) != calibration["reference_sha256"]:
        raise MedscanError(path, "memorisation reference does not match the model card's sha256")
    return _cached_reference(str(path)), {int(k): float(v) for k, v in calibration["thresholds"].items()}


_REFERENCES: dict[str, object] = {}


def _cached_reference(path: str):
    from medscan.synth.memorisation import Reference

    if path not in _REFERENCES:
        _REFERENCES[path] = Reference.load(Path(path))
    return _REFERENCES[path]


def synthesize(modality: str, region: str, count: int, seed: int = 0, mask: object = None, steps: int = 25,
               progress: Callable[[int, int], None] | None = None, model: str = DEFAULT_MODEL) -> SynthBatch:
    """``count`` slices of ``modality`` ``region`` (optionally with a lesion where ``mask`` says); see the package
    docstring. Every slice carries its memorisation verdict; export writes only those that pass."""
    import torch

    from medscan.ops.inference import cached_model
    from medscan.synth.memorisation import nearest_training
    from medscan.synth.sampler import ddim_sample

    modality = modality.upper()
    label = class_index(modality, region)
    if label < 0:
        _refuse_class(model, modality, region)
    if not 1 <= int(count) <= MAX_COUNT:
        raise MedscanError(model, f"count must be 1..{MAX_COUNT}, got {count}")
    if not 1 <= int(steps) <= 1000:
        raise MedscanError(model, f"steps must be 1..1000, got {steps}")
    lesion, source = (None, "") if mask is None else load_mask(mask)
    if lesion is not None and CLASSES[label].name != "MR brain":
        raise MedscanError(source or "mask", f"lesion masks are only learned for MR brain, not {modality} {region}")
    net, card = cached_model(model, torch.device("cpu"))  # 25 small steps: the CPU is fast enough
    reference, thresholds = _reference(card, model)
    unit = ddim_sample(net, np.full(int(count), label), seed=int(seed), steps=int(steps), mask=lesion, grid=GRID,
                       progress=progress)
    nn_ssim, nn_index = nearest_training(unit, reference)
    cls = CLASSES[label]
    return SynthBatch(slices=from_unit(unit, modality), modality=cls.modality, region=cls.region, label=label,
                      spacing_mm=pixel_spacing(label), nn_ssim=nn_ssim, nn_index=nn_index,
                      threshold=thresholds[label], seed=int(seed), steps=int(steps), model=model,
                      model_version=str(card.get("version", "1")), model_sha256=str(card.get("sha256", "")),
                      mask=lesion, mask_source=source, units="HU" if modality == "CT" else "")
