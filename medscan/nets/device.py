"""Device and precision choice: CUDA when asked or present, bf16 autocast only where the CPU has it."""

from __future__ import annotations

import contextlib

import torch


def pick_device(choice: str = "auto") -> torch.device:
    """The torch device for a ``--device`` choice.

    Args:
        choice: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.

    Returns:
        The device.

    Raises:
        MedscanError: ``"cuda"`` was asked for and no CUDA GPU is available.
    """
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from medscan.scan import MedscanError

            raise MedscanError("--device cuda", "no CUDA GPU is available here")
        return torch.device("cuda")
    return torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 is faster there; elsewhere it is emulated and slower, so stay in fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def autocast(device: torch.device):
    """The mixed-precision context for inference on ``device``: bfloat16 on CUDA and on CPUs with native bf16
    (AVX512-BF16 or AMX), else a no-op context (fp32), since emulated bf16 is slower.

    Example:
        >>> with autocast(pick_device("cpu")):  # doctest: +SKIP
        ...     out = model(x)
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if cpu_has_fast_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
