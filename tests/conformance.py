"""dcm2niix regression items: which DICOM input and series each Ref NIfTI belongs to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from medscan.resources import shared_data_dir

DATA = shared_data_dir()
CONFORMANCE = DATA / "conformance"


@dataclass(frozen=True)
class RefItem:
    ref: Path
    source: Path
    series_number: int

    @property
    def name(self) -> str:
        return f"{self.ref.parent.parent.name}/{self.ref.name}"


def reference_items() -> list[RefItem]:
    """Every Ref/*.nii(.gz) with its input folder; the series number ends the file name."""
    items = []
    for ref in sorted(CONFORMANCE.glob("*/Ref/*.nii*")):
        stem = ref.name.split(".nii")[0]
        stem = re.sub(r"_(e\d+|ph|fieldmaphz|real|imaginary)$", "", stem)
        stem = re.sub(r"_(e\d+)$", "", stem)
        number = int(re.findall(r"(\d+)$", stem)[0])
        items.append(RefItem(ref=ref, source=ref.parent.parent / "In", series_number=number))
    return items
