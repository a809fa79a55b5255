"""Logs of bandit rounds on disk: a folder of Apache Parquet part files, and their reader.

Each row is one round: the context, the candidate set, the action mask, the chosen action,
its propensity, the reward and, when known, every candidate's expected reward (the
environment's oracle), plus optional scalar columns (decision id, round index, env id,
agent name, ...). Layout::

    <log>/part-000000-<writer>.parquet
    <log>/part-000001-<writer>.parquet
    ...

:class:`~bandexa_gym.offline.log_writer.LogWriter` writes the parts (one per flush, atomic,
under a folder lock; see :mod:`bandexa_gym.offline.log_writer`). Part names carry a sequence
number (their order) and a random writer token. :class:`LogReader` reads the parts in order
and yields batches that run across part boundaries. A part reached twice through a symbolic
or hard link is read once.

Every Parquet page carries a CRC-32 checksum that readers verify, so a damaged part is a
:class:`LogFormatError` naming the file, never silently wrong data.

Contexts, candidate matrices, masks and expected rewards are stored as Arrow fixed-shape
tensors (``arrow.fixed_shape_tensor``, a canonical extension type whose storage is a
fixed-size list), so images keep their shape and nothing is pickled. The format version
(:data:`FORMAT_VERSION`) and the writer's metadata are in every part's schema metadata.

``pyarrow`` is an optional dependency (``pip install "bandexa-gym[logs]"``), imported only
when a log is opened.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "LogBatch",
    "LogFormatError",
    "LogReader",
    "read_log",
]

#: Version of the on-disk format, stored in every part; readers refuse other versions.
FORMAT_VERSION = 1
_VERSION_KEY = b"bandexa.log.version"
_META_KEY = b"bandexa.log.metadata"
_PART_RE = re.compile(r"^part-(\d{6,})-([0-9a-f]+)\.parquet$")

#: The per-round fields, in column order: (name, stored dtype, tensor-valued).
ROUND_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("context", "", True),  # the dtype of the first context written
    ("candidates", "float32", True),
    ("action_mask", "int8", True),
    ("action", "int64", False),
    ("propensity", "float64", False),
    ("reward", "float64", False),
    ("expected_rewards", "float64", True),
)
_REQUIRED = ("context", "candidates", "action_mask", "action", "propensity", "reward")
_NAMES = tuple(name for name, _, _ in ROUND_FIELDS)


class LogFormatError(ValueError):
    """A part file is unreadable, of another format version, or does not fit the log."""


def _pyarrow() -> tuple[Any, Any]:
    """Import pyarrow lazily, with a one-line error naming the extra when it is missing."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError(
            f'bandexa_gym.logs needs pyarrow: pip install "bandexa-gym[logs]" ({e})'
        ) from None
    return pa, pq


def _part_names(folder: Path) -> list[tuple[int, str, Path]]:
    """(sequence number, writer token, path) of every part-named file, in write order."""
    found = []
    for p in folder.iterdir():
        m = _PART_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), m.group(2), p))
    return sorted(found)


def _parts(folder: Path) -> list[Path]:
    """The part files of a log folder, in write order (sequence number, then writer).

    Links are resolved: a name that reaches a file already listed (a symbolic or hard link
    to another part) is left out, so no round is counted twice.
    """
    out, seen = [], set()
    for _, _, p in _part_names(folder):
        try:
            st = p.stat()  # follows symbolic links: the file the name reaches
        except FileNotFoundError:  # pragma: no cover - removed while listing
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            out.append(p)
    return out


# --------------------------------------------------------------------------------- reader


@dataclass
class LogBatch:
    """Rounds read from a log, as numpy arrays (None for columns not read).

    Attributes:
        context: Contexts, shape (B, *context_shape), in their logged dtype.
        candidates: Candidate features, shape (B, K, d_a), float32.
        action_mask: Masks, shape (B, K), int8.
        action: Chosen candidate indices, shape (B,), int64.
        propensity: Their logging probabilities, shape (B,), float64.
        reward: Observed rewards, shape (B,), float64.
        expected_rewards: Every candidate's expected reward, shape (B, K), or None when
            the log has none.
        extra: The extra scalar columns by name, each of shape (B,).
    """

    context: np.ndarray | None = None
    candidates: np.ndarray | None = None
    action_mask: np.ndarray | None = None
    action: np.ndarray | None = None
    propensity: np.ndarray | None = None
    reward: np.ndarray | None = None
    expected_rewards: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    num_rows: int = 0

    def __len__(self) -> int:
        return self.num_rows

    def observation(self, i: int) -> dict[str, np.ndarray]:
        """Round ``i`` as the environment showed it to the agent.

        Args:
            i: Row index in this batch.

        Returns:
            ``{"context": (*context_shape,), "candidates": (K, d_a), "action_mask": (K,)}``,
            the observation that ``agent.action_distribution(obs)`` takes.
        """
        missing = [k for k in ("context", "candidates", "action_mask") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"observation: columns {missing} were not read from the log")
        return {
            "context": self.context[i],
            "candidates": self.candidates[i],
            "action_mask": self.action_mask[i],
        }

    def observations(self) -> Iterator[dict[str, np.ndarray]]:
        """Every round's observation in order (see :meth:`observation`)."""
        for i in range(self.num_rows):
            yield self.observation(i)


