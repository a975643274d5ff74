"""Device and precision choice: CUDA when asked or present, bf16 autocast only where the CPU has it."""

from __future__ import annotations

import contextlib

import torch


def pick_device(choice: str = "auto") -> torch.device:
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
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if cpu_has_fast_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
