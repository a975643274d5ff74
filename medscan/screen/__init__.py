"""Pre-screening: quality triage badges for every series (``medscan screen``, the study browser, the database)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medscan.screen.quality import Badge, screen_record, screen_scan, worst

__all__ = ["Badge", "screen_record", "screen_scan", "worst"]


def __getattr__(name: str) -> Any:
    # On first use (PEP 562): ``medscan.screen.cli`` lives in this package, and the rules load scipy.
    if name not in __all__:
        raise AttributeError(f"module 'medscan.screen' has no attribute {name!r}")
    return getattr(importlib.import_module("medscan.screen.quality"), name)
