"""Replay buffers for contextual-bandit transitions ``(x, a, r)``.

A transition is a context ``x`` of any fixed shape (``(d_x,)``, ``(1, 28, 28)``,
``(3, 224, 224)``, ...), an action feature vector ``a`` of shape ``(d_a,)`` and a scalar
reward ``r``. Both buffers implement :class:`ReplayBuffer`, so an agent does not care
which one it holds:

* :class:`MemoryReplayBuffer` -- a preallocated ring buffer in RAM.
* :class:`DiskReplayBuffer` -- crash-safe shards on disk (safetensors files plus a JSON
  index, each written to a temporary name, fsync'd and atomically renamed).

Conventions shared by both:

* Data lives on the CPU and every returned tensor is a CPU copy; the agent moves it.
* The first insert fixes the schema: ``x_shape`` and ``x_dtype`` (``x`` keeps its dtype),
  ``action_dim`` (actions are stored as float32) and rewards (float32). A later insert of
  another shape, or of a dtype that cannot be cast safely, raises ``ValueError`` naming
  the expected and the received value, and stores nothing. Non-finite rewards are
  rejected the same way.
* Transitions have a *logical* order, oldest to newest. :meth:`ReplayBuffer.sample`
  draws logical indices with ``torch.randint(len(buf), (batch_size,), generator=g)``, so
  a memory and a disk buffer holding the same transitions return the same samples for
  the same generator state.
* Buffers are not thread-safe, and adding or transforming while an
  :meth:`ReplayBuffer.iter_chunks` iterator is live raises ``RuntimeError``.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file as _st_load_file
from safetensors.torch import save as _st_save

from bandexa_gym._atomic import atomic_write

try:  # advisory single-writer lock; not available on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "Batch",
    "DiskReplayBuffer",
    "MemoryReplayBuffer",
    "ReplayBuffer",
    "ReplayBufferCorruptError",
    "TransformFn",
]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""``(X, A, R)`` with shapes ``(B, *x_shape)``, ``(B, d_a)`` and ``(B,)``."""

TransformFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``fn(X, A) -> (X_new, A_new)`` applied to stored transitions by ``transform``."""


class ReplayBufferCorruptError(RuntimeError):
    """A file of a :class:`DiskReplayBuffer` is missing, truncated or inconsistent."""


@dataclass(frozen=True)
class _Schema:
    x_shape: tuple[int, ...]
    x_dtype: torch.dtype
    action_dim: int


def _as_cpu_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(value).cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be a tensor or array-like, got {type(value)!r}") from exc


def _check_actions(A: torch.Tensor, batch: int, action_dim: int | None) -> torch.Tensor:
    if A.is_complex() or A.ndim != 2 or A.shape[0] != batch:
        want = f"({batch}, {action_dim if action_dim is not None else 'd_a'})"
        raise ValueError(f"A: expected shape {want} float, got {tuple(A.shape)} {A.dtype}")
    if action_dim is not None and A.shape[1] != action_dim:
        raise ValueError(
            f"A: expected action_dim {action_dim} (shape ({batch}, {action_dim})), "
            f"got shape {tuple(A.shape)}"
        )
    return A.to(torch.float32).contiguous()


def _check_contexts(X: torch.Tensor, batch: int, schema: _Schema | None) -> torch.Tensor:
    if X.ndim < 1 or X.shape[0] != batch:
        raise ValueError(f"X: expected a batch of {batch} contexts, got shape {tuple(X.shape)}")
    if schema is None:
        return X.contiguous()
    if tuple(X.shape[1:]) != schema.x_shape:
        raise ValueError(
            f"x: expected shape {schema.x_shape} (batch {(batch, *schema.x_shape)}), "
            f"got {tuple(X.shape[1:])} (batch {tuple(X.shape)})"
        )
    if X.dtype != schema.x_dtype and not torch.can_cast(X.dtype, schema.x_dtype):
        raise ValueError(f"x: expected dtype {schema.x_dtype}, got {X.dtype} (unsafe cast)")
    return X.to(schema.x_dtype).contiguous()


def _schema_of(X: torch.Tensor, A: torch.Tensor) -> _Schema:
    return _Schema(tuple(int(s) for s in X.shape[1:]), X.dtype, int(A.shape[1]))


def _empty_batch(schema: _Schema) -> Batch:
    return (
        torch.empty((0, *schema.x_shape), dtype=schema.x_dtype),
        torch.empty((0, schema.action_dim), dtype=torch.float32),
        torch.empty((0,), dtype=torch.float32),
    )


class _TransformRunner:
    """Applies a user transform chunk by chunk and checks that the outputs agree."""

    def __init__(self, fn: TransformFn) -> None:
        self.fn = fn
        self.schema: _Schema | None = None

    def __call__(self, X: torch.Tensor, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        X_new, A_new = self.fn(X, A)
        X_new = _as_cpu_tensor(X_new, "transform output X")
        A_new = _check_actions(_as_cpu_tensor(A_new, "transform output A"), X.shape[0], None)
        X_new = _check_contexts(X_new, X.shape[0], self.schema)
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

    Subclasses implement storage (``_append``, ``_gather``, ``transform``, ``__len__``);
    validation, sampling and chunked iteration live here.
    """

    def __init__(self, capacity: int | None) -> None:
        if capacity is not None and (not isinstance(capacity, int) or capacity < 1):
            raise ValueError(f"capacity must be a positive int or None, got {capacity!r}")
        self._capacity = capacity
        self._schema: _Schema | None = None
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

    # ---- inserts ------------------------------------------------------------------------
    def add(self, x: Any, a: Any, r: Any) -> None:
        """Store one transition.

        Args:
            x: Context, shape ``x_shape``.
            a: Action features, shape ``(d_a,)``.
            r: Finite scalar reward.

        Raises:
            ValueError: On a shape/dtype mismatch or a non-finite reward (nothing stored).
        """
        r_t = _as_cpu_tensor(r, "r")
        if r_t.numel() != 1:
            raise ValueError(f"r: expected a scalar reward, got shape {tuple(r_t.shape)}")
        x_t = _as_cpu_tensor(x, "x")
        a_t = _as_cpu_tensor(a, "a")
        if a_t.ndim != 1:
            raise ValueError(f"a: expected shape (d_a,), got {tuple(a_t.shape)}")
        self.add_batch(x_t.unsqueeze(0), a_t.unsqueeze(0), r_t.reshape(1))

    def add_batch(self, X: Any, A: Any, R: Any) -> None:
        """Store a batch of transitions, all or nothing.

        Args:
            X: Contexts, shape ``(B, *x_shape)``.
            A: Action features, shape ``(B, d_a)``.
            R: Finite rewards, shape ``(B,)``.

        Raises:
            ValueError: On a shape/dtype mismatch or a non-finite reward (nothing stored).
        """
        self._check_open()
        X = _as_cpu_tensor(X, "X")
        batch = int(X.shape[0]) if X.ndim >= 1 else -1
        X = _check_contexts(X, batch, self._schema)
        A = _check_actions(_as_cpu_tensor(A, "A"), batch, self.action_dim)
        R = _as_cpu_tensor(R, "R")
        if R.is_complex() or R.shape != (batch,):
            raise ValueError(f"R: expected shape ({batch},), got {tuple(R.shape)} {R.dtype}")
        R = R.to(torch.float32).contiguous()
        if not bool(torch.isfinite(R).all()):
            raise ValueError("R: rewards must be finite (got NaN or inf); nothing was stored")
        if batch == 0:
            return
        if self._schema is None:
            self._schema = _schema_of(X, A)
        self._mutations += 1
        self._append(X, A, R)

    @abstractmethod
    def _append(self, X: torch.Tensor, A: torch.Tensor, R: torch.Tensor) -> None:
        """Store a validated batch (already in the schema's dtypes)."""

    # ---- reads --------------------------------------------------------------------------
    @abstractmethod
    def _gather(self, idx: torch.Tensor) -> Batch:
        """Return the transitions at logical positions ``idx`` (int64, shape ``(m,)``)."""

    def _shuffled_order(self, generator: torch.Generator | None) -> torch.Tensor:
        """A permutation of ``range(len(self))`` for shuffled iteration."""
        return torch.randperm(len(self), generator=generator)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """Draw ``batch_size`` transitions uniformly with replacement.

        Args:
            batch_size: Number of transitions ``B``.
            generator: CPU ``torch.Generator`` driving the draw (global RNG if ``None``).

        Returns:
            ``(X, A, R)`` of shapes ``(B, *x_shape)``, ``(B, d_a)``, ``(B,)`` on the CPU.
        """
        self._check_open()
        n = len(self)
        if n == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        idx = torch.randint(n, (batch_size,), generator=generator)
        return self._gather(idx)

    def iter_chunks(
        self,
        chunk_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ) -> Iterator[Batch]:
        """Iterate over every stored transition exactly once, in chunks.

        Without ``shuffle`` the order is oldest to newest. With ``shuffle`` the order is a
        permutation drawn from ``generator`` (the disk buffer permutes shards and shuffles
        within groups of ``cache_shards`` shards, so each shard is read once).

        Args:
            chunk_size: Rows per chunk (the last chunk may be shorter).
            shuffle: Visit the transitions in random order.
            generator: CPU generator for the shuffle.

        Yields:
            ``(X, A, R)`` chunks of shapes ``(c, *x_shape)``, ``(c, d_a)``, ``(c,)``.

        Raises:
            RuntimeError: If the buffer is modified while the iterator is live.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self._check_open()
        n = len(self)
        order = self._shuffled_order(generator) if shuffle else torch.arange(n)
        version = self._mutations
        for start in range(0, n, chunk_size):
            if self._mutations != version:
                raise RuntimeError("replay buffer was modified during iter_chunks")
            yield self._gather(order[start : start + chunk_size])

    # ---- maintenance --------------------------------------------------------------------
    @abstractmethod
    def transform(self, fn: TransformFn, *, chunk_size: int = 1024) -> None:
        """Rewrite every stored transition as ``fn(X, A) -> (X_new, A_new)``.

        Used to zero-pad old transitions when the model gains context features or
        actions. ``fn`` receives chunks ``X (c, *x_shape)``, ``A (c, d_a)`` and must return
        ``X_new (c, *x_shape_new)``, ``A_new (c, d_a_new)`` with the same shapes for every
        chunk. Rewards are unchanged; ``x_shape``/``x_dtype``/``action_dim`` are updated.
        All or nothing: if ``fn`` fails, the buffer is left as it was.
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


