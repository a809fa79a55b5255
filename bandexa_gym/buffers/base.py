"""The replay-buffer interface: input validation, steps, sampling and chunked iteration.

Storage lives in the subclasses (:mod:`bandexa_gym.buffers.memory`,
:mod:`bandexa_gym.buffers.disk`); the conventions are described in
:mod:`bandexa_gym.buffers`.
"""

from __future__ import annotations

import math
import numbers
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""``(X, A, R)`` with shapes ``(B, *x_shape)``, ``(B, d_a)`` and ``(B,)``."""

StepBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""``(X, A, R, steps)``: a :data:`Batch` plus the transitions' int64 steps, shape ``(B,)``."""

TransformFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``fn(X, A) -> (X_new, A_new)`` applied to stored transitions by ``transform``."""

_F32_MAX = float(torch.finfo(torch.float32).max)


class ReplayBufferCorruptError(RuntimeError):
    """A file of a :class:`DiskReplayBuffer` is missing, truncated or inconsistent."""


class ReplayBufferVersionError(ReplayBufferCorruptError):
    """A :class:`DiskReplayBuffer` folder has a format version this library cannot read.

    It was written by a newer bandexa-gym, or by one too old to migrate.

    A subclass of :class:`ReplayBufferCorruptError`, so code that handles unreadable
    folders catches it too; the message names the folder's version and the readable ones.
    """


# ---------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_int(value: Any, name: str, minimum: int, *, or_none: bool = False) -> int:
    """``value`` as an ``int >= minimum``; a bool, float or string is a ``TypeError``."""
    expected = f"an int >= {minimum}" + (" or None" if or_none else "")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {expected}, got the bool {value!r}")
    try:
        result = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be {expected}, got {type(value).__name__} {_short(value)}"
        ) from None
    if result < minimum:
        raise ValueError(f"{name} must be {expected}, got {result}")
    return result


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {_short(value)}")
    return bool(value)


def _check_half_life(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            "recency must be a half-life in steps (a positive number) or None, "
            f"got {type(value).__name__} {_short(value)}"
        )
    half_life = float(value)
    if not (math.isfinite(half_life) and half_life > 0):
        raise ValueError(
            f"recency must be a finite half-life > 0 in steps (None samples uniformly), "
            f"got {value!r}"
        )
    return half_life


def _as_cpu_tensor(value: Any, name: str, *, exact: bool = False) -> torch.Tensor:
    """``value`` as a real CPU tensor; anything non-numeric or complex is a ``TypeError``.

    Tensors and NumPy values keep their dtype; Python numbers and lists get torch's
    default dtypes, or NumPy's (float64) with ``exact`` so that a range check sees the
    value before any float32 rounding.
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
    else:
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as exc:  # ragged nesting
            raise ValueError(f"{name} must be a tensor or a regular array: {exc}") from exc
        if array.dtype.kind not in "biufc":
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                raise ValueError(f"{name}: {_short(value)} is out of range")  # a huge int
            raise TypeError(
                f"{name} must be a real tensor, array or number, "
                f"got {type(value).__name__} {_short(value)}"
            )
        native = exact or isinstance(value, (np.ndarray, np.generic))
        tensor = torch.as_tensor(array) if native else _with_torch_dtypes(value, array)
    if tensor.is_complex():
        raise TypeError(
            f"{name} must be real, got complex values ({tensor.dtype}); pass the real part, "
            "or the real and imaginary parts as separate features"
        )
    return tensor


def _with_torch_dtypes(value: Any, array: np.ndarray) -> torch.Tensor:
    """``torch.as_tensor(value)`` (float32 for Python floats), else from NumPy's ``array``."""
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return torch.as_tensor(array)


def _cast(t: torch.Tensor, dtype: torch.dtype, name: str) -> torch.Tensor:
    """``t.to(dtype)``, refusing a narrowing float cast that turns finite values into inf."""
    out = t.to(dtype).contiguous()
    if (
        t.is_floating_point()
        and dtype.is_floating_point
        and torch.finfo(dtype).max < torch.finfo(t.dtype).max
        and bool((torch.isinf(out) & torch.isfinite(t)).any())
    ):
        raise ValueError(
            f"{name}: values too large for {dtype} (|v| <= {torch.finfo(dtype).max:.3g}); "
            "nothing was stored"
        )
    return out


@dataclass(frozen=True)
class _Schema:
    x_shape: tuple[int, ...]
    x_dtype: torch.dtype
    action_dim: int


