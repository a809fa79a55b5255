"""Finding, checking and decompressing the data files behind the data-backed environments.

Lookup order for every dataset (first match wins): the ``root`` argument, then the
``BANDEXA_DATA`` environment variable, then the per-user cache (``BANDEXA_CACHE``, else
the platform's user cache folder from ``platformdirs``, e.g. ``~/.cache/bandexa_gym`` on
Linux, ``~/Library/Caches/bandexa_gym`` on macOS, ``%LOCALAPPDATA%\\bandexa_gym\\Cache``
on Windows).

A ``.gz`` file is decompressed with the standard library's :mod:`gzip` into the cache,
under a name keyed on the source's resolved path, size and modification time, so a changed
or different source file is never served from a stale copy. Decompression and parse
failures become a :class:`CorruptDataError` that names the file and the fix.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import platformdirs

__all__ = [
    "CACHE_ENV_VAR",
    "DATA_ENV_VAR",
    "CorruptDataError",
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


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, gunzipped when its name ends in ``.gz``.

    Args:
        path: A data file.

    Returns:
        The (decompressed) bytes.

    Raises:
        CorruptDataError: The gzip stream is truncated or damaged.
    """
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except _GZIP_ERRORS as err:
        raise CorruptDataError(
            path, f"not a complete gzip file ({type(err).__name__}: {err})", _refetch_hint(path)
        ) from err


def decompressed_copy(path: Path, dataset: str) -> Path:
    """An uncompressed copy of ``path``: the file itself, or its decompression in the cache.

    The copy lives at ``<cache>/decompressed/<dataset>/<stem>-<key>``, where ``key``
    digests the source's resolved path, size and modification time, so that another or a
    changed source file gets its own copy. It is written to a temporary name and renamed
    into place (a crash never leaves a torn file). Copies of files that changed stay until
    the cache folder is cleared (``rm -r <cache>/decompressed``).

    Args:
        path: A data file, ``.gz`` or not.
        dataset: Folder name under the cache (e.g. ``"MNIST"``).

    Returns:
        A path to the uncompressed content.

    Raises:
        CorruptDataError: The gzip stream is truncated or damaged.
    """
    if path.suffix != ".gz":
        return path
    digest = hashlib.sha256(repr(file_key(path)).encode()).hexdigest()[:16]
    target_dir = data_cache_dir() / "decompressed" / dataset
    target = target_dir / f"{path.stem}-{digest}"
    if target.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=f".{path.stem}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(path, "rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except _GZIP_ERRORS as err:
        raise CorruptDataError(
            path, f"not a complete gzip file ({type(err).__name__}: {err})", _refetch_hint(path)
        ) from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


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
