"""Background jobs: every slow call (listing a folder, loading, exporting, later inference) runs in
a QThreadPool worker so the window never freezes.

A job is a plain function ``fn(ctx, *args)``; ``ctx.report(done, total, text)`` publishes progress
and ``ctx.check()`` raises :class:`JobCancelled` once the user pressed cancel. Cancelling is
immediate for the user: the job's ``cancelled`` and ``finished`` signals fire at once and whatever
the worker returns later is dropped. (Engine calls that cannot be interrupted keep their thread
until they return; their result is simply discarded.)

Errors become one readable line: a :class:`~medscan.scan.MedscanError` is shown as its message,
anything else as ``Type: message``; the traceback goes to the ``medscan.ui`` logger, never to a
dialog.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PyQt6.QtCore import QObject, QRunnable, Qt, QThreadPool, QTimer, pyqtSignal, pyqtSlot
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSizePolicy, QToolButton, QVBoxLayout, QWidget

log = logging.getLogger("medscan.ui")


class JobCancelled(Exception):
    """Raised inside a job by ``ctx.check()`` after the user cancelled it."""


def describe_error(exc: BaseException) -> str:
    """One line a person can read: the MedscanError text, or ``Type: first line``."""
    text = str(exc).strip()
    if type(exc).__name__ == "MedscanError":  # avoid importing the engine just for isinstance
        return text
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class JobContext:
    """What a running job sees: progress reporting and the cancel flag."""

    def __init__(self, job: Job) -> None:
        self._job = job

    @property
    def cancelled(self) -> bool:
        return self._job._cancel_event.is_set()

    def check(self) -> None:
        """Raise JobCancelled if the user cancelled; call it between steps."""
        if self.cancelled:
            raise JobCancelled

    def report(self, done: int, total: int, text: str = "") -> None:
        """Progress: ``done`` of ``total`` steps (total 0 means 'busy, amount unknown')."""
        self._job._progress_from_worker.emit(int(done), int(total), text)

    def publish(self, value: object) -> None:
        """Hand a partial result to the GUI thread (``Job.published``) before the job returns, e.g. a series
        being decoded whose first slice is ready. Dropped once the job has ended."""
        self._job._published_from_worker.emit(value)


class Job(QObject):
    """One unit of background work with progress, cancel and exactly one ending.

    Public signals are emitted in the GUI thread: ``progressed(done, total, text)`` and ``published(value)``
    while it runs, then one of ``succeeded(result)``, ``failed(message)`` or ``cancelled()``, followed by
    ``finished()``.
    """

    progressed = pyqtSignal(int, int, str)
    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str)
    cancelled = pyqtSignal()
    finished = pyqtSignal()
    workerReturned = pyqtSignal()  # the worker thread is free again (may come after a cancel)
    published = pyqtSignal(object)  # a partial result from ctx.publish (never after the job ended)

    # Worker -> GUI thread bridges (queued, since the Job lives in the GUI thread).
    _progress_from_worker = pyqtSignal(int, int, str)
    _done_from_worker = pyqtSignal(str, object)
    _published_from_worker = pyqtSignal(object)

    def __init__(self, title: str, fn: Callable[..., Any], *args: Any, kind: str = "", **kwargs: Any) -> None:
        super().__init__()
        self.title = title
        self.kind = kind
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._cancel_event = threading.Event()
        self._ended = False
        self.worker_done = False
        self.started_at = time.monotonic()
        self.progress: tuple[int, int, str] = (0, 0, "")
        self._progress_from_worker.connect(self._on_progress)
        self._done_from_worker.connect(self._on_done)
        self._published_from_worker.connect(self._on_published)

    @property
    def ended(self) -> bool:
        """True once the job succeeded, failed or was cancelled (as far as the GUI is concerned)."""
        return self._ended

    def cancel(self) -> None:
        """Stop waiting for this job now; the worker is asked to stop at its next check."""
        if self._ended:
            return
        self._cancel_event.set()
        self._end("cancelled", None)

    # -- worker side --------------------------------------------------------------------------
    def run_in_worker(self) -> None:
        ctx = JobContext(self)
        try:
            ctx.check()
            result = self._fn(ctx, *self._args, **self._kwargs)
        except JobCancelled:
            self._done_from_worker.emit("cancelled", None)
        except Exception as exc:
            log.debug("job %r failed", self.title, exc_info=True)
            self._done_from_worker.emit("failed", describe_error(exc))
        else:
            self._done_from_worker.emit("succeeded", result)

    # -- GUI side -----------------------------------------------------------------------------
    @pyqtSlot(int, int, str)
    def _on_progress(self, done: int, total: int, text: str) -> None:
        if not self._ended:
            self.progress = (done, total, text)
            self.progressed.emit(done, total, text)

    @pyqtSlot(object)
    def _on_published(self, value: object) -> None:
        if not self._ended:
            self.published.emit(value)

    @pyqtSlot(str, object)
    def _on_done(self, outcome: str, payload: object) -> None:
        self.worker_done = True
        if outcome == "succeeded" and self._cancel_event.is_set():
            outcome = "cancelled"
        self._end(outcome, payload)
        self.workerReturned.emit()

    def _end(self, outcome: str, payload: object) -> None:
        if self._ended:
            return
        self._ended = True
        if outcome == "succeeded":
            self.succeeded.emit(payload)
        elif outcome == "failed":
            self.failed.emit(str(payload))
        else:
            self.cancelled.emit()
        self.finished.emit()


class _Runnable(QRunnable):
    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job
        self.setAutoDelete(True)

    def run(self) -> None:
        self.job.run_in_worker()


class JobManager(QObject):
    """Owns the thread pool and the jobs that are running; tells the GUI when it becomes idle."""

    jobAdded = pyqtSignal(object)
    jobEnded = pyqtSignal(object)
    idle = pyqtSignal()

    def __init__(self, parent: QObject | None = None, max_threads: int | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads or max(4, QThreadPool.globalInstance().maxThreadCount()))
        self._active: list[Job] = []
        self._alive: set[Job] = set()  # kept until the worker returns, even after cancel

    @property
    def active(self) -> list[Job]:
        return list(self._active)

    def submit(self, job: Job) -> Job:
        self._active.append(job)
        self._alive.add(job)
        job.finished.connect(lambda: self._on_finished(job))
        job.workerReturned.connect(lambda: self._alive.discard(job))
        self.jobAdded.emit(job)
        self.pool.start(_Runnable(job))
        return job

    def run(self, title: str, fn: Callable[..., Any], *args: Any, kind: str = "", **kwargs: Any) -> Job:
        """Create and submit a job in one call."""
        return self.submit(Job(title, fn, *args, kind=kind, **kwargs))

    def cancel(self, kind: str | None = None) -> None:
        """Cancel every running job, or those of one kind (e.g. 'load' when another series is chosen)."""
        for job in self.active:
            if kind is None or job.kind == kind:
                job.cancel()

    def shutdown(self, wait_ms: int = 3000) -> None:
        """Cancel everything and give workers a moment to return (used when the window closes)."""
        self.cancel()
        self.pool.clear()
        self.pool.waitForDone(wait_ms)

    def _on_finished(self, job: Job) -> None:
        if job in self._active:
            self._active.remove(job)
            self.jobEnded.emit(job)
            if not self._active:
                self.idle.emit()


class ElidedLabel(QLabel):
    """A one-line label that shortens long text with '…' instead of widening its dock."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = text
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:
        self._full = text
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(self.width(), 40)
        super().setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideMiddle, width))


