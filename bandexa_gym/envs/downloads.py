"""Fetching the published data files into the per-user cache, with pinned sha256 hashes.

Every file that the catalogue datasets (``Bandexa/Adult-v0``, ``Letter-v0``, ``Satimage-v0``,
``Pendigits-v0``, ``Bandexa/Classification-v0`` with a catalogue name) and
:func:`bandexa_gym.datasets.open_bandit` read has an entry in :data:`DATASETS`: where it lies
in a data root (``adult/adult.data``), where it is published (the UCI Machine Learning
Repository; st-tech/zr-obp's ``obd/`` folder for the Open Bandit Dataset sample), its size and
the sha256 of its bytes. :func:`fetch` downloads with `pooch <https://www.fatiando.org/pooch>`_
into the per-user cache (``$BANDEXA_CACHE``, else ``~/.cache/bandexa_gym`` on Linux), which is
the last data root the loaders search (``root=`` > ``$BANDEXA_DATA`` > the cache): pooch
writes to a temporary file beside the target, checks the hash and only then moves it into
place, so a failed or tampered download leaves nothing in the cache; a cached file whose hash
no longer matches is removed and fetched again; a file already there with the right hash is
reused without a download.

``$BANDEXA_DATA_URL`` (or the ``url=`` argument) replaces the publishers' addresses with a
mirror laid out like a data root: an ``http(s)://`` base URL, or a local folder (a path or a
``file://`` URL) whose files may also be gzipped (``adult/adult.data.gz``). A local mirror is
copied through the same pooch call and hash check, decompressing with a bound of the file's
known size, so tests serve the shared data folder and never download.

The command ``bandexa-data`` (:mod:`bandexa_gym.data_cli`) lists where each dataset is found
and fetches datasets by name; ``download=True`` on the envs and on ``open_bandit`` fetches
the files they need on first use.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from bandexa_gym.envs.datafiles import (
    DATA_ENV_VAR,
    CorruptDataError,
    MissingDataError,
    copy_content,
    data_cache_dir,
    data_roots,
    find_file,
)

__all__ = [
    "DATASETS",
    "URL_ENV_VAR",
    "RemoteDataset",
    "RemoteFile",
    "fetch",
    "fetch_file",
    "find_or_fetch",
    "locate",
    "missing_data_error",
]

URL_ENV_VAR = "BANDEXA_DATA_URL"

_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases"
_OBD = "https://raw.githubusercontent.com/st-tech/zr-obp/master/obd"
_OBD_FOLDER = "open_bandit_dataset"


@dataclass(frozen=True)
class RemoteFile:
    """One published data file.

    Attributes:
        path: Where it lies under a data root, ``/``-separated (``"adult/adult.data"``).
        url: Where it is published.
        sha256: The sha256 of its bytes (uncompressed, as published), hex.
        size: Its size in bytes.
    """

    path: str
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class RemoteDataset:
    """A dataset that ``bandexa-data fetch`` knows by name.

    Attributes:
        name: The name (``"adult"``, ``"open_bandit"``).
        description: One line: what it is and who publishes it, under which terms.
        files: Its files.
    """

    name: str
    description: str
    files: tuple[RemoteFile, ...]

    def file(self, path: str) -> RemoteFile:
        """The entry of ``path`` (e.g. ``"adult/adult.data"``)."""
        for entry in self.files:
            if entry.path == path:
                return entry
        raise KeyError(f"{self.name} has no file {path!r}; its files: {self.paths}")

    @property
    def paths(self) -> list[str]:
        """The paths of its files."""
        return [entry.path for entry in self.files]


# Where each folder's files are published.
_PUBLISHERS = {
    "adult": f"{_UCI}/adult",
    "letter": f"{_UCI}/letter-recognition",
    "satimage": f"{_UCI}/statlog/satimage",
    "pendigits": f"{_UCI}/pendigits",
    _OBD_FOLDER: _OBD,
}

# (path under a data root, size, sha256) of each published file: equal to those of the copies
# in the project's shared data folder once gunzipped and, for the UCI files, to the hashes
# other projects pin for the same UCI addresses.
_FILES = (
    ("adult/adult.data", 3974305,
     "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"),
    ("adult/adult.test", 2003153,
     "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05"),
    ("letter/letter-recognition.data", 712565,
     "2b89f3602cf768d3c8355267d2f13f2417809e101fc2b5ceee10db19a60de6e2"),
    ("satimage/sat.trn", 525830,
     "e896dc88a960fa2404160fc4c3cb3dc53fcf4afd80ba920bf2d261bd42d12613"),
    ("satimage/sat.tst", 236745,
     "4b9167b8a92baafafed7c8809aef86d0683a5e685c19d98d119fa6974f0f2479"),
    ("pendigits/pendigits.tra", 502098,
     "e2b9eb9f0d0467e2b64a4816a3420edf2b8043447576f4b84337aba44a9f97d3"),
    ("pendigits/pendigits.tes", 234366,
     "8bd03229c5c5291fefe43e45465dd948d2645bf23328b9d993e0b777666b2015"),
    ("open_bandit_dataset/random/all/all.csv", 5039451,
     "7168295b6e0a9eabcf3392320a5dd434e542b68e705d5cd9491499af589812f1"),
    ("open_bandit_dataset/random/all/item_context.csv", 10041,
     "eba04cc23d5f130a93ff174c5392986882b94c3839433cb8143870eaa6221358"),
    ("open_bandit_dataset/random/men/men.csv", 3336811,
     "ede6d08c6877f99cd3770f7d09e26c738e6aa6de4445ccccfb1356ba5d06b1eb"),
    ("open_bandit_dataset/random/men/item_context.csv", 4287,
     "6d855c2b7e917d0448d71bbe62c023147495882c0fdc8c41e86fef86abf9fe09"),
    ("open_bandit_dataset/random/women/women.csv", 3817771,
     "e65f3bd3beb17664fa69cc129bf7bf852a775f8ffa630506e505fc905315bb34"),
    ("open_bandit_dataset/random/women/item_context.csv", 5792,
     "b1ca4905f97703d196004f2ad4552c1e90c2afad8b50688d333b0d2dc0b33147"),
    ("open_bandit_dataset/bts/all/all.csv", 5084456,
     "0ad874e4dbf6902f0845dd478ad8dde5ef6903583d3ffaace78411bdad064106"),
    ("open_bandit_dataset/bts/all/item_context.csv", 10041,
     "5d4359ba1cfa3ae88f0f1bae66bd633859fe6323817183632ee57b83539d9153"),
    ("open_bandit_dataset/bts/men/men.csv", 3240432,
     "db6d1f7ed2d591ba521533e45286d4c1fba7fe57a8ad2e80342210335f43c527"),
    ("open_bandit_dataset/bts/men/item_context.csv", 4287,
     "3b411ed6b0471316321a6b93f4f756bb25888eac6218cd71d0b603d41d85732d"),
    ("open_bandit_dataset/bts/women/women.csv", 3722697,
     "e5d1b49a39b608585a2f3014a3f54970430cd37a495c1b73fceb85cdf428a5b8"),
    ("open_bandit_dataset/bts/women/item_context.csv", 5792,
     "a56295bad066a558eb783055afd9279f5f4e209a4776eafc22151c53f0ac89d4"),
)  # fmt: skip


def _files(folder: str) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(path, f"{_PUBLISHERS[folder]}/{path.split('/', 1)[1]}", sha256, size)
        for path, size, sha256 in _FILES
        if path.split("/", 1)[0] == folder
    )


_UCI_TERMS = "UCI Machine Learning Repository, CC BY 4.0"

#: The datasets ``bandexa-data fetch`` knows, by name.
DATASETS: dict[str, RemoteDataset] = {
    dataset.name: dataset
    for dataset in (
        RemoteDataset("adult", f"UCI Adult (census income), {_UCI_TERMS}", _files("adult")),
        RemoteDataset("letter", f"UCI Letter Recognition, {_UCI_TERMS}", _files("letter")),
        RemoteDataset(
            "satimage", f"UCI Statlog (Landsat Satellite), {_UCI_TERMS}", _files("satimage")
        ),
        RemoteDataset(
            "pendigits",
            f"UCI Pen-Based Recognition of Handwritten Digits, {_UCI_TERMS}",
            _files("pendigits"),
        ),
        RemoteDataset(
            "open_bandit",
            "Open Bandit Dataset sample (ZOZO; Saito et al., arXiv:2008.07146) from "
            "st-tech/zr-obp's obd/ folder; terms: https://research.zozo.com/data.html",
            _files(_OBD_FOLDER),
        ),
    )
}


def _name_of(entry: RemoteFile) -> str:
    return next(name for name, dataset in DATASETS.items() if entry in dataset.files)


def _dataset(name: str) -> RemoteDataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}") from None


def _local_mirror(base: str) -> Path | None:
    """The folder that ``base`` names when it is a path or a ``file://`` URL, else None."""
    parsed = urlparse(base)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # http, https, ftp, ...; "C:" is a drive
        return None
    return Path(base).expanduser()


