"""The disk buffer's index: crafted entries touch nothing, format versions are checked."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from bandexa_gym.buffers import (
    DiskReplayBuffer,
    ReplayBufferCorruptError,
    ReplayBufferVersionError,
)


def _stream(start: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    i = torch.arange(start, start + n, dtype=torch.float32)
    return i[:, None].expand(n, 3).clone(), torch.stack([i, -i], 1), i


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (recursively) with its bytes, the lock file aside."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A closed buffer of 8 transitions in two shards of 4, plus a victim file beside it.

    ``tmp_path/victim.safetensors`` is a valid copy of the first shard, so an index entry
    pointing at it passes every content check: only the name check can stop it.
    """
    root = tmp_path / "buf"
    with DiskReplayBuffer(root, shard_size=4) as buf:
        buf.add_batch(*_stream(0, 8))
    (tmp_path / "victim.safetensors").write_bytes(
        (root / "shard-000000000.safetensors").read_bytes()
    )
    return root


def _edit_index(root: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    meta = json.loads((root / "index.json").read_text())
    edit(meta)
    (root / "index.json").write_text(json.dumps(meta))


def _set_first_file(name: object) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        meta["shards"][0]["file"] = name

    return edit


# ---- crafted index entries (issue 15, item 6) ---------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../victim.safetensors",
        "VICTIM_ABSOLUTE",
        "sub/../../victim.safetensors",
        "./shard-000000000.safetensors",
        "shard-000000000.safetensors\n",
        "shard-0000000000.safetensors",  # not the canonical 9-digit name of id 0
        "shard-\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660.safetensors",  # Arabic digits
        "index.json",
        ".lock",
        7,
        None,
    ],
)
def test_index_cannot_name_files_outside_its_own_shards(folder: Path, name: object) -> None:
    victim = folder.parent / "victim.safetensors"
    if name == "VICTIM_ABSOLUTE":
        name = str(victim)
    _edit_index(folder, _set_first_file(name))
    (folder / ".shard-000000009.safetensors.abc.tmp").write_bytes(b"crash leftover")
    before, victim_bytes = _snapshot(folder), victim.read_bytes()
    # With capacity 4 the first shard would be trimmed and its file deleted on close.
    with pytest.raises(ReplayBufferCorruptError, match=r"shards\[0\]\.file .*not a shard"):
        DiskReplayBuffer(folder, capacity=4)
    assert victim.read_bytes() == victim_bytes
    assert _snapshot(folder) == before  # nothing cleaned, trimmed or rewritten


def test_index_shard_symlinked_outside_is_rejected(folder: Path) -> None:
    victim = folder.parent / "victim.safetensors"
    (folder / "shard-000000000.safetensors").unlink()
    (folder / "shard-000000000.safetensors").symlink_to(victim)
    with pytest.raises(ReplayBufferCorruptError, match=r"shards\[0\]\.file .*outside"):
        DiskReplayBuffer(folder, capacity=4)
    assert victim.exists() and (folder / "shard-000000000.safetensors").is_symlink()


def _duplicate_shard(meta: dict[str, Any]) -> None:
    meta["shards"][1] = dict(meta["shards"][0])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # A duplicate would have its file deleted when the first copy is trimmed.
        (_duplicate_shard, r"shards\[1\]\.file .*ids must increase"),
        # A listed id at or above next_shard_id would be overwritten by the next shard.
        (lambda m: m.update(next_shard_id=1), r"shards\[1\]\.file .*below next_shard_id 1"),
        (lambda m: m.update(next_shard_id=10**20), r"next_shard_id must be an integer"),
        (lambda m: m["shards"][0].update(count="4"), r"shards\[0\]\.count must be an integer"),
        (lambda m: m["shards"][0].update(count=True), r"shards\[0\]\.count must be an integer"),
        (lambda m: m["shards"][0].update(count=0), r"shards\[0\]\.count must be an integer >= 1"),
        (lambda m: m.update(head_skip=-1), r"head_skip must be an integer >= 0"),
        (lambda m: m.update(head_skip=4), r"head_skip 4 must be below shards\[0\]\.count 4"),
        (lambda m: m.update(x_shape="3"), r"x_shape must be a list"),
        (lambda m: m.update(x_shape=[3.0]), r"x_shape\[0\] must be an integer"),
        (lambda m: m.update(x_dtype="Tensor"), r"x_dtype: unknown dtype"),
        (lambda m: m.update(r_dtype="float64"), r"r_dtype must be 'float32'"),
        (lambda m: m.pop("action_dim"), r"missing field 'action_dim'"),
        (lambda m: m.update(shards={}), r"shards must be a list"),
        (lambda m: m["shards"][1].update(first_step=5), r"shards\[1\]\.first_step is 5"),
        (lambda m: m.update(total_added=9), r"total_added is 9, but the shards' steps end at 8"),
        (lambda m: m.update(format="something-else"), r"format is 'something-else'"),
    ],
)
def test_inconsistent_index_is_a_clear_error_and_changes_nothing(
    folder: Path, edit: Callable[[dict[str, Any]], object], message: str
) -> None:
    _edit_index(folder, edit)
    before = _snapshot(folder)
    with pytest.raises(ReplayBufferCorruptError, match=message):
        DiskReplayBuffer(folder, capacity=4)
    assert _snapshot(folder) == before


