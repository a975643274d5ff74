"""``clean adapt``: fine-tune the denoiser on the loaded study itself, then denoise it.

Every scanner and reconstruction kernel has its own noise; the shipped model saw only simulated noise.
Neighbor2Neighbor (Huang et al., CVPR 2021) needs no clean target: two sub-images drawn from
neighbouring pixels of each 2x2 cell see the same anatomy with independent noise, so a network that
maps one to the other learns to remove exactly this study's noise. The fine-tuning is bounded in time
(about a minute on a CPU) and its copy of the model lives only for this result.
"""

from __future__ import annotations

import copy
import time

import numpy as np

from medscan import __version__
from medscan.ops.clean import clean_result, is_rician, scan_planes
from medscan.ops.registry import ProgressCallback, Result
from medscan.scan import MedscanError, ProvenanceEntry, Scan

TRAIN_SHARE = 100  # progress units given to fine-tuning; the planes follow


def _neighbour_pair(x, generator):
    """Two half-resolution sub-images: per 2x2 cell, one random pixel and a random 4-neighbour of it."""
    import torch

    n, _, h, w = x.shape
    first = torch.randint(0, 4, (n, 1, h // 2, w // 2), generator=generator)
    # Positions 0 1 / 2 3 in the cell; the neighbours of p share a row or a column with it.
    neighbours = torch.tensor([[1, 2], [0, 3], [0, 3], [1, 2]])
    second = neighbours[first, torch.randint(0, 2, first.shape, generator=generator)]
    picks = (first, second)
    return (*_subsample(x, picks), picks)


def _subsample(y, picks):
    """The two sub-images that ``picks`` (cell positions 0-3) select from ``y``."""
    import torch

    n, _, h, w = y.shape
    h2, w2 = h // 2, w // 2
    cells = y[..., : 2 * h2, : 2 * w2].reshape(n, 1, h2, 2, w2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, 1, h2, w2, 4)
    return tuple(torch.gather(cells, -1, index.unsqueeze(-1)).squeeze(-1) for index in picks)


def fine_tune(model, planes: np.ndarray, *, seconds: float, rician: bool, device=None, seed: int = 0,
              patch: int = 128, batch: int = 8, lr: float = 5e-5, gamma: float = 1.0,
              progress: ProgressCallback | None = None):
    """A copy of ``model`` fine-tuned on ``planes`` (N, H, W, physical units) for about ``seconds``."""
    import torch

    from medscan.degrade import estimate_sigma
    from medscan.ops.inference import denoise_windows

    device = device or next(model.parameters()).device
    tuned = copy.deepcopy(model).float().to(device).train()
    optimizer = torch.optim.Adam(tuned.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    usable = [p for p in planes if min(p.shape) >= 16 and float(p.std()) > 0]
    if not usable:
        raise MedscanError("adapt", "the study has no plane with signal to learn its noise from")
    normalised = []
    for plane in usable:  # in the window that denoise_planes will use
        (lo, hi), = denoise_windows(plane[None].astype(np.float32), rician)
        normalised.append(((plane - lo) / (hi - lo)).astype(np.float32))
    size = min(patch, *(min(p.shape) for p in normalised)) // 2 * 2
    flag = torch.full((batch,), float(rician), device=device)

    def denoise(x):
        return x - tuned(x, estimate_sigma(x), flag[: len(x)])

    began, steps = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        crops = []
        for _ in range(batch):
            plane = normalised[int(rng.integers(len(normalised)))]
            y0, x0 = (int(rng.integers(d - size + 1)) for d in plane.shape)
            crops.append(plane[y0:y0 + size, x0:x0 + size])
        y = torch.from_numpy(np.stack(crops))[:, None]
        g1, g2, picks = _neighbour_pair(y, generator)
        y, g1, g2, picks = y.to(device), g1.to(device), g2.to(device), tuple(p.to(device) for p in picks)
        with torch.no_grad():
            f1, f2 = _subsample(denoise(y), picks)
        out = denoise(g1)
        loss = ((out - g2) ** 2).mean() + gamma * ((out - g2 - (f1 - f2)) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        if progress is not None:
            progress(min(TRAIN_SHARE, int(TRAIN_SHARE * (time.perf_counter() - began) / seconds)), TRAIN_SHARE)
    return tuned.eval(), steps


def adapt(scan: Scan, *, seconds: float, strength: float, noise: str, model: str, device: str,
          progress: ProgressCallback | None) -> Result:
    """The ``adapt`` operation (Clean): fine-tune the denoiser on this study (Neighbor2Neighbor, self-supervised)
    for ``seconds``, then denoise it with the tuned copy; the shipped weights are not changed.

    Args:
        scan: the series.
        seconds: time spent fine-tuning, 5..600 s.
        strength: share of the estimated noise removed, 0..1.5.
        noise: ``"auto"``, ``"gaussian"`` or ``"rician"``.
        model: the shipped denoiser to start from.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: called as ``progress(done, total)`` after each slice; raising from it cancels the run.

    Returns:
        A :class:`Result` in the input's units and geometry with the method noise and the fidelity report; the
        provenance records the fine-tuning steps.
    """
    from medscan.nets.device import pick_device
    from medscan.ops.inference import cached_model, denoise_planes

    torch_device = pick_device(device)
    network, card = cached_model(model, torch_device)
    planes = scan_planes(scan)
    rician = is_rician(scan, noise)
    total = TRAIN_SHARE + len(planes)
    tuned, steps = fine_tune(network, planes, seconds=seconds, rician=rician, device=torch_device,
                             progress=(lambda d, _t: progress(d, total)) if progress else None)
    cleaned = denoise_planes(planes, tuned, torch_device, strength=strength, rician=rician,
                             progress=(lambda d, _t: progress(TRAIN_SHARE + d, total)) if progress else None)
    entry = ProvenanceEntry("adapt", {"seconds": seconds, "steps": steps, "strength": strength,
                                      "noise": "rician" if rician else "gaussian"},
                            model=model, model_version=f"{card.get('version')}+adapted",
                            software=f"medscan {__version__}")
    return clean_result(scan, cleaned, entry, rician)
