"""A tiny slice-level classifier whose last convolution keeps a spatial map, so LayerGradCam can explain it."""

from __future__ import annotations

import torch
from torch import nn


class SliceClassifier(nn.Module):
    """Conv blocks (conv-norm-ReLU, max-pool between) -> global average pool -> one logit ("lesion in slice").

    The last block (``cam_layer``) is at 1/2**len(channels) of the input size (16 mm cells at 2 mm pixels for
    three blocks): the Grad-CAM layer.
    """

    def __init__(self, channels: list[int] | tuple[int, ...] = (16, 32, 64), in_channels: int = 1,
                 outputs: int = 1) -> None:
        super().__init__()
        blocks, previous = [], in_channels
        for index, width in enumerate(channels):
            # the first block downsamples with a strided convolution: full-resolution features cost most on CPU
            layers: list[nn.Module] = [nn.MaxPool2d(2)] if index else []
            layers += [nn.Conv2d(previous, width, 3, padding=1, stride=1 if index else 2),
                       nn.InstanceNorm2d(width, affine=True),
                       nn.ReLU(inplace=False), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=False)]
            blocks.append(nn.Sequential(*layers))
            previous = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(previous, outputs)  # outputs > 1: class logits (the synthetic-slice quality encoder)

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolutional block: the layer Grad-CAM reads its activations and gradients from."""
        return self.blocks[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer: globally averaged last-block activations (N, channels[-1])."""
        return self.blocks(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` normalised slices -> ``(N, classes)`` logits."""
        return self.head(self.features(x))