def test_shard_with_bad_data_offsets_is_corrupt(folder: Path) -> None:
    path = folder / "shard-000000001.safetensors"
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    begin, end = header["r"]["data_offsets"]
    header["r"]["data_offsets"] = [begin + 4, end]  # same file size, wrong extent
    raw = json.dumps(header, separators=(",", ":")).encode().ljust(n)
    assert len(raw) == n
    path.write_bytes(bytes(data[:8]) + raw + bytes(data[8 + n :]))
    with pytest.raises(ReplayBufferCorruptError, match="shard-000000001.*'r' spans bytes"):
        DiskReplayBuffer(folder)


# ---- format versions (issue 15, item 19) --------------------------------------------------


def _downgrade_to_v1(root: Path) -> None:
    """Rewrite ``index.json`` exactly as bandexa-gym 0.1.0 wrote it (format version 1)."""

    def edit(meta: dict[str, Any]) -> None:
        meta["format_version"] = 1
        del meta["total_added"]
        for shard in meta["shards"]:
            del shard["first_step"]

    _edit_index(root, edit)


def test_index_records_format_version_2_with_steps(folder: Path) -> None:
    meta = json.loads((folder / "index.json").read_text())
    assert meta["format"] == "bandexa-gym/replay-buffer" and meta["format_version"] == 2
    assert meta["total_added"] == 8
    assert [s["first_step"] for s in meta["shards"]] == [0, 4]


def _with_steps(buf: DiskReplayBuffer) -> tuple[torch.Tensor, ...]:
    chunks = list(buf.iter_chunks(4, with_steps=True))
    return tuple(torch.cat([c[k] for c in chunks]) for k in range(4))


def test_version_1_folder_opens_with_steps_in_stored_order(tmp_path: Path) -> None:
    root = tmp_path / "v1"
    with DiskReplayBuffer(root, shard_size=4, capacity=6) as buf:
        buf.add_batch(*_stream(0, 13))  # shard 0 (rows 0-3) dropped; 4-7 (skip 3), 8-11, 12
    _downgrade_to_v1(root)
    before = _snapshot(root)
    with DiskReplayBuffer(root) as buf:
        _, _, R, steps = _with_steps(buf)
        assert torch.equal(R, torch.arange(7.0, 13.0))  # the data, intact
        # Version 1 kept no steps: row 0 of the oldest listed shard (row 4) is step 0.
        assert torch.equal(steps, R.long() - 4)
        assert buf.total_added == 9 and buf.last_step == 8
    assert _snapshot(root) == before  # opening and closing does not rewrite it
    with DiskReplayBuffer(root, shard_size=4) as buf:
        buf.add_batch(*_stream(13, 2))
    meta = json.loads((root / "index.json").read_text())
    assert meta["format_version"] == 2 and meta["total_added"] == 11
    with DiskReplayBuffer(root) as buf:
        _, _, R, steps = _with_steps(buf)
        assert torch.equal(R, torch.arange(7.0, 15.0))
        assert torch.equal(steps, R.long() - 4) and buf.total_added == 11


@pytest.mark.parametrize(("version", "hint"), [(3, "newer bandexa-gym"), (0, "older")])
def test_unknown_format_version_names_both_versions(folder: Path, version: int, hint: str) -> None:
    _edit_index(folder, lambda m: m.update(format_version=version))
    before = _snapshot(folder)
    with pytest.raises(
        ReplayBufferVersionError, match=rf"format version {version}.*reads versions 1 to 2.*{hint}"
    ):
        DiskReplayBuffer(folder, capacity=4)
    assert _snapshot(folder) == before
    assert issubclass(ReplayBufferVersionError, ReplayBufferCorruptError)


@pytest.mark.parametrize("version", ["2", True, None, 2.0])
def test_malformed_format_version_is_corrupt(folder: Path, version: object) -> None:
    _edit_index(folder, lambda m: m.update(format_version=version))
    with pytest.raises(ReplayBufferCorruptError, match="format_version must be an integer"):
        DiskReplayBuffer(folder)
