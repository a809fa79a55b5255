"""What a grid backend is: the :class:`Backend` protocol and the :class:`GridEvents` it
reports to.

A backend runs :class:`~bandexa_gym.bench.grid.jobs.Job` s somewhere (this process, worker
processes, Ray tasks) and reports back through :class:`GridEvents`: rounds played (for
progress bars) and each finished :class:`~bandexa_gym.bench.grid.jobs.RunRecord`, as soon as it
is known. It polls :attr:`GridEvents.stopping` and, once it is set, stops starting runs,
stops the ones in flight (no process of its own left running) and returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bandexa_gym.bench.grid.jobs import Job, RunRecord

__all__ = ["Backend", "GridEvents", "GridInterrupted"]


class GridInterrupted(KeyboardInterrupt):
    """Raised in the main thread to abandon the run in progress of an in-process grid."""


def _ignore_progress(index: int, rounds: int) -> None:
    return None


def _ignore_record(index: int, record: RunRecord) -> None:
    return None


@dataclass
class GridEvents:
    """Callbacks a backend reports to, and the stop flag it polls.

    Attributes:
        finished: ``(job index, record)`` for every run that ended, finished or failed.
        progress: ``(job index, rounds played)``; None when nobody shows progress (then
            backends do not collect it).
        stopping: Set (by a signal handler) when the grid must stop.
    """

    finished: Callable[[int, RunRecord], None] = _ignore_record
    progress: Callable[[int, int], None] | None = None
    stopping: bool = field(default=False)


class Backend(Protocol):
    """Runs jobs and reports to :class:`GridEvents`.

    Attributes:
        name: ``"local"`` or ``"ray"`` (recorded in the grid's config).
        in_place: Runs execute in the calling thread, so a signal handler may raise
            :class:`GridInterrupted` to abandon the current run.
    """

    name: str
    in_place: bool

    # Backends may also define ``start()``: set-up that prints (a Ray instance starting),
    # called by the grid before it draws progress bars; ``run`` then reuses it.

    def run(self, jobs: Sequence[tuple[int, Job]], events: GridEvents) -> None:
        """Run ``(index, job)`` pairs, reporting every end to ``events.finished``.

        Returns when every job has ended or, promptly, once ``events.stopping`` is set;
        no worker it started is left running either way.
        """
        ...
