"""Training tasks of the two filling models: missing regions (inpainting) and missing slices.

Importing this module adds ``TASKS["inpaint"]`` and ``TASKS["fill_slices_flow"]``. Inpainting hides part of a
clean patch with a seeded mask from ``medscan.degrade.masks``, lets ``masked_fill`` fill it (classical fill plus
the network's correction, measured pixels copied) and scores the mean absolute error over the generated pixels
only, since the measured ones are exact by construction. The missing-slice task hides the centre of a stack of
five slices and fills it from two of the others along their optical flow.
"""

from __future__ import annotations

import numpy as np
import torch

from medscan.degrade.masks import region_mask, slab_extent
from medscan.nets.inpainter import masked_fill
from medscan.train.tasks import CLEAN_RANGE, TASKS


def _numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """Masks are drawn with numpy (scipy shapes); seeded from the trainer's torch stream so runs repeat."""
    return np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the masked pixels (each image weighted by its own hole size)."""
    error = (prediction - target).abs() * mask
    return (error.sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp(min=1)).mean()


class InpaintTask:
    """A hole of 8-35 % of the patch in the centre slice, extruded to a random number of neighbours.

    ``clean`` arrives as (N, 2k+1, H, W) stacks (SliceBank neighbours=k). With ``slab_probability`` the
    hole also covers one or both neighbours, so the model learns pure 2-D filling as well as copying
    anatomy from intact neighbours.
    """

    def __init__(self, area: tuple[float, float] = (0.08, 0.35), slab_probability: float = 0.5,
                 noise: float = 0.0) -> None:
        self.area, self.slab_probability, self.noise = tuple(area), slab_probability, noise

    def make_batch(
        self, clean: torch.Tensor, generator: torch.Generator
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Cut a random hole (blob, ellipse, box, stroke or cut field of view) into each clean stack, on the centre
        slice and, at random, its neighbours.

        Args:
            clean: ``(N, C, H, W)`` clean slice stacks (the centre slice and its neighbours), normalised.
            generator: the seeded torch generator (the holes are drawn from it).


        Returns:
            ``(inputs, target)``: the model's inputs as a tuple and the clean target it should produce.
        """
        clean = clean.clamp(*CLEAN_RANGE)
        n, channels, h, w = clean.shape
        k = channels // 2
        rng = _numpy_rng(generator)
        masks = np.zeros((n, channels, h, w), bool)
        for i in range(n):
            hole = region_mask((h, w), rng, self.area)
            masks[i, slab_extent(rng, k, self.slab_probability)] = hole
        mask = torch.from_numpy(masks)
        return (clean.masked_fill(mask, 0.0), mask), clean[:, k:k + 1]

    @staticmethod
    def predict(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The model's fill: measured pixels of the centre slice copied, masked ones generated."""
        image, mask = inputs
        return masked_fill(model, image, mask)

    @staticmethod
    def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """L1 over the generated pixels, scaled by the share of the image they cover."""
        # Measured pixels are copied, so their error is exactly 0: the mean over generated pixels is the
        # total error divided by how many differ from a copy; scale by the image's generated share instead.
        return masked_l1(prediction, target, (prediction != target).float())


class FlowSlicesTask:
    """A slice between two measured ones, filled along their optical flow (``medscan.nets.slice_flow``).

    ``clean`` arrives as (N, 5, H, W) stacks (SliceBank neighbours=2): the centre is the missing slice, and the
    measured pair is drawn from the others, so the gap is one or three slices wide and the missing slice sits
    in its middle or at a third (2-3-slice gaps). Stacks come from all three views of each volume, so the
    slice step runs from one in-plane pixel to 14 mm (twice the 7 mm head CT).
    """

    PAIRS = ((1, 3), (0, 4), (1, 4), (0, 3))  # (before, after) around the centre, index 2
    WEIGHTS = (0.4, 0.3, 0.15, 0.15)

    def make_batch(
        self, clean: torch.Tensor, generator: torch.Generator
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Remove one or more slices from each clean stack and build the flow-based estimates from the measured
        slices either side.

        Args:
            clean: ``(N, C, H, W)`` clean stacks of neighbouring slices, normalised.
            generator: the seeded torch generator.


        Returns:
            ``(inputs, target)``: the model's inputs as a tuple and the clean target it should produce.
        """
        from medscan.nets.slice_flow import flow_estimates

        clean = clean.clamp(*CLEAN_RANGE)
        rng = _numpy_rng(generator)
        stacks = clean.numpy()
        n = len(stacks)
        pairs = [self.PAIRS[int(rng.choice(len(self.PAIRS), p=self.WEIGHTS))] for _ in range(n)]
        depth = np.array([(2 - b) / (a - b) for b, a in pairs], np.float32)
        estimates = np.stack([flow_estimates(stacks[i, b], stacks[i, a], float(depth[i]))
                              for i, (b, a) in enumerate(pairs)])
        before = torch.stack([clean[i, b:b + 1] for i, (b, _) in enumerate(pairs)])
        after = torch.stack([clean[i, a:a + 1] for i, (_, a) in enumerate(pairs)])
        return (before, after, torch.from_numpy(estimates), torch.from_numpy(depth)), clean[:, 2:3]

    @staticmethod
    def predict(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The model's missing slice from the two measured neighbours, their flow estimates and the depth."""
        from medscan.nets.slice_flow import flow_fill

        return flow_fill(model, *inputs)

    @staticmethod
    def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean absolute error."""
        return (prediction - target).abs().mean()


TASKS.update({"inpaint": InpaintTask, "fill_slices_flow": FlowSlicesTask})
