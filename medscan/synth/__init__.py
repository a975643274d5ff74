"""Synthetic slices from noise: sample, check for memorisation, export as a SYNTHETIC study.

The API the GUI and the CLI call::

    from medscan.synth import synthesize, export_synthetic_study, available_classes

    batch = synthesize("MR", "brain", count=4, seed=0, mask=None, steps=25, progress=None)
    # batch.slices (N, 128, 128) float32: CT in HU, MR in arbitrary units 0..1000
    # batch.nn_ssim[i] / batch.memorised[i]: nearest-training-slice SSIM and the verdict per slice
    paths = export_synthetic_study(batch, "out_folder", fmt="dicom")   # or fmt="nifti"

* ``synthesize(modality, region, count, seed=0, mask=None, steps=25, progress=None, model="synth_diffusion2d")
  -> SynthBatch``: ``modality`` "MR"/"CT", ``region`` as in ``available_classes()``; ``mask`` a 128 x 128 bool
  array or a file (NIfTI/DICOM/.npy, one 128 x 128 slice) marking where a lesion should be (MR brain only);
  ``progress(done, total)`` is called after every denoising step. Slice i of a call starts from the noise of
  seed (``seed``, i): the same call gives the same slices. Refusals (a class the model never saw, a bad mask)
  raise ``MedscanError`` with one line.
* ``export_synthetic_study(batch, outdir, fmt="dicom") -> list[Path]``: writes only the slices that passed the
  memorisation check (``MedscanError`` when none did), as one series of independent slices 5 mm apart: DICOM
  (``SYNTHETIC_IM_*.dcm``, PatientName SYNTHETIC^PATIENT, fresh UIDs, no real header, ImageType
  DERIVED\\SECONDARY\\SYNTHETIC, generation parameters in DerivationDescription) or NIfTI
  (``synthetic_<class>.nii.gz`` + a ``.json`` sidecar with the parameters).
* ``available_classes(model) -> list[tuple[str, str]]``: the (modality, region) pairs the model was trained on.

Models: ``models/synth_diffusion2d`` (the generator, with its memorisation reference and calibrated thresholds in
the card) and ``models/slice_type2d`` (the quality encoder; ``medscan.synth.quality``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medscan.synth.api import SynthBatch, available_classes, synthesize
    from medscan.synth.export import export_synthetic_study

__all__ = ["SynthBatch", "available_classes", "export_synthetic_study", "synthesize"]

# Imported on first use (PEP 562): ``medscan.synth.cli`` registers its flags under this package, and importing
# ``medscan.synth.api`` loads torch through the training data module.
_HOMES = {"SynthBatch": "medscan.synth.api", "available_classes": "medscan.synth.api",
          "synthesize": "medscan.synth.api", "export_synthetic_study": "medscan.synth.export"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'medscan.synth' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
