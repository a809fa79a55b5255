"""Writing logs of bandit rounds: :class:`LogWriter` and the folder lock it holds.

The format and the reader are in :mod:`bandexa_gym.offline.logs`. :class:`LogWriter` buffers
rows and writes one part per flush: under a hidden temporary name in the folder, fsync'd,
then renamed into place (``bandexa_gym.atomic``), so a killed process leaves every flushed
part complete and readable and never a partial one. A writer holds an exclusive lock on
``<log>/.writer.lock`` while it is open, so a second writer on the same folder (in this
process or another) is refused with a :class:`LogBusyError`; the lock is an operating-system
file lock (``flock``), which the system releases when the process ends, so a crashed or
killed writer never leaves a stale lock behind (the empty lock file stays and is harmless).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from bandexa_gym.atomic import atomic_path
from bandexa_gym.offline.logs import (
    _META_KEY,
    _NAMES,
    _VERSION_KEY,
    FORMAT_VERSION,
    ROUND_FIELDS,
    LogFormatError,
    LogReader,
    _part_names,
    _pyarrow,
)

__all__ = ["LogBusyError", "LogWriter"]

_LOCK_NAME = ".writer.lock"


class LogBusyError(RuntimeError):
    """Another :class:`LogWriter` (in this process or another) has the log folder open."""


def _lock(folder: Path) -> IO[bytes]:
    """Take the writer lock of a log folder, or raise :class:`LogBusyError`.

    The lock is ``flock`` (``msvcrt.locking`` on Windows) on ``<folder>/.writer.lock``: the
    system drops it when the returned file is closed or the process ends, killed or not.
    """
    handle = open(folder / _LOCK_NAME, "a+b")  # noqa: SIM115 - held until close()
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        handle.close()
        raise LogBusyError(
            f"{folder} is open in another LogWriter (it holds {folder / _LOCK_NAME}); close "
            "that writer first (two writers on one folder would mix their rounds), or write "
            "to another folder"
        ) from e
    return handle


def _describe(schema: Any) -> str:
    """A one-line summary of a log schema: ``name shape dtype`` per column."""
    out = []
    for f in schema:
        shape = getattr(f.type, "shape", None)
        value = getattr(f.type, "value_type", f.type)
        out.append(f"{f.name} {tuple(shape)} {value}" if shape is not None else f"{f.name} {value}")
    return ", ".join(out)


# --------------------------------------------------------------------------------- writer


class LogWriter:
    """Buffer bandit rounds and write them as Parquet parts, one part per flush.

    The columns are fixed by the first round appended: the context's shape and dtype,
    K and the candidate features' width, whether ``expected_rewards`` is logged and which
    extra columns exist. Later rounds must match (a ``ValueError`` names the field).

    Example::

        with LogWriter("runs/log", metadata={"env_id": "Bandexa/Synthetic-v0"}) as log:
            log.append(context=obs["context"], candidates=obs["candidates"],
                       action_mask=obs["action_mask"], action=a, propensity=p, reward=r,
                       expected_rewards=info["expected_rewards"], round=t)

    Args:
        path: The log folder (created if missing).
        flush_every: Rows buffered before a part is written automatically (>= 1).
        metadata: JSON-serialisable key-values stored in every part (env id, agent, seed).
        append: Add parts to a folder that already holds a log (its columns must match);
            without it such a folder is an error, so two runs never mix by accident.
        compression: Parquet compression codec.

    Rounds are checked before they are buffered: a bad call (wrong shape, NaN or inf in a
    reward, context, candidate or expected reward, an ``action_mask`` with no candidate on
    offer, a chosen action whose mask is 0) raises a ``ValueError`` and buffers nothing.
    Arrays are copied when appended (in C order), so the caller may reuse its buffers. If
    writing a part fails (a full disk), the rows stay buffered and :meth:`flush` or
    :meth:`close` can be called again.

    The writer holds the folder's lock until :meth:`close` (see the module docstring).

    Raises:
        ImportError: pyarrow is not installed (the message names the extra).
        FileExistsError: ``path`` already holds parts and ``append`` is False.
        LogBusyError: Another writer has ``path`` open.
        LogFormatError: ``append`` is True and a part already there is unreadable.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_every: int = 10_000,
        metadata: Mapping[str, Any] | None = None,
        append: bool = False,
        compression: str = "zstd",
    ) -> None:
        self._pa, self._pq = _pyarrow()
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every: expected an integer >= 1, got {flush_every!r}")
        try:
            self._meta = json.dumps(dict(metadata or {}), sort_keys=True)
        except TypeError as e:
            raise ValueError(f"metadata: expected JSON-serialisable values ({e})") from None
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_file: IO[bytes] | None = _lock(self.path)
        try:
            names = _part_names(self.path)
            if names and not append:
                raise FileExistsError(
                    f"{self.path} already holds a log ({len(names)} parts); pass append=True "
                    "to add to it, or choose a new folder"
                )
            # Every part is checked (a damaged one is a LogFormatError naming it).
            self._existing_schema = LogReader(self.path).schema if names else None
        except BaseException:
            self._release()
            raise
        self.flush_every = flush_every
        self.compression = compression
        self._token = secrets.token_hex(4)
        self._next_seq = names[-1][0] + 1 if names else 0
        self._schema: Any = None  # pyarrow.Schema, fixed by the first append
        self._spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._buffer: dict[str, list[np.ndarray]] = {}
        self._buffered = 0
        self.rows_written = 0
        self.parts_written: list[Path] = []
        self._closed = False

    # -- appending

    def append(
        self,
        *,
        context: Any,
        candidates: Any,
        action_mask: Any,
        action: int,
        propensity: float,
        reward: float,
        expected_rewards: Any | None = None,
        **extra: Any,
    ) -> None:
        """Log one round.

        Args:
            context: The round's context, any fixed shape (vector or image).
            candidates: Candidate features, shape (K, d_a).
            action_mask: 1 for the candidates on offer, shape (K,).
            action: Index of the chosen candidate.
            propensity: Probability with which it was chosen, in (0, 1], or NaN if unknown.
            reward: The observed reward.
            expected_rewards: Every candidate's expected reward (K,), or None.
            **extra: Scalar columns (int, float, str or bool), e.g. ``decision_id``,
                ``round``, ``env_id``, ``agent``.
        """
        rows = {
            "context": np.asarray(context)[None],
            "candidates": np.asarray(candidates)[None],
            "action_mask": np.asarray(action_mask)[None],
            "action": np.asarray([action]),
            "propensity": np.asarray([propensity], dtype=np.float64),
            "reward": np.asarray([reward], dtype=np.float64),
        }
        if expected_rewards is not None:
            rows["expected_rewards"] = np.asarray(expected_rewards, dtype=np.float64)[None]
        for key, value in extra.items():
            rows[key] = np.asarray([value])
        self._add(rows, 1)

    def append_batch(
        self,
        *,
        context: Any,
        candidates: Any,
        action_mask: Any,
        action: Any,
        propensity: Any,
        reward: Any,
        expected_rewards: Any | None = None,
        **extra: Any,
    ) -> None:
        """Log B rounds at once (a vector env's step): every argument has a leading B axis.

        Args:
            context: Contexts, shape (B, ...).
            candidates: Candidate features, shape (B, K, d_a).
            action_mask: Masks, shape (B, K).
            action: Chosen indices, shape (B,).
            propensity: Their probabilities, shape (B,).
            reward: Observed rewards, shape (B,).
            expected_rewards: Expected rewards, shape (B, K), or None.
            **extra: Scalar columns, each of shape (B,).
        """
        rows = {
            "context": np.asarray(context),
            "candidates": np.asarray(candidates),
            "action_mask": np.asarray(action_mask),
            "action": np.asarray(action),
            "propensity": np.asarray(propensity, dtype=np.float64),
            "reward": np.asarray(reward, dtype=np.float64),
        }
        if expected_rewards is not None:
            rows["expected_rewards"] = np.asarray(expected_rewards, dtype=np.float64)
        for key, value in extra.items():
            rows[key] = np.asarray(value)
        b = rows["action"].shape[0] if rows["action"].ndim == 1 else -1
        for key, arr in rows.items():
            if arr.ndim == 0 or arr.shape[0] != b:
                raise ValueError(
                    f"{key}: expected a leading batch axis of length B = {b} (the length of "
                    f"action), got shape {arr.shape}"
                )
        self._add(rows, b)

    def _add(self, rows: dict[str, np.ndarray], b: int) -> None:
        if self._closed:
            raise ValueError(f"LogWriter for {self.path} is closed")
        if self._schema is None:
            spec, schema = self._new_schema(rows)
            self._check(rows, spec)  # a bad first round must not fix the columns
            self._spec, self._schema = spec, schema
            self._buffer = {name: [] for name in spec}
        else:
            self._check(rows, self._spec)
        for key, arr in rows.items():
            # A C-ordered copy: pyarrow's tensors need it, and the caller may reuse its arrays.
            self._buffer[key].append(np.array(arr, dtype=self._spec[key][1], order="C"))
        self._buffered += b
        if self._buffered >= self.flush_every:
            self.flush()

    def _new_schema(
        self, rows: dict[str, np.ndarray]
    ) -> tuple[dict[str, tuple[tuple[int, ...], np.dtype]], Any]:
        """Every column's per-row shape and dtype, and the Arrow schema, from the first rows."""
        pa = self._pa
        spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        fields = []
        for name, dtype, is_tensor in ROUND_FIELDS:
            if name not in rows:
                continue
            arr = rows[name]
            shape = tuple(arr.shape[1:])
            np_dtype = np.dtype(dtype) if dtype else arr.dtype
            if name == "context" and (np_dtype.kind not in "biuf" or not shape):
                raise ValueError(
                    f"context: expected a numeric array of at least one dimension per round "
                    f"(a vector or an image), got dtype {arr.dtype} and shape {shape}"
                )
            if name == "candidates" and len(shape) != 2:
                raise ValueError(f"candidates: expected shape (K, d_a) per round, got {shape}")
            spec[name] = (shape, np_dtype)
            arrow_type = pa.from_numpy_dtype(np_dtype)
            if is_tensor:
                arrow_type = pa.fixed_shape_tensor(arrow_type, list(shape))
            fields.append(pa.field(name, arrow_type, nullable=False))
        for name, arr in rows.items():
            if name in _NAMES:
                continue
            if arr.ndim != 1:
                raise ValueError(f"{name}: extra columns hold one scalar per round")
            kind = arr.dtype.kind
            if kind in "US":
                np_dtype, arrow_type = np.dtype(object), pa.string()
            elif kind in "biuf":
                np_dtype = arr.dtype if kind != "i" else np.dtype(np.int64)
                np_dtype = np.dtype(np.float64) if kind == "f" else np_dtype
                arrow_type = pa.from_numpy_dtype(np_dtype)
            else:
                raise ValueError(
                    f"{name}: extra columns must be int, float, str or bool, got {arr.dtype}"
                )
            spec[name] = ((), np_dtype)
            fields.append(pa.field(name, arrow_type, nullable=False))
        k = spec["candidates"][0][0]
        for name in ("action_mask", "expected_rewards"):
            if name in spec and spec[name][0] != (k,):
                raise ValueError(
                    f"{name}: expected shape ({k},) per round (K = {k} candidates), got "
                    f"{spec[name][0]}"
                )
        schema = pa.schema(fields)
        if self._existing_schema is not None and not schema.equals(self._existing_schema):
            raise LogFormatError(
                f"{self.path}: the rounds appended do not fit the log already there (log: "
                f"{_describe(self._existing_schema)}; appended: {_describe(schema)})"
            )
        return spec, schema

    def _check(
        self, rows: dict[str, np.ndarray], spec: dict[str, tuple[tuple[int, ...], np.dtype]]
    ) -> None:
        missing = set(spec) - set(rows)
        unexpected = set(rows) - set(spec)
        if missing or unexpected:
            raise ValueError(
                f"this log's columns are fixed by its first round: missing {sorted(missing)}, "
                f"unexpected {sorted(unexpected)}"
            )
        for name, arr in rows.items():
            shape, dtype = spec[name]
            if tuple(arr.shape[1:]) != shape:
                raise ValueError(
                    f"{name}: expected shape {shape} per round like the log's first round, got "
                    f"{tuple(arr.shape[1:])}"
                )
            if dtype.kind == "O" and arr.dtype.kind not in "US":
                raise ValueError(f"{name}: expected strings, got {arr.dtype}")
        k = spec["candidates"][0][0]
        a = rows["action"]
        if a.dtype.kind not in "iu" or ((a < 0) | (a >= k)).any():
            raise ValueError(f"action: expected integer indices in [0, {k}), got {a.tolist()}")
        p = rows["propensity"]
        if ((p <= 0) | (p > 1)).any():  # NaN (unknown) passes: comparisons are False
            raise ValueError(
                f"propensity: expected probabilities in (0, 1] (NaN if unknown), got {p.tolist()}"
            )
        for name in ("reward", "context", "candidates", "expected_rewards"):
            arr = rows.get(name)
            if arr is not None and arr.dtype.kind == "f" and not np.isfinite(arr).all():
                i = int(np.argmin(np.isfinite(arr).reshape(len(arr), -1).all(axis=1)))
                raise ValueError(
                    f"{name}: expected finite values, got NaN or inf in row {i} of the call"
                )
        mask = rows["action_mask"]
        offered = mask != 0
        if mask.dtype.kind not in "biuf" or (mask != offered).any():  # a value other than 0, 1
            raise ValueError("action_mask: expected 0 (not on offer) or 1 (on offer) per candidate")
        if not offered.any(axis=1).all():
            i = int(np.argmin(offered.any(axis=1)))
            raise ValueError(
                f"action_mask: row {i} of the call has no candidate on offer (all zeros); "
                "every round offers at least one"
            )
        chosen = offered[np.arange(len(a)), a]
        if not chosen.all():
            i = int(np.argmin(chosen))
            raise ValueError(
                f"action: row {i} of the call chose candidate {int(a[i])}, which its "
                "action_mask marks as not on offer (0)"
            )

    # -- flushing

    @property
    def buffered(self) -> int:
        """Rows appended but not yet written."""
        return self._buffered

    def flush(self) -> Path | None:
        """Write the buffered rows as one part (atomically); None when nothing is buffered.

        If writing fails (a full disk), the error propagates and the rows stay buffered:
        call ``flush()`` again once the cause is fixed.
        """
        if self._buffered == 0:
            return None
        pa = self._pa
        columns = []
        for f in self._schema:
            arr = np.ascontiguousarray(np.concatenate(self._buffer[f.name]))
            if isinstance(f.type, pa.BaseExtensionType):
                columns.append(pa.FixedShapeTensorArray.from_numpy_ndarray(arr))
            else:
                columns.append(pa.array(arr, type=f.type))
        meta = {_VERSION_KEY: str(FORMAT_VERSION).encode(), _META_KEY: self._meta.encode()}
        table = pa.Table.from_arrays(columns, schema=self._schema.with_metadata(meta))
        target = self.path / f"part-{self._next_seq:06d}-{self._token}.parquet"
        with atomic_path(target) as tmp:
            self._pq.write_table(table, tmp, compression=self.compression, write_page_checksum=True)
        self._next_seq += 1
        self.rows_written += self._buffered
        self.parts_written.append(target)
        self._buffer = {name: [] for name in self._spec}
        self._buffered = 0
        return target

    def close(self) -> None:
        """Flush what is buffered and release the folder's lock; later appends are errors.

        If the flush fails, the writer stays open (rows buffered, lock held) and the error
        propagates: ``close()`` may be called again.
        """
        if not self._closed:
            self.flush()
            self._closed = True
            self._release()

    def _release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file drops the lock
            self._lock_file = None

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
