"""Crash-safe replay buffer stored as safetensors shards plus a JSON index."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as _st_save

from bandexa_gym.atomic import atomic_write
from bandexa_gym.buffers._format import (
    FORMAT,
    FORMAT_VERSION,
    INDEX_NAME,
    LOCK_NAME,
    OLDEST_READABLE_VERSION,
    Shard,
    index_version,
    load_shard,
    parse_index,
    parse_shard_name,
    shard_file,
    shard_layout,
    version_error,
)
from bandexa_gym.buffers.base import ReplayBuffer
from bandexa_gym.buffers.schema import (
    Batch,
    ReplayBufferCorruptError,
    TransformFn,
    _check_flag,
    _check_int,
    _empty_batch,
    _TransformRunner,
)

try:  # advisory single-writer lock; not available on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


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

    Each shard records the step of its first row in the index, with ``total_added``, so
    steps survive reopening and capacity trimming. The index carries a format version
    (currently 2); a folder written by bandexa-gym 0.1.0 (version 1, no steps) opens with
    steps numbered in stored order from 0 and is rewritten as version 2 on its next
    commit. Entries of the index are validated before anything is read or deleted: shard
    names must be this buffer's own (``shard-<id>.safetensors``) and resolve inside
    ``root_dir``.

    Shards are opened through an LRU cache of ``cache_shards`` shards, and :meth:`sample`
    groups the drawn indices by shard so each shard is opened at most once per call. With
    ``memory_map=True`` (default) an opened shard is a read-only memory map: a sample reads
    only the rows it draws (the OS page cache keeps hot pages), so sampling costs
    O(batch) I/O even with large contexts such as ``(3, 224, 224)`` images. With
    ``memory_map=False`` whole shards are loaded into RAM (``cache_shards`` of them kept).

    Files are created with the permissions of an ordinary new file under the process
    umask (``0o644`` under ``umask 022``; use ``umask 077`` or a private ``root_dir`` for
    data others must not read). One process may open a directory at a time (an advisory
    ``flock`` on ``.lock``).
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
        TypeError: If a count is not an int (a bool, float or string) or ``memory_map``
            is not a bool.
        ValueError: If a count is out of range.
        ReplayBufferCorruptError: If the index is unreadable or names a file that is not
            one of the buffer's shards, or a listed shard is missing, truncated or does
            not match the index (nothing in the folder is changed).
        ReplayBufferVersionError: If the index has a format version this library cannot
            read (the message names it and the readable ones).
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
        if not isinstance(root_dir, (str, os.PathLike)):
            raise TypeError(f"root_dir must be a path, got {type(root_dir).__name__}")
        self.root = Path(root_dir)
        self.shard_size = _check_int(shard_size, "shard_size", 1)
        self.cache_shards = _check_int(cache_shards, "cache_shards", 0)
        self.flush_every = _check_int(flush_every, "flush_every", 0)
        self.memory_map = _check_flag(memory_map, "memory_map")
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._acquire_lock()

        self._shards: list[Shard] = []
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
        return self.root / INDEX_NAME

    def _acquire_lock(self) -> Any:
        if fcntl is None:  # pragma: no cover
            return None
        f = open(self.root / LOCK_NAME, "a+b")  # noqa: SIM115 - held until close()
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
        """Read, validate and adopt ``index.json`` (if any); changes nothing on disk."""
        path = self.index_path
        if not path.exists():
            return
        try:
            meta = json.loads(path.read_text())
            version = index_version(meta)
        except (OSError, ValueError) as exc:
            raise ReplayBufferCorruptError(f"cannot read replay index {path}: {exc}") from exc
        if not OLDEST_READABLE_VERSION <= version <= FORMAT_VERSION:
            raise version_error(path, version)
        try:
            index = parse_index(meta, version, self.root)
        except ValueError as exc:
            raise ReplayBufferCorruptError(f"replay index {path} is corrupt: {exc}") from exc
        for shard in index.shards:
            shard_layout(self.root, path, shard, index.schema)
        self._schema, self._shards = index.schema, index.shards
        self._shard_rows = sum(s.count for s in index.shards)
        self._head_skip, self._next_shard_id = index.head_skip, index.next_shard_id
        self._total_added = index.total_added
        self._persisted_len = self._stored_len()

    def _cleanup_stray_files(self) -> None:
        """Delete temp files and shard files the index does not list (crash leftovers)."""
        listed = {s.file for s in self._shards}
        for entry in self.root.iterdir():
            name = entry.name
            stray_tmp = name.startswith(".") and name.endswith(".tmp")
            orphan = parse_shard_name(name) is not None and name not in listed
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
        name = shard_file(self._next_shard_id)
        self._next_shard_id += 1
        return name

    def _write_shard(
        self, X: torch.Tensor, A: torch.Tensor, R: torch.Tensor, first_step: int
    ) -> Shard:
        name = self._shard_name()
        data = _st_save(
            {"x": X.contiguous(), "a": A.contiguous(), "r": R.contiguous()},
            metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)},
        )
        atomic_write(self.root / name, data)
        return Shard(name, int(X.shape[0]), first_step)

    def _commit_index(self) -> None:
        """Atomically write the index, then delete the shard files it no longer lists."""
        assert self._schema is not None
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "x_shape": list(self._schema.x_shape),
            "x_dtype": str(self._schema.x_dtype).removeprefix("torch."),
            "action_dim": self._schema.action_dim,
            "a_dtype": "float32",
            "r_dtype": "float32",
            "head_skip": self._head_skip,
            "next_shard_id": self._next_shard_id,
            "total_added": self._total_added - self._n_pending,
            "shards": [
                {"file": s.file, "count": s.count, "first_step": s.first_step} for s in self._shards
            ],
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
            self._total_added += n
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
        self._shards.append(self._write_shard(X, A, R, self._total_added - n))
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
    def _load_shard(self, shard: Shard) -> Batch:
        """A shard's ``(X, A, R)``: read-only views of a memory map, or loaded tensors."""
        assert self._schema is not None
        return load_shard(self.root, self.index_path, shard, self._schema, self.memory_map)

    def _cached(self, shard: Shard) -> Batch:
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

    def _segments(self) -> tuple[list[Shard | None], torch.Tensor]:
        """Segments (shards, then ``None`` for pending) and their start positions.

        Positions count from the first row of the oldest shard, ``head_skip`` included.
        """
        segs: list[Shard | None] = [*self._shards, None]
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
        chunk_size = _check_int(chunk_size, "chunk_size", 1)
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

        new_shards: list[Shard] = []
        try:
            for i, shard in enumerate(self._shards):
                X, A, R = self._load_shard(shard)
                skip = self._head_skip if i == 0 else 0
                X_new, A_new = apply(X[skip:], A[skip:])
                new_shards.append(
                    self._write_shard(X_new, A_new, R[skip:], shard.first_step + skip)
                )
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
