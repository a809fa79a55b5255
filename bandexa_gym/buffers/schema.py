"""What a replay buffer stores and accepts: row types, the schema, input checks, errors.

Shared by the buffers (:mod:`bandexa_gym.buffers.base`, ``memory``, ``disk``) and the shard
format; the conventions are described in :mod:`bandexa_gym.buffers`.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""``(X, A, R)`` with shapes ``(B, *x_shape)``, ``(B, d_a)`` and ``(B,)``."""

StepBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""``(X, A, R, steps)``: a :data:`Batch` plus the transitions' int64 steps, shape ``(B,)``."""

TransformFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``fn(X, A) -> (X_new, A_new)`` applied to stored transitions by ``transform``."""

_F32_MAX = float(torch.finfo(torch.float32).max)


class ReplayBufferCorruptError(RuntimeError):
    """A file of a :class:`DiskReplayBuffer` is missing, truncated or inconsistent."""


class ReplayBufferVersionError(ReplayBufferCorruptError):
    """A :class:`DiskReplayBuffer` folder has a format version this library cannot read.

    It was written by a newer bandexa-gym, or by one too old to migrate.

    A subclass of :class:`ReplayBufferCorruptError`, so code that handles unreadable
    folders catches it too; the message names the folder's version and the readable ones.
    """


# ---------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_int(value: Any, name: str, minimum: int, *, or_none: bool = False) -> int:
    """``value`` as an ``int >= minimum``; a bool, float or string is a ``TypeError``."""
    expected = f"an int >= {minimum}" + (" or None" if or_none else "")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {expected}, got the bool {value!r}")
    try:
        result = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be {expected}, got {type(value).__name__} {_short(value)}"
        ) from None
    if result < minimum:
        raise ValueError(f"{name} must be {expected}, got {result}")
    return result


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {_short(value)}")
    return bool(value)


def _check_half_life(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            "recency must be a half-life in steps (a positive number) or None, "
            f"got {type(value).__name__} {_short(value)}"
        )
    half_life = float(value)
    if not (math.isfinite(half_life) and half_life > 0):
        raise ValueError(
            f"recency must be a finite half-life > 0 in steps (None samples uniformly), "
            f"got {value!r}"
        )
    return half_life


def _as_cpu_tensor(value: Any, name: str, *, exact: bool = False) -> torch.Tensor:
    """``value`` as a real CPU tensor; anything non-numeric or complex is a ``TypeError``.

    Tensors and NumPy values keep their dtype; Python numbers and lists get torch's
    default dtypes, or NumPy's (float64) with ``exact`` so that a range check sees the
    value before any float32 rounding.
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
    else:
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as exc:  # ragged nesting
            raise ValueError(f"{name} must be a tensor or a regular array: {exc}") from exc
        if array.dtype.kind not in "biufc":
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                raise ValueError(f"{name}: {_short(value)} is out of range")  # a huge int
            raise TypeError(
                f"{name} must be a real tensor, array or number, "
                f"got {type(value).__name__} {_short(value)}"
            )
        native = exact or isinstance(value, (np.ndarray, np.generic))
        tensor = torch.as_tensor(array) if native else _with_torch_dtypes(value, array)
    if tensor.is_complex():
        raise TypeError(
            f"{name} must be real, got complex values ({tensor.dtype}); pass the real part, "
            "or the real and imaginary parts as separate features"
        )
    return tensor


def _with_torch_dtypes(value: Any, array: np.ndarray) -> torch.Tensor:
    """``torch.as_tensor(value)`` (float32 for Python floats), else from NumPy's ``array``."""
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return torch.as_tensor(array)


def _cast(t: torch.Tensor, dtype: torch.dtype, name: str) -> torch.Tensor:
    """``t.to(dtype)``, refusing a narrowing float cast that turns finite values into inf."""
    out = t.to(dtype).contiguous()
    if (
        t.is_floating_point()
        and dtype.is_floating_point
        and torch.finfo(dtype).max < torch.finfo(t.dtype).max
        and bool((torch.isinf(out) & torch.isfinite(t)).any())
    ):
        raise ValueError(
            f"{name}: values too large for {dtype} (|v| <= {torch.finfo(dtype).max:.3g}); "
            "nothing was stored"
        )
    return out


@dataclass(frozen=True)
class _Schema:
    x_shape: tuple[int, ...]
    x_dtype: torch.dtype
    action_dim: int


