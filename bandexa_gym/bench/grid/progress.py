"""Progress bars of a grid on a terminal: one overall bar and one per run in flight.

The overall bar counts runs that ended (resumed runs included) out of the grid's total,
with tqdm's rate and ETA; a bar per running run shows its rounds. Backends report rounds
from wherever the runs execute (this process, worker processes, Ray tasks), so the bars
look the same on every backend.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tqdm.auto import tqdm

from bandexa_gym.bench.grid.jobs import Job, RunRecord

__all__ = ["MAX_RUN_BARS", "GridProgress"]

MAX_RUN_BARS = 8
"""At most this many per-run bars at once (runs beyond it only count in the overall bar)."""


class GridProgress:
    """tqdm bars on stderr for a grid.

    Args:
        jobs: The grid's jobs, by index.
        done: Runs already finished before this call (resumed).
        enabled: Draw bars at all (only on a terminal, not with ``--quiet``).
    """

    def __init__(self, jobs: Sequence[Job], done: int = 0, enabled: bool = True) -> None:
        self.jobs = jobs
        self.enabled = enabled
        self._done = done
        self._bars: dict[int, tqdm] = {}
        self._slots: dict[int, int] = {}
        self._free = list(range(MAX_RUN_BARS, 0, -1))
        self._overall: tqdm | None = None
        self._ended: set[int] = set()  # late progress reports of these are dropped

    def open(self) -> None:
        """Draw the overall bar (call it once whatever else prints at start-up is out)."""
        if self._overall is None:
            self._overall = tqdm(
                total=len(self.jobs),
                initial=self._done,
                desc="runs",
                unit="run",
                file=sys.stderr,
                disable=not self.enabled,
                position=0,
                dynamic_ncols=True,
            )

    def rounds(self, index: int, rounds: int) -> None:
        """Run ``index`` has played ``rounds`` rounds."""
        if not self.enabled or index in self._ended:
            return
        self.open()
        bar = self._bars.get(index)
        if bar is None:
            if not self._free:
                return
            job = self.jobs[index]
            self._slots[index] = self._free.pop()
            bar = tqdm(
                total=job.horizon,
                desc=job.label,
                unit="round",
                file=sys.stderr,
                position=self._slots[index],
                leave=False,
                dynamic_ncols=True,
            )
            self._bars[index] = bar
        bar.update(max(0, min(rounds, bar.total) - bar.n))

    def finished(self, index: int, record: RunRecord) -> None:
        """Run ``index`` ended."""
        self.open()
        assert self._overall is not None
        self._ended.add(index)
        bar = self._bars.pop(index, None)
        if bar is not None:
            self._free.append(self._slots.pop(index))
            bar.close()
        self._overall.update(1)
        if not record.ok and self.enabled:
            self._overall.write(f"failed: {record.job.label}: {record.error}", file=sys.stderr)

    def close(self) -> None:
        """Close every bar."""
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        if self._overall is not None:
            self._overall.close()
