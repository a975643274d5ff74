"""The real-motion figure of the README: motion_correct on a series where the participant turned the head.

    python scripts/figure_motion_real.py            # writes docs/screenshots/motion_real.png

``conformance/dcm_qa/In/Orientation/ax/axasc35`` (Siemens MOSAIC EPI, 2 volumes of 35 ascending axial 64x64
slices, phase encoding COL) is from dcm2niix's QA set: during the second volume the participant rotates the head
violently. The volume-to-volume difference jumps between slices 9 and 14 of the ascending order, i.e. the head
turned while those slices were being acquired; slices 11-13 of volume 2 show the in-slice damage (smeared eyes,
ghosted edges). Each row: the same slice of volume 1 (still, before the turn; not a ground truth, the head is
elsewhere afterwards) | volume 2 as acquired | motion_correct's output | |corrected - acquired| and the
uncertainty map, both shown at 10x (black = 0, white = a tenth of the slice's intensity window).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from medscan.train.data import DATA_ROOT

SERIES = DATA_ROOT / "conformance" / "dcm_qa" / "In" / "Orientation" / "ax" / "axasc35"
SLICES = (11, 12, 13)
ZOOM = 4


def _tile(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = np.clip((np.asarray(image, np.float64) - lo) / (hi - lo), 0, 1)
    return np.kron((scaled * 255).astype(np.uint8), np.ones((ZOOM, ZOOM), np.uint8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/screenshots/motion_real.png"))
    args = parser.parse_args(argv)

    import torch
    from PIL import Image, ImageDraw

    from medscan.io import load
    from medscan.ops import run

    torch.set_num_threads(1)
    scan = load(SERIES)
    result = run("motion_correct", scan, device="cpu")
    before, after = scan.voxels, result.scan.voxels
    uncertainty = result.maps["uncertainty"]
    gap, label_h = 4, 18
    titles = ("volume 1 (still)", "volume 2 as acquired", "motion_correct", "|difference| x10", "uncertainty x10")
    rows = []
    for k in SLICES:
        lo, hi = np.percentile(before[1, k], (0.5, 99.5))
        span = hi - lo
        tiles = [_tile(before[0, k], lo, hi), _tile(before[1, k], lo, hi), _tile(after[1, k], lo, hi),
                 _tile(np.abs(after[1, k] - before[1, k]), 0, span / 10),
                 _tile(uncertainty[1, k], 0, span / 10)]
        size = tiles[0].shape[0]
        row = np.full((size, len(tiles) * (size + gap) - gap), 255, np.uint8)
        for i, tile in enumerate(tiles):
            row[:, i * (size + gap):i * (size + gap) + size] = tile
        rows.append(row)
    width = rows[0].shape[1]
    canvas = np.full((label_h + len(rows) * (rows[0].shape[0] + gap), width), 255, np.uint8)
    for i, row in enumerate(rows):
        top = label_h + i * (row.shape[0] + gap)
        canvas[top:top + row.shape[0]] = row
    image = Image.fromarray(canvas).convert("RGB")
    draw = ImageDraw.Draw(image)
    size = rows[0].shape[0]
    for i, title in enumerate(titles):
        draw.text((i * (size + gap) + 4, 3), title, fill=(0, 0, 0))
    for i, k in enumerate(SLICES):
        draw.text((4, label_h + i * (size + gap) + 4), f"slice {k}", fill=(255, 255, 0))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.output)
    changed = [float(np.abs(after[1, k] - before[1, k]).mean() / (np.percentile(before[1, k], 99.5) + 1e-6))
               for k in SLICES]
    still = float(np.abs(after[0] - before[0]).mean() / (np.percentile(before[0], 99.5) + 1e-6))
    print(f"wrote {args.output}; mean |change| / p99.5: slices {SLICES} of volume 2 "
          f"{', '.join(f'{c:.3f}' for c in changed)}; all of volume 1 {still:.3f}; "
          f"{'; '.join(result.notes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
