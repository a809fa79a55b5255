"""The on-disk format of :class:`~bandexa_gym.buffers.DiskReplayBuffer`: names and index.

A buffer folder holds ``index.json`` (the commit point), shard files
``shard-<id>.safetensors`` (tensors ``x``, ``a``, ``r``) and a ``.lock`` file. The index
(format version 2) is a JSON object::

    {"format": "bandexa-gym/replay-buffer", "format_version": 2,
     "x_shape": [3], "x_dtype": "float32", "action_dim": 2,
     "a_dtype": "float32", "r_dtype": "float32",
     "head_skip": 1,            # rows of the oldest shard dropped by the capacity rule
     "next_shard_id": 7,        # the id the next shard file gets
     "total_added": 640,        # persisted transitions ever added (the next step)
     "shards": [{"file": "shard-000000005.safetensors", "count": 512, "first_step": 0},
                {"file": "shard-000000006.safetensors", "count": 128, "first_step": 512}]}

Version 1 (bandexa-gym 0.1.0) had neither ``total_added`` nor ``first_step``; it is read
with steps numbered in stored order from 0.
"""

from __future__ import annotations

import json
import math
import mmap
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file as st_load_file

from bandexa_gym.buffers.schema import (
    ReplayBufferCorruptError,
    ReplayBufferVersionError,
    _Schema,
    _short,
)

