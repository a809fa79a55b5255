"""Bounds on agent settings: every count an agent is configured with goes through
:func:`check_count`, whether it comes from ``make_agent`` keyword arguments, a config object
or a checkpoint's spec, so that a crafted file or a typo cannot make an agent hang
(``optimizer_steps=10**12``) or try to allocate more memory than the machine has
(``buffer_capacity=10**12``)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "BUFFER_COUNTS",
    "COUNT_LIMITS",
    "MAX_COUNT",
    "MIN_ROW_BYTES",
    "check_bytes",
    "check_count",
    "check_rows_fit",
    "memory_bytes",
]

COUNT_LIMITS: Mapping[str, int] = {
    "optimizer_steps": 100_000,
    "batch_size": 1_000_000,
    "rebuild_chunk": 1_000_000,
    "refit_chunk": 1_000_000,
    "action_chunk": 1_000_000,
    "propensity_draws": 100_000,
    "n_members": 1_000,
    "max_pending": 10_000_000,
}
"""Largest value of each count setting that costs work or memory per use (a training burst
of ``optimizer_steps`` Adam steps, a minibatch, a chunk, M posterior draws per decision).
Counts of rounds (``warmup_random``, ``train_every``, ``window``, ...) are bounded by
:data:`MAX_COUNT` only; buffer capacities by the machine's memory (:func:`check_rows_fit`)."""
MAX_COUNT = 2**62
"""Largest count of any kind (int64 arithmetic on it cannot overflow)."""
BUFFER_COUNTS = ("buffer_capacity", "store_capacity")
"""Capacities of in-memory buffers, bounded by the machine's memory (see :func:`check_count`)."""
MIN_ROW_BYTES = 24
"""Least memory a stored transition takes (one context and one action feature in float32, a
float64 reward, an int64 step); :func:`check_rows_fit` counts the real row size."""


def check_count(name: str, value: Any, *, low: int = 1) -> int:
    """``value`` as an int, checked to be a count setting in ``[low, limit]``.

    This is the one check every agent's count settings go through, whether they come from
    ``make_agent`` keyword arguments, a config object or a checkpoint's spec; the limit is
    :data:`COUNT_LIMITS` (by ``name``) or :data:`MAX_COUNT`.

    Raises:
        TypeError: Not an integer (a bool, a float such as ``1e12``, a string).
        ValueError: Below ``low`` or beyond the limit.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if name in BUFFER_COUNTS:
        high = memory_bytes() // MIN_ROW_BYTES
        if value > high:
            raise ValueError(
                f"{name}={value:_} transitions cannot fit this machine's "
                f"{memory_bytes() / 2**30:,.0f} GiB of memory (a transition takes at least "
                f"{MIN_ROW_BYTES} bytes); lower {name} (or pass a DiskReplayBuffer)"
            )
    else:
        high = COUNT_LIMITS.get(name, MAX_COUNT)
    if not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high:_}], got {value:_}")
    return int(value)


def memory_bytes() -> int:
    """Physical memory of this machine in bytes (2**62 where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - e.g. Windows
        return MAX_COUNT


def check_rows_fit(name: str, rows: int, context_shape: tuple[int, ...], action_dim: int) -> None:
    """Refuse a buffer of ``rows`` transitions that this machine's memory cannot hold.

    A transition takes at least ``4 * (context size + action_dim) + 16`` bytes (float32
    features, a float64 reward and an int64 step); a memory buffer allocates all its rows
    at its first insert, so a capacity beyond the physical memory fails then or swaps.

    Raises:
        ValueError: ``rows`` such transitions exceed the physical memory.
    """
    row = 4 * (math.prod(context_shape) + action_dim) + MIN_ROW_BYTES - 8
    total, available = rows * row, memory_bytes()
    if total > available:
        raise ValueError(
            f"{name}={rows:_} transitions of {row:_} bytes need {total / 2**30:,.0f} GiB, more "
            f"than this machine's {available / 2**30:,.0f} GiB of memory; lower {name} (or "
            "pass a DiskReplayBuffer)"
        )


def check_bytes(what: str, nbytes: int) -> None:
    """Refuse to build ``what``, which needs ``nbytes`` of memory, beyond the machine's.

    Raises:
        ValueError: ``nbytes`` exceeds the physical memory.
    """
    available = memory_bytes()
    if nbytes > available:
        raise ValueError(
            f"{what} needs {nbytes / 2**30:,.0f} GiB, more than this machine's "
            f"{available / 2**30:,.0f} GiB of memory"
        )
