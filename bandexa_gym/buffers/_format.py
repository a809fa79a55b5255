"""The on-disk format of :class:`~bandexa_gym.buffers.DiskReplayBuffer`: names and index.

A buffer folder holds ``index.json`` (the commit point), shard files
``shard-<id>.safetensors`` (tensors ``x``, ``a``, ``r``) and a ``.lock`` file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

INDEX_NAME = "index.json"
LOCK_NAME = ".lock"
FORMAT = "bandexa-gym/replay-buffer"
FORMAT_VERSION = 1
SHARD_RE = re.compile(r"^shard-(\d{9})\.safetensors$")
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


def dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype
