"""The Ray backend: each (problem, agent, seed) run is one Ray task.

``ray.init()`` starts a local Ray on this machine unless ``address`` names a cluster to
join (``"auto"``, ``"ray://host:10001"``, ...). Each task asks for ``num_cpus`` CPUs and
``num_gpus`` GPUs, so Ray runs as many at once as the resources allow (``max_in_flight``
caps it further, e.g. to compare with ``--workers N``). Tasks run
:func:`~bandexa_gym.bench.grid.jobs.execute_job`, the very function the local backends run, so
the same jobs give the same rewards and regrets on either backend.

A local Ray started here is given this process's import path, so its workers import the
same ``bandexa_gym`` as the grid; on a cluster, install bandexa-gym (and the data the
problems read) on every node. Ray is optional: ``pip install "bandexa-gym[ray]"``.

A local Ray started here lives exactly as long as the grid: :meth:`RayBackend.run` shuts
it down when the grid ends or stops (SIGINT, SIGTERM), and on Linux a watchdog
(:mod:`bandexa_gym.bench.grid.reaper`) ends every process it started once the driver is gone,
even after a SIGKILL, which Ray's own agents would otherwise outlive by a minute.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bandexa_gym.bench.grid import reaper
from bandexa_gym.bench.grid.base import GridEvents
from bandexa_gym.bench.grid.jobs import Job, RunRecord, execute_job

__all__ = ["RAY_EXTRA", "RayBackend", "ray_available"]

RAY_EXTRA = 'pip install "bandexa-gym[ray]"'
"""How to install Ray for the backend (said by every missing-Ray error)."""

_POLL_SECONDS = 0.2
_PROGRESS_INTERVAL = 0.5
_FOLLOW_INTERVAL = 5.0  # seconds between looks for new Ray processes (workers)


def ray_available() -> bool:
    """Whether Ray can be imported."""
    return importlib.util.find_spec("ray") is not None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"the Ray backend needs Ray: {RAY_EXTRA}") from err
    return ray


def _ray_task(job: Job, progress: Any, index: int) -> RunRecord:
    """Body of one Ray task: run the job, ticking the progress actor if there is one."""
    on_rounds = None
    if progress is not None:

        def on_rounds(rounds: int) -> None:
            progress.report.remote(index, rounds)

    return execute_job(job, on_rounds)


class _Progress:
    """A Ray actor that holds the latest rounds played of each running task."""

    def __init__(self) -> None:
        self.rounds: dict[int, int] = {}

    def report(self, index: int, rounds: int) -> None:
        self.rounds[index] = rounds

    def take(self) -> dict[int, int]:
        rounds, self.rounds = self.rounds, {}
        return rounds


def _descendants() -> set[int]:
    """The pids of the processes below this one (empty where ``/proc`` is not there)."""
    if not reaper.supported():
        return set()
    me = os.getpid()
    return {pid for pid, _ in reaper.descendants([me]) if pid != me}


class RayBackend:
    """Runs each job as a Ray task.

    Args:
        address: Cluster to join (``ray.init(address=...)``); None starts a local Ray.
        num_cpus: CPUs each run asks for (fractions allowed).
        num_gpus: GPUs each run asks for (fractions allowed).
        max_in_flight: Most runs submitted at once; None lets Ray's resources decide.
    """

    name = "ray"
    in_place = False

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        max_in_flight: int | None = None,
    ) -> None:
        if num_cpus <= 0:
            raise ValueError(f"num_cpus must be > 0, got {num_cpus}")
        if num_gpus < 0:
            raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_in_flight = max_in_flight
        self._started_here: bool | None = None  # None: not started by start() or run()
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._ray_roots: list[int] = []  # the processes ray.init started here
        self._followed: set[tuple[int, int]] = set()

    def start(self) -> None:
        """Start (or join) Ray now rather than in :meth:`run`; its start-up messages then
        come before the grid's progress bars."""
        if self._started_here is None:
            self._started_here = self._init(_import_ray())

    @property
    def workers(self) -> int | None:
        """The cap on runs in flight (None: Ray's resources decide)."""
        return self.max_in_flight

    def _init(self, ray: Any) -> bool:
        """Start or join Ray unless it is already up; True when this call started it."""
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {
            "address": self.address,
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "log_to_driver": False,
        }
        if self.address is None:
            # The workers of a local Ray import what this process imports: the processes
            # ray.init starts inherit this environment, so put the package on their path.
            package_root = str(Path(__file__).resolve().parents[3])
            previous = os.environ.get("PYTHONPATH")
            paths = [package_root, *filter(None, (previous or "").split(os.pathsep))]
            os.environ["PYTHONPATH"] = os.pathsep.join(paths)
            before = _descendants()
            try:
                ray.init(**options)
            finally:
                if previous is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = previous
            self._watch([pid for pid in _descendants() if pid not in before])
        else:
            ray.init(**options)
        return True

    def _watch(self, roots: list[int]) -> None:
        """Start the watchdog over the processes ``ray.init`` started (``roots``, and what
        they start), so that they end with this process however it ends."""
        if not roots or not reaper.supported():
            return
        self._ray_roots = roots
        self._followed = set()
        try:
            self._watchdog = reaper.start_reaper()
        except OSError:  # no watchdog: Ray's own fate sharing still applies
            self._watchdog = None
            return
        self._follow()

    def _follow(self) -> None:
        """Tell the watchdog about Ray's processes it does not know yet (new workers)."""
        watchdog = self._watchdog
        if watchdog is None or watchdog.stdin is None:
            return
        new = [p for p in reaper.descendants(self._ray_roots) if p not in self._followed]
        if not new:
            return
        try:
            watchdog.stdin.write("".join(f"{pid} {start}\n" for pid, start in new).encode())
            watchdog.stdin.flush()
        except OSError:  # the watchdog is gone
            return
        self._followed.update(new)

    def _release_watchdog(self) -> None:
        """Close the watchdog's pipe (it ends what Ray left, if anything) and reap it."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        with contextlib.suppress(OSError):
            watchdog.stdin.close()  # type: ignore[union-attr]
        try:
            watchdog.wait(reaper.GRACE_SECONDS + 2.0)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()

    def run(self, jobs: Sequence[tuple[int, Job]], events: GridEvents) -> None:
        """Run the jobs as Ray tasks; see :class:`~bandexa_gym.bench.grid.base.Backend`."""
        ray = _import_ray()
        self.start()
        started_here, self._started_here = self._started_here, None
        queue = list(reversed(jobs))
        in_flight: dict[Any, tuple[int, Job]] = {}
        progress = None
        try:
            task = ray.remote(_ray_task).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus)
            if events.progress is not None:
                progress = ray.remote(num_cpus=0)(_Progress).remote()
            limit = self.max_in_flight or len(jobs)
            last_poll = last_follow = time.monotonic()
            while not events.stopping and (queue or in_flight):
                while queue and len(in_flight) < limit:
                    index, job = queue.pop()
                    in_flight[task.remote(job, progress, index)] = (index, job)
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=_POLL_SECONDS)
                self._collect(ray, ready, in_flight, events)
                if self._watchdog is not None and time.monotonic() - last_follow > _FOLLOW_INTERVAL:
                    last_follow = time.monotonic()
                    self._follow()
                if progress is not None and time.monotonic() - last_poll > _PROGRESS_INTERVAL:
                    last_poll = time.monotonic()
                    for index, rounds in ray.get(progress.take.remote()).items():
                        events.progress(index, rounds)  # type: ignore[misc]
        finally:
            if in_flight:  # runs that ended before the stop are kept
                ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0)
                self._collect(ray, ready, in_flight, events)
            for ref in in_flight:
                ray.cancel(ref, force=True)
            if progress is not None:
                ray.kill(progress)
            if started_here:
                try:
                    ray.shutdown()
                finally:
                    self._release_watchdog()
            sys.stderr.flush()

    @staticmethod
    def _collect(
        ray: Any, ready: Sequence[Any], in_flight: dict[Any, tuple[int, Job]], events: GridEvents
    ) -> None:
        """Report the tasks in ``ready``; once stopping, a task that failed (its worker was
        stopped with the grid) is dropped rather than recorded as a failed run."""
        for ref in ready:
            index, job = in_flight.pop(ref)
            try:
                record = ray.get(ref)
            except Exception as err:  # the task's worker died, or Ray failed it
                record = RunRecord.failure(job, err)
            if record.ok or not events.stopping:
                events.finished(index, record)
