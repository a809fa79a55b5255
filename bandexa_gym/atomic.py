"""Crash-safe file replacement shared by the replay buffer and the checkpoints.

A file is written under a hidden temporary name in its target folder
(``.<name>.<random>.tmp``), fsync'd, renamed over the target with ``os.replace`` and the
folder is fsync'd, so after a crash the target holds either its old or its new content.

Permissions are those an ordinary ``open(path, "w")`` of a new file gives: the temporary
file is created with mode ``0o666`` and the kernel applies the process umask at creation,
so ``umask 022`` gives ``0o644`` and ``umask 077`` gives ``0o600``. The mode the kernel
chose is read back from the new file and restored before the rename if the writer
replaced the file with its own (safetensors' ``save_file`` writes through a private
``0o600`` temporary file). The umask itself is never read or changed, so there is no
window in which another thread could create a file under a wrong umask. Replacing a file
does not carry over a mode set on the old one by hand (``chmod``): the new content is a
new file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write", "fsync_dir"]

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_NEW_FILE_MODE = 0o666  # what open() asks for; the umask takes its bits away
_NAME_ATTEMPTS = 100


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


def _create_temp(path: Path) -> tuple[Path, int]:
    """Create a new empty ``.<name>.<random>.tmp`` beside ``path``, as ``open()`` would.

    ``O_EXCL`` makes the creation race-free (an existing name, even a symlink, is never
    opened), and mode ``0o666`` lets the umask decide the permissions.

    Returns:
        The temporary path and the permission bits the kernel gave it.
    """
    for _ in range(_NAME_ATTEMPTS):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, _CREATE_FLAGS, _NEW_FILE_MODE)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        return tmp, mode
    raise FileExistsError(f"no free temporary name for {path} after {_NAME_ATTEMPTS} attempts")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it atomically replaces ``path``.

    The caller writes (and closes) the temporary file inside the ``with`` block; it
    already exists, empty, with the permissions of a new file under the current umask
    (restored on exit if the writer replaced the file). On exit it is fsync'd and renamed
    over ``path``, and the folder is fsync'd; if the block raises, it is deleted and
    ``path`` is left as it was.

    Args:
        path: The file to create or replace; its folder must exist.

    Yields:
        The temporary file's path, in the same folder, named ``.<name>.<random>.tmp``.
    """
    path = Path(path)
    tmp, mode = _create_temp(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            if hasattr(os, "fchmod") and stat.S_IMODE(os.fstat(f.fileno()).st_mode) != mode:
                os.fchmod(f.fileno(), mode)  # the writer made its own file: restore
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