def _check_actions(
    A: torch.Tensor, batch: int, action_dim: int | None, name: str = "A"
) -> torch.Tensor:
    if A.ndim != 2 or A.shape[0] != batch:
        want = f"({batch}, {action_dim if action_dim is not None else 'd_a'})"
        raise ValueError(f"{name}: expected shape {want} float, got {tuple(A.shape)} {A.dtype}")
    if action_dim is not None and A.shape[1] != action_dim:
        raise ValueError(
            f"{name}: expected action_dim {action_dim} (shape ({batch}, {action_dim})), "
            f"got shape {tuple(A.shape)}"
        )
    return _cast(A, torch.float32, name)


def _check_contexts(
    X: torch.Tensor, batch: int, schema: _Schema | None, name: str = "X"
) -> torch.Tensor:
    if X.ndim < 1 or X.shape[0] != batch:
        raise ValueError(
            f"{name}: expected a batch of {batch} contexts, got shape {tuple(X.shape)}"
        )
    if schema is None:
        return X.contiguous()
    if tuple(X.shape[1:]) != schema.x_shape:
        raise ValueError(
            f"{name}: expected shape {schema.x_shape} (batch {(batch, *schema.x_shape)}), "
            f"got {tuple(X.shape[1:])} (batch {tuple(X.shape)})"
        )
    if X.dtype != schema.x_dtype and not torch.can_cast(X.dtype, schema.x_dtype):
        raise ValueError(f"{name}: expected dtype {schema.x_dtype}, got {X.dtype} (unsafe cast)")
    return _cast(X, schema.x_dtype, name)


def _check_rewards(R: torch.Tensor, batch: int, name: str = "R") -> torch.Tensor:
    if R.dtype == torch.bool:
        raise TypeError(
            f"{name}: rewards must be real numbers, got bool; pass float(r) for a 0/1 reward"
        )
    if R.shape != (batch,):
        raise ValueError(f"{name}: expected shape ({batch},), got {tuple(R.shape)} {R.dtype}")
    wide = R.to(torch.float64)
    in_range = wide.abs() <= _F32_MAX  # False for NaN and inf too
    if not bool(in_range.all()):
        if not bool(torch.isfinite(wide).all()):
            raise ValueError(f"{name}: rewards must be finite (got NaN or inf); nothing was stored")
        raise ValueError(
            f"{name}: reward {wide[~in_range][0].item():.3g} is too large to store as "
            f"float32 (|r| <= {_F32_MAX:.3g}); nothing was stored"
        )
    return R.to(torch.float32).contiguous()


def _schema_of(X: torch.Tensor, A: torch.Tensor) -> _Schema:
    return _Schema(tuple(int(s) for s in X.shape[1:]), X.dtype, int(A.shape[1]))


def _empty_batch(schema: _Schema) -> Batch:
    return (
        torch.empty((0, *schema.x_shape), dtype=schema.x_dtype),
        torch.empty((0, schema.action_dim), dtype=torch.float32),
        torch.empty((0,), dtype=torch.float32),
    )


def _recency_indices(
    n: int, batch_size: int, half_life: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Logical indices drawn with ``P(i) ∝ 2^(-(n - 1 - i) / half_life)``, in O(batch).

    The age ``k = n - 1 - i`` follows a geometric law with ratio ``ρ = 2^(-1/h)``
    truncated to ``[0, n)``, drawn by inverting its CDF ``(1 - ρ^(k+1)) / (1 - ρ^n)``.

    Returns:
        int64 indices, shape ``(batch_size,)``.
    """
    log_rho = -math.log(2.0) / half_life
    mass = -math.expm1(n * log_rho)  # 1 - ρ^n, in (0, 1]
    u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
    age = torch.floor(torch.log1p(-u * mass) / log_rho).clamp_(0, n - 1).to(torch.int64)
    return (n - 1) - age


class _TransformRunner:
    """Applies a user transform chunk by chunk and checks that the outputs agree."""

    def __init__(self, fn: TransformFn) -> None:
        self.fn = fn
        self.schema: _Schema | None = None

    def __call__(self, X: torch.Tensor, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        X_new, A_new = self.fn(X, A)
        X_new = _as_cpu_tensor(X_new, "transform output X")
        A_new = _as_cpu_tensor(A_new, "transform output A")
        A_new = _check_actions(A_new, X.shape[0], None, "transform output A")
        X_new = _check_contexts(X_new, X.shape[0], self.schema, "transform output X")
        if self.schema is None:
            self.schema = _schema_of(X_new, A_new)
        elif A_new.shape[1] != self.schema.action_dim:
            raise ValueError(
                f"transform output A: expected action_dim {self.schema.action_dim} "
                f"(from the first chunk), got {A_new.shape[1]}"
            )
        return X_new, A_new
