"""The replay-buffer interface: input validation, steps, sampling and chunked iteration.

Storage lives in the subclasses (:mod:`bandexa_gym.buffers.memory`,
:mod:`bandexa_gym.buffers.disk`); the conventions are described in
:mod:`bandexa_gym.buffers`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, Literal, overload

import torch

from bandexa_gym.buffers.schema import (
    Batch,
    StepBatch,
    TransformFn,
    _as_cpu_tensor,
    _check_actions,
    _check_contexts,
    _check_flag,
    _check_half_life,
    _check_int,
    _check_rewards,
    _recency_indices,
    _Schema,
    _schema_of,
)


class ReplayBuffer(ABC):
    """Interface shared by :class:`MemoryReplayBuffer` and :class:`DiskReplayBuffer`.

    Subclasses implement storage (``_append``, ``_gather``, ``transform``, ``__len__``)
    and count ``_total_added``; validation, sampling, steps and chunked iteration live
    here.
    """

    def __init__(self, capacity: int | None) -> None:
        if capacity is not None:
            capacity = _check_int(capacity, "capacity", 1, or_none=True)
        self._capacity = capacity
        self._schema: _Schema | None = None
        self._total_added = 0  # transitions ever added = the step of the next one
        self._mutations = 0  # bumped on every change; live iterators check it
        self._closed = False

    # ---- schema -------------------------------------------------------------------------
    @property
    def capacity(self) -> int | None:
        """Maximum number of stored transitions (``None``: unbounded)."""
        return self._capacity

    @property
    def x_shape(self) -> tuple[int, ...] | None:
        """Shape of one context, fixed by the first insert (``None`` before it)."""
        return None if self._schema is None else self._schema.x_shape

    @property
    def x_dtype(self) -> torch.dtype | None:
        """Dtype of stored contexts (``None`` before the first insert)."""
        return None if self._schema is None else self._schema.x_dtype

    @property
    def action_dim(self) -> int | None:
        """Length ``d_a`` of an action feature vector (``None`` before the first insert)."""
        return None if self._schema is None else self._schema.action_dim

    @abstractmethod
    def __len__(self) -> int: ...

    # ---- steps --------------------------------------------------------------------------
    @property
    def total_added(self) -> int:
        """Transitions added over the buffer's lifetime, those dropped by capacity included.

        It is also the step the next transition will get. A :class:`DiskReplayBuffer`
        keeps counting across reopening (from what was flushed: after a crash, the steps
        of lost pending transitions are given again).
        """
        return self._total_added

    @property
    def last_step(self) -> int | None:
        """Step of the newest transition (``total_added - 1``); ``None`` if none was added."""
        return self._total_added - 1 if self._total_added else None

    def _first_step(self) -> int:
        """Step of the oldest stored transition (stored steps are consecutive)."""
        return self._total_added - len(self)

    # ---- inserts ------------------------------------------------------------------------
    def add(self, x: Any, a: Any, r: Any) -> None:
        """Store one transition; it gets step :attr:`total_added`.

        Args:
            x: Context, shape ``x_shape``.
            a: Action features, shape ``(d_a,)``.
            r: Finite real scalar reward (an int or float, not a bool or a string).

        Raises:
            TypeError: If ``x``, ``a`` or ``r`` is complex or not numeric, or ``r`` is a
                bool (nothing stored).
            ValueError: On a shape/dtype mismatch, or a non-finite or too large reward
                (nothing stored).
        """
        r_t = _as_cpu_tensor(r, "r", exact=True)
        if r_t.numel() != 1:
            raise ValueError(f"r: expected a scalar reward, got shape {tuple(r_t.shape)}")
        x_t = _as_cpu_tensor(x, "x")
        a_t = _as_cpu_tensor(a, "a")
        if a_t.ndim != 1:
            raise ValueError(f"a: expected shape (d_a,), got {tuple(a_t.shape)}")
        self._add(x_t.unsqueeze(0), a_t.unsqueeze(0), r_t.reshape(-1), ("x", "a", "r"))

    def add_batch(self, X: Any, A: Any, R: Any) -> None:
        """Store a batch of transitions, all or nothing; they get consecutive steps.

        Args:
            X: Contexts, shape ``(B, *x_shape)``.
            A: Action features, shape ``(B, d_a)``.
            R: Finite real rewards, shape ``(B,)``.

        Raises:
            TypeError: If ``X``, ``A`` or ``R`` is complex or not numeric, or ``R`` is
                bool (nothing stored).
            ValueError: On a shape/dtype mismatch, or a non-finite or too large reward
                (nothing stored).
        """
        X, A = _as_cpu_tensor(X, "X"), _as_cpu_tensor(A, "A")
        R = _as_cpu_tensor(R, "R", exact=True)
        self._add(X, A, R, ("X", "A", "R"))

    def _add(
        self, X: torch.Tensor, A: torch.Tensor, R: torch.Tensor, names: tuple[str, str, str]
    ) -> None:
        """Validate a batch against the schema and store it (all or nothing)."""
        self._check_open()
        batch = int(X.shape[0]) if X.ndim >= 1 else -1
        X = _check_contexts(X, batch, self._schema, names[0])
        A = _check_actions(A, batch, self.action_dim, names[1])
        R = _check_rewards(R, batch, names[2])
        if batch == 0:
            return
        if self._schema is None:
            self._schema = _schema_of(X, A)
        self._mutations += 1
        self._append(X, A, R)

    @abstractmethod
    def _append(self, X: torch.Tensor, A: torch.Tensor, R: torch.Tensor) -> None:
        """Store a validated batch (already in the schema's dtypes); count ``_total_added``."""

    # ---- reads --------------------------------------------------------------------------
    @abstractmethod
    def _gather(self, idx: torch.Tensor) -> Batch:
        """Return the transitions at logical positions ``idx`` (int64, shape ``(m,)``)."""

    def _shuffled_order(self, generator: torch.Generator | None) -> torch.Tensor:
        """A permutation of ``range(len(self))`` for shuffled iteration."""
        return torch.randperm(len(self), generator=generator)

    @overload
    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        *,
        with_steps: Literal[False] = False,
        recency: float | None = None,
    ) -> Batch: ...

    @overload
    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        *,
        with_steps: Literal[True],
        recency: float | None = None,
    ) -> StepBatch: ...

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        *,
        with_steps: bool = False,
        recency: float | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Draw ``batch_size`` transitions with replacement, uniformly or favouring recent ones.

        Uniform draws are ``torch.randint(len(self), (batch_size,), generator=generator)``
        over the logical order (the stream is the same with or without ``with_steps``).
        With ``recency=h`` the transition ``k`` steps older than the newest is drawn with
        probability proportional to ``2 ** (-k / h)``: a transition ``h`` steps older is
        half as likely. The draw costs O(batch) whatever the buffer's size (inverse CDF
        of a truncated geometric law, one ``torch.rand`` of ``batch_size`` float64 values
        from ``generator``).

        Args:
            batch_size: Number of transitions ``B``.
            generator: CPU ``torch.Generator`` driving the draw (global RNG if ``None``).
            with_steps: Also return the drawn transitions' steps.
            recency: Half-life in steps of recency-weighted sampling (``None``: uniform).

        Returns:
            ``(X, A, R)`` of shapes ``(B, *x_shape)``, ``(B, d_a)``, ``(B,)`` on the CPU,
            followed by ``steps`` (int64, ``(B,)``) when ``with_steps`` is true.

        Raises:
            TypeError: If ``batch_size`` is not an int, ``with_steps`` not a bool or
                ``recency`` not a number.
            ValueError: If the buffer is empty, ``batch_size < 1`` or ``recency <= 0``.
        """
        self._check_open()
        batch_size = _check_int(batch_size, "batch_size", 1)
        with_steps = _check_flag(with_steps, "with_steps")
        half_life = None if recency is None else _check_half_life(recency)
        n = len(self)
        if n == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if half_life is None:
            idx = torch.randint(n, (batch_size,), generator=generator)
        else:
            idx = _recency_indices(n, batch_size, half_life, generator)
        batch = self._gather(idx)
        return (*batch, self._first_step() + idx) if with_steps else batch

    @overload
    def iter_chunks(
        self,
        chunk_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        with_steps: Literal[False] = False,
    ) -> Iterator[Batch]: ...

    @overload
    def iter_chunks(
        self,
        chunk_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        with_steps: Literal[True],
    ) -> Iterator[StepBatch]: ...

    def iter_chunks(
        self,
        chunk_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        with_steps: bool = False,
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Iterate over every stored transition exactly once, in chunks.

        Without ``shuffle`` the order is oldest to newest. With ``shuffle`` the order is a
        permutation drawn from ``generator`` (the disk buffer permutes shards and shuffles
        within groups of ``cache_shards`` shards, so each shard is read once) when the
        iteration starts.

        Args:
            chunk_size: Rows per chunk (the last chunk may be shorter).
            shuffle: Visit the transitions in random order.
            generator: CPU generator for the shuffle.
            with_steps: Also yield each transition's step.

        Returns:
            An iterator of ``(X, A, R)`` chunks of shapes ``(c, *x_shape)``, ``(c, d_a)``,
            ``(c,)``, followed by ``steps`` (int64, ``(c,)``) when ``with_steps`` is true.

        Raises:
            TypeError: If ``chunk_size`` is not an int, or a flag is not a bool.
            ValueError: If ``chunk_size < 1``.
            RuntimeError: While iterating, if the buffer is modified.
        """
        chunk_size = _check_int(chunk_size, "chunk_size", 1)
        shuffle = _check_flag(shuffle, "shuffle")
        with_steps = _check_flag(with_steps, "with_steps")
        self._check_open()
        return self._chunks(chunk_size, shuffle, generator, with_steps)

    def _chunks(
        self, chunk_size: int, shuffle: bool, generator: torch.Generator | None, with_steps: bool
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self)
        order = self._shuffled_order(generator) if shuffle else torch.arange(n)
        first, version = self._first_step(), self._mutations
        for start in range(0, n, chunk_size):
            if self._mutations != version:
                raise RuntimeError("replay buffer was modified during iter_chunks")
            idx = order[start : start + chunk_size]
            batch = self._gather(idx)
            yield (*batch, first + idx) if with_steps else batch

    # ---- maintenance --------------------------------------------------------------------
    @abstractmethod
    def transform(self, fn: TransformFn, *, chunk_size: int = 1024) -> None:
        """Rewrite every stored transition as ``fn(X, A) -> (X_new, A_new)``.

        Used to zero-pad old transitions when the model gains context features or
        actions. ``fn`` receives chunks ``X (c, *x_shape)``, ``A (c, d_a)`` and must return
        ``X_new (c, *x_shape_new)``, ``A_new (c, d_a_new)`` with the same shapes for every
        chunk. Rewards and steps are unchanged; ``x_shape``/``x_dtype``/``action_dim`` are
        updated. All or nothing: if ``fn`` fails, the buffer is left as it was.
        """

    def flush(self) -> None:
        """Persist pending data (no-op for in-memory buffers)."""
        self._check_open()

    def close(self) -> None:
        """Flush and release resources; further use raises ``RuntimeError``."""
        if not self._closed:
            self.flush()
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")

    def __enter__(self) -> ReplayBuffer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
