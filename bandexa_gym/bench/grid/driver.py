"""Running a grid: plan it against the output folder, run it on a backend, stop cleanly.

:func:`plan_grid` decides which jobs run: all of them, or with ``resume`` only those
without a finished run file of the same config. :func:`run_grid` runs them on a backend
and, as each run ends, writes its run file at once (atomically) and, every few seconds,
rebuilds the summary files from the runs that exist. SIGINT (Ctrl-C) and SIGTERM stop the
grid promptly: no run is started after the signal, the runs in flight are abandoned (their
worker processes or Ray tasks are ended), every finished run is kept, and the summaries are
written one last time.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bandexa_gym.bench.grid.base import Backend, GridEvents, GridInterrupted
from bandexa_gym.bench.grid.jobs import Job, RunRecord
from bandexa_gym.bench.grid.progress import GridProgress
from bandexa_gym.bench.grid.store import RunStore
from bandexa_gym.bench.grid.summaries import SummaryWriter

__all__ = [
    "SUMMARY_INTERVAL",
    "ExistingRunsError",
    "GridOutcome",
    "GridPlan",
    "OutputBusyError",
    "output_lock",
    "plan_grid",
    "run_grid",
    "run_jobs",
]

SUMMARY_INTERVAL = 5.0
"""Seconds between rebuilds of the summary files while a grid runs."""

LOCK_NAME = ".bandexa-bench.lock"


class ExistingRunsError(ValueError):
    """The output folder already holds run files of this grid (and neither ``resume`` nor
    ``overwrite`` was asked for)."""


class OutputBusyError(RuntimeError):
    """Another grid is writing to the same output folder."""


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` (a lock file in it) for the duration.

    Raises:
        OutputBusyError: Another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_NAME, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputBusyError(f"another bandexa-bench is writing to {out}") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass
class GridPlan:
    """The jobs of a grid and which of them to run.

    Attributes:
        jobs: Every job of the grid, in table order.
        done: Job index -> finished run read back from its file (``resume``).
        todo: Indices of the jobs to run.
        failed_before: Indices in ``todo`` whose file recorded a failed run (run again).
        unreadable: Run files that could not be read, with why (run again).
        removed: Run files deleted by ``overwrite``.
        replaced_logs: Log folders of jobs in ``todo`` that already hold something (a
            partial log of an interrupted run, or the log of a run now run again): each is
            replaced by the new log when its run finishes (``resume`` or ``overwrite``).
    """

    jobs: list[Job]
    done: dict[int, RunRecord] = field(default_factory=dict)
    todo: list[int] = field(default_factory=list)
    failed_before: list[int] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    removed: int = 0
    replaced_logs: list[Path] = field(default_factory=list)


def plan_grid(
    jobs: Sequence[Job], out: Path | None = None, *, resume: bool = False, overwrite: bool = False
) -> GridPlan:
    """Decide which of ``jobs`` to run, given the run files in ``out``.

    Args:
        jobs: The grid, in table order (their run names must be unique).
        out: The output folder, or None to keep nothing.
        resume: Keep the finished runs whose file holds the same job config; run the rest
            (failed runs are run again, and so are their logs).
        overwrite: Delete the grid's existing run files and run everything (each log is
            replaced when its run finishes).

    Raises:
        ValueError: Two jobs share a run name, or ``resume`` with ``overwrite``.
        ExistingRunsError: ``out`` holds run files of these jobs, or a job's log folder
            (:attr:`~bandexa_gym.bench.grid.jobs.Job.log_path`) holds something, and neither
            flag is set.
        bandexa_gym.bench.grid.store.ConfigConflictError: ``resume`` and a run file of the same
            name holds a different config.
    """
    jobs = list(jobs)
    names: dict[str, Job] = {}
    for job in jobs:
        if job.run_name in names:
            raise ValueError(
                f"runs {names[job.run_name].label!r} and {job.label!r} would share the file "
                f"name {job.run_name!r}; give the problems distinct names"
            )
        names[job.run_name] = job
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    plan = GridPlan(jobs)
    store = RunStore(out) if out is not None else None
    if store is not None and resume:
        resumed = store.plan_resume(jobs)
        plan.done, plan.todo = resumed.done, resumed.todo
        plan.failed_before, plan.unreadable = resumed.failed, resumed.unreadable
    else:
        plan.todo = list(range(len(jobs)))
    plan.replaced_logs = [
        path for i in plan.todo if (path := jobs[i].log_path) is not None and _holds_files(path)
    ]
    if resume:
        return plan
    existing = store.existing(jobs) if store is not None else []
    if existing and not overwrite:
        raise ExistingRunsError(
            f"{out} already holds {len(existing)} run file(s) of this grid "
            f"(e.g. {existing[0].name}); pass --resume to keep them and run the rest, "
            "--overwrite to run everything again, or choose another --out"
        )
    if plan.replaced_logs and not overwrite:
        first = plan.replaced_logs[0]
        choices = "pass --resume or --overwrite (with --out), " if store is not None else ""
        raise ExistingRunsError(
            f"the log folder {first.parent} already holds {len(plan.replaced_logs)} log(s) "
            f"of this grid (e.g. {first.name}); {choices}choose another --log, or remove them"
        )
    if store is not None and overwrite:
        plan.removed = store.remove(jobs)
    return plan


def _holds_files(path: Path) -> bool:
    """Whether ``path`` is anything but absent or an empty folder."""
    try:
        if path.is_dir():
            return any(path.iterdir())
        return path.exists() or path.is_symlink()
    except OSError:
        return True  # unreadable: treat it as in use


@dataclass
class GridOutcome:
    """What a grid did.

    Attributes:
        records: Every run that ended (finished or failed), resumed ones included, in
            grid order.
        resumed: How many of them were read back from their files.
        ran: How many ended in this call.
        interrupted: The name of the signal that stopped the grid (``"SIGINT"``,
            ``"SIGTERM"``), or None.
        write_errors: Files that could not be written, with the error.
        seconds: Wall time of the runs (from the first start to the last end).
    """

    records: list[RunRecord]
    resumed: int
    ran: int
    interrupted: str | None
    write_errors: list[str]
    seconds: float

    @property
    def failed(self) -> list[RunRecord]:
        """The failed runs."""
        return [r for r in self.records if not r.ok]

    @property
    def results(self) -> list[Any]:
        """The finished runs' :class:`~bandexa_gym.bench.runner.RunResult` s, in grid order."""
        return [r.result for r in self.records if r.result is not None]