class _MirrorCopy:
    """A pooch downloader that copies a file from a local mirror, gunzipping ``.gz`` copies."""

    def __init__(self, source: Path, size: int) -> None:
        self.source = source
        self.size = size

    def __call__(self, url: str, output_file: str, pooch: object) -> None:
        found = find_file(self.source.parent, self.source.name)
        if found is None:
            raise FileNotFoundError(f"{self.source}[.gz] not found in the mirror")
        with open(output_file, "wb") as out:
            copy_content(found, out, max_bytes=self.size)  # bounded by the known size


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_file(entry: RemoteFile, *, url: str | None = None, progress: bool = False) -> Path:
    """Fetch one file into the per-user cache (or reuse the cached copy) and check its hash.

    Args:
        entry: The file.
        url: A mirror's base URL or local folder (default ``$BANDEXA_DATA_URL``, else the
            publisher's address).
        progress: Show a progress bar while downloading.

    Returns:
        The cached file, ``<cache>/<entry.path>``.

    Raises:
        MissingDataError: The file could not be fetched (no network, not in the mirror);
            nothing is left in the cache.
        CorruptDataError: The fetched bytes do not have the pinned sha256 (or size); they
            were not stored.
    """
    import pooch  # imported here: the loaders import this module, most never fetch

    base = url if url is not None else os.environ.get(URL_ENV_VAR) or None
    target = data_cache_dir() / entry.path
    downloader = None
    if base is None:
        source = entry.url
    else:
        mirror = _local_mirror(base)
        if mirror is None:
            source = f"{base.rstrip('/')}/{entry.path}"
        else:
            local = mirror.joinpath(*entry.path.split("/"))
            source = local.as_uri() if local.is_absolute() else str(local)
            downloader = _MirrorCopy(local, entry.size)
    if downloader is None and progress:
        downloader = pooch.HTTPDownloader(progressbar=True)
    try:
        fetched = pooch.retrieve(
            source,
            known_hash=f"sha256:{entry.sha256}",
            fname=target.name,
            path=target.parent,
            downloader=downloader,
        )
    except CorruptDataError as err:  # the mirror's copy is too large or a damaged gzip
        raise CorruptDataError(
            source, f"not stored: {err}", "replace the mirror's copy with the published file"
        ) from err
    except ValueError as err:  # pooch: the hash differs; the download was not stored
        raise CorruptDataError(
            source,
            f"not stored: its sha256 is not the pinned one ({err})",
            f"check {URL_ENV_VAR} or the network (a proxy page, a truncated download); if the "
            "publisher changed the file, report it",
        ) from err
    except OSError as err:  # no network, refused, not found (requests' errors are OSErrors)
        raise MissingDataError(
            _name_of(entry),
            f"could not fetch {entry.path} from {source} ({type(err).__name__}: {err})",
        ) from err
    finally:
        if target.is_file() and _sha256(target) != entry.sha256:
            target.unlink()  # a stale or tampered copy that the fetch could not replace
        if target.parent.is_dir() and not any(target.parent.iterdir()):
            target.parent.rmdir()  # made for this file, which was not stored
    return Path(fetched)