def _check_actions(
    A: torch.Tensor, batch: int, action_dim: int | None, name: str = "A"
) -> torch.Tensor:
    if A.ndim != 2 or A.shape[0] != batch:
        want = f"({batch}, {action_dim if action_dim is not None else 'd_a'})"
        raise ValueError(f"{name}: expected shape {want} float, got {tuple(A.shape)} {A.dtype}")
    if action_dim is not None and A.shape[1] != action_dim:
        raise ValueError(
            f"{name}: expected action_dim {action_dim} (shape ({batch}, {action_dim})), "
            f"got shape {tuple(A.shape)}"
        )
    return _cast(A, torch.float32, name)


def _check_contexts(
    X: torch.Tensor, batch: int, schema: _Schema | None, name: str = "X"
) -> torch.Tensor:
    if X.ndim < 1 or X.shape[0] != batch:
        raise ValueError(
            f"{name}: expected a batch of {batch} contexts, got shape {tuple(X.shape)}"
        )
    if schema is None:
        return X.contiguous()
    if tuple(X.shape[1:]) != schema.x_shape:
        raise ValueError(
            f"{name}: expected shape {schema.x_shape} (batch {(batch, *schema.x_shape)}), "
            f"got {tuple(X.shape[1:])} (batch {tuple(X.shape)})"
        )
    if X.dtype != schema.x_dtype and not torch.can_cast(X.dtype, schema.x_dtype):
        raise ValueError(f"{name}: expected dtype {schema.x_dtype}, got {X.dtype} (unsafe cast)")
    return _cast(X, schema.x_dtype, name)


def _check_rewards(R: torch.Tensor, batch: int, name: str = "R") -> torch.Tensor:
    if R.dtype == torch.bool:
        raise TypeError(
            f"{name}: rewards must be real numbers, got bool; pass float(r) for a 0/1 reward"
        )
    if R.shape != (batch,):
        raise ValueError(f"{name}: expected shape ({batch},), got {tuple(R.shape)} {R.dtype}")
    wide = R.to(torch.float64)
    in_range = wide.abs() <= _F32_MAX  # False for NaN and inf too
    if not bool(in_range.all()):
        if not bool(torch.isfinite(wide).all()):
            raise ValueError(f"{name}: rewards must be finite (got NaN or inf); nothing was stored")
        raise ValueError(
            f"{name}: reward {wide[~in_range][0].item():.3g} is too large to store as "
            f"float32 (|r| <= {_F32_MAX:.3g}); nothing was stored"
        )
    return R.to(torch.float32).contiguous()


def _schema_of(X: torch.Tensor, A: torch.Tensor) -> _Schema:
    return _Schema(tuple(int(s) for s in X.shape[1:]), X.dtype, int(A.shape[1]))


def _empty_batch(schema: _Schema) -> Batch:
    return (
        torch.empty((0, *schema.x_shape), dtype=schema.x_dtype),
        torch.empty((0, schema.action_dim), dtype=torch.float32),
        torch.empty((0,), dtype=torch.float32),
    )


def _recency_indices(
    n: int, batch_size: int, half_life: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Logical indices drawn with ``P(i) ∝ 2^(-(n - 1 - i) / half_life)``, in O(batch).

    The age ``k = n - 1 - i`` follows a geometric law with ratio ``ρ = 2^(-1/h)``
    truncated to ``[0, n)``, drawn by inverting its CDF ``(1 - ρ^(k+1)) / (1 - ρ^n)``.

    Returns:
        int64 indices, shape ``(batch_size,)``.
    """
    log_rho = -math.log(2.0) / half_life
    mass = -math.expm1(n * log_rho)  # 1 - ρ^n, in (0, 1]
    u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
    age = torch.floor(torch.log1p(-u * mass) / log_rho).clamp_(0, n - 1).to(torch.int64)
    return (n - 1) - age


class _TransformRunner:
    """Applies a user transform chunk by chunk and checks that the outputs agree."""

    def __init__(self, fn: TransformFn) -> None:
        self.fn = fn
        self.schema: _Schema | None = None

    def __call__(self, X: torch.Tensor, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        X_new, A_new = self.fn(X, A)
        X_new = _as_cpu_tensor(X_new, "transform output X")
        A_new = _as_cpu_tensor(A_new, "transform output A")
        A_new = _check_actions(A_new, X.shape[0], None, "transform output A")
        X_new = _check_contexts(X_new, X.shape[0], self.schema, "transform output X")
        if self.schema is None:
            self.schema = _schema_of(X_new, A_new)
        elif A_new.shape[1] != self.schema.action_dim:
            raise ValueError(
                f"transform output A: expected action_dim {self.schema.action_dim} "
                f"(from the first chunk), got {A_new.shape[1]}"
            )
        return X_new, A_new


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
