"""End what a local Ray left running once the grid that started it is gone.

On Linux, ``ray.init()`` ties the head processes it starts (GCS, raylet, dashboard, log
monitor) to the driver: they get SIGKILL when it dies. The agents the raylet starts
(dashboard agent, runtime-env agent) are not tied to it: after a SIGKILL of the driver
they notice the raylet is gone and then wait up to a minute on the dead GCS before they
exit. The Ray backend therefore starts this file as a watchdog.

The watchdog runs this file as a script (standard library only, so it starts at once and
imports nothing of the package), in a session of its own, with a pipe on its stdin. The
driver writes one ``PID START`` line for every process Ray started (``START`` is the
process's start time, field 22 of ``/proc/PID/stat``). When the pipe closes, because the
driver shut Ray down and closed it, or because the driver died (a SIGKILL closes it too),
the watchdog sends SIGTERM to each recorded process that is still alive with the same start
time (a reused pid is never touched), waits up to :data:`GRACE_SECONDS`, sends SIGKILL to
what is left, and exits. It needs ``/proc`` (Linux); elsewhere :func:`supported` is False.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

__all__ = [
    "GRACE_SECONDS",
    "descendants",
    "main",
    "process_start",
    "reap",
    "start_reaper",
    "supported",
]

GRACE_SECONDS = 3.0
"""Seconds between SIGTERM and SIGKILL."""

_PROC = Path("/proc")


def supported() -> bool:
    """Whether processes can be followed here (a Linux ``/proc``)."""
    return sys.platform.startswith("linux") and (_PROC / "self" / "stat").exists()


def _stat(pid: int) -> list[str] | None:
    """Fields 3 onwards of ``/proc/PID/stat`` (after the command name), or None."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    return text[text.rindex(")") + 2 :].split()


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks after boot), None when it is gone."""
    fields = _stat(pid)
    if fields is None or len(fields) < 20 or fields[0] in ("Z", "X"):
        return None  # gone, or a zombie that only waits to be reaped
    return int(fields[19])


def descendants(roots: Iterable[int]) -> list[tuple[int, int]]:
    """``(pid, start time)`` of ``roots`` and every process below them, as now running."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and len(fields) > 1:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[tuple[int, int]] = []
    stack = list(roots)
    seen: set[int] = set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        start = process_start(pid)
        if start is not None:
            found.append((pid, start))
        stack.extend(children.get(pid, ()))
    return found


def start_reaper() -> subprocess.Popen[bytes]:
    """Start the watchdog; write ``PID START`` lines to its ``stdin`` and close it to reap."""
    return subprocess.Popen(
        [sys.executable, "-I", str(Path(__file__).resolve())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C at the terminal does not end it early
        close_fds=True,
    )


def reap(processes: Iterable[tuple[int, int]], grace: float = GRACE_SECONDS) -> list[int]:
    """SIGTERM, then after ``grace`` seconds SIGKILL, each ``(pid, start)`` still running.

    Returns:
        The pids that were signalled.
    """
    alive = [(pid, start) for pid, start in set(processes) if process_start(pid) == start]
    for pid, _ in alive:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    left = alive
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [(pid, start) for pid, start in left if process_start(pid) == start]
    for pid, start in left:
        if process_start(pid) == start:
            _signal(pid, signal.SIGKILL)
    return [pid for pid, _ in alive]


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def main(stdin: IO[str] | None = None) -> int:
    """The watchdog: collect ``PID START`` lines until end of input, then :func:`reap`."""
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # it ends when its pipe does
    processes: set[tuple[int, int]] = set()
    for line in stdin if stdin is not None else sys.stdin:
        parts = line.split()
        if len(parts) == 2 and all(part.isdigit() for part in parts):
            processes.add((int(parts[0]), int(parts[1])))
    reap(processes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
