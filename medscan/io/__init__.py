"""One obvious entry point: ``load(path)`` for any DICOM file, DICOM folder or NIfTI file."""

from __future__ import annotations

from pathlib import Path

from medscan.io.dicom import FolderListing, SeriesRecord, list_series, load_series, select_series
from medscan.io.nifti import is_nifti, read_nifti, write_nifti
from medscan.scan import MedscanError, Scan

__all__ = ["FolderListing", "SeriesRecord", "list_series", "load", "load_all", "save"]


def load(path: str | Path, series: str | None = None) -> Scan:
    """Load one series: a NIfTI file, or the series of a DICOM file/folder chosen by UID or number."""
    path = Path(path)
    if not path.exists():
        raise MedscanError(path, "no such file or folder")
    if path.is_file() and is_nifti(path):
        return read_nifti(path)
    listing = list_series(path)
    scan = load_series(select_series(listing, path, series))
    if listing.skipped:
        scan.warnings.append(f"skipped {len(listing.skipped)} unreadable file(s), e.g. {listing.skipped[0]}")
    return scan


def load_all(path: str | Path) -> list[Scan]:
    """Every series under a folder (NIfTI: the one volume)."""
    path = Path(path)
    if path.is_file() and is_nifti(path):
        return [read_nifti(path)]
    return [load_series(record) for record in list_series(path).series]


def save(scan: Scan, out: str | Path) -> Path:
    """NIfTI when ``out`` ends in .nii/.nii.gz, otherwise a derived DICOM series in folder ``out``."""
    if is_nifti(out):
        return write_nifti(scan, out)
    from medscan.io.export import write_derived_series

    return write_derived_series(scan, out)
