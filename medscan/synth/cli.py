"""``medscan generate synthesize``: synthetic slices from noise, memorisation-checked, written as a SYNTHETIC study."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medscan.scan import MedscanError


def add_synthesize(family_sub: argparse._SubParsersAction) -> None:
    """The ``synthesize`` entry under ``generate`` (it takes no input PATH, unlike the registry's operations)."""
    parser = family_sub.add_parser(
        "synthesize", help="synthetic slices from noise (diffusion model), marked SYNTHETIC",
        description="Sample synthetic 128x128 slices of one modality + body region (optionally with a lesion where "
                    "--mask says), refuse any slice too close to a training slice, and write the rest as a "
                    "SYNTHETIC study (PatientName SYNTHETIC^PATIENT, fresh UIDs).")
    parser.add_argument("-o", "--output", required=True, help="new (or empty) folder for the study")
    parser.add_argument("--modality", required=True, choices=("MR", "CT"))
    parser.add_argument("--region", required=True, help="body region, e.g. brain, head, chest, abdomen")
    parser.add_argument("--count", type=int, default=4, help="slices to sample (default 4)")
    parser.add_argument("--mask", help="lesion mask: one 128x128 slice (.npy, NIfTI or DICOM); MR brain only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=25, help="DDIM denoising steps (default 25)")
    parser.add_argument("--format", choices=("dicom", "nifti"), default="dicom")
    parser.set_defaults(func=cmd_synthesize, operation_name="synthesize")


def cmd_synthesize(args: argparse.Namespace) -> int:
    """``medscan generate synthesize``: sample slices of one class from the diffusion model, refuse memorised
    ones and export the rest as a SYNTHETIC DICOM study or NIfTI files.

    The output folder and the mask are checked before sampling starts.

    Args:
        args: the parsed command line (modality, region, count, seed, steps, mask, format, output).

    Returns:
        The exit status, 0 on success.
    """
    from medscan.console import progress_bar
    from medscan.io.export import check_output_folder
    from medscan.synth import export_synthetic_study, synthesize

    out = Path(args.output)
    check_output_folder(out)  # refuse before minutes of sampling
    if args.mask and not Path(args.mask).exists():
        raise MedscanError(args.mask, "mask file not found")
    bar, update = progress_bar("synthesize")
    try:
        batch = synthesize(args.modality, args.region, args.count, seed=args.seed, mask=args.mask, steps=args.steps,
                           progress=update)
    finally:
        bar.close()
    refused = int(batch.memorised.sum())
    if refused:
        print(f"medscan: refused {refused} of {len(batch.slices)} slices as memorised (nearest training slice "
              f"SSIM >= {batch.threshold:.3f})", file=sys.stderr)
    written = export_synthetic_study(batch, out, args.format)
    print(f"wrote {len(batch.slices) - refused} SYNTHETIC {batch.class_name} slices to {out} "
          f"({len(written)} files; refused {refused} as memorised)")
    return 0
