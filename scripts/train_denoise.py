"""Train the blind denoiser shipped as models/denoise_unet2d.

    python scripts/train_denoise.py --steps 8000 --workdir runs/denoise   # resumes if interrupted
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from medscan.nets.weights import save_model
from medscan.train.data import HELDOUT_ITEMS, TRAIN_ITEMS
from medscan.train.trainer import TrainConfig, train

NETWORK = {
    "kind": "residual_denoiser",
    "backbone": {"arch": "UNet", "spatial_dims": 2, "in_channels": 2, "out_channels": 1,
                 "channels": [32, 64, 128, 256], "strides": [2, 2, 2], "num_res_units": 2},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("runs/denoise"))
    parser.add_argument("--name", default="denoise_unet2d")
    args = parser.parse_args(argv)
    config = TrainConfig(name=args.name, task="denoise", network=NETWORK, train_items=list(TRAIN_ITEMS),
                         heldout_items=list(HELDOUT_ITEMS), steps=args.steps, batch=args.batch, patch=args.patch,
                         lr=args.lr, threads=args.threads)
    result = train(config, args.workdir)
    card = {
        "name": args.name,
        "version": "1",
        "task": "denoise",
        "description": "Blind 2-D denoiser for CT and MR slices: predicts the noise from the slice and its "
                       "estimated noise level (MAD of diagonal Haar detail); works on slices normalised to "
                       "their 0.5-99.5 percentile window.",
        "network": NETWORK,
        "parameters": result["parameters"],
        "training": {**asdict(config), "command": "python " + " ".join(sys.argv),
                     "seconds": round(result["seconds"]), "final_loss": sum(result["losses"][-100:]) / 100},
        "evaluation": {},
    }
    path = save_model(result["model"], card, args.name)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
