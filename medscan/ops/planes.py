"""Per-slice work spread over the operation's threads.

The fidelity guard and the noise estimates filter every slice with SciPy, which releases the GIL inside its
filters, so threads run them side by side. The thread budget is torch's (``--threads`` sets it for the whole
operation), or the machine's cores where torch was never imported (``medscan screen``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def thread_budget() -> int:
    """Threads an operation may use: torch's setting when torch is loaded, else the CPU count."""
    torch = sys.modules.get("torch")
    return max(1, torch.get_num_threads() if torch is not None else (os.cpu_count() or 1))


def map_planes(function: Callable[..., T], *planes: Iterable) -> list[T]:
    """``[function(a, b, ...) for a, b, ... in zip(*planes)]``, in order, on up to ``thread_budget()`` threads.

    ``function`` must not share mutable state between calls (each call gets its own slices).
    """
    items = list(zip(*planes, strict=True))
    workers = min(thread_budget(), len(items))
    if workers <= 1:
        return [function(*item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medscan-planes") as pool:
        return list(pool.map(lambda item: function(*item), items))