class _Stopper:
    """SIGINT/SIGTERM handler: ask the backend to stop; abandon an in-place run at once."""

    def __init__(self, events: GridEvents, in_place: bool) -> None:
        self.events = events
        self.in_place = in_place
        self.critical = False  # a finished run is being written: do not interrupt it
        self.signal: str | None = None
        self._raised = False
        self._previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signal.Signals(signum).name
        self.events.stopping = True
        if self.in_place and not self.critical and not self._raised:
            self._raised = True
            raise GridInterrupted

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only; its owner handles them
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def run_grid(
    plan: GridPlan,
    backend: Backend,
    *,
    out: Path | None = None,
    summaries: SummaryWriter | None = None,
    progress: bool = False,
    summary_interval: float = SUMMARY_INTERVAL,
) -> GridOutcome:
    """Run ``plan.todo`` on ``backend``, writing each run and the summaries as they come.

    Signal handlers for SIGINT and SIGTERM are installed for the duration (from the main
    thread); the previous handlers are restored afterwards.

    Args:
        plan: From :func:`plan_grid`.
        backend: Where the runs execute.
        out: The output folder for run files (None: keep nothing).
        summaries: Rebuilds the summary files (every ``summary_interval`` seconds and at
            the end); None for none.
        progress: Draw progress bars on stderr.
        summary_interval: Seconds between summary rebuilds while running.

    Returns:
        The :class:`GridOutcome`.
    """
    store = RunStore(out) if out is not None else None
    records: dict[int, RunRecord] = dict(plan.done)
    durable: dict[int, RunRecord] = dict(plan.done)  # the runs whose files exist
    write_errors: list[str] = []
    bars = GridProgress(plan.jobs, done=len(plan.done), enabled=progress)
    events = GridEvents()
    stopper = _Stopper(events, backend.in_place)
    last_summary = time.monotonic()

    def write_summaries(state: str, final: bool = False) -> None:
        if summaries is None:
            return
        try:
            summaries.write([durable[i] for i in sorted(durable)], state, final)
        except OSError as err:
            write_errors.append(f"summary files in {summaries.out}: {err}")

    def finished(index: int, record: RunRecord) -> None:
        nonlocal last_summary
        stopper.critical = True
        try:
            records[index] = record
            if store is not None:
                try:
                    store.write(record)
                    durable[index] = record
                except OSError as err:
                    write_errors.append(f"{store.path(record.job)}: {err}")
            bars.finished(index, record)
            if time.monotonic() - last_summary >= summary_interval:
                write_summaries("running")
                last_summary = time.monotonic()
        finally:
            stopper.critical = False

    events.finished = finished
    events.progress = bars.rounds if progress else None
    todo = [(i, plan.jobs[i]) for i in plan.todo]
    start = time.perf_counter()
    stopper.install()
    try:
        try:
            if todo:
                start_backend = getattr(backend, "start", None)
                if start_backend is not None:
                    start_backend()  # e.g. ray.init, whose messages come before the bars
                bars.open()
                backend.run(todo, events)
        except GridInterrupted:
            pass
        stopper.in_place = False  # from here on a signal only sets the flag
        seconds = time.perf_counter() - start
        bars.close()
        complete = len(records) == len(plan.jobs)
        write_summaries("complete" if complete else "interrupted", final=True)
    finally:
        stopper.restore()
        bars.close()
    return GridOutcome(
        records=[records[i] for i in sorted(records)],
        resumed=len(plan.done),
        ran=len(records) - len(plan.done),
        interrupted=stopper.signal,
        write_errors=write_errors,
        seconds=seconds,
    )


def run_jobs(jobs: Sequence[Job], backend: Backend | None = None) -> list[Any]:
    """Run ``jobs`` (no files, no signal handling beyond the grid's) and return their
    :class:`~bandexa_gym.bench.runner.RunResult` s in order.

    Args:
        jobs: The jobs.
        backend: Where to run them (default: one after another in this process).

    Raises:
        RuntimeError: A run failed (the message names each failed run and its error).
        KeyboardInterrupt: The grid was interrupted.
    """
    if backend is None:
        from bandexa_gym.bench.grid.local import InProcessBackend

        backend = InProcessBackend()
    outcome = run_grid(plan_grid(jobs), backend)
    if outcome.interrupted:
        raise KeyboardInterrupt(outcome.interrupted)
    if outcome.failed:
        raise RuntimeError("; ".join(f"{r.job.label}: {r.error}" for r in outcome.failed))
    return outcome.results
