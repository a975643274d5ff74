"""The denoiser of the synthesis model: MONAI's DiffusionModelUNet with a class embedding and a mask channel.

One network serves every mode: the class label is a modality+region (``medscan.synth.data.CLASSES``) or the
"none" label (unconditional, dropped at random in training as in classifier-free guidance), and the mask
channels carry a lesion mask (all zeros = no mask), so the same weights sample with or without a lesion.

Why space-to-depth (``unshuffle``): the 128 x 128 slice enters as r x r pixel blocks folded into channels
(shipped: r = 4, 32 x 32 x 16), which cuts the UNet's cost about r*r times on a CPU while the diffusion itself
still runs on every pixel of the full 128 x 128 grid (the noise is independent per pixel; folding changes nothing).
The price: detail inside a 4 x 4 block is modelled by channel mixing only, so fine texture is weaker.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConditionalDenoiser(nn.Module):
    """Predicts the noise in ``noisy`` (N, 1, H, W) at ``timesteps`` given ``labels`` (N,) and ``mask`` (N, 1, H, W)."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 64), attention: tuple[bool, ...] = (False, False, False),
                 res_blocks: int = 1, num_classes: int = 5, head_channels: int = 32, norm_groups: int = 16,
                 unshuffle: int = 2) -> None:
        super().__init__()
        from monai.networks.nets import DiffusionModelUNet

        self.unshuffle = unshuffle
        folded = unshuffle * unshuffle
        self.unet = DiffusionModelUNet(
            spatial_dims=2, in_channels=2 * folded, out_channels=folded, channels=tuple(channels),
            attention_levels=tuple(attention), num_res_blocks=res_blocks, num_head_channels=head_channels,
            norm_num_groups=norm_groups, num_class_embeds=num_classes)

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise in ``noisy`` at diffusion step ``timesteps`` for class ``labels``.

        Args:
            noisy: ``(N, 1, H, W)`` noised slices.
            timesteps: ``(N,)`` diffusion steps.
            labels: ``(N,)`` class labels.
            mask: ``(N, 1, H, W)`` lesion mask (0/1) to condition on; zeros when ``None``.

        Returns:
            ``(N, 1, H, W)`` predicted noise.
        """
        if mask is None:
            mask = torch.zeros_like(noisy)
        x = torch.cat([noisy, mask.to(noisy)], dim=1)
        if self.unshuffle > 1:
            # fold image and mask separately so that channels [0:r*r] are the image blocks
            x = torch.cat([F.pixel_unshuffle(x[:, :1], self.unshuffle), F.pixel_unshuffle(x[:, 1:], self.unshuffle)], 1)
        out = self.unet(x, timesteps=timesteps, class_labels=labels)
        return F.pixel_shuffle(out, self.unshuffle) if self.unshuffle > 1 else out