class LogReader:
    """Read a log folder written by :class:`LogWriter`.

    Opening a log reads every part's footer and checks its format version and columns, so
    a bad part is reported (by name) before any data is returned. Temporary files left by
    a killed writer are ignored.

    Args:
        path: The log folder.

    Raises:
        ImportError: pyarrow is not installed (the message names the extra).
        FileNotFoundError: ``path`` is not a folder.
        LogFormatError: A part is unreadable, of another format version, lacks one of the
            columns every log has, or has other columns than the first part. Reading a
            part whose data is damaged raises it too, naming the part.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._pa, self._pq = _pyarrow()
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no log folder at {self.path}")
        self.parts = _parts(self.path)
        self.schema: Any = None
        self.metadata: dict[str, Any] = {}
        self._rows: list[int] = []
        for part in self.parts:
            try:
                meta = self._pq.ParquetFile(part).metadata
                schema = meta.schema.to_arrow_schema()
            except Exception as e:  # pyarrow raises several types for a damaged file
                raise LogFormatError(f"{part}: not a readable Parquet part ({e})") from e
            version = (schema.metadata or {}).get(_VERSION_KEY)
            if version is None:
                raise LogFormatError(f"{part}: not a bandexa-gym log part (no format version)")
            if version.decode() != str(FORMAT_VERSION):
                raise LogFormatError(
                    f"{part}: log format version {version.decode()}, but this bandexa-gym reads "
                    f"version {FORMAT_VERSION}; read it with the bandexa-gym that wrote it"
                )
            plain = schema.remove_metadata()
            missing = [c for c in _REQUIRED if c not in plain.names]
            if missing:
                raise LogFormatError(
                    f"{part}: not a complete log part: columns {missing} are missing (every "
                    f"log has {', '.join(_REQUIRED)})"
                )
            if self.schema is None:
                self.schema = plain
                self.metadata = json.loads(schema.metadata.get(_META_KEY, b"{}"))
            elif not plain.equals(self.schema):
                raise LogFormatError(
                    f"{part}: columns differ from the log's first part {self.parts[0].name}"
                )
            self._rows.append(meta.num_rows)

    @property
    def num_rows(self) -> int:
        """Rounds in the log."""
        return sum(self._rows)

    def __len__(self) -> int:
        return self.num_rows

    @property
    def columns(self) -> list[str]:
        """The log's column names (empty for a log with no parts)."""
        return [] if self.schema is None else list(self.schema.names)

    def _columns(self, columns: Sequence[str] | None) -> list[str]:
        if columns is None:
            return self.columns
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise ValueError(f"columns: {unknown} not in this log; it has {self.columns}")
        return list(columns)

    def iter_batches(
        self, batch_size: int = 65_536, columns: Sequence[str] | None = None
    ) -> Iterator[LogBatch]:
        """Yield the rounds in order, ``batch_size`` at a time across part boundaries.

        Args:
            batch_size: Rows per batch; the last batch may be shorter.
            columns: Column names to read (default: all).

        Yields:
            :class:`LogBatch` objects of ``batch_size`` rows (the last one fewer).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        cols = self._columns(columns)
        pending: list[Any] = []
        count = 0
        for part in self.parts:
            try:
                source = self._pq.ParquetFile(part, page_checksum_verification=True).iter_batches(
                    batch_size=batch_size, columns=cols
                )
                for rb in source:
                    pending.append(rb)
                    count += rb.num_rows
                    while count >= batch_size:
                        table = self._pa.Table.from_batches(pending)
                        yield self._to_batch(table.slice(0, batch_size))
                        rest = table.slice(batch_size)
                        pending, count = rest.to_batches(), rest.num_rows
            except (OSError, self._pa.ArrowException) as e:
                raise LogFormatError(f"{part}: could not read ({e})") from e
        if count:
            yield self._to_batch(self._pa.Table.from_batches(pending))

    def read_all(self, columns: Sequence[str] | None = None) -> LogBatch:
        """Read the whole log into memory as one :class:`LogBatch`."""
        cols = self._columns(columns)
        if not self.parts:
            return LogBatch()
        tables = []
        for part in self.parts:
            try:
                tables.append(
                    self._pq.read_table(part, columns=cols, page_checksum_verification=True)
                )
            except (OSError, self._pa.ArrowException) as e:
                raise LogFormatError(f"{part}: could not read ({e})") from e
        return self._to_batch(self._pa.concat_tables(tables))

    def _to_batch(self, table: Any) -> LogBatch:
        out = LogBatch(num_rows=table.num_rows)
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            if isinstance(col.type, self._pa.BaseExtensionType):
                arr = col.to_numpy_ndarray()
            elif self._pa.types.is_string(col.type) or self._pa.types.is_large_string(col.type):
                arr = np.asarray(col.to_pylist(), dtype=object)
            else:
                arr = col.to_numpy(zero_copy_only=False)
            if name in _NAMES:
                setattr(out, name, arr)
            else:
                out.extra[name] = arr
        return out


def read_log(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> LogBatch:
    """Read a whole log folder into memory (see :class:`LogReader`)."""
    return LogReader(path).read_all(columns)
