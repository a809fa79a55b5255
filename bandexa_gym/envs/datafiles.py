"""Finding, checking and decompressing the data files behind the data-backed environments.

Lookup order for every dataset (first match wins): the ``root`` argument, then the
``BANDEXA_DATA`` environment variable, then the per-user cache (``BANDEXA_CACHE``, else
the platform's user cache folder from ``platformdirs``, e.g. ``~/.cache/bandexa_gym`` on
Linux, ``~/Library/Caches/bandexa_gym`` on macOS, ``%LOCALAPPDATA%\\bandexa_gym\\Cache``
on Windows).

A ``.gz`` file is decompressed with the standard library's :mod:`gzip` into the cache,
under a name keyed on the source's resolved path, size and modification time, so a changed
or different source file is never served from a stale copy; the copy of an older version of
the same source is removed when the new one is made. Decompression and parse failures
become a :class:`CorruptDataError` that names the file and the fix.

A file that is missing everywhere raises a :class:`MissingDataError` (a
``FileNotFoundError``) that names ``bandexa-data fetch <name>`` and ``download=True``:
:mod:`bandexa_gym.envs.downloads` fetches the published files, with pinned sha256 hashes,
into the per-user cache.

Decompression is bounded: it stops with a :class:`CorruptDataError` as soon as the output
passes the most the file can hold (the caller's bound for a known file, e.g. an MNIST
split, else :data:`MAX_DECOMPRESSED_BYTES`), so a small damaged or hostile ``.gz`` (a
"decompression bomb") neither fills memory nor leaves a large file in the cache.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import platformdirs

__all__ = [
    "CACHE_ENV_VAR",
    "DATA_ENV_VAR",
    "MAX_DECOMPRESSED_BYTES",
    "CorruptDataError",
    "MissingDataError",
    "copy_content",
    "data_cache_dir",
    "data_roots",
    "decompressed_copy",
    "file_key",
    "find_file",
    "read_bytes",
    "verify_md5",
]

DATA_ENV_VAR = "BANDEXA_DATA"
CACHE_ENV_VAR = "BANDEXA_CACHE"
_APP_NAME = "bandexa_gym"
_CHUNK = 1 << 20
#: A killed decompression's temporary file older than this (seconds) is removed.
_STALE_TEMP_S = 3600.0

#: Default bound on a decompressed data file (64 MiB): more than ten times the largest text
#: file the loaders know (the Open Bandit sample's ``all.csv``, 5 MB) and above the largest
#: MNIST file (47 MB, which has its own exact bound). Raise it, e.g.
#: ``bandexa_gym.envs.datafiles.MAX_DECOMPRESSED_BYTES = 2 << 30``, for a larger file of your
#: own (the full Open Bandit Dataset); it is read at every call.
MAX_DECOMPRESSED_BYTES = 64 << 20

# Errors that a damaged gzip stream raises while it is read.
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)

#: (resolved path, size, mtime_ns) of files whose md5 matched, checked once per process.
_VERIFIED: set[tuple[str, int, int]] = set()


class CorruptDataError(ValueError):
    """A data file exists but cannot be read: truncated, not gzip, wrong content or checksum.

    Attributes:
        path: The offending file.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str, fix: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}. To fix: {fix}")


class MissingDataError(FileNotFoundError):
    """A dataset's file is found in no data root, and was not (or could not be) fetched.

    The message names the file, the folders searched and the fix: ``bandexa-data fetch
    <dataset>``, ``download=True``, or ``BANDEXA_DATA`` / ``root=`` pointing at a copy.

    Attributes:
        dataset: The name ``bandexa-data fetch`` takes (e.g. ``"adult"``, ``"open_bandit"``).
    """

    def __init__(self, dataset: str, message: str) -> None:
        self.dataset = dataset
        super().__init__(message)

    @property
    def summary(self) -> str:
        """One line: what is missing and the command that fetches it."""
        return (
            f"the {self.dataset} data is not found here and was not fetched; run "
            f"`bandexa-data fetch {self.dataset}` (or set {DATA_ENV_VAR} to a folder holding it)"
        )


