"""Train the sharpen and super-resolve models shipped in models/ (one preset per model).

    python scripts/train_restore.py sr_x2 --steps 2000 --workdir runs/sr_x2     # resumes if interrupted
    python scripts/train_restore.py sharpen --export-checkpoint --workdir runs/sharpen  # ship the latest checkpoint

Presets: ``sharpen`` (blind Gaussian-PSF deblurring), ``sr_x2`` / ``sr_x4`` (in-plane area down-sampling),
``sr_z2`` (through-plane x2: box average of row pairs in reformatted views, i.e. thick slices),
``inpaint`` (2.5-D masked U-Net filling holes), ``fill_slices_flow`` (missing slices along optical flow) and
``motion`` (MR motion-artefact correction).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import medscan.train.task_inpaint  # noqa: F401  (registers the inpaint and fill_slices_flow tasks)
from medscan.nets.slice_flow import IN_CHANNELS as FLOW_IN_CHANNELS
from medscan.train.data import DENOISE_TRAIN_ITEMS, HELDOUT_ITEMS, TRAIN_ITEMS
from medscan.train.runs import add_export_checkpoint, from_checkpoint, load_run_config, ship, training_command
from medscan.train.task_motion import MR_HELDOUT_ITEMS, MR_TRAIN_ITEMS
from medscan.train.trainer import TrainConfig, fine_tune_record, shipped_model, train

MOTION_BANDS = [0.0, 0.02, 0.04, 0.08, 0.15, 0.25, 0.4, 0.6, 1.0]  # |ky| / (H/2) band edges


def _net(scale: list[int], base: str, features: int, blocks: int, unshuffle: int = 1,
         conditioned: bool = False) -> dict[str, Any]:
    return {"kind": "residual_upsampler", "args": {"scale": scale, "base": base, "features": features,
                                                   "blocks": blocks, "unshuffle": unshuffle,
                                                   "conditioned": conditioned}}


def _fill_unet(in_channels: int, norm: str | None = "INSTANCE") -> dict[str, Any]:
    """The masked U-Net of the filling models: 4 poolings (16x) so a hole a third of the patch wide is seen whole.

    Without normalisation (``norm=None``) the correction keeps the image's contrast scale, which instance norm
    throws away; the missing-slice model learned nothing beyond linear interpolation with it.
    """
    return {"kind": "plain", "backbone": {"arch": "UNet", "spatial_dims": 2, "in_channels": in_channels,
                                          "out_channels": 1, "channels": [16, 32, 64, 128, 128],
                                          "strides": [2, 2, 2, 2], "num_res_units": 1, "norm": norm}}


PRESETS: dict[str, dict[str, Any]] = {
    "sharpen": {"model": "sharpen_edsr2d", "task": "sharpen", "task_args": {},
                "network": _net([1, 1], "identity", 32, 6, unshuffle=2, conditioned=True), "patch": 64,
                "description": "2-D deblurring for CT and MR slices: a residual network over the blurred slice, "
                               "told the Gaussian PSF sigma (px) when known, 0 for blind use (a quarter of the "
                               "training batches); trained on PSF sigma 0.5-2.5 px plus 0-2 % Gaussian noise."},
    "sr_x2": {"model": "superres_x2", "task": "super_resolve", "task_args": {"scale": 2, "axis": "in-plane"},
              "network": _net([2, 2], "bicubic", 32, 6), "patch": 64,
              "description": "In-plane x2 super-resolution: bicubic plus a learned residual, trained on 2x2 "
                             "area-averaged slices (what a coarser matrix measures)."},
    "sr_x4": {"model": "superres_x4", "task": "super_resolve", "task_args": {"scale": 4, "axis": "in-plane"},
              "network": _net([4, 4], "bicubic", 32, 6), "patch": 96,
              "description": "In-plane x4 super-resolution: bicubic plus a learned residual, trained on 4x4 "
                             "area-averaged slices."},
    "sr_z2": {"model": "superres_z2", "task": "super_resolve", "task_args": {"scale": 2, "axis": "through-plane"},
              "network": _net([2, 1], "linear", 32, 6), "patch": 48,
              "description": "Through-plane x2 super-resolution for thick-slice series: run on reformatted "
                             "views (rows = slice direction); linear interpolation plus a learned residual, "
                             "trained on row pairs box-averaged like a slice profile twice as thick."},
    "inpaint": {"model": "inpaint_unet2d", "task": "inpaint", "task_args": {}, "neighbours": 1,
                "network": _fill_unet(6), "patch": 96,
                # every training-side volume (single-slice CT files have no neighbours and add nothing here)
                "train_items": DENOISE_TRAIN_ITEMS,
                "description": "2.5-D inpainting of missing regions: the slice and its two neighbours, each with "
                               "the hole pre-filled by a push-pull pyramid and its own mask channel, into a "
                               "U-Net that corrects the fill; only masked pixels are replaced. Trained on seeded "
                               "blobs, ellipses, boxes, strokes and truncated-FOV edges of 8-35 % of the patch, "
                               "extruded to the neighbours half of the time (then it works as pure 2-D)."},
    "fill_slices_flow": {"model": "fillslices_flow2d", "task": "fill_slices_flow", "task_args": {},
                         "neighbours": 2, "network": _fill_unet(FLOW_IN_CHANNELS, norm=None), "patch": 112,
                         "description": "Missing-slice filling along optical flow: the measured slices either "
                                        "side are warped to the missing slice's depth by Farneback flow "
                                        "(OpenCV), and a U-Net sees both warped slices, the measured ones and "
                                        "the depth and corrects their blend; measured slices are copied. "
                                        "Trained on one- and three-slice gaps (the missing slice in the middle "
                                        "or at a third) cut from all three views of each training volume."},
    "motion": {"model": "motion_unet2d", "task": "motion_correct", "task_args": {}, "patch": 192,
               "network": {"kind": "residual_corrector", "args": {"bands": MOTION_BANDS},
                           "backbone": {"arch": "UNet", "spatial_dims": 2, "in_channels": len(MOTION_BANDS) - 1,
                                        "out_channels": 1,
                                        "channels": [16, 32, 64, 128, 128], "strides": [2, 2, 2, 2],
                                        "num_res_units": 2}},
               "train_items": MR_TRAIN_ITEMS, "heldout_items": MR_HELDOUT_ITEMS,
               "description": "MR motion-artefact correction: a MONAI UNet that sees the slice split into 8 "
                              "band-pass images along the phase-encoding axis (k-space |ky| bands) and whose "
                              "output, scaled by a gain that starts at 0 (a fresh model is the identity), is "
                              "added to the corrupted slice; "
                              "trained on MR slices only with k-space rigid motion and periodic ghosting "
                              "(medscan.degrade.motion, mild/moderate/severe, amplitudes x0.3-1, 10 % still) "
                              "simulated along the phase-encoding axis -2 (rows; ghosts run vertically)."},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, help="patch size (default: the preset's)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--init-from", metavar="MODEL", type=shipped_model,
                        help="start from this shipped model's weights (fine-tune)")
    parser.add_argument("--version", default="1", help="version written into the model card")
    parser.add_argument("--flat-skip", type=float, default=0.9, help="share of empty-air patches redrawn")
    parser.add_argument("--task-args", type=json.loads, default={}, metavar="JSON",
                        help='added to the preset\'s task arguments, e.g. \'{"loss": "mse"}\'')
    add_export_checkpoint(parser)
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    task_args = {**preset["task_args"], **args.task_args}
    workdir = args.workdir or Path("runs") / args.preset
    config = TrainConfig(name=preset["model"], task=preset["task"], network=preset["network"],
                         train_items=list(preset.get("train_items", TRAIN_ITEMS)),
                         heldout_items=list(preset.get("heldout_items", HELDOUT_ITEMS)), steps=args.steps,
                         batch=args.batch, patch=args.patch or preset["patch"], lr=args.lr, seed=args.seed,
                         threads=args.threads, checkpoint_every=100, task_args=task_args,
                         neighbours=preset.get("neighbours", 0), init_from=args.init_from,
                         flat_skip=args.flat_skip)
    if args.export_checkpoint:  # the run's own config, not this command line's defaults
        config = load_run_config(workdir, TrainConfig)
    # The starting weights' card is read before training: a run beside this one may ship over that name first.
    base = fine_tune_record(config.init_from) if config.init_from else None
    result = from_checkpoint(workdir, TrainConfig) if args.export_checkpoint else train(config, workdir)
    training = {**asdict(config), "command": training_command(),
                "steps_completed": result["steps"], "seconds": round(result["seconds"]),
                "final_loss": result["final_loss"], "device": "cpu"}
    if base is not None:  # the card must still say where the starting weights came from once they are replaced
        training["fine_tuned_from"] = base
    card = {
        "name": preset["model"],
        "version": args.version,
        "task": preset["task"],
        "task_args": config.task_args,
        "description": preset["description"] + " Slices are normalised to their 0.5-99.5 percentile window and "
                                               "written back in the input's units.",
        "network": config.network,
        "parameters": result["parameters"],
        "training": training,
        "evaluation": {},
    }
    path = ship(result["model"], card, preset["model"], workdir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
