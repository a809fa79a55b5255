"""The checkpoint file format: one ``.safetensors`` file, JSON metadata, a digest over both.

This module is the format and its I/O only; it knows no agent. Agents state what they
save (``Agent.spec``, ``Agent.state_tensors``) and how they load it; the calls users make
are ``agent.save(path)``, :func:`bandexa_gym.agents.load_agent` and
:func:`bandexa_gym.agents.load_state`.

A checkpoint (format version 2) is a safetensors file whose tensors are the agent's
learned state and random-generator states, and whose header holds, under the key
``"bandexa_gym"``, JSON metadata: the format name and version, library and torch versions,
the agent's registered name and class, its *spec* (everything that must match for the
state to mean the same thing), its scalar state, and a SHA-256 digest that covers the
metadata and every tensor (names, dtypes, shapes and bytes). Nothing is unpickled: loading
a checkpoint from an untrusted source cannot run code, and a one-character change to the
metadata fails the digest.

Saving is atomic: the file is written under a temporary name in the target folder,
fsync'd and renamed over ``path``, so a crash leaves either the old file or the new one.
Every problem reading a checkpoint raises :class:`CheckpointError`, a ``ValueError``
whose message names the file and says what is wrong: metadata that is not plain, bounded
JSON (nested deeper than :data:`MAX_METADATA_DEPTH`, integers of more than
:data:`MAX_INT_DIGITS` digits, ``NaN``, ``Infinity`` or floats that overflow) included.
Saving onto a folder (or under a file) is a :class:`CheckpointError` too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from bandexa_gym.atomic import atomic_path

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "read_checkpoint",
    "read_metadata",
    "read_tensor_shapes",
    "write_checkpoint",
]

FORMAT_NAME = "bandexa-gym-checkpoint"
FORMAT_VERSION = 2
"""Version 2: agents state their own spec and tensors; the digest covers the metadata.
Version 1 (bandexa-gym 0.1.0) is not read: re-save the agent with the version that wrote it."""
META_KEY = "bandexa_gym"
MAX_METADATA_DEPTH = 32
"""Deepest nesting of lists and objects a checkpoint's metadata may have (an agent's is < 10)."""
MAX_INT_DIGITS = 40
"""Longest integer (in decimal digits) a checkpoint's metadata may hold (int64 has 19)."""

PathLike = str | os.PathLike[str]


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read: corrupted, truncated, or not matching."""


def write_checkpoint(
    path: PathLike, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
) -> Path:
    """Write ``tensors`` and ``meta`` to ``path`` atomically (parent folders are created).

    Args:
        path: Target file (conventionally ``*.safetensors``).
        meta: JSON-serializable metadata with at least ``agent``, ``spec`` and ``state``;
            the format fields and the digest are added here.
        tensors: Named tensors (any device; copied to contiguous CPU tensors).

    Returns:
        The path written.

    Raises:
        CheckpointError: Metadata that is not JSON-serializable (or holds NaN/inf).
    """
    import bandexa_gym

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"cannot save a checkpoint to {path}: it is a folder, not a file")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    full = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": bandexa_gym.__version__,
        "torch_version": torch.__version__,
        **_jsonable(dict(meta), "checkpoint metadata"),
    }
    full["sha256"] = _digest(full, tensors)
    header = {META_KEY: json.dumps(full, allow_nan=False)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=header)
    except (IsADirectoryError, NotADirectoryError, FileExistsError) as err:
        raise CheckpointError(
            f"cannot save a checkpoint to {path}: {err.strerror or err} (a folder is in the "
            "way, or a file where a folder should be)"
        ) from err
    return path


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, without reading its tensors (digest not checked).

    Raises:
        FileNotFoundError: No file at ``path``.
        CheckpointError: Not a (readable) bandexa-gym checkpoint of a supported version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupted or truncated?): {err}"
        ) from err
    raw = header.get(META_KEY)
    if raw is None:
        raise CheckpointError(
            f"{path} is a safetensors file but not a bandexa-gym checkpoint "
            f"(no {META_KEY!r} metadata in its header)"
        )
    meta = _parse_metadata(raw, path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: metadata does not describe a {FORMAT_NAME}")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported: this "
            f"bandexa-gym reads version {FORMAT_VERSION} (the file was written by "
            f"bandexa-gym {meta.get('library_version', '?')}; load it with that version and "
            "save it again, or retrain)"
        )
    for key, kind in (("agent", str), ("spec", dict), ("state", dict), ("sha256", str)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{path}: checkpoint metadata lacks {key!r} ({kind.__name__})")
    return meta


def read_tensor_shapes(path: PathLike) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors, from the file's header (no tensor data is read).

    Raises:
        CheckpointError: The file is not readable.
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read the tensor index: {err}") from err


def read_checkpoint(path: PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Metadata and tensors of a checkpoint, the digest verified over both.

    Raises:
        FileNotFoundError: No file at ``path``.
        CheckpointError: Corrupted, truncated or edited file, or an unsupported version.
    """
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path}: cannot read the checkpoint's tensors (corrupted or truncated?): {err}"
        ) from err
    if _digest(meta, tensors) != meta["sha256"]:
        raise CheckpointError(
            f"{path}: the checkpoint does not match its SHA-256 digest (its metadata or "
            "tensors were corrupted or edited)"
        )
    return meta, tensors


def _parse_metadata(raw: Any, path: Path) -> Any:
    """The header's JSON, refused unless it is plain, finite and bounded (see the module)."""
    if not isinstance(raw, str):
        raise CheckpointError(f"{path}: checkpoint metadata is not a JSON string")

    def constant(name: str) -> float:
        raise ValueError(f"{name} is not a finite number")

    def real(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"{text[:20]} overflows a float")
        return value

    def integer(text: str) -> int:
        if len(text.lstrip("-")) > MAX_INT_DIGITS:
            raise ValueError(f"an integer of {len(text.lstrip('-'))} digits (at most "
                             f"{MAX_INT_DIGITS} are read)")  # fmt: skip
        return int(text)

    try:
        meta = json.loads(raw, parse_constant=constant, parse_float=real, parse_int=integer)
    except RecursionError as err:
        meta = err  # nested too deep for the parser: refused just below
    except ValueError as err:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON: {err}") from err
    if isinstance(meta, RecursionError) or _nesting(meta) > MAX_METADATA_DEPTH:
        raise CheckpointError(
            f"{path}: checkpoint metadata is nested deeper than {MAX_METADATA_DEPTH} levels "
            "(not written by bandexa-gym)"
        )
    return meta


def _nesting(value: Any) -> int:
    """Deepest nesting of lists and dicts in parsed JSON, walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend(
                (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


def _digest(meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the metadata (canonical JSON, without the digest itself) and the names,
    dtypes, shapes and bytes of ``tensors`` in sorted name order."""
    h = hashlib.sha256()
    body = {k: v for k, v in meta.items() if k != "sha256"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"|{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def _jsonable(value: Any, what: str) -> Any:
    """``value`` with tuples as lists and numpy scalars as numbers, checked to survive JSON."""
    norm = _normalize(value)
    try:
        return json.loads(json.dumps(norm, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{what} are not JSON-serializable: {err}") from err


def _normalize(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, torch.Size)):
        return [_normalize(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "item") and not isinstance(value, torch.Tensor):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise CheckpointError(f"non-finite value {value!r} cannot be stored")
    return value
