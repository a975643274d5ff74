"""Streamed decoding of one DICOM series: the slice a person looks at first, then the rest outward from it.

``SeriesStream`` decodes into the one array the finished Scan will hold (no copy, no float32 made), on its own
threads, file by file in priority order: the middle slice of the first volume, then its neighbours alternately
above and below, then the next volume the same way. ``prioritize(t, k)`` moves a slice to the front of the queue
(a viewer scrolled to a slice not decoded yet). Readers poll ``is_ready`` / ``progress`` or block in ``wait``.

Every file is decoded by the same function as :func:`medscan.io.dicom.load_series`, and the element type is chosen
the same way (int16 where the rescale is exact in int16, else float32, decoded again as float32 if a plane turns
out not to fit), so the finished Scan is bit-identical to ``load_series`` of the same record.
"""

from __future__ import annotations

import heapq
import itertools
import threading

import numpy as np

from medscan.io.dicom import (
    SeriesRecord,
    _cells_by_file,
    _decode_cells,
    _NotInt16,
    decode_workers,
    plan_layout,
    scan_of,
    voxel_dtype,
    voxel_shape,
)
from medscan.scan import Scan

_REQUESTED = -1  # priority class of slices asked for by prioritize(): before any slice in the planned order


def middle_out(count: int, centre: int | None = None) -> list[int]:
    """``0 .. count-1`` ordered by distance from ``centre`` (default ``count // 2``), the lower one first on ties."""
    centre = count // 2 if centre is None else centre
    return sorted(range(count), key=lambda k: (abs(k - centre), k))


