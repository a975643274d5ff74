"""What the status bar and the About box say about the machine, found without slowing start-up.

Importing torch costs seconds, so the device is first guessed from files: the installed torch
build (``torch/version.py`` says whether it was built with CUDA) and the NVIDIA driver's
``/proc/driver/nvidia/gpus/*/information``. Only when both say a GPU may be usable does the window
confirm it with ``torch.cuda`` - in a background job, when the About box (or, later, a model)
needs it. A CPU build of torch is never imported here. No Qt in this module.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@dataclass(frozen=True)
class DeviceGuess:
    """The compute device as far as it is known: ``label`` for the status bar, ``confirmed`` once
    torch itself was asked, ``may_have_cuda`` when asking torch is worth it."""

    label: str
    detail: str
    confirmed: bool
    may_have_cuda: bool


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def torch_cuda_build() -> str | None:
    """The CUDA version torch was built with ('12.4'), None for a CPU build or no torch; read
    from ``torch/version.py`` without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        try:
            return cuda_from_version_file((Path(location) / "version.py").read_text(encoding="utf-8"))
        except OSError:
            continue
    return None


def cuda_from_version_file(text: str) -> str | None:
    """Parse torch/version.py: ``cuda: Optional[str] = '12.4'`` -> '12.4'; ``= None`` -> None."""
    match = re.search(r"^cuda\b[^=\n]*=\s*['\"]([^'\"]+)['\"]", text, flags=re.MULTILINE)
    return match.group(1) if match else None


def nvidia_gpu_names(root: Path = Path("/proc/driver/nvidia/gpus")) -> list[str]:
    """GPU models the NVIDIA driver reports (Linux); empty where there is no driver."""
    names = []
    for info in sorted(root.glob("*/information")):
        try:
            for line in info.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("Model:"):
                    names.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    return names


def guess_device() -> DeviceGuess:
    """The device without importing torch (or from torch when something else already did)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return confirm_device()
    if importlib.util.find_spec("torch") is None:
        return DeviceGuess("CPU", "torch is not installed", True, False)
    cuda = torch_cuda_build()
    if cuda is None:
        return DeviceGuess("CPU", f"torch {package_version('torch')} is a CPU build", True, False)
    gpus = nvidia_gpu_names()
    if sys.platform.startswith("linux") and not gpus:
        return DeviceGuess("CPU", f"torch built for CUDA {cuda}, but no NVIDIA driver is loaded", True, False)
    label = f"CUDA: {gpus[0]}" if gpus else "CPU"
    return DeviceGuess(label, f"torch built for CUDA {cuda}; torch.cuda is asked when a model first runs "
                              "or in Help > About", False, True)


def confirm_device() -> DeviceGuess:
    """Ask torch (imports it: slow the first time, so call it from a worker)."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        count = torch.cuda.device_count()
        extra = f" (+{count - 1} more)" if count > 1 else ""
        return DeviceGuess(f"CUDA: {name}{extra}", f"torch {torch.__version__}, CUDA {torch.version.cuda}",
                           True, True)
    return DeviceGuess("CPU", f"torch {torch.__version__}: CUDA not available", True, False)


def process_memory_bytes() -> int | None:
    """Resident memory of this process, or None where it cannot be read cheaply."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as stream:
            for line in stream:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if sys.platform == "win32":
        return _windows_working_set()
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # peak, the best macOS offers
    except (ImportError, OSError):
        return None


def _windows_working_set() -> int | None:
    import ctypes
    from ctypes import wintypes

    class Counters(ctypes.Structure):
        _fields_ = [
            ("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
            ("PeakWorkingSetSize", ctypes.c_size_t), ("WorkingSetSize", ctypes.c_size_t),
            ("QuotaPeakPagedPoolUsage", ctypes.c_size_t), ("QuotaPagedPoolUsage", ctypes.c_size_t),
            ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t), ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
            ("PagefileUsage", ctypes.c_size_t), ("PeakPagefileUsage", ctypes.c_size_t),
        ]

    counters = Counters()
    counters.cb = ctypes.sizeof(Counters)
    try:
        process = ctypes.windll.kernel32.GetCurrentProcess()  # type: ignore[attr-defined]
        ok = ctypes.windll.psapi.GetProcessMemoryInfo(process, ctypes.byref(counters), counters.cb)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None
    return int(counters.WorkingSetSize) if ok else None


def format_bytes(count: int | None) -> str:
    if count is None:
        return "n/a"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit in ("B", "KiB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def software_versions() -> dict[str, str]:
    """Versions for the About box (Qt's own are added by the Qt code)."""
    import medscan

    return {
        "medscan": medscan.__version__,
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "numpy": package_version("numpy"),
        "pydicom": package_version("pydicom"),
        "nibabel": package_version("nibabel"),
        "torch": package_version("torch"),
        "Platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "CPU cores": str(os.cpu_count() or "?"),
    }
