"""Motion-artefact correction for MR: k-space motion (medscan.degrade.motion) in, the still slice out.

MR only: CT has no k-space acquisition and its motion looks nothing like phase-encoding ghosts. The model is
direction-specific: the simulated phase-encoding axis is always -2 (ghosts run vertically), so inference
turns each slice until its phase-encoding axis is there. Anatomy still appears in every orientation, because
the slice bank turns and flips the clean patches before the motion is simulated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medscan.degrade.motion import SEVERITIES, add_motion
from medscan.nets.residual import apply_model
from medscan.train.data import DENOISE_TRAIN_ITEMS, HELDOUT_ITEMS
from medscan.train.tasks import TASKS, pixel_loss

# MR subjects of the shared split: every MR volume of the training side (the 1.5 mm MPRAGE, the averaged T1 and
# the MS patient 07 included); held out mr03 and paired/brain_tcga_fg_6692 as for every model (the MS patient 19
# is kept out too, as in the denoiser's split).
MR_TRAIN_ITEMS = tuple(i for i in DENOISE_TRAIN_ITEMS if i.split("/")[-1].startswith("mr") or i.startswith("paired/"))
MR_HELDOUT_ITEMS = tuple(i for i in HELDOUT_ITEMS if "/mr" in i or i.startswith("paired/"))
CLEAN_RANGE = (0.0, 2.0)  # magnitude images are non-negative; cap stray pixels of near-empty windows
BODY_LEVEL = 0.08  # clean intensity (of the 0.5-99.5 % window) above which a pixel is anatomy, not background


class MotionCorrectTask:
    """Blind motion correction over all three severities, each slice's amplitudes scaled by a random factor.

    A ``still_fraction`` of the batch has no motion at all, so the model learns to leave a clean slice alone.
    The network predicts the correction (residual) added to the corrupted slice.
    """

    def __init__(self, scale_range: tuple[float, float] = (0.3, 1.0), still_fraction: float = 0.1,
                 loss: str = "l1", body_weight: float = 1.0) -> None:
        """``body_weight`` > 1 weights the loss inside the anatomy that much above the background: ghosts in
        the empty background are easy to remove and dominate an unweighted loss, while the reader looks at the
        anatomy, where a ghost overlaps tissue."""
        self.scale_range = scale_range
        self.still_fraction = still_fraction
        self.loss_kind = loss
        self.body_weight = float(body_weight)

    def make_batch(
        self, clean: torch.Tensor, generator: torch.Generator
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Corrupt each clean slice with simulated k-space motion of a random severity (a share stays still,
        so the model learns to leave clean slices alone).

        Args:
            clean: ``(N, 1, H, W)`` clean MR slices, normalised.
            generator: the seeded torch generator.


        Returns:
            ``(inputs, target)``: the model's inputs as a tuple and the clean target it should produce.
        """
        clean = clean.clamp(*CLEAN_RANGE)
        n = clean.shape[0]
        names = list(SEVERITIES)
        kinds = torch.randint(0, len(names), (n,), generator=generator)
        scale = torch.empty(n).uniform_(*self.scale_range, generator=generator)
        still = torch.rand(n, generator=generator) < self.still_fraction
        corrupted = clean.clone()
        for i in range(n):
            if not still[i]:
                corrupted[i:i + 1] = add_motion(clean[i:i + 1], names[int(kinds[i])], generator, scale[i:i + 1])
        return (corrupted,), clean

    @staticmethod
    def predict(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The model's corrected slices."""
        return apply_model(model, inputs[0])

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The pixel loss the task was configured with (``l1`` or ``mse``), weighted ``body_weight`` inside the
        anatomy (clean pixels above ``BODY_LEVEL``, grown by 2 pixels so edges count as anatomy)."""
        if self.body_weight == 1.0:
            return pixel_loss(self.loss_kind, prediction, target)
        body = F.max_pool2d((target > BODY_LEVEL).to(target.dtype), 5, stride=1, padding=2)
        weight = 1.0 + (self.body_weight - 1.0) * body
        error = (prediction - target) ** 2 if self.loss_kind == "mse" else (prediction - target).abs()
        return (weight * error).sum() / weight.sum()


TASKS["motion_correct"] = MotionCorrectTask
