"""Terminal helpers the commands share (no medscan imports: every command layer may use them)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def progress_bar(label: str) -> tuple[Any, Callable[[int, int], None]]:
    """A tqdm bar on stderr (silent when stderr is not a terminal) and the ``(done, total)`` callback that moves it;
    close the bar when done."""
    from tqdm import tqdm

    bar = tqdm(desc=label, unit="slice", file=sys.stderr, leave=False, disable=not sys.stderr.isatty())

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, update