def fetch(
    name: str, *, url: str | None = None, paths: Sequence[str] | None = None, progress: bool = False
) -> list[Path]:
    """Fetch a dataset's files into the per-user cache (reusing those already there).

    Args:
        name: One of :data:`DATASETS`.
        url: A mirror's base URL or local folder (default ``$BANDEXA_DATA_URL``, else the
            publishers' addresses).
        paths: Only these of its files (default: all).
        progress: Show a progress bar while downloading.

    Returns:
        The cached files.

    Raises:
        ValueError: Unknown ``name``.
        MissingDataError: A file could not be fetched.
        CorruptDataError: A file fetched does not have its pinned sha256.
    """
    dataset = _dataset(name)
    entries = dataset.files if paths is None else [dataset.file(p) for p in paths]
    try:
        return [fetch_file(entry, url=url, progress=progress) for entry in entries]
    except MissingDataError as err:
        raise MissingDataError(
            name,
            f"{name}: {err}. To fix: run `bandexa-data fetch {name}` where the network reaches "
            f"the publisher (or set {URL_ENV_VAR} to a mirror), or set {DATA_ENV_VAR} to a "
            f"folder holding {dataset.paths[0].rsplit('/', 1)[0]}/.",
        ) from err.__cause__


def missing_data_error(
    name: str, path: str, folders: Sequence[Path], how: str = ""
) -> MissingDataError:
    """The error for a file of dataset ``name`` found in none of ``folders``.

    Args:
        name: The dataset's name in :data:`DATASETS`.
        path: The file's path under a data root (``"adult/adult.data"``).
        folders: The folders searched.
        how: More on where to get the data (a sentence), if any.
    """
    return MissingDataError(
        name,
        f"{name}: {path}[.gz] not found in\n"
        + "\n".join(f"  {folder}" for folder in folders)
        + f"\nTo fix: run `bandexa-data fetch {name}` (or pass download=True) to fetch it into "
        f"the per-user cache, or set {DATA_ENV_VAR} (or root=) to a folder holding {path} "
        "(or .gz)." + (f" {how}" if how else ""),
    )


