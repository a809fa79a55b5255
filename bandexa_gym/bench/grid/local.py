"""The local backends: jobs one after another in this process, or in worker processes.

:class:`ProcessPoolBackend` keeps ``workers`` spawned processes, each connected to the
grid by its own pipe, and hands each idle worker one job at a time. A worker ignores
SIGINT (the grid decides when to stop) and sends back progress ticks and the finished
:class:`~bandexa_gym.bench.grid.jobs.RunRecord`. The grid waits on the pipes and on the worker
processes themselves, so

* a finished run reaches the grid at once (and is written at once);
* a worker that dies (out of memory, a crash in native code) fails only its own run,
  and a fresh worker takes its place;
* stopping terminates every worker (SIGTERM, then SIGKILL after a grace period) and
  returns within about a second, whatever the workers were doing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import torch

from bandexa_gym.bench.grid.base import GridEvents
from bandexa_gym.bench.grid.jobs import Job, RunRecord, execute_job

__all__ = ["InProcessBackend", "ProcessPoolBackend", "local_backend"]

_POLL_SECONDS = 0.2
_TERMINATE_GRACE_SECONDS = 3.0


class InProcessBackend:
    """Runs the jobs one after another in this process (``--workers 1``)."""

    name = "local"
    in_place = True
    workers = 1

    def run(self, jobs: Sequence[tuple[int, Job]], events: GridEvents) -> None:
        """Run the jobs in order; see :class:`~bandexa_gym.bench.grid.base.Backend`."""
        report = events.progress
        for index, job in jobs:
            if events.stopping:
                return
            on_rounds = None if report is None else functools.partial(report, index)
            record = execute_job(job, on_rounds)
            events.finished(index, record)


# -- worker processes --------------------------------------------------------------------
def _leave(signum: int, frame: Any) -> None:
    """SIGTERM in a worker: exit through Python's shutdown, so that what the process
    registered (tqdm's lock among them) is released rather than reported as leaked."""
    raise SystemExit(128 + signum)


def _worker_main(conn: Connection, report_progress: bool) -> None:
    """A worker process: run the jobs that arrive on ``conn`` until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the grid decides; it terminates us
    signal.signal(signal.SIGTERM, _leave)
    torch.set_num_threads(1)  # run_job sets each job's own count; never oversubscribe
    parent = os.getppid()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the grid is gone
        if message is None:
            return
        index, job = message

        def on_rounds(rounds: int, index: int = index) -> None:
            if os.getppid() != parent:
                os._exit(1)  # orphaned: the grid died without stopping us
            if report_progress:
                conn.send(("progress", index, rounds))

        record = execute_job(job, on_rounds)
        try:
            conn.send(("done", index, record))
        except (BrokenPipeError, OSError):
            return
        except Exception as err:  # the record does not pickle: send what we can
            conn.send(("done", index, RunRecord.failure(job, err, record.started)))


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    job: tuple[int, Job] | None = None


class ProcessPoolBackend:
    """Runs jobs in ``workers`` spawned processes (``--workers N``, N > 1).

    Args:
        workers: Number of worker processes (at most one per job is started).
        threads: Threads of the native libraries (OpenMP, OpenBLAS, MKL: NumPy's linear
            algebra) in each worker, as Ray gives its tasks, unless the environment
            already sets them; torch's own count is each job's ``threads``.
    """

    name = "local"
    in_place = False

    def __init__(self, workers: int, threads: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.workers = workers
        self.threads = threads
        self._context = get_context("spawn")

    def _start(self, report_progress: bool) -> _Worker:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(child_conn, report_progress),
            name="bandexa-bench-worker",
            daemon=True,
        )
        with _native_threads(self.threads):
            process.start()
        child_conn.close()
        return _Worker(process, parent_conn)

    def run(self, jobs: Sequence[tuple[int, Job]], events: GridEvents) -> None:
        """Run the jobs on the workers; see :class:`~bandexa_gym.bench.grid.base.Backend`."""
        queue = deque(jobs)
        report = events.progress is not None
        pool: list[_Worker] = []
        try:
            pool = [self._start(report) for _ in range(min(self.workers, len(queue)))]
            while not events.stopping:
                for worker in pool:
                    if worker.job is None and queue:
                        worker.job = queue.popleft()
                        worker.conn.send(worker.job)
                busy = [w for w in pool if w.job is not None]
                if not busy:
                    return
                handles: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
                ready = set(wait(handles, timeout=_POLL_SECONDS))
                for worker in busy:
                    self._receive(worker, events)
                    if worker.process.sentinel in ready and not events.stopping:
                        self._receive(worker, events)  # anything it sent before dying
                        self._bury(worker, events)
                        pool.remove(worker)
                        _stop(worker, graceful=False)
                        if queue:
                            pool.append(self._start(report))
        finally:
            for worker in pool:
                self._receive(worker, events)  # runs that ended before the stop are kept
                _stop(worker, graceful=not events.stopping)

    @staticmethod
    def _receive(worker: _Worker, events: GridEvents) -> None:
        """Handle every message waiting on ``worker``'s pipe."""
        try:
            while worker.conn.poll():
                kind, index, payload = worker.conn.recv()
                if kind == "progress" and events.progress is not None:
                    events.progress(index, payload)
                elif kind == "done":
                    worker.job = None
                    events.finished(index, payload)
        except (EOFError, OSError):
            return

    @staticmethod
    def _bury(worker: _Worker, events: GridEvents) -> None:
        """Record the run of a worker that died as failed."""
        if worker.job is None:
            return
        index, job = worker.job
        worker.job = None
        worker.process.join(_TERMINATE_GRACE_SECONDS)  # reap it: its exit code is known then
        message = f"WorkerDied: the worker process exited with code {worker.process.exitcode}"
        events.finished(index, RunRecord.failure(job, message))


def _stop(worker: _Worker, graceful: bool) -> None:
    """Stop ``worker``'s process and reap it: ask it to leave when ``graceful`` (it is
    idle), else (or when it does not) SIGTERM, then SIGKILL after a grace period."""
    process = worker.process
    if graceful and process.is_alive():
        try:
            worker.conn.send(None)
            process.join(_TERMINATE_GRACE_SECONDS)
        except OSError:
            pass
    if process.is_alive():
        process.terminate()
        process.join(_TERMINATE_GRACE_SECONDS)
        if process.is_alive():
            process.kill()
    process.join()
    worker.conn.close()


def local_backend(workers: int, threads: int = 1) -> InProcessBackend | ProcessPoolBackend:
    """This process for one worker, else a pool of ``workers`` processes (with ``threads``
    native threads each)."""
    return InProcessBackend() if workers <= 1 else ProcessPoolBackend(workers, threads)


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _native_threads(threads: int) -> Iterator[None]:
    """Set the native libraries' thread counts in ``os.environ`` while a worker starts
    (it reads them when it imports NumPy), leaving those the user set alone."""
    added = [name for name in _THREAD_VARIABLES if name not in os.environ]
    for name in added:
        os.environ[name] = str(threads)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
