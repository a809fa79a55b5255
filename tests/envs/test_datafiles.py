"""Data files: the decompression cache key, damaged files, gzip, the platform cache folder."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import sys
import zlib
from pathlib import Path

import gymnasium as gym
import numpy as np
import platformdirs
import pytest
import torchvision.datasets.utils as tv_utils
from torchvision.datasets.mnist import read_image_file, read_label_file

from bandexa_gym.envs import datafiles
from bandexa_gym.envs import mnist as mnist_module
from bandexa_gym.envs.datafiles import CorruptDataError, data_cache_dir, verify_md5
from bandexa_gym.envs.mnist import load_image_split


@pytest.fixture(scope="module")
def mnist_test(shared_data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = shared_data_dir / "MNIST" / "raw"
    return (
        read_image_file(str(raw / "t10k-images-idx3-ubyte")).numpy(),
        read_label_file(str(raw / "t10k-labels-idx1-ubyte")).numpy(),
    )


def _idx_images(images: np.ndarray) -> bytes:
    return struct.pack(">IIII", 0x803, len(images), 28, 28) + images.astype(np.uint8).tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes()


def _write_split(root: Path, images: bytes, labels: bytes, gz: bool = True) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, content in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(content, mtime=0))
        else:
            (raw / name).write_bytes(content)
    return raw


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No BANDEXA_DATA, an empty cache of its own; returns the cache folder."""
    monkeypatch.delenv("BANDEXA_DATA", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("BANDEXA_CACHE", str(cache))
    monkeypatch.setattr(mnist_module, "SYSTEM_DATA_DIRS", {"MNIST": (), "FashionMNIST": ()})
    return cache


# -- issue 15 item 7: the cache is keyed on the file, not its name --------------------------


def test_cache_serves_the_file_in_use_not_an_older_one_of_the_same_name(
    isolated: Path, tmp_path: Path, mnist_test: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_test
    small = tmp_path / "small"
    _write_split(small, _idx_images(images[:100]), _idx_labels(labels[:100]))
    full = tmp_path / "full"
    _write_split(full, _idx_images(images), _idx_labels(labels))
    first, _ = load_image_split("MNIST", "test", root=small)
    assert first.shape == (100, 28, 28)
    # Same cache, another file of the same name: its own content, not the 100 images.
    second, second_labels = load_image_split("MNIST", "test", root=full)
    assert second.shape == (10_000, 28, 28)
    np.testing.assert_array_equal(second, images)
    np.testing.assert_array_equal(second_labels, labels)
    # The same path rewritten in place (new size and time): read again, in process too.
    _write_split(small, _idx_images(images[:50]), _idx_labels(labels[:50]))
    os.utime(small / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz", ns=(1, 10**18))
    third, _ = load_image_split("MNIST", "test", root=small)
    assert third.shape == (50, 28, 28)
    np.testing.assert_array_equal(third, images[:50])


def test_uncompressed_file_rewritten_in_place_is_read_again(
    isolated: Path, tmp_path: Path, mnist_test: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_test
    root = tmp_path / "plain"
    _write_split(root, _idx_images(images[:30]), _idx_labels(labels[:30]), gz=False)
    assert load_image_split("MNIST", "test", root=root)[0].shape == (30, 28, 28)
    _write_split(root, _idx_images(images[:40]), _idx_labels(labels[:40]), gz=False)
    assert load_image_split("MNIST", "test", root=root)[0].shape == (40, 28, 28)


# -- issue 15 item 8: damaged files name themselves and the fix ----------------------------


def test_truncated_gzip_names_the_file(
    isolated: Path, tmp_path: Path, mnist_test: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_test
    raw = _write_split(tmp_path / "cut", _idx_images(images[:200]), _idx_labels(labels[:200]))
    target = raw / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(CorruptDataError) as err:
        gym.make("Bandexa/MNIST-v0", root=tmp_path / "cut")
    message = str(err.value)
    assert str(target) in message and "truncated" in message and "delete" in message
    assert err.value.path == target
    assert isinstance(err.value, ValueError)
    assert not list((isolated / "decompressed" / "MNIST").glob("*.part"))  # nothing torn left


def test_not_a_gzip_file_names_the_file(isolated: Path, tmp_path: Path) -> None:
    raw = tmp_path / "junk" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(b"this is not gzip at all")
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_labels(np.zeros(3))))
    with pytest.raises(CorruptDataError, match=r"t10k-images-idx3-ubyte\.gz: not a complete gzip"):
        load_image_split("MNIST", "test", root=tmp_path / "junk")


def test_truncated_idx_content_names_the_source(
    isolated: Path, tmp_path: Path, mnist_test: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_test
    short = _idx_images(images[:100])[: 16 + 28 * 28 * 60]  # header says 100, holds 60
    raw = _write_split(tmp_path / "short", short, _idx_labels(labels[:100]))
    with pytest.raises(CorruptDataError) as err:
        load_image_split("MNIST", "test", root=tmp_path / "short")
    assert str(raw / "t10k-images-idx3-ubyte.gz") in str(err.value)
    assert "not a valid IDX file" in str(err.value) and "download=True" in str(err.value)


def test_bad_idx_header_names_the_file(isolated: Path, tmp_path: Path) -> None:
    raw = _write_split(
        tmp_path / "hdr", b"\x00\x00\x00\x00garbage", _idx_labels(np.zeros(2)), gz=False
    )
    with pytest.raises(CorruptDataError, match="t10k-images-idx3-ubyte: not a valid IDX file"):
        load_image_split("MNIST", "test", root=raw.parents[1])


def test_images_and_labels_of_different_splits(
    isolated: Path, tmp_path: Path, mnist_test: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_test
    _write_split(tmp_path / "mix", _idx_images(images[:20]), _idx_labels(labels[:30]))
    with pytest.raises(CorruptDataError, match="20 images but .* labels of shape"):
        load_image_split("MNIST", "test", root=tmp_path / "mix")


# -- issue 15 item 18: public gzip, platformdirs --------------------------------------------


def test_decompression_uses_gzip_not_torchvisions_private_helper(
    isolated: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mnist_test: tuple[np.ndarray, np.ndarray],
) -> None:
    def private_api(*args: object, **kwargs: object) -> None:
        raise AssertionError("torchvision.datasets.utils._decompress is private")

    monkeypatch.setattr(tv_utils, "_decompress", private_api, raising=False)
    images, labels = mnist_test
    _write_split(tmp_path / "gz", _idx_images(images[:10]), _idx_labels(labels[:10]))
    loaded, _ = load_image_split("MNIST", "test", root=tmp_path / "gz")
    np.testing.assert_array_equal(loaded, images[:10])


def test_user_cache_folder_comes_from_platformdirs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("BANDEXA_CACHE", raising=False)
    calls = []

    def user_cache_dir(appname: str, appauthor: object = None, **kwargs: object) -> str:
        calls.append((appname, appauthor))
        return str(tmp_path / "Library" / "Caches" / appname)  # what macOS would give

    monkeypatch.setattr(platformdirs, "user_cache_dir", user_cache_dir)
    assert data_cache_dir() == tmp_path / "Library" / "Caches" / "bandexa_gym"
    assert calls == [("bandexa_gym", False)]
    monkeypatch.setenv("BANDEXA_CACHE", str(tmp_path / "mine"))
    assert data_cache_dir() == tmp_path / "mine"  # the explicit folder still wins


@pytest.mark.skipif(sys.platform != "linux", reason="XDG applies on Linux")
def test_linux_cache_folder_still_honours_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("BANDEXA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_cache_dir() == tmp_path / "xdg" / "bandexa_gym"


# -- md5 -------------------------------------------------------------------------------------


def test_md5_is_checked_once_per_file_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(b"hello\n")
    good = hashlib.md5(b"hello\n").hexdigest()
    verify_md5(path, b"hello\n", good)
    other = tmp_path / "other.txt"
    other.write_bytes(b"x")
    with pytest.raises(CorruptDataError, match="md5 of the uncompressed content is"):
        verify_md5(other, b"x", good)
    calls = []
    real_md5 = hashlib.md5
    monkeypatch.setattr(
        datafiles.hashlib, "md5", lambda *a, **k: calls.append(1) or real_md5(*a, **k)
    )
    verify_md5(path, b"hello\n", good)
    assert calls == []  # cached for this (path, size, mtime)
    path.write_bytes(b"hullo\n")
    with pytest.raises(CorruptDataError, match=str(path)):
        verify_md5(path, b"hullo\n", good)
    assert calls == [1]


# -- issue 23 item 8: bounded decompression, nothing invalid or stale left in the cache ------


def _gzip_bomb(path: Path, mib: int) -> Path:
    """A small gzip file that decompresses to ``mib`` MiB of zeros."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    zeros = bytes(1 << 20)
    path.write_bytes(b"".join(packer.compress(zeros) for _ in range(mib)) + packer.flush())
    return path


def test_read_bytes_stops_past_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = _gzip_bomb(tmp_path / "adult.data.gz", 48)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(CorruptDataError, match=r"adult.data.gz: decompresses to more than 1,000,"):
        datafiles.read_bytes(bomb, max_bytes=1_000_000)
    monkeypatch.setattr(datafiles, "MAX_DECOMPRESSED_BYTES", 2 << 20)
    with pytest.raises(CorruptDataError, match="raise bandexa_gym.envs.datafiles.MAX_DECOMPRESSED"):
        datafiles.read_bytes(bomb)
    small = tmp_path / "small.gz"
    small.write_bytes(gzip.compress(b"x" * 1000))
    assert datafiles.read_bytes(small, max_bytes=1000) == b"x" * 1000  # the bound is inclusive


def test_an_mnist_bomb_is_refused_and_leaves_nothing_in_the_cache(
    isolated: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "bomb" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _gzip_bomb(raw / "t10k-images-idx3-ubyte.gz", 64)
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_labels(np.zeros(3))))
    with pytest.raises(CorruptDataError, match=r"decompresses to more than 7,840,016 bytes"):
        load_image_split("MNIST", "test", root=tmp_path / "bomb")
    assert not [p for p in isolated.rglob("*") if p.is_file()]  # no copy, no temporary file


def test_a_copy_that_is_not_idx_is_removed_from_the_cache(isolated: Path, tmp_path: Path) -> None:
    _write_split(tmp_path / "bad", b"\x00\x00\x00\x00garbage", _idx_labels(np.zeros(2)))
    for _ in range(2):  # the same error again, and still nothing left behind
        with pytest.raises(CorruptDataError, match="not a valid IDX file"):
            load_image_split("MNIST", "test", root=tmp_path / "bad")
        assert not list((isolated / "decompressed" / "MNIST").iterdir())


def test_copies_of_older_versions_do_not_pile_up(
    isolated: Path, tmp_path: Path, mnist_test: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_test
    folder = isolated / "decompressed" / "MNIST"
    _write_split(tmp_path / "a", _idx_images(images[:10]), _idx_labels(labels[:10]))
    _write_split(tmp_path / "b", _idx_images(images[:20]), _idx_labels(labels[:20]))
    load_image_split("MNIST", "test", root=tmp_path / "a")
    load_image_split("MNIST", "test", root=tmp_path / "b")  # another source: its own copies
    assert len(list(folder.iterdir())) == 4
    stale_temp = folder / ".t10k-images-idx3-ubyte.abc123.part"  # a killed decompression's
    stale_temp.write_bytes(b"half")
    os.utime(stale_temp, (1, 1))
    fresh_temp = folder / ".t10k-images-idx3-ubyte.def456.part"  # one being written now
    fresh_temp.write_bytes(b"half")
    for n in (30, 40):  # source a rewritten twice
        _write_split(tmp_path / "a", _idx_images(images[:n]), _idx_labels(labels[:n]))
        for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            os.utime(tmp_path / "a" / "MNIST" / "raw" / name, ns=(1, 10**18 + n))
        assert load_image_split("MNIST", "test", root=tmp_path / "a")[0].shape == (n, 28, 28)
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 5 and fresh_temp.name in names  # 2 + 2 copies, the fresh temp
    assert load_image_split("MNIST", "test", root=tmp_path / "b")[0].shape == (20, 28, 28)
