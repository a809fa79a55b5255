"""Checks and notes shared by the agents' ``evolve_from`` (see :mod:`bandexa_gym.transfer`)."""

from __future__ import annotations

import math

from bandexa_gym.heads.protocol import HeadConfig

__all__ = ["context_growth", "hyper_note"]


def context_growth(
    old_shape: tuple[int, ...], new_shape: tuple[int, ...], who: str
) -> tuple[int, int]:
    """Check that a context may go from ``old_shape`` to ``new_shape``; (d_x old, d_x new)."""
    if old_shape == new_shape:
        d = math.prod(old_shape)
        return d, d
    if len(old_shape) != 1 or len(new_shape) != 1:
        raise ValueError(
            f"context_shape differs: the trained {who} takes {old_shape}, the template "
            f"{new_shape}; only vector contexts can gain features (image shapes must match)"
        )
    if new_shape[0] < old_shape[0]:
        raise ValueError(
            f"context_shape shrinks from {old_shape} to {new_shape}: the template must keep "
            "every context feature the trained agent learned from (features can only be added)"
        )
    return old_shape[0], new_shape[0]


def hyper_note(rebased: bool, old: HeadConfig, new: HeadConfig) -> str:
    """``"; head re-based on the template's prior (...)"`` when ``rebased``, else ``""``."""
    if not rebased:
        return ""
    before, after = old.to_dict(), new.to_dict()
    changed = ", ".join(
        f"{k} {before[k]!r} -> {after[k]!r}" for k in before if before[k] != after[k]
    )
    return f"; head re-based on the template's prior ({changed})"