INDEX_NAME = "index.json"
LOCK_NAME = ".lock"
FORMAT = "bandexa-gym/replay-buffer"
FORMAT_VERSION = 2  # 2: steps (shards[i].first_step, total_added); 1: bandexa-gym 0.1.0
OLDEST_READABLE_VERSION = 1
SHARD_RE = re.compile(r"shard-([0-9]{9,})\.safetensors")  # with fullmatch: no "\n" tail
MAX_SHARD_ID = 10**15
ST_DTYPES = {  # torch dtype -> safetensors dtype tag (the ones we can memory-map)
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


@dataclass
class Shard:
    file: str
    count: int
    first_step: int  # step of row 0 (the oldest shard's first head_skip rows are dropped)


@dataclass
class Index:
    """The validated content of ``index.json``."""

    schema: _Schema
    shards: list[Shard]
    head_skip: int
    next_shard_id: int
    total_added: int  # persisted transitions ever added: the step after the last shard's


def shard_file(shard_id: int) -> str:
    return f"shard-{shard_id:09d}.safetensors"


def parse_shard_name(name: Any) -> int | None:
    """The id of a shard file name this buffer writes (canonical form only), else ``None``."""
    if not isinstance(name, str) or (m := SHARD_RE.fullmatch(name)) is None:
        return None
    shard_id = int(m.group(1))
    return shard_id if name == shard_file(shard_id) else None


def _dtype_from_name(name: Any) -> torch.dtype:
    dtype = getattr(torch, name.removeprefix("torch."), None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"x_dtype: unknown dtype {name!r}")
    return dtype


def _field(meta: dict[str, Any], key: str) -> Any:
    if key not in meta:
        raise ValueError(f"missing field {key!r}")
    return meta[key]


def _index_int(value: Any, where: str, minimum: int = 0, maximum: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        raise ValueError(f"{where} must be an integer {bound}, got {_short(value)}")
    return value


def index_version(meta: Any) -> int:
    """The format version of a parsed index; ``ValueError`` if it is not one of ours."""
    if not isinstance(meta, dict):
        raise ValueError(f"expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise ValueError(f"format is {_short(meta.get('format'))}, expected {FORMAT!r}")
    return _index_int(meta.get("format_version"), "format_version")


def parse_index(meta: dict[str, Any], version: int, root: Path) -> Index:
    """Validate an index of a readable ``version``; version 1 gets steps in stored order.

    Every shard entry must name a file this buffer writes (``shard-<id>.safetensors``,
    canonical zero-padded id) that resolves directly inside ``root``, with ids increasing
    and below ``next_shard_id``, so no entry can make the buffer read, overwrite or
    delete a file elsewhere, or delete a shard another entry still lists.

    Raises:
        ValueError: Naming the first bad entry.
    """
    raw_shape = _field(meta, "x_shape")
    if not isinstance(raw_shape, list):
        raise ValueError(f"x_shape must be a list of integers, got {_short(raw_shape)}")
    schema = _Schema(
        tuple(_index_int(s, f"x_shape[{i}]") for i, s in enumerate(raw_shape)),
        _dtype_from_name(_field(meta, "x_dtype")),
        _index_int(_field(meta, "action_dim"), "action_dim"),
    )
    for key in ("a_dtype", "r_dtype"):
        if meta.get(key, "float32") != "float32":
            raise ValueError(f"{key} must be 'float32', got {_short(meta[key])}")
    head_skip = _index_int(_field(meta, "head_skip"), "head_skip")
    next_id = _index_int(_field(meta, "next_shard_id"), "next_shard_id", 0, MAX_SHARD_ID)
    raw_shards = _field(meta, "shards")
    if not isinstance(raw_shards, list):
        raise ValueError(f"shards must be a list, got {_short(raw_shards)}")
    real_root = root.resolve()
    shards: list[Shard] = []
    step, previous_id = 0, -1
    for i, entry in enumerate(raw_shards):
        where = f"shards[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be an object with 'file' and 'count'")
        name = entry.get("file")
        shard_id = parse_shard_name(name)
        if shard_id is None:
            raise ValueError(
                f"{where}.file {_short(name)} is not a shard of this buffer: expected a name "
                f"like {shard_file(0)!r} directly inside {root}"
            )
        resolved = (root / name).resolve()
        if resolved.parent != real_root:
            raise ValueError(f"{where}.file {name!r} resolves to {resolved}, outside {root}")
        if shard_id <= previous_id or shard_id >= next_id:
            raise ValueError(
                f"{where}.file {name!r}: shard ids must increase along the index and stay "
                f"below next_shard_id {next_id} (previous id {previous_id})"
            )
        count = _index_int(entry.get("count"), f"{where}.count", 1)
        if version >= 2:
            first_step = _index_int(entry.get("first_step"), f"{where}.first_step")
            if i and first_step != step:
                raise ValueError(
                    f"{where}.first_step is {first_step}, but the steps of shards[{i - 1}] "
                    f"end at {step}"
                )
        else:
            first_step = step  # version 1 kept no steps: number the stored rows from 0
        shards.append(Shard(name, count, first_step))
        step, previous_id = first_step + count, shard_id
    if shards and head_skip >= shards[0].count:
        raise ValueError(f"head_skip {head_skip} must be below shards[0].count {shards[0].count}")
    if not shards and head_skip:
        raise ValueError(f"head_skip must be 0 when no shards are listed, got {head_skip}")
    total_added = step
    if version >= 2:
        total_added = _index_int(_field(meta, "total_added"), "total_added")
        if shards and total_added != step:
            raise ValueError(f"total_added is {total_added}, but the shards' steps end at {step}")
    return Index(schema, shards, head_skip, next_id, total_added)


def version_error(path: Path, version: int) -> ReplayBufferVersionError:
    from bandexa_gym import __version__

    if version > FORMAT_VERSION:
        hint = "it was written by a newer bandexa-gym: upgrade bandexa-gym to open it"
    else:
        hint = "it is older than any version this bandexa-gym can migrate"
    readable = (
        f"versions {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}"
        if OLDEST_READABLE_VERSION < FORMAT_VERSION
        else f"version {FORMAT_VERSION}"
    )
    return ReplayBufferVersionError(
        f"replay index {path} has format version {version}, but bandexa-gym {__version__} "
        f"reads {readable} (and writes {FORMAT_VERSION}); {hint}"
    )


def shard_layout(
    root: Path, index_path: Path, shard: Shard, schema: _Schema
) -> dict[str, tuple[int, int]]:
    """Check a shard's safetensors header against the index without reading its data.

    Args:
        root: The buffer's folder.
        index_path: Its index (named in errors).
        shard: The index's entry for the shard.
        schema: The rows' schema.

    Returns:
        ``{"x"|"a"|"r": (byte offset in the file, number of elements)}``.

    Raises:
        ReplayBufferCorruptError: The shard is missing, truncated or does not match.
    """
    path = root / shard.file
    if not path.is_file():
        raise ReplayBufferCorruptError(f"shard {path} listed in {index_path} is missing")
    expected = {
        "x": ([shard.count, *schema.x_shape], ST_DTYPES.get(schema.x_dtype)),
        "a": ([shard.count, schema.action_dim], "F32"),
        "r": ([shard.count], "F32"),
    }
    itemsize = {"x": schema.x_dtype.itemsize, "a": 4, "r": 4}
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n <= size - 8:
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
        end = max(int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__")
        if size != 8 + n + end:
            raise ValueError(f"file has {size} bytes, header describes {8 + n + end}")
        got = {k: (header[k]["shape"], header[k]["dtype"]) for k in expected}
        layout = {}
        for k, (shape, _) in expected.items():
            begin, stop = (int(v) for v in header[k]["data_offsets"])
            numel = math.prod(shape)
            if begin < 0 or stop - begin != numel * itemsize[k]:
                raise ValueError(f"tensor {k!r} spans bytes {begin}..{stop} of the data")
            layout[k] = (8 + n + begin, numel)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReplayBufferCorruptError(f"shard {path} is corrupt: {exc}") from exc
    if any(
        got[k][0] != want[0] or (want[1] and got[k][1] != want[1]) for k, want in expected.items()
    ):
        raise ReplayBufferCorruptError(
            f"shard {path} does not match the index: expected (shape, dtype) {expected}, got {got}"
        )
    return layout


def load_shard(
    root: Path, index_path: Path, shard: Shard, schema: _Schema, memory_map: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A shard's ``(X, A, R)``: read-only views of a memory map, or loaded tensors.

    Raises:
        ReplayBufferCorruptError: See :func:`shard_layout`; or the file cannot be mapped
            or read.
    """
    layout = shard_layout(root, index_path, shard, schema)
    path = root / shard.file
    if memory_map and schema.x_dtype in ST_DTYPES:
        try:
            with open(path, "rb") as f:
                # Copy-on-write private mapping: writable for torch, never written back.
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError) as exc:
            raise ReplayBufferCorruptError(f"shard {path} cannot be mapped: {exc}") from exc
        dtypes = {"x": schema.x_dtype, "a": torch.float32, "r": torch.float32}
        views = {
            k: torch.frombuffer(mm, dtype=dtypes[k], count=numel, offset=offset)
            for k, (offset, numel) in layout.items()
        }
    else:
        try:
            views = st_load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise ReplayBufferCorruptError(f"shard {path} is corrupt: {exc}") from exc
    return (
        views["x"].view(shard.count, *schema.x_shape),
        views["a"].view(shard.count, schema.action_dim),
        views["r"].view(shard.count),
    )