def data_cache_dir() -> Path:
    """The per-user folder for downloaded and decompressed data.

    Returns:
        ``$BANDEXA_CACHE`` if set, else ``platformdirs.user_cache_dir("bandexa_gym")``
        (honours ``XDG_CACHE_HOME`` on Linux).
    """
    explicit = os.environ.get(CACHE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    return Path(platformdirs.user_cache_dir(_APP_NAME, appauthor=False))


def data_roots(root: str | os.PathLike[str] | None) -> list[Path]:
    """The data roots to search, in order: ``root``, ``$BANDEXA_DATA``, the cache.

    Args:
        root: A folder searched first, or ``None``.

    Returns:
        Distinct folders in lookup order.
    """
    roots = []
    if root is not None:
        roots.append(Path(root).expanduser())
    env_root = os.environ.get(DATA_ENV_VAR)
    if env_root:
        roots.append(Path(env_root).expanduser())
    roots.append(data_cache_dir())
    return list(dict.fromkeys(roots))


def find_file(folder: Path, name: str) -> Path | None:
    """``folder/name`` if it is a file, else ``folder/name.gz`` if that is, else ``None``."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def file_key(path: Path) -> tuple[str, int, int]:
    """Identity of a file's content for caches: (resolved path, size, mtime in ns)."""
    resolved = path.resolve()
    stat = resolved.stat()
    return str(resolved), stat.st_size, stat.st_mtime_ns


def _refetch_hint(path: Path) -> str:
    return (
        f"delete {path} and copy or download it again (a partial copy or download leaves a "
        "truncated file)"
    )


def _gunzip(path: Path, write: Callable[[bytes], object], max_bytes: int | None) -> None:
    """Decompress ``path`` chunk by chunk into ``write``, stopping past the bound."""
    limit = MAX_DECOMPRESSED_BYTES if max_bytes is None else max_bytes
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                total += len(chunk)
                if total > limit:
                    fix = _refetch_hint(path)
                    if max_bytes is None:
                        fix += (
                            "; for a larger genuine file, raise "
                            "bandexa_gym.envs.datafiles.MAX_DECOMPRESSED_BYTES"
                        )
                    raise CorruptDataError(
                        path,
                        f"decompresses to more than {limit:,} bytes, more than the file can "
                        "hold (a damaged file or a decompression bomb); decompression stopped",
                        fix,
                    )
                write(chunk)
    except _GZIP_ERRORS as err:
        raise CorruptDataError(
            path, f"not a complete gzip file ({type(err).__name__}: {err})", _refetch_hint(path)
        ) from err


def read_bytes(path: Path, max_bytes: int | None = None) -> bytes:
    """The content of ``path``, gunzipped when its name ends in ``.gz``.

    Args:
        path: A data file.
        max_bytes: The most a ``.gz`` file may decompress to (default
            :data:`MAX_DECOMPRESSED_BYTES`); decompression stops past it.

    Returns:
        The (decompressed) bytes.

    Raises:
        CorruptDataError: The gzip stream is truncated, damaged or decompresses to more
            than ``max_bytes``.
    """
    if path.suffix != ".gz":
        return path.read_bytes()
    chunks: list[bytes] = []
    _gunzip(path, chunks.append, max_bytes)
    return b"".join(chunks)


def copy_content(source: Path, out: BinaryIO, max_bytes: int | None = None) -> int:
    """Write the content of ``source`` (gunzipped when its name ends in ``.gz``) to ``out``.

    Args:
        source: A data file.
        out: A binary stream opened for writing.
        max_bytes: The most the content may hold (default :data:`MAX_DECOMPRESSED_BYTES`);
            a ``.gz`` file's decompression stops past it, a larger plain file is not copied.

    Returns:
        The number of bytes written.

    Raises:
        CorruptDataError: The gzip stream is truncated or damaged, or the content holds more
            than ``max_bytes``.
    """
    limit = MAX_DECOMPRESSED_BYTES if max_bytes is None else max_bytes
    if source.suffix != ".gz":
        size = source.stat().st_size
        if size > limit:
            raise CorruptDataError(
                source,
                f"holds {size:,} bytes, more than the {limit:,} expected",
                "use the original file",
            )
        with source.open("rb") as stream:
            shutil.copyfileobj(stream, out, _CHUNK)
        return size
    written = 0

    def write(chunk: bytes) -> None:
        nonlocal written
        out.write(chunk)
        written += len(chunk)

    _gunzip(source, write, max_bytes)
    return written


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def decompressed_copy(path: Path, dataset: str, max_bytes: int | None = None) -> Path:
    """An uncompressed copy of ``path``: the file itself, or its decompression in the cache.

    The copy lives at ``<cache>/decompressed/<dataset>/<stem>-<source><version>``: 8 hex
    digits digest the source's resolved path and 8 its size and modification time, so that
    another or a changed source file gets its own copy. It is written to a temporary name
    and renamed into place (a crash never leaves a torn file). Making the copy of a new
    version removes the copies of the same source's older versions, and temporary files
    that a killed decompression left more than an hour ago. A caller that finds a copy
    invalid removes it (``Path.unlink``), so nothing invalid stays in the cache.

    Args:
        path: A data file, ``.gz`` or not.
        dataset: Folder name under the cache (e.g. ``"MNIST"``).
        max_bytes: The most the file may decompress to (default
            :data:`MAX_DECOMPRESSED_BYTES`); decompression stops past it and leaves nothing.

    Returns:
        A path to the uncompressed content.

    Raises:
        CorruptDataError: The gzip stream is truncated, damaged or decompresses to more
            than ``max_bytes``.
    """
    if path.suffix != ".gz":
        return path
    resolved, size, mtime_ns = file_key(path)
    source = f"{path.stem}-{_digest(resolved)}"
    target_dir = data_cache_dir() / "decompressed" / dataset
    target = target_dir / f"{source}{_digest(repr((size, mtime_ns)))}"
    if target.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=f".{path.stem}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            _gunzip(path, out.write, max_bytes)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _remove_stale(target_dir, target, source, path.stem)
    return target


def _remove_stale(folder: Path, keep: Path, source: str, stem: str) -> None:
    """Remove other versions' copies of one source, and old temporary files of its stem."""
    now = time.time()
    for p in folder.iterdir():
        try:
            if p.name.startswith(source) and len(p.name) == len(keep.name) and p != keep:
                p.unlink()
            elif (
                p.name.startswith(f".{stem}.")
                and p.name.endswith(".part")
                and now - p.stat().st_mtime > _STALE_TEMP_S
            ):
                p.unlink()
        except FileNotFoundError:  # pragma: no cover - removed by another process
            pass


def verify_md5(path: Path, content: bytes, expected: str) -> None:
    """Check the md5 of ``content`` (read from ``path``) once per process.

    Args:
        path: Where ``content`` was read from (named in the error, and the cache key).
        content: The uncompressed bytes.
        expected: The published md5 of the uncompressed file, hex.

    Raises:
        CorruptDataError: The md5 differs.
    """
    key = file_key(path)
    if key in _VERIFIED:
        return
    actual = hashlib.md5(content, usedforsecurity=False).hexdigest()
    if actual != expected:
        raise CorruptDataError(
            path,
            f"md5 of the uncompressed content is {actual}, expected {expected}",
            _refetch_hint(path),
        )
    _VERIFIED.add(key)
