"""Crash-safe file replacement shared by the replay buffer and the checkpoints.

A file is written under a hidden temporary name in its target folder
(``.<name>.<random>.tmp``), fsync'd, renamed over the target with ``os.replace`` and the
folder is fsync'd, so after a crash the target holds either its old or its new content.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write", "fsync_dir"]


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it atomically replaces ``path``.

    The caller writes (and closes) the temporary file inside the ``with`` block. On exit
    it is fsync'd and renamed over ``path``; if the block raises, it is deleted and
    ``path`` is left as it was.

    Args:
        path: The file to create or replace; its folder must exist.

    Yields:
        The temporary file's path, in the same folder, named ``.<name>.*.tmp``.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