def find_or_fetch(
    name: str,
    path: str,
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    how: str = "",
) -> Path:
    """Find a data file (``root=`` > ``$BANDEXA_DATA`` > the cache), fetching it if allowed.

    With ``download=True`` a file that is neither under ``root`` nor under
    ``$BANDEXA_DATA`` is fetched into the cache with :func:`fetch_file`, which reuses (and
    checks) a copy already cached.

    Args:
        name: The dataset's name in :data:`DATASETS`.
        path: The file's path under a data root (``"adult/adult.data"``); its ``.gz`` is
            found too.
        root: A folder searched first.
        download: Fetch the file when it is found in no folder given.
        how: More on where to get the data, for the error.

    Returns:
        The file (perhaps ``.gz``).

    Raises:
        MissingDataError: Not found (and, with ``download``, not fetched).
        CorruptDataError: Fetched, but its sha256 differs.
    """
    folder, filename = path.rsplit("/", 1)
    roots = data_roots(root)
    cache = data_cache_dir()
    for r in roots:
        if download and r == cache:
            continue  # fetch_file checks the cached copy's hash
        found = find_file(r.joinpath(*folder.split("/")), filename)
        if found is not None:
            return found
    if download:
        return fetch(name, paths=[path])[0]
    raise missing_data_error(name, path, [r.joinpath(*folder.split("/")) for r in roots], how)


def locate(
    name: str, root: str | os.PathLike[str] | None = None
) -> list[tuple[RemoteFile, Path | None]]:
    """Where each file of a dataset is found now (``root=`` > ``$BANDEXA_DATA`` > the cache).

    Args:
        name: One of :data:`DATASETS`.
        root: A folder searched first.

    Returns:
        (file, where it is found or None) per file.
    """
    roots = data_roots(root)
    found = []
    for entry in _dataset(name).files:
        folder, filename = entry.path.rsplit("/", 1)
        where = None
        for r in roots:
            where = find_file(r.joinpath(*folder.split("/")), filename)
            if where is not None:
                break
        found.append((entry, where))
    return found
