"""Export a synthetic batch as a SYNTHETIC study: DICOM through medscan's derived-series writer, or NIfTI.

No real header is ever involved: the writer gets a header made here from nothing — PatientName
``SYNTHETIC^PATIENT``, PatientID ``SYNTHETIC``, a fresh StudyInstanceUID and FrameOfReferenceUID from
``pydicom.uid.generate_uid`` — and ``Scan.synthetic`` makes it write SYNTHETIC into SeriesDescription,
DerivationDescription, ImageComments and ImageType (DERIVED\\SECONDARY\\SYNTHETIC), file names ``SYNTHETIC_IM_*``.

The generation parameters (model, version, sha256, seed, class, steps, mask, memorisation threshold and which
slices were kept) are the provenance entry, so they land in DerivationDescription (DICOM) and, for NIfTI, in a
``.json`` sidecar (the NIfTI descrip field holds only 80 characters; it carries the SYNTHETIC mark).

The slices are independent samples; they are stacked as one series 5 mm apart (a viewer can page through them)
and the series description says "independent slices". Memorised slices are never written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from medscan.scan import MedscanError, ProvenanceEntry, Scan
from medscan.synth.api import SynthBatch

SLICE_GAP_MM = 5.0
PATIENT_NAME = "SYNTHETIC^PATIENT"
_BODY_PART = {"brain": "BRAIN", "head": "HEAD", "chest": "CHEST", "abdomen": "ABDOMEN"}


def synthetic_header(batch: SynthBatch) -> Dataset:
    """Patient/study attributes for a study that never had a patient: all invented here, UIDs fresh."""
    ds = Dataset()
    ds.PatientName = PATIENT_NAME
    ds.PatientID = "SYNTHETIC"
    ds.StudyInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    now = dt.datetime.now()
    ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.StudyDescription = f"SYNTHETIC {batch.class_name} (medscan synthesize)"
    ds.StudyID = "SYNTH"
    ds.Manufacturer = "medscan (synthetic image generator)"
    ds.BodyPartExamined = _BODY_PART.get(batch.region, "")
    return ds


def synthetic_scan(batch: SynthBatch) -> Scan:
    """The kept slices as one Scan (LPS axial: columns to the patient's left, rows posterior), provenance set."""
    from medscan import __version__

    keep = np.flatnonzero(batch.passed)
    if keep.size == 0:
        raise MedscanError(batch.model, f"all {len(batch.slices)} generated slices failed the memorisation check "
                                        "(too close to a training slice); nothing written")
    grid = batch.slices.shape[-1]
    s = batch.spacing_mm
    affine = np.diag([s, s, SLICE_GAP_MM, 1.0])
    affine[:2, 3] = -(grid - 1) / 2 * s  # centred on the patient axis
    params = {**batch.parameters(), "kept_slices": ",".join(str(int(i)) for i in keep),
              "refused_memorised": int(batch.memorised.sum())}
    entry = ProvenanceEntry("synthesize", params, model=batch.model, model_version=batch.model_version,
                            software=f"medscan {__version__}")
    return Scan(voxels=batch.slices[keep].astype(np.float32), affine=affine, modality=batch.modality,
                series_number=1, description=f"{batch.class_name} independent slices", header=synthetic_header(batch),
                provenance=[entry], synthetic=True, units=batch.units)


def export_synthetic_study(batch: SynthBatch, outdir: str | Path, fmt: str = "dicom") -> list[Path]:
    """Write the slices that passed the memorisation check into ``outdir`` (must be new or empty); paths written."""
    from medscan.io.export import check_output_folder, write_derived_series
    from medscan.io.nifti import write_nifti

    outdir = Path(outdir)
    if fmt not in ("dicom", "nifti"):
        raise MedscanError(outdir, f"unknown format {fmt!r}; choose dicom or nifti")
    check_output_folder(outdir)
    scan = synthetic_scan(batch)
    if fmt == "dicom":
        folder = write_derived_series(scan, outdir, series_number_offset=0, description_prefix="")
        return sorted(folder.glob("SYNTHETIC_IM_*.dcm"))
    outdir.mkdir(parents=True, exist_ok=True)
    stem = f"synthetic_{batch.modality}_{batch.region}".lower()
    image = write_nifti(scan, outdir / f"{stem}.nii.gz")
    sidecar = outdir / f"{stem}.json"
    record = {"synthetic": True, "patient": PATIENT_NAME, "model": batch.model, "model_version": batch.model_version,
              "model_sha256": batch.model_sha256, **scan.provenance[0].parameters,
              "nearest_training_ssim": [round(float(v), 4) for v in batch.nn_ssim[batch.passed]],
              "units": "HU" if batch.modality == "CT" else "arbitrary (0..1000)",
              "note": "independent synthetic slices stacked 5 mm apart; not acquired from any patient"}
    fd, tmp = tempfile.mkstemp(dir=outdir, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=2)
    os.replace(tmp, sidecar)
    return [Path(image), sidecar]
