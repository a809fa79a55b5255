"""Tests for bandexa_gym.atomic: crash-safe replacement with ordinary file permissions."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bandexa_gym.atomic import atomic_path, atomic_write
from bandexa_gym.buffers import DiskReplayBuffer

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


@pytest.fixture
def umask() -> Iterator[object]:
    """Set the process umask for one test and restore it afterwards (tests are serial)."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_umask(mask: int) -> None:
        os.umask(mask)

    try:
        yield set_umask
    finally:
        os.umask(saved)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(
    tmp_path: Path, umask: object, mask: int, expected: int
) -> None:
    umask(mask)  # type: ignore[operator]
    plain = tmp_path / "plain.bin"
    with open(plain, "wb") as f:  # the reference: what an ordinary open() gives
        f.write(b"x")
    assert _mode(plain) == expected

    atomic_write(tmp_path / "a.bin", b"data")
    assert _mode(tmp_path / "a.bin") == expected
    with atomic_path(tmp_path / "b.safetensors") as tmp:
        save_file({"t": torch.zeros(2)}, str(tmp))  # a writer that truncates the temp file
    assert _mode(tmp_path / "b.safetensors") == expected
    atomic_write(tmp_path / "a.bin", b"new")  # replacing keeps following the umask
    assert _mode(tmp_path / "a.bin") == expected


def test_buffer_shards_and_index_follow_the_umask(tmp_path: Path, umask: object) -> None:
    umask(0o022)  # type: ignore[operator]
    with DiskReplayBuffer(tmp_path / "buf", shard_size=2) as buf:
        buf.add_batch(torch.zeros(5, 3), torch.zeros(5, 2), torch.zeros(5))
    files = [p for p in (tmp_path / "buf").iterdir() if p.name != ".lock"]
    assert {p.name for p in files} >= {"index.json", "shard-000000000.safetensors"}
    assert {p.name: _mode(p) for p in files} == {p.name: 0o644 for p in files}


def test_failed_write_leaves_the_target_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "t.bin"
    atomic_write(target, b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".t.bin.")
            assert tmp.name.endswith(".tmp") and tmp.exists()
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.bin"]
