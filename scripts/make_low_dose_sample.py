"""Make the README demo's noisy sample: a simulated low-dose version of samples/ct_abdomen_siemens.

    python scripts/make_low_dose_sample.py            # writes samples/ct_abdomen_siemens_low_dose/

Every slice of the bundled full-dose CT gets projection-domain low-dose noise (``medscan.degrade.low_dose_ct``:
standard kernel, exposure control set for TARGET_HU of soft-tissue noise, a fixed seed per slice), and the result
is written as a derived DICOM series (JPEG 2000 lossless, like its source), whose provenance names the simulation.
Needs the ``dev`` extra (scikit-image). The sample's licence and attribution are in samples/ATTRIBUTION.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import JPEG2000Lossless

from medscan import __version__
from medscan.degrade.low_dose_ct import simulate_low_dose
from medscan.io import load
from medscan.io.export import write_derived_series
from medscan.scan import ProvenanceEntry

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "samples" / "ct_abdomen_siemens"
TARGET_HU = 40.0
KERNEL = "standard"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "samples" / "ct_abdomen_siemens_low_dose")
    args = parser.parse_args(argv)
    scan = load(SOURCE)
    pixel_mm = float(scan.spacing[0])
    noisy = np.empty_like(scan.voxels)
    for k, plane in enumerate(scan.voxels):
        clean = np.clip(plane, -1024, None)
        noisy[k], _ = simulate_low_dose(clean, pixel_mm, TARGET_HU, KERNEL, np.random.default_rng([2026, k]))
        print(f"slice {k + 1}/{len(scan.voxels)}", flush=True)
    entry = ProvenanceEntry("simulate_low_dose_ct", {"target_soft_tissue_sd_hu": TARGET_HU, "kernel": KERNEL,
                                                     "seed": 2026}, software=f"medscan {__version__}")
    # Whole HU, as a scanner stores them (the derived series would otherwise rescale to keep fractions).
    derived = scan.derive(np.round(noisy), entry)
    derived.description = "low-dose simulation"
    write_derived_series(derived, args.out, description_prefix="medscan")
    for path in sorted(args.out.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.compress(JPEG2000Lossless)
        ds.save_as(path, enforce_file_format=True)
    size = sum(p.stat().st_size for p in args.out.glob("*.dcm"))
    print(f"wrote {args.out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