class SeriesStream:
    """Decodes ``record`` in the background, middle slice first, into ``voxels`` (shape ``(t, k, rows, columns)``).

    Contract:

    * ``voxels`` holds a decoded plane at ``[t, k]`` once ``is_ready(t, k)``; planes not ready are zero. The array
      may be replaced once (int16 found not to hold a plane exactly: decoding restarts as float32), which bumps
      ``generation`` and clears every ready flag; readers re-read ``voxels`` when ``generation`` changed.
    * Progress only grows within a generation; ``done`` is true once every plane is decoded, an error happened or
      the stream was cancelled. ``result()`` is the finished Scan (raises the decoding error, if any).
    * Thread-safe: any thread may call ``prioritize``, ``is_ready``, ``progress``, ``wait`` and ``cancel``.
    """

    def __init__(self, record: SeriesRecord, *, workers: int | None = None) -> None:
        self.record = record
        self.layout = plan_layout(record)
        self.shape = voxel_shape(record, self.layout)
        n_t, n_k = self.shape[:2]
        self.middle = n_k // 2
        self._by_file = _cells_by_file(self.layout)
        self._file_of = {(t, k): path for path, cells in self._by_file.items() for t, k, _ in cells}
        # Planned order: volume by volume, each middle-out; a file goes where its first plane comes in that order.
        order = {(t, k): rank for rank, (t, k) in enumerate((t, k) for t in range(n_t) for k in middle_out(n_k))}
        self._rank = {path: min(order[t, k] for t, k, _ in cells) for path, cells in self._by_file.items()}
        self._workers = decode_workers(len(self._by_file)) if workers is None else max(1, workers)
        self._cond = threading.Condition()
        self._notes: set[str] = set()
        self._notes_lock = threading.Lock()
        self._requests = itertools.count()
        self._error: BaseException | None = None
        self._cancelled = False
        self._threads: list[threading.Thread] = []
        self.generation = 0
        self._reset(voxel_dtype(record))

    # -- state (called with the condition held, or before the threads start) ---------------------------------
    def _reset(self, dtype: np.dtype) -> None:
        # zeros, not empty: a plane not decoded yet reads as 0 rather than as stale memory (same lazy allocation)
        self.voxels = np.zeros(self.shape, dtype=dtype)
        self._ready = np.zeros(self.shape[:2], dtype=bool)
        self._state = dict.fromkeys(self._by_file, "queued")
        self._heap = [(0, rank, path) for path, rank in self._rank.items()]
        heapq.heapify(self._heap)
        self._done_planes = 0

    @property
    def dtype(self) -> np.dtype:
        """Element type of ``voxels`` now (int16 or float32)."""
        return self.voxels.dtype

    @property
    def total(self) -> int:
        """Planes in the series (``t * k``)."""
        return int(self.shape[0] * self.shape[1])

    def progress(self) -> tuple[int, int]:
        """(planes decoded, planes in the series) in the current generation."""
        with self._cond:
            return self._done_planes, self.total

    @property
    def complete(self) -> bool:
        """Every plane decoded without error."""
        with self._cond:
            return self._done_planes == self.total and self._error is None

    @property
    def done(self) -> bool:
        """Nothing more will be decoded: complete, failed or cancelled."""
        with self._cond:
            return self._finished()

    def _finished(self) -> bool:
        return self._done_planes == self.total or self._error is not None or self._cancelled

    @property
    def error(self) -> BaseException | None:
        """The first decoding error (a MedscanError for a bad file), or None."""
        with self._cond:
            return self._error

    def is_ready(self, t: int, k: int) -> bool:
        """Whether plane ``[t, k]`` of ``voxels`` holds its decoded values."""
        with self._cond:
            return bool(self._ready[t, k])

    def ready_mask(self) -> np.ndarray:
        """A copy of the ``(t, k)`` ready flags."""
        with self._cond:
            return self._ready.copy()

    # -- control ------------------------------------------------------------------------------------------------
    def start(self) -> SeriesStream:
        """Start the decoding threads (once); returns self."""
        if not self._threads:
            self._threads = [threading.Thread(target=self._work, name=f"medscan-stream-{n}", daemon=True)
                             for n in range(self._workers)]
            for thread in self._threads:
                thread.start()
        return self

    def prioritize(self, t: int, k: int) -> None:
        """Decode plane ``[t, k]`` next (before the planned order; the latest request first). No-op once ready."""
        with self._cond:
            path = self._file_of[(t, k)]
            if self._state[path] == "queued":
                heapq.heappush(self._heap, (_REQUESTED, -next(self._requests), path))

    def cancel(self) -> None:
        """Start no more files; threads finish the file in hand and exit."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``done`` (or ``timeout`` seconds); returns ``done``."""
        with self._cond:
            return self._cond.wait_for(self._finished, timeout)

    def wait_ready(self, t: int, k: int, timeout: float | None = None) -> bool:
        """Block until plane ``[t, k]`` is ready or nothing more will be decoded; returns whether it is ready."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._ready[t, k]) or self._finished(), timeout)
            return bool(self._ready[t, k])

    def wait_change(self, seen: int, timeout: float) -> int:
        """Block until more than ``seen`` planes are decoded, or ``done``, or ``timeout``; returns planes decoded."""
        with self._cond:
            self._cond.wait_for(lambda: self._done_planes != seen or self._finished(), timeout)
            return self._done_planes

    def result(self) -> Scan:
        """The finished Scan around ``voxels`` (no copy), warnings as ``load_series`` gives them.

        Raises the decoding error; RuntimeError when the stream was cancelled or is not finished.
        """
        with self._cond:
            if self._error is not None:
                raise self._error
            if self._done_planes != self.total:
                raise RuntimeError("the series is not decoded yet" if not self._cancelled else "decoding was cancelled")
            voxels = self.voxels
        return scan_of(self.record, self.layout, voxels, self._notes)

    def partial_scan(self) -> Scan:
        """A Scan around ``voxels`` as they are now, for display only: planes not ready read as 0.

        Never run an operation or an export on it; read its voxels through ``exact_integers()`` when that is not
        None (reading ``voxels`` would copy the half-filled array to float32).
        """
        with self._cond:
            voxels = self.voxels
        return scan_of(self.record, self.layout, voxels)

    # -- worker threads -------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                path = None
                while self._heap and not (self._cancelled or self._error is not None):
                    _, _, candidate = heapq.heappop(self._heap)
                    if self._state[candidate] == "queued":
                        path = candidate
                        break
                if path is None:
                    return
                self._state[path] = "decoding"
                generation, voxels = self.generation, self.voxels
            cells = self._by_file[path]
            try:
                _decode_cells(voxels, cells, self._notes, self._notes_lock)
            except _NotInt16:
                with self._cond:
                    if generation == self.generation:  # the first to find out switches everyone to float32
                        self.generation += 1
                        self._reset(np.dtype(np.float32))
                        self._cond.notify_all()
                continue
            except BaseException as exc:  # handed to result(), as load_series would raise it
                with self._cond:
                    if self._error is None:
                        self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                if generation != self.generation:  # decoded into the int16 array that was given up: done again
                    continue
                self._state[path] = "done"
                for t, k, _ in cells:
                    self._ready[t, k] = True
                self._done_planes += len(cells)
                self._cond.notify_all()