class MemoryReplayBuffer(ReplayBuffer):
    """Preallocated in-memory ring buffer; the oldest transitions are overwritten.

    Storage is allocated on the first insert, as ``(capacity, *x_shape)`` contexts,
    ``(capacity, d_a)`` actions and ``(capacity,)`` rewards.

    Args:
        capacity: Maximum number of transitions kept.
    """

    def __init__(self, capacity: int) -> None:
        if capacity is None:
            raise ValueError("MemoryReplayBuffer needs a finite capacity")
        super().__init__(capacity)
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
        cap = self.capacity
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


# ---------------------------------------------------------------------------------------
# Disk buffer
# ---------------------------------------------------------------------------------------

_INDEX_NAME = "index.json"
_LOCK_NAME = ".lock"
_FORMAT = "bandexa-gym/replay-buffer"
_FORMAT_VERSION = 1
_SHARD_RE = re.compile(r"^shard-(\d{9})\.safetensors$")
_ST_DTYPES = {  # torch dtype -> safetensors dtype tag (the ones we can memory-map)
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


@dataclass
class _Shard:
    file: str
    count: int


def _dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


class DiskReplayBuffer(ReplayBuffer):
    """Replay buffer stored as safetensors shards under ``root_dir``, safe against crashes.

    New transitions collect in memory (*pending*) and are written as one shard file when
    ``shard_size`` of them are pending, on :meth:`flush`, every ``flush_every`` added
    transitions (if > 0) and on :meth:`close`. Every file (shard, then ``index.json``) is
    written to a temporary name, fsync'd and renamed with ``os.replace``; the index is the
    commit point, so after a crash (even SIGKILL) reopening the directory gives every
    transition that was flushed, and leftover temp or unlisted shard files are deleted.
    Pending transitions are sampled and iterated like stored ones, but are lost on a crash.

    Capacity is exact: when more than ``capacity`` transitions are held, the oldest are
    dropped logically (the index records how many rows of the oldest shard to skip) and a
    shard file is deleted once all its rows are dropped, after the index that no longer
    lists it is committed. Disk use may therefore exceed ``capacity`` by up to one shard.

    Shards are opened through an LRU cache of ``cache_shards`` shards, and :meth:`sample`
    groups the drawn indices by shard so each shard is opened at most once per call. With
    ``memory_map=True`` (default) an opened shard is a read-only memory map: a sample reads
    only the rows it draws (the OS page cache keeps hot pages), so sampling costs
    O(batch) I/O even with large contexts such as ``(3, 224, 224)`` images. With
    ``memory_map=False`` whole shards are loaded into RAM (``cache_shards`` of them kept).

    One process may open a directory at a time (an advisory ``flock`` on ``.lock``).
    :meth:`transform` writes all shards under new names and swaps the index once, so it
    is atomic as a whole (it needs room for a second copy of the data while it runs).

    Args:
        root_dir: Directory of the buffer; created if missing, resumed if it has an index.
        capacity: Maximum number of transitions kept (``None``: unbounded).
        shard_size: Transitions per full shard file.
        cache_shards: Shards kept in the LRU cache (0 disables caching).
        flush_every: Flush after this many added transitions (0: only when a shard is full,
            on ``flush()`` and on ``close()``). Each flush writes a (possibly partial) shard.
        memory_map: Read shards through memory maps instead of loading them whole.

    Raises:
        ReplayBufferCorruptError: If the index is unreadable or a listed shard is missing,
            truncated or does not match the index.
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        *,
        capacity: int | None = None,
        shard_size: int = 1024,
        cache_shards: int = 4,
        flush_every: int = 0,
        memory_map: bool = True,
    ) -> None:
        super().__init__(capacity)
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        if cache_shards < 0 or flush_every < 0:
            raise ValueError("cache_shards and flush_every must be >= 0")
        self.root = Path(root_dir)
        self.shard_size = shard_size
        self.cache_shards = cache_shards
        self.flush_every = flush_every
        self.memory_map = memory_map
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._acquire_lock()

        self._shards: list[_Shard] = []
        self._shard_rows = 0  # sum of the listed shards' counts
        self._head_skip = 0  # rows of the oldest shard dropped by the capacity rule
        self._next_shard_id = 0
        self._pending: list[torch.Tensor] | None = None  # [X, A, R] of shard_size rows
        self._n_pending = 0
        self._since_flush = 0
        self._dirty_index = False
        self._persisted_len = 0
        self._obsolete: list[str] = []  # files to delete once the index drops them
        self._cache: OrderedDict[str, Batch] = OrderedDict()
        try:
            self._open_index()
            self._cleanup_stray_files()
            self._enforce_capacity()
        except BaseException:
            self._release_lock()
            raise

    # ---- opening ------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        """Path of the JSON index."""
        return self.root / _INDEX_NAME

    def _acquire_lock(self) -> Any:
        if fcntl is None:  # pragma: no cover
            return None
        f = open(self.root / _LOCK_NAME, "a+b")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            f.close()
            raise RuntimeError(
                f"replay buffer {self.root} is already open (in this or another process)"
            ) from exc
        return f

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None

    def _open_index(self) -> None:
        path = self.index_path
        if not path.exists():
            return
        try:
            meta = json.loads(path.read_text())
            if meta.get("format") != _FORMAT or meta.get("format_version") != _FORMAT_VERSION:
                raise ValueError(
                    f"format {meta.get('format')!r} v{meta.get('format_version')!r}, "
                    f"expected {_FORMAT!r} v{_FORMAT_VERSION}"
                )
            schema = _Schema(
                tuple(int(s) for s in meta["x_shape"]),
                _dtype_from_name(meta["x_dtype"]),
                int(meta["action_dim"]),
            )
            shards = [_Shard(str(s["file"]), int(s["count"])) for s in meta["shards"]]
            head_skip, next_id = int(meta["head_skip"]), int(meta["next_shard_id"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReplayBufferCorruptError(f"cannot read replay index {path}: {exc}") from exc
        for shard in shards:
            self._shard_layout(shard, schema)
        self._schema, self._shards = schema, shards
        self._shard_rows = sum(s.count for s in shards)
        self._head_skip, self._next_shard_id = head_skip, next_id
        self._persisted_len = self._stored_len()

    def _shard_layout(self, shard: _Shard, schema: _Schema) -> dict[str, tuple[int, int]]:
        """Check a shard's safetensors header against the index without reading its data.

        Returns:
            ``{"x"|"a"|"r": (byte offset in the file, number of elements)}``.
        """
        path = self.root / shard.file
        if not path.is_file():
            raise ReplayBufferCorruptError(f"shard {path} listed in {self.index_path} is missing")
        expected = {
            "x": ([shard.count, *schema.x_shape], _ST_DTYPES.get(schema.x_dtype)),
            "a": ([shard.count, schema.action_dim], "F32"),
            "r": ([shard.count], "F32"),
        }
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                if not 0 < n <= size - 8:
                    raise ValueError("bad header length")
                header = json.loads(f.read(n))
            end = max(int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__")
            if size != 8 + n + end:
                raise ValueError(f"file has {size} bytes, header describes {8 + n + end}")
            got = {k: (header[k]["shape"], header[k]["dtype"]) for k in expected}
            layout = {
                k: (8 + n + int(header[k]["data_offsets"][0]), math.prod(expected[k][0]))
                for k in expected
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReplayBufferCorruptError(f"shard {path} is corrupt: {exc}") from exc
        if any(
            got[k][0] != want[0] or (want[1] and got[k][1] != want[1])
            for k, want in expected.items()
        ):
            raise ReplayBufferCorruptError(
                f"shard {path} does not match the index: expected (shape, dtype) {expected}, "
                f"got {got}"
            )
        return layout

    def _cleanup_stray_files(self) -> None:
        """Delete temp files and shard files the index does not list (crash leftovers)."""
        listed = {s.file for s in self._shards}
        for entry in self.root.iterdir():
            name = entry.name
            stray_tmp = name.startswith(".") and name.endswith(".tmp")
            orphan = _SHARD_RE.match(name) is not None and name not in listed
            if (stray_tmp or orphan) and entry.is_file():
                entry.unlink(missing_ok=True)

    # ---- bookkeeping --------------------------------------------------------------------
    def _stored_len(self) -> int:
        return self._shard_rows - self._head_skip

    def __len__(self) -> int:
        return self._stored_len() + self._n_pending

    @property
    def persisted_len(self) -> int:
        """Transitions that reopening the directory now would give (committed to the index)."""
        return self._persisted_len

    @property
    def num_shards(self) -> int:
        """Shard files currently listed."""
        return len(self._shards)

    def __repr__(self) -> str:
        return (
            f"DiskReplayBuffer({str(self.root)!r}, len={len(self)}, capacity={self.capacity}, "
            f"shards={self.num_shards}, pending={self._n_pending}, x_shape={self.x_shape}, "
            f"action_dim={self.action_dim})"
        )

    def _shard_name(self) -> str:
        name = f"shard-{self._next_shard_id:09d}.safetensors"
        self._next_shard_id += 1
        return name

    def _write_shard(self, X: torch.Tensor, A: torch.Tensor, R: torch.Tensor) -> _Shard:
        name = self._shard_name()
        data = _st_save(
            {"x": X.contiguous(), "a": A.contiguous(), "r": R.contiguous()},
            metadata={"format": _FORMAT, "format_version": str(_FORMAT_VERSION)},
        )
        atomic_write(self.root / name, data)
        return _Shard(name, int(X.shape[0]))

    def _commit_index(self) -> None:
        """Atomically write the index, then delete the shard files it no longer lists."""
        assert self._schema is not None
        meta = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "x_shape": list(self._schema.x_shape),
            "x_dtype": str(self._schema.x_dtype).removeprefix("torch."),
            "action_dim": self._schema.action_dim,
            "a_dtype": "float32",
            "r_dtype": "float32",
            "head_skip": self._head_skip,
            "next_shard_id": self._next_shard_id,
            "shards": [{"file": s.file, "count": s.count} for s in self._shards],
        }
        atomic_write(self.index_path, json.dumps(meta, indent=1).encode())
        self._dirty_index = False
        self._persisted_len = self._stored_len()
        for name in self._obsolete:
            (self.root / name).unlink(missing_ok=True)
        self._obsolete.clear()

    # ---- inserts ------------------------------------------------------------------------
    def _append(self, X: torch.Tensor, A: torch.Tensor, R: torch.Tensor) -> None:
        if self._pending is None:
            assert self._schema is not None
            X0, A0, R0 = _empty_batch(self._schema)
            self._pending = [t.new_empty((self.shard_size, *t.shape[1:])) for t in (X0, A0, R0)]
        batch, done = X.shape[0], 0
        while done < batch:
            n = min(batch - done, self.shard_size - self._n_pending)
            sl = slice(self._n_pending, self._n_pending + n)
            for buf, src in zip(self._pending, (X, A, R), strict=True):
                buf[sl] = src[done : done + n]
            self._n_pending += n
            done += n
            self._enforce_capacity()
            if self._n_pending == self.shard_size:
                self._write_pending()
        self._since_flush += batch
        if self.flush_every and self._since_flush >= self.flush_every:
            self.flush()

    def _write_pending(self) -> None:
        assert self._pending is not None
        n = self._n_pending
        X, A, R = (t[:n] for t in self._pending)
        self._shards.append(self._write_shard(X, A, R))
        self._shard_rows += n
        self._n_pending = 0
        self._since_flush = 0
        self._commit_index()

    def _enforce_capacity(self) -> None:
        """Drop the oldest transitions so that ``len(self) <= capacity`` exactly."""
        if self._capacity is None:
            return
        excess = len(self) - self._capacity
        while excess > 0 and self._shards:
            oldest = self._shards[0]
            live = oldest.count - self._head_skip
            if excess >= live:
                self._shards.pop(0)
                self._shard_rows -= oldest.count
                self._cache.pop(oldest.file, None)
                self._obsolete.append(oldest.file)
                self._head_skip = 0
                excess -= live
            else:
                self._head_skip += excess
                excess = 0
            self._dirty_index = True
        if excess > 0:  # everything left is pending: shift it
            assert self._pending is not None
            keep = self._n_pending - excess
            for buf in self._pending:
                buf[:keep] = buf[excess : self._n_pending].clone()
            self._n_pending = keep

    def flush(self) -> None:
        """Write pending transitions as a (possibly partial) shard and commit the index."""
        self._check_open()
        if self._n_pending:
            self._write_pending()
        elif self._dirty_index or self._obsolete:
            self._commit_index()
        self._since_flush = 0

    def close(self) -> None:
        """Flush, drop the cache and release the directory lock."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._cache.clear()
            self._release_lock()

    # ---- reads --------------------------------------------------------------------------
    def _load_shard(self, shard: _Shard) -> Batch:
        """A shard's ``(X, A, R)``: read-only views of a memory map, or loaded tensors."""
        assert self._schema is not None
        layout = self._shard_layout(shard, self._schema)
        path = self.root / shard.file
        if self.memory_map and self._schema.x_dtype in _ST_DTYPES:
            try:
                with open(path, "rb") as f:
                    # Copy-on-write private mapping: writable for torch, never written back.
                    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            except (OSError, ValueError) as exc:
                raise ReplayBufferCorruptError(f"shard {path} cannot be mapped: {exc}") from exc
            dtypes = {"x": self._schema.x_dtype, "a": torch.float32, "r": torch.float32}
            views = {
                k: torch.frombuffer(mm, dtype=dtypes[k], count=numel, offset=offset)
                for k, (offset, numel) in layout.items()
            }
        else:
            try:
                views = _st_load_file(str(path))
            except Exception as exc:  # safetensors raises its own error types
                raise ReplayBufferCorruptError(f"shard {path} is corrupt: {exc}") from exc
        return (
            views["x"].view(shard.count, *self._schema.x_shape),
            views["a"].view(shard.count, self._schema.action_dim),
            views["r"].view(shard.count),
        )

    def _cached(self, shard: _Shard) -> Batch:
        hit = self._cache.get(shard.file)
        if hit is not None:
            self._cache.move_to_end(shard.file)
            return hit
        data = self._load_shard(shard)
        if self.cache_shards:
            self._cache[shard.file] = data
            while len(self._cache) > self.cache_shards:
                self._cache.popitem(last=False)
        return data

    def _segments(self) -> tuple[list[_Shard | None], torch.Tensor]:
        """Segments (shards, then ``None`` for pending) and their start positions.

        Positions count from the first row of the oldest shard, ``head_skip`` included.
        """
        segs: list[_Shard | None] = [*self._shards, None]
        counts = torch.tensor([s.count for s in self._shards] + [self._n_pending])
        starts = torch.cumsum(counts, 0) - counts
        return segs, starts

    def _gather(self, idx: torch.Tensor) -> Batch:
        assert self._schema is not None
        m = idx.shape[0]
        X = torch.empty((m, *self._schema.x_shape), dtype=self._schema.x_dtype)
        A = torch.empty((m, self._schema.action_dim), dtype=torch.float32)
        R = torch.empty((m,), dtype=torch.float32)
        if m == 0:
            return X, A, R
        segs, starts = self._segments()
        pos = idx.to(torch.int64) + self._head_skip
        seg_of = torch.searchsorted(starts, pos, right=True) - 1
        sorted_seg, order = torch.sort(seg_of, stable=True)
        uniq, counts = torch.unique_consecutive(sorted_seg, return_counts=True)
        groups = list(zip(uniq.tolist(), torch.split(order, counts.tolist()), strict=True))
        # Serve cached shards (and pending) first so the misses evict as little as possible.
        groups.sort(key=lambda g: segs[g[0]] is not None and segs[g[0]].file not in self._cache)
        for s, rows in groups:
            shard = segs[s]
            if shard is None:
                assert self._pending is not None
                src = self._pending
            else:
                src = self._cached(shard)
            local = pos[rows] - starts[s]
            X[rows], A[rows], R[rows] = src[0][local], src[1][local], src[2][local]
        return X, A, R

    def _shuffled_order(self, generator: torch.Generator | None) -> torch.Tensor:
        """Permute segments, then shuffle inside windows of ``cache_shards`` segments."""
        segs, starts = self._segments()
        ends = starts + torch.tensor([self._n_pending if s is None else s.count for s in segs])
        starts = starts - self._head_skip
        starts[0] = 0  # the oldest shard's dropped rows are not part of the logical range
        ends = ends - self._head_skip
        seg_order = torch.randperm(len(segs), generator=generator).tolist()
        window = max(1, self.cache_shards)
        parts = []
        for w in range(0, len(seg_order), window):
            ranges = [torch.arange(int(starts[s]), int(ends[s])) for s in seg_order[w : w + window]]
            block = torch.cat(ranges)
            parts.append(block[torch.randperm(block.shape[0], generator=generator)])
        return torch.cat(parts)

    # ---- maintenance --------------------------------------------------------------------
    def transform(self, fn: TransformFn, *, chunk_size: int = 1024) -> None:
        """See :meth:`ReplayBuffer.transform`.

        Each shard's live rows are transformed and written as a new shard; the index then
        switches to the new shards in one atomic rename and the old files are deleted. A
        crash or an exception before that leaves the old data in place.
        """
        self._check_open()
        if self._schema is None:
            return
        run = _TransformRunner(fn)

        def apply(X: torch.Tensor, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if X.shape[0] == 0:
                return run(X, A)
            outs = [
                run(X[s : s + chunk_size], A[s : s + chunk_size])
                for s in range(0, X.shape[0], chunk_size)
            ]
            return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

        new_shards: list[_Shard] = []
        try:
            for i, shard in enumerate(self._shards):
                X, A, R = self._load_shard(shard)
                skip = self._head_skip if i == 0 else 0
                X_new, A_new = apply(X[skip:], A[skip:])
                new_shards.append(self._write_shard(X_new, A_new, R[skip:]))
            n = self._n_pending
            if self._pending is not None:
                X_p, A_p = apply(self._pending[0][:n], self._pending[1][:n])
            else:
                X_p, A_p = apply(*_empty_batch(self._schema)[:2])
        except BaseException:
            for shard in new_shards:
                (self.root / shard.file).unlink(missing_ok=True)
            raise
        assert run.schema is not None
        self._obsolete.extend(s.file for s in self._shards)
        self._shards, self._head_skip, self._schema = new_shards, 0, run.schema
        self._shard_rows = sum(s.count for s in new_shards)
        if self._pending is not None:
            R_p = self._pending[2]
            self._pending = [t.new_empty((self.shard_size, *t.shape[1:])) for t in (X_p, A_p)] + [
                R_p
            ]
            self._pending[0][:n], self._pending[1][:n] = X_p, A_p
        self._cache.clear()
        self._mutations += 1
        self._commit_index()
