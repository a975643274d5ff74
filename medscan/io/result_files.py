"""Writing an operation's result to disk: the scan, and for generated (SYNTHETIC) results what must travel with it.

A SYNTHETIC result is never written alone. Beside the image go its per-voxel uncertainty map and, when only
part of it was generated, a record of that region — so whoever opens the files later can tell measured from
made-up pixels without medscan:

- DICOM folder: ``SYNTHETIC_IM_*.dcm`` (the image series), ``SYNTHETIC_UNCERTAINTY_*.dcm`` (a second derived
  series, same geometry, values = the spread of the model's answers in the image's units) and
  ``SYNTHETIC_SEG_generated_region.dcm`` (a DICOM SEG made with highdicom, segment "Generated region",
  referencing the image series). All three are published in one rename, or nothing is.
- NIfTI: ``<name>_synthetic.nii.gz`` plus ``<name>_synthetic_uncertainty.nii.gz`` and
  ``<name>_synthetic_generated.nii.gz`` (0/1 mask); the SYNTHETIC mark is also in each header's descrip.

Every path written for a synthetic result carries ``synthetic`` in its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from medscan.scan import MedscanError, ProvenanceEntry, Scan

UNCERTAINTY = "uncertainty"
GENERATED = "generated"
SEG_NAME = "SYNTHETIC_SEG_generated_region.dcm"


def synthetic_path(out: str | Path) -> Path:
    """``out`` with ``synthetic`` in its name (``study.nii.gz`` -> ``study_synthetic.nii.gz``) unless already there."""
    out = Path(out)
    if "synthetic" in out.name.lower():
        return out
    name = out.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return out.with_name(f"{name[:-len(suffix)]}_synthetic{name[-len(suffix):]}")
    return out.with_name(f"{name}_synthetic")


def companion_path(main: Path, what: str) -> Path:
    """``x_synthetic.nii.gz`` -> ``x_synthetic_<what>.nii.gz``."""
    name = main.name
    suffix = ".nii.gz" if name.lower().endswith(".nii.gz") else ".nii"
    return main.with_name(f"{name[:-len(suffix)]}_{what}{name[-len(suffix):]}")


def save_result(scan: Scan, maps: Mapping[str, np.ndarray], out: str | Path) -> list[Path]:
    """Write ``scan`` (and, when synthetic, its companions) to ``out``; returns the paths, the image first."""
    from medscan.io import save
    from medscan.io.nifti import is_nifti, write_nifti

    if not scan.synthetic:
        return [save(scan, out)]
    out = synthetic_path(out)
    if UNCERTAINTY not in maps:  # a reopened synthetic file: its companions were written with it
        return [save(scan, out)]
    uncertainty = _map_scan(scan, maps[UNCERTAINTY], "uncertainty", "spread over test-time augmentations")
    generated = maps.get(GENERATED)
    if is_nifti(out):
        return _save_nifti(scan, uncertainty, generated, out, write_nifti)
    return [_save_dicom(scan, uncertainty, generated, out)]


def _map_scan(scan: Scan, values: np.ndarray, what: str, how: str) -> Scan:
    values = np.asarray(values, np.float32)
    if values.shape != scan.voxels.shape:
        raise MedscanError(scan.source_path or scan.description,
                           f"{what} map {values.shape} does not match the result {scan.voxels.shape}")
    derived = scan.derive(values, ProvenanceEntry(what, {"of": scan.provenance[-1].operation, "measure": how}))
    derived.description = f"{what.upper()} {scan.description}".strip()
    return derived


def _save_nifti(scan: Scan, uncertainty: Scan, generated: np.ndarray | None, out: Path, write_nifti) -> list[Path]:
    """Companions first, the image last: a failure leaves none of them (the image is what users look for)."""
    pending = [(uncertainty, companion_path(out, "uncertainty"))]
    if generated is not None:
        mask = _map_scan(scan, np.asarray(generated, np.float32), "generated", "1 = generated voxel")
        pending.append((mask, companion_path(out, "generated")))
    for _, path in [*pending, (scan, out)]:
        if path.exists():
            raise MedscanError(path, "already exists; choose a new name")
    written: list[Path] = []
    try:
        for item, path in pending:
            written.append(write_nifti(item, path))
        written.insert(0, write_nifti(scan, out))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def _save_dicom(scan: Scan, uncertainty: Scan, generated: np.ndarray | None, out: Path) -> Path:
    from medscan.io.export import write_derived_series, write_series_files

    def companions(folder: Path, image_files: list[Path]) -> None:
        write_series_files(uncertainty, folder, series_number_offset=2000, description_prefix="medscan",
                           file_prefix="SYNTHETIC_UNCERTAINTY", label=out)
        if generated is not None:
            write_generated_seg(image_files, scan, np.asarray(generated, bool), folder / SEG_NAME)

    return write_derived_series(scan, out, extra=companions)


def write_generated_seg(image_files: list[Path], scan: Scan, generated: np.ndarray, path: Path) -> Path:
    """A binary DICOM SEG of the generated voxels over the series just written (one frame per image)."""
    import highdicom as hd
    import pydicom

    from medscan import __version__
    from medscan.io.seg_sr import segment_description, write_seg

    sources = [pydicom.dcmread(f) for f in image_files]
    frames = generated.reshape(-1, *generated.shape[-2:]).astype(np.uint8)  # same order as the files
    if len(frames) != len(sources):
        raise MedscanError(path, f"{len(frames)} mask planes for {len(sources)} images")
    last = scan.provenance[-1]
    description = segment_description(
        1, "Generated region",
        # No standard code names "voxels a model generated"; a private coding scheme (99 prefix) does.
        hd.sr.CodedConcept("GEN", "99MEDSCAN", "Synthetic content"),
        hd.sr.CodedConcept("GENREGION", "99MEDSCAN", "Generated region"),
        "AUTOMATIC", f"medscan {last.operation}", str(last.model_version or __version__),
        family=hd.sr.CodedConcept("IMAGEPROCESSING", "99MEDSCAN", "Image processing"))
    write_seg(sources, frames, [description], path,
              series_description=f"SYNTHETIC generated region ({last.operation})", series_number_offset=500)
    return path
