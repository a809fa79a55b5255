"""Fetching data files with pooch: pinned hashes, the per-user cache, a local mirror.

Nothing here downloads: the mirror is the shared data folder (``BANDEXA_DATA_URL``, set by
tests/conftest.py) or a folder the test writes, served through the same pooch call as a
download.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import gymnasium as gym
import pooch
import pytest

import bandexa_gym  # noqa: F401  (registers the ids)
from bandexa_gym.datasets import open_bandit
from bandexa_gym.envs import downloads
from bandexa_gym.envs.datafiles import CorruptDataError, MissingDataError
from bandexa_gym.envs.downloads import DATASETS, fetch, find_or_fetch, locate
from tests.envs.env_ids import skip_missing_data_outside_ci

PENDIGITS = DATASETS["pendigits"]


@pytest.fixture
def empty(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty cache and an empty BANDEXA_DATA; returns the cache folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BANDEXA_CACHE", str(cache))
    monkeypatch.setenv("BANDEXA_DATA", str(tmp_path / "no-data"))
    return cache


@pytest.fixture
def mirror(shared_data_dir: Path) -> Path:
    """The shared data folder, or a skip (outside CI) where it lacks pendigits."""
    if not (shared_data_dir / "pendigits").is_dir():
        skip_missing_data_outside_ci(FileNotFoundError(f"{shared_data_dir}/pendigits"))
    return shared_data_dir


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_catalogue_file_has_a_pinned_hash_and_an_address() -> None:
    assert set(DATASETS) == {"adult", "letter", "satimage", "pendigits", "open_bandit"}
    for dataset in DATASETS.values():
        for entry in dataset.files:
            assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
            assert entry.url.startswith("https://") and entry.url.endswith(entry.path[-8:])
            assert entry.size > 0
    assert len(DATASETS["open_bandit"].files) == 12  # 2 policies x 3 campaigns x 2 files


def test_fetch_into_an_empty_cache_checks_the_pinned_hash(
    empty: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    retrieve = pooch.retrieve

    def spy(url: str, known_hash: str, **kwargs: object) -> str:
        calls.append(known_hash)
        return retrieve(url, known_hash, **kwargs)

    monkeypatch.setattr(pooch, "retrieve", spy)
    paths = fetch("pendigits")
    assert paths == [empty / "pendigits" / "pendigits.tra", empty / "pendigits" / "pendigits.tes"]
    assert calls == [f"sha256:{entry.sha256}" for entry in PENDIGITS.files]
    for path, entry in zip(paths, PENDIGITS.files, strict=True):
        assert _sha256(path) == entry.sha256 and path.stat().st_size == entry.size
    assert _files(empty) == sorted(paths)  # no temporary file left behind


def test_a_second_fetch_reuses_the_cache(
    empty: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = []
    copy = downloads._MirrorCopy.__call__

    def counting(self: downloads._MirrorCopy, *args: object) -> None:
        copies.append(self.source.name)
        copy(self, *args)

    monkeypatch.setattr(downloads._MirrorCopy, "__call__", counting)
    first = fetch("pendigits")
    stamps = [p.stat().st_mtime_ns for p in first]
    assert copies == ["pendigits.tra", "pendigits.tes"]
    assert fetch("pendigits") == first
    assert copies == ["pendigits.tra", "pendigits.tes"]  # nothing copied again
    assert [p.stat().st_mtime_ns for p in first] == stamps


def test_a_tampered_file_is_refused_and_nothing_is_cached(empty: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake-mirror" / "pendigits"
    fake.mkdir(parents=True)
    (fake / "pendigits.tra").write_bytes(b"1,2,3\n" * 100)  # not the published bytes
    with pytest.raises(CorruptDataError, match=r"not stored: its sha256 is not the pinned one"):
        fetch("pendigits", url=str(fake.parent))
    assert _files(empty) == []
    # gzipped, one digit changed, same size
    (fake / "pendigits.tra").unlink()
    original = bytearray(b"4" * PENDIGITS.files[0].size)
    original[100] = ord("5")
    (fake / "pendigits.tra.gz").write_bytes(gzip.compress(bytes(original)))
    with pytest.raises(CorruptDataError, match="sha256"):
        fetch("pendigits", url=(fake.parent).as_uri())
    assert _files(empty) == []


def test_a_mirror_file_decompressing_past_its_size_stops_and_leaves_nothing(
    empty: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "fake-mirror" / "pendigits"
    fake.mkdir(parents=True)
    size = PENDIGITS.files[0].size
    (fake / "pendigits.tra.gz").write_bytes(gzip.compress(b"\0" * (100 * size)))
    with pytest.raises(CorruptDataError, match=f"more than {size:,} bytes"):
        fetch("pendigits", url=str(fake.parent))
    assert _files(empty) == []


def test_a_tampered_cached_copy_is_replaced_or_removed(
    empty: Path, mirror: Path, tmp_path: Path
) -> None:
    target = empty / "pendigits" / "pendigits.tra"
    target.parent.mkdir(parents=True)
    target.write_text("tampered\n")
    with pytest.raises(MissingDataError, match="could not fetch pendigits/pendigits.tra"):
        fetch("pendigits", url=str(tmp_path / "nowhere"))
    assert _files(empty) == []  # the bad copy is not left to be read
    target.parent.mkdir(parents=True)
    target.write_text("tampered\n")
    fetch("pendigits")
    assert _sha256(target) == PENDIGITS.files[0].sha256


def test_a_failed_fetch_names_the_command_and_leaves_nothing(empty: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingDataError) as info:
        fetch("adult", url=str(tmp_path / "nowhere"))
    assert info.value.dataset == "adult"
    assert "`bandexa-data fetch adult`" in str(info.value)
    assert "BANDEXA_DATA_URL" in str(info.value)
    assert _files(empty) == [] and not (empty / "adult").exists()
    with pytest.raises(MissingDataError, match="ConnectionError"):
        fetch("letter", url="http://127.0.0.1:9")  # a refused connection, not a download
    with pytest.raises(ValueError, match=r"unknown dataset 'iris'; expected one of \['adult'"):
        fetch("iris")


def test_download_true_fetches_every_catalogue_id(empty: Path, mirror: Path) -> None:
    for env_id, name in (
        ("Bandexa/Adult-v0", "adult"),
        ("Bandexa/Letter-v0", "letter"),
        ("Bandexa/Satimage-v0", "satimage"),
        ("Bandexa/Pendigits-v0", "pendigits"),
    ):
        with pytest.raises(MissingDataError) as info:
            gym.make(env_id)
        message = str(info.value)
        assert f"`bandexa-data fetch {name}`" in message and "download=True" in message
        env = gym.make(env_id, download=True, split="test")
        env.reset(seed=0)
        env.close()
    gym.make("Bandexa/Classification-v0", dataset="satimage", download=True).close()
    assert {p.relative_to(empty).as_posix() for p in _files(empty)} == {
        "adult/adult.test",
        "letter/letter-recognition.data",
        "satimage/sat.tst",
        "satimage/sat.trn",  # Classification-v0's default split
        "pendigits/pendigits.tes",
    }
    assert [where is not None for _, where in locate("adult")] == [False, True]


def test_download_true_prefers_bandexa_data(
    mirror: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BANDEXA_CACHE", str(tmp_path / "cache"))
    found = find_or_fetch("pendigits", "pendigits/pendigits.tra", download=True)
    assert found == mirror / "pendigits" / "pendigits.tra.gz"
    assert _files(tmp_path / "cache") == []


def test_open_bandit_download(empty: Path, shared_data_dir: Path) -> None:
    if not (shared_data_dir / "open_bandit_dataset").is_dir():
        skip_missing_data_outside_ci(FileNotFoundError(f"{shared_data_dir}/open_bandit_dataset"))
    with pytest.raises(MissingDataError, match="`bandexa-data fetch open_bandit`"):
        open_bandit("men", "bts")
    data = open_bandit("men", "bts", download=True)
    assert data.n_actions == 34 and len(data) == 10_000
    assert {p.relative_to(empty).as_posix() for p in _files(empty)} == {
        "open_bandit_dataset/bts/men/men.csv",
        "open_bandit_dataset/bts/men/item_context.csv",
    }
    with pytest.raises(TypeError, match="download must be True or False"):
        open_bandit("men", "bts", download="yes")
