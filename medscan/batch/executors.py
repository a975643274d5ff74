"""Where tasks run: a local process pool (default) or a Dask distributed cluster (``--scheduler``).

Both offer the same three calls to the runner: ``slots`` (how many tasks to keep in flight),
``submit(payload)`` and ``wait(handles, timeout)``. A worker process that dies surfaces as
``WorkerLost`` so the runner can retry the task elsewhere, up to the spec's bound.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from typing import Any

from medscan.batch.worker import execute_task, init_local_worker
from medscan.scan import MedscanError


class WorkerLost(Exception):
    """The process running a task died (killed, out of memory, crashed)."""


class LocalExecutor:
    """A pool of fresh processes ('spawn' everywhere: torch and fork do not mix)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise MedscanError("--workers", "must be at least 1")
        self.slots = workers
        self.threads = max(1, (os.cpu_count() or 1) // workers)
        self.description = f"local pool, {workers} worker(s) x {self.threads} thread(s)"
        self._pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.slots, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=init_local_worker, initargs=(self.threads, os.getpid()))

    def submit(self, payload: dict[str, Any]) -> cf.Future:
        """Start one task on the local process pool.

        Args:
            payload: the task's description (:func:`medscan.batch.worker.execute_task` input).

        Returns:
            Its future. A pool broken by a dead worker is replaced first, so later tasks still run.
        """
        try:
            return self._pool.submit(execute_task, payload)
        except cf.BrokenExecutor:  # a worker died: start a fresh pool for the rest
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(execute_task, payload)

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, dict[str, Any] | Exception]]:
        """Wait up to ``timeout`` seconds for at least one of ``handles`` to finish.

        Returns:
            ``(handle, result)`` for each finished task; the result is the worker's dict, or a :class:`WorkerLost`
            when its process died. Empty when none finished in time.
        """
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        finished = []
        for future in done:
            try:
                finished.append((future, future.result()))
            except cf.BrokenExecutor:
                finished.append((future, WorkerLost("the worker process died")))
        return finished

    def close(self) -> None:
        """Shut the pool down, cancelling tasks not yet started and waiting for running ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Tasks on an existing Dask cluster; each worker process opens the database and models itself."""

    def __init__(self, scheduler: str | Any, slots: int | None = None) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise MedscanError("--scheduler", "Dask is not installed: pip install 'medscan[cluster]'") from None
        if isinstance(scheduler, str):
            try:
                self._client = Client(scheduler, timeout="20s")  # default client: distributed.wait needs one
            except (OSError, TimeoutError) as exc:
                raise MedscanError(scheduler, f"cannot reach the Dask scheduler ({exc})") from None
            self._owned = True
        else:
            self._client, self._owned = scheduler, False
        threads = sum(self._client.nthreads().values())
        if threads == 0:
            raise MedscanError(str(scheduler), "the Dask cluster has no workers")
        self.slots = slots or threads
        self.description = f"Dask cluster {self._client.scheduler.address}, {len(self._client.nthreads())} worker(s)"

    def submit(self, payload: dict[str, Any]) -> Any:
        """Send one task to the Dask cluster under a key unique to (task, attempt), never cached.

        Returns:
            Its Dask future.
        """
        key = f"medscan-task-{payload['task_id']}-a{payload['attempt']}"
        return self._client.submit(execute_task, payload, key=key, pure=False)

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, dict[str, Any] | Exception]]:
        """Wait up to ``timeout`` seconds for at least one of ``handles`` to finish.

        Returns:
            ``(handle, result)`` for each finished task; the result is the worker's dict, or a :class:`WorkerLost`
            when Dask gave the task up (its worker was killed too often). Empty when none finished in time.
        """
        from distributed import wait
        from distributed.scheduler import KilledWorker

        try:
            done, _ = wait(handles, timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return []
        finished = []
        for future in done:
            try:
                finished.append((future, future.result()))
            except KilledWorker:  # Dask already retried it on other workers (allowed-failures)
                finished.append((future, WorkerLost("its Dask workers died")))
            except Exception as exc:
                finished.append((future, WorkerLost(f"Dask: {type(exc).__name__}: {exc}")))
        return finished

    def close(self) -> None:
        """Close the Dask client if this executor opened it (a client passed in stays open)."""
        if self._owned:
            self._client.close()
