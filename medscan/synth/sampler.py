"""Seeded, batchable DDIM sampling of the synthesis model, with a progress callback.

The MONAI schedulers do the diffusion arithmetic; ``monai.inferers.DiffusionInferer`` is not used because its
network call passes neither class labels nor a progress callback, both of which this model needs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

# v-prediction: an epsilon model trained this briefly missed the class's mean brightness at high noise (DDIM then
# drifted to grey noise); predicting v = sqrt(a) eps - sqrt(1 - a) x0 makes the high-noise target the image itself.
SCHEDULE = {"num_train_timesteps": 1000, "schedule": "scaled_linear_beta", "beta_start": 0.0005,
            "beta_end": 0.0195, "clip_sample": True, "prediction_type": "v_prediction"}


@torch.no_grad()
def ddim_sample(model: torch.nn.Module, labels: np.ndarray, seed: int, steps: int = 25,
                mask: np.ndarray | None = None, grid: int = 128, batch: int = 8,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``len(labels)`` slices (N, grid, grid) in the model's [-1, 1].

    Slice ``i`` starts from the noise of ``numpy`` seed ``(seed, i)``, so a slice does not depend on the batch size
    or on how many others are drawn with it. ``mask`` (grid, grid) bool applies to every slice. ``progress(done,
    total)`` is called after every denoising step of every batch (total = batches x steps).
    """
    from monai.networks.schedulers import DDIMScheduler

    count = len(labels)
    noise = np.stack([np.random.default_rng([seed, i]).standard_normal((1, grid, grid)) for i in range(count)])
    mask_t = None if mask is None else torch.from_numpy(np.asarray(mask, np.float32))[None, None]
    out = np.empty((count, grid, grid), np.float32)
    batches = list(range(0, count, batch))
    total, done = len(batches) * steps, 0
    for start in batches:
        scheduler = DDIMScheduler(**SCHEDULE)
        scheduler.set_timesteps(steps)
        image = torch.from_numpy(noise[start:start + batch].astype(np.float32))
        label = torch.as_tensor(np.asarray(labels[start:start + batch]), dtype=torch.long)
        m = None if mask_t is None else mask_t.expand(len(image), -1, -1, -1)
        for t in scheduler.timesteps:
            timesteps = torch.full((len(image),), int(t), dtype=torch.long)
            eps = model(image, timesteps, label, m)
            image, _ = scheduler.step(eps, int(t), image)
            done += 1
            if progress is not None:
                progress(done, total)
        out[start:start + len(image)] = image[:, 0].clamp(-1, 1).numpy()
    return out