class JobRow(QWidget):
    """Title, progress bar and cancel button of one running job."""

    def __init__(self, job: Job, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job = job
        self.setObjectName("jobRow")
        self.title = ElidedLabel(job.title)
        self.title.setObjectName("jobTitle")
        self.title.setToolTip(job.title)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy until the job reports an amount
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(8)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("✕")
        self.cancel_button.setObjectName("jobCancel")
        self.cancel_button.setToolTip(f"Cancel: {job.title}")
        self.cancel_button.clicked.connect(job.cancel)
        self.detail = ElidedLabel("")
        self.detail.setObjectName("jobDetail")

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.title, 1)
        top.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.bar)
        layout.addWidget(self.detail)
        job.progressed.connect(self._on_progress)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._timer.start(500)
        self._tick()

    def _on_progress(self, done: int, total: int, text: str) -> None:
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(done)
        self._tick()

    def _tick(self) -> None:
        elapsed = time.monotonic() - self.job.started_at
        done, total, text = self.job.progress
        amount = f"{done}/{total}  " if total > 0 else ""
        self.detail.setText(f"{amount}{text}  {elapsed:.0f} s".strip())


class JobsPanel(QWidget):
    """The list of running jobs (one row each, with cancel); says so when there are none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: dict[Job, JobRow] = {}
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(4, 4, 4, 4)
        self._layout.setSpacing(2)
        self.empty = QLabel("No running jobs")
        self.empty.setObjectName("jobsEmpty")
        self._layout.addWidget(self.empty)
        self._layout.addStretch(1)

    def bind(self, manager: JobManager) -> None:
        manager.jobAdded.connect(self.add_job)
        manager.jobEnded.connect(self.remove_job)

    def add_job(self, job: Job) -> None:
        row = JobRow(job, self)
        self._rows[job] = row
        self._layout.insertWidget(self._layout.count() - 1, row)
        self.empty.hide()

    def remove_job(self, job: Job) -> None:
        row = self._rows.pop(job, None)
        if row is not None:
            row._timer.stop()
            row.setParent(None)
            row.deleteLater()
        self.empty.setVisible(not self._rows)

    def rows(self) -> list[JobRow]:
        return list(self._rows.values())
