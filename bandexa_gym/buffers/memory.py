"""In-memory ring buffer."""

from __future__ import annotations

import torch

from bandexa_gym.buffers.base import ReplayBuffer
from bandexa_gym.buffers.schema import (
    Batch,
    TransformFn,
    _check_int,
    _empty_batch,
    _Schema,
    _TransformRunner,
)


class MemoryReplayBuffer(ReplayBuffer):
    """Preallocated in-memory ring buffer; the oldest transitions are overwritten.

    Storage is allocated on the first insert, as ``(capacity, *x_shape)`` contexts,
    ``(capacity, d_a)`` actions and ``(capacity,)`` rewards.

    Steps need no storage here: the ring holds the ``len(self)`` newest transitions, whose
    steps are the consecutive ``total_added - len(self)`` to ``total_added - 1``.

    Args:
        capacity: Maximum number of transitions kept.

    Raises:
        TypeError: If ``capacity`` is not an int (a bool, float or string).
        ValueError: If ``capacity`` is ``None`` or below 1.
    """

    def __init__(self, capacity: int) -> None:
        if capacity is None:
            raise ValueError("MemoryReplayBuffer needs a finite capacity")
        super().__init__(_check_int(capacity, "capacity", 1))
        self._X: torch.Tensor | None = None
        self._A: torch.Tensor | None = None
        self._R: torch.Tensor | None = None
        self._next = 0  # slot of the next write
        self._size = 0

    @property
    def capacity(self) -> int:
        """Maximum number of stored transitions."""
        assert self._capacity is not None
        return self._capacity

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return (
            f"MemoryReplayBuffer(len={len(self)}, capacity={self.capacity}, "
            f"x_shape={self.x_shape}, action_dim={self.action_dim})"
        )

    def _allocate(self, schema: _Schema) -> None:
        cap = self.capacity
        self._X = torch.empty((cap, *schema.x_shape), dtype=schema.x_dtype)
        self._A = torch.empty((cap, schema.action_dim), dtype=torch.float32)
        self._R = torch.empty((cap,), dtype=torch.float32)

    def _append(self, X: torch.Tensor, A: torch.Tensor, R: torch.Tensor) -> None:
        if self._X is None:
            assert self._schema is not None
            self._allocate(self._schema)
        assert self._X is not None and self._A is not None and self._R is not None
        cap, added = self.capacity, X.shape[0]
        if X.shape[0] > cap:  # only the newest `cap` survive
            X, A, R = X[-cap:], A[-cap:], R[-cap:]
        batch, done = X.shape[0], 0
        while done < batch:  # at most two contiguous pieces (wrap-around)
            n = min(batch - done, cap - self._next)
            for dst, src in ((self._X, X), (self._A, A), (self._R, R)):
                dst[self._next : self._next + n] = src[done : done + n]
            self._next = (self._next + n) % cap
            done += n
        self._size = min(self._size + batch, cap)
        self._total_added += added

    def _slots(self, idx: torch.Tensor) -> torch.Tensor:
        start = (self._next - self._size) % self.capacity
        return (idx + start) % self.capacity

    def _gather(self, idx: torch.Tensor) -> Batch:
        if self._X is None:
            assert self._schema is not None
            return _empty_batch(self._schema)
        assert self._A is not None and self._R is not None
        slots = self._slots(idx)
        return self._X[slots], self._A[slots], self._R[slots]

    def transform(self, fn: TransformFn, *, chunk_size: int = 1024) -> None:
        """See :meth:`ReplayBuffer.transform`; builds new storage, then swaps it in."""
        self._check_open()
        chunk_size = _check_int(chunk_size, "chunk_size", 1)
        if self._schema is None:
            return
        run = _TransformRunner(fn)
        if self._X is None:  # schema known, nothing stored: learn the new shapes
            X0, A0, _ = _empty_batch(self._schema)
            run(X0, A0)
            assert run.schema is not None
            self._schema = run.schema
            self._mutations += 1
            return
        assert self._A is not None
        X_old, A_old = self._X[: self._size], self._A[: self._size]
        pieces = [
            run(X_old[s : s + chunk_size], A_old[s : s + chunk_size])
            for s in range(0, self._size, chunk_size)
        ]
        assert run.schema is not None
        del X_old, A_old
        rewards = self._R  # unchanged
        self._allocate(run.schema)
        self._R = rewards
        assert self._X is not None and self._A is not None
        self._X[: self._size] = torch.cat([p[0] for p in pieces])
        self._A[: self._size] = torch.cat([p[1] for p in pieces])
        self._schema = run.schema
        self._mutations += 1
