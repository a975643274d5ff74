"""Conditional contrast-translation generator (pix2pix-style U-Net) for skull-stripped brain MR.

One network covers every trained direction: the input is the normalised source slice plus constant one-hot
channels naming the source and the target contrast, so the same weights learn T1->T2, T1->FLAIR, T2->T1 and
T1c<->T1 and share their anatomy features. Normalisation is
either none or batch norm, never instance/group norm: the network is trained on crops and run on whole slices,
and per-image statistics over a whole (mostly background) slice differ from a crop's, which shifted the output of
the learned segmenters (see ``medscan.annotate.learned.predict_planes``); batch norm uses its running statistics
at inference, so a pixel's output does not depend on how much background surrounds it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONTRASTS: tuple[str, ...] = ("T1", "T1c", "T2", "FLAIR")


def _block(cin: int, cout: int, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(2):
        layers.append(nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class TranslatorUNet(nn.Module):
    """U-Net: ``levels`` stride-2 stages of ``features * 2**k`` channels, bilinear up-sampling with skips.

    forward(image (B,1,H,W), source (B,) long, target (B,) long) -> (B,1,H,W) target contrast on the same
    normalised scale as training (brain 99th percentile = 1). H and W must be multiples of ``pad_multiple``.
    """

    def __init__(self, features: int = 24, levels: int = 3, contrasts: int = len(CONTRASTS), norm: str = "none",
                 prior: bool = False) -> None:
        super().__init__()
        self.prior = bool(prior)
        if norm not in ("none", "batch"):
            raise ValueError(f"norm is 'none' or 'batch', not {norm!r}")
        self.contrasts = int(contrasts)
        self.pad_multiple = 2 ** levels
        widths = [features * 2 ** k for k in range(levels + 1)]
        self.down = nn.ModuleList()
        cin = 1 + 2 * self.contrasts + int(self.prior)
        for width in widths[:-1]:
            self.down.append(_block(cin, width, norm))
            cin = width
        self.pool = nn.ModuleList(nn.Conv2d(w, w, 3, stride=2, padding=1) for w in widths[:-1])
        self.bottom = _block(widths[-2], widths[-1], norm)
        self.up = nn.ModuleList(_block(widths[k + 1] + widths[k], widths[k], norm) for k in reversed(range(levels)))
        self.head = nn.Conv2d(widths[0], 1, 1)
        for module in self.modules():  # He initialisation for leaky ReLU: the signal neither dies nor explodes
            if isinstance(module, nn.Conv2d):  # through the unnormalised depth (PyTorch's default shrinks it)
                nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        if self.prior:  # a residual on the prior starts as exactly the prior
            nn.init.zeros_(self.head.weight)

    def condition(self, image: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The image with its source and target one-hot planes (B, 1 + 2 * contrasts, H, W)."""
        b, _, h, w = image.shape
        onehot = torch.cat([F.one_hot(source, self.contrasts), F.one_hot(target, self.contrasts)], dim=1)
        return torch.cat([image, onehot.to(image.dtype)[:, :, None, None].expand(b, -1, h, w)], dim=1)

    def forward(self, image: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
                prior: torch.Tensor | None = None) -> torch.Tensor:
        """With ``prior`` (the intensity look-up table's answer, (B,1,H,W)) the network predicts a correction to it:
        the table carries the tissue intensities, the network what intensity alone cannot tell (anatomy, lesions)."""
        if self.prior != (prior is not None):
            raise ValueError("this translator was built " + ("with" if self.prior else "without") + " a prior input")
        x = self.condition(image, source, target)
        if prior is not None:
            x = torch.cat([x, prior], dim=1)
        skips = []
        for block, pool in zip(self.down, self.pool, strict=True):
            x = block(x)
            skips.append(x)
            x = F.leaky_relu(pool(x), 0.2)
        x = self.bottom(x)
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x) if prior is None else prior + self.head(x)
