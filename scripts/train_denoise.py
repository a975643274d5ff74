"""Train the blind denoiser shipped as models/denoise_unet2d.

    python scripts/train_denoise.py --steps 8000 --workdir runs/denoise   # resumes if interrupted
    python scripts/train_denoise.py --export-checkpoint --workdir runs/denoise  # ship the latest checkpoint
    python scripts/train_denoise.py --init-from denoise_unet2d --loss mse --lr 3e-4 --patch 128 --batch 8 \
        --workdir runs/denoise_v3   # fine-tune the shipped model
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from medscan.train.data import DENOISE_HELDOUT_ITEMS, DENOISE_TRAIN_ITEMS
from medscan.train.runs import add_export_checkpoint, from_checkpoint, load_run_config, ship, training_command
from medscan.train.trainer import TrainConfig, fine_tune_record, shipped_model, train

# Bias-free and without normalisation layers (Mohan et al., ICLR 2020): the network is then
# scale-equivariant, so a slice's window or a study's intensity scale cannot shift its output, and no
# per-patch statistics differ between 64-px training patches and 512-px slices (instance norm did).
NETWORK = {
    "kind": "residual_denoiser",
    "backbone": {"arch": "UNet", "spatial_dims": 2, "in_channels": 3, "out_channels": 1,
                 "channels": [32, 64, 128, 256], "strides": [2, 2, 2], "num_res_units": 2,
                 "norm": None, "bias": False},
}


def _share(text: str) -> float:
    """``argparse`` type of ``--smooth``: a share from 0 to 1, else a one-line usage error before data loads."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a share between 0 and 1, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("runs/denoise"))
    parser.add_argument("--name", default="denoise_unet2d")
    parser.add_argument("--loss", choices=("l1", "mse"), default="l1")
    parser.add_argument("--init-from", metavar="MODEL", type=shipped_model,
                        help="start from this shipped model's weights (fine-tune)")
    parser.add_argument("--flat-skip", type=float, default=0.9, help="share of empty-air patches redrawn")
    parser.add_argument("--balance-items", action="store_true", help="draw every training item equally often")
    parser.add_argument("--smooth", type=_share, default=0.0,
                        help="share of clean patches softened first (soft reconstruction kernels)")
    parser.add_argument("--multicoil", type=_share, default=0.0,
                        help="share of the magnitude-noise samples given multi-coil (non-central chi) noise")
    parser.add_argument("--low-dose-ct", metavar="DIR", help="folder of simulated low-dose CT slices "
                        "(scripts/simulate_low_dose_ct.py) to draw part of each batch from")
    parser.add_argument("--low-dose-share", type=_share, default=0.35,
                        help="share of each batch drawn from --low-dose-ct")
    parser.add_argument("--version", default="3", help="version written into the model card")
    add_export_checkpoint(parser)
    args = parser.parse_args(argv)
    if args.low_dose_ct and not any(Path(args.low_dose_ct).glob("*.npz")):
        parser.error(f"--low-dose-ct {args.low_dose_ct}: no simulated slices there "
                     "(run scripts/simulate_low_dose_ct.py first)")
    config = TrainConfig(name=args.name, task="denoise", network=NETWORK, train_items=list(DENOISE_TRAIN_ITEMS),
                         heldout_items=list(DENOISE_HELDOUT_ITEMS), steps=args.steps, batch=args.batch,
                         patch=args.patch, lr=args.lr, threads=args.threads,
                         task_args={"loss": args.loss, "smooth": args.smooth, "multicoil": args.multicoil},
                         init_from=args.init_from, flat_skip=args.flat_skip, balance_items=args.balance_items,
                         low_dose_ct=args.low_dose_ct, low_dose_share=args.low_dose_share if args.low_dose_ct else 0.0)
    if args.export_checkpoint:  # the run's own config, not this command line's defaults
        config = load_run_config(args.workdir, TrainConfig)
    # The starting weights' card is read before training: a run beside this one may ship over that name first.
    base = fine_tune_record(config.init_from) if config.init_from else None
    result = from_checkpoint(args.workdir, TrainConfig) if args.export_checkpoint else train(config, args.workdir)
    training = {**asdict(config), "command": training_command(),
                "steps_completed": result["steps"], "seconds": round(result["seconds"]),
                "final_loss": result["final_loss"]}
    if base is not None:  # the card must still say where the starting weights came from once they are replaced
        training["fine_tuned_from"] = base
    card = {
        "name": args.name,
        "version": args.version,
        "task": "denoise",
        "description": "Blind 2-D denoiser for CT and MR slices: predicts the noise from the slice and its "
                       "estimated noise level (estimate_noise_sd: the finest-scale MAD, and for CT also the "
                       "spread of the flattest blocks, which holds for correlated noise); works on slices "
                       "normalised to their 0.5-99.5 percentile window.",
        "network": NETWORK,
        "parameters": result["parameters"],
        "training": training,
        "evaluation": {},
    }
    path = ship(result["model"], card, args.name, args.workdir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
