"""Decisions awaiting feedback: what ``decide`` remembers, and how checkpoints keep it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch

from bandexa_gym.agents.core.observations import MAX_ABS_INPUT, _within

__all__ = ["PENDING_TENSORS", "PendingDecisions"]

PENDING_TENSORS = ("pending.ids", "pending.contexts", "pending.chosen", "pending.indices")
"""Checkpoint tensors of the decisions awaiting feedback (see :meth:`Agent.save`)."""
_CONTEXT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8,
                   torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)  # fmt: skip


class _Pending(NamedTuple):
    context: torch.Tensor  # (*context_shape)
    chosen: torch.Tensor  # (d_a,)
    index: int


class PendingDecisions:
    """Mixin of :class:`~bandexa_gym.agents.core.protocol.Agent`: the decisions awaiting
    :meth:`feedback` (``_pending``, id -> context, chosen row, index) and the id counter."""

    device: torch.device
    max_pending: int
    input_shapes: tuple[tuple[int, ...], int] | None
    _pending: OrderedDict[int, _Pending]
    _next_id: int

    @property
    def pending(self) -> int:
        """Decisions awaiting :meth:`feedback`."""
        return len(self._pending)

    def _pending_tensors(self) -> dict[str, torch.Tensor]:
        """The pending decisions as ``pending.*`` tensors (none when nothing is pending)."""
        if not self._pending:
            return {}
        items = list(self._pending.items())
        return {
            "pending.ids": torch.tensor([k for k, _ in items], dtype=torch.int64),
            "pending.contexts": torch.stack([p.context for _, p in items]),
            "pending.chosen": torch.stack([p.chosen for _, p in items]),
            "pending.indices": torch.tensor([p.index for _, p in items], dtype=torch.int64),
        }

    def pending_state(
        self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
    ) -> tuple[OrderedDict[int, Any], int]:
        """A checkpoint's pending decisions and id counter, validated, for
        :meth:`set_pending_state` (nothing is changed here).

        Raises:
            ValueError: More pending decisions than ``max_pending``, ids that repeat or are
                not below the counter, or contexts and rows that do not fit this agent.
        """
        next_id = scalars.get("next_decision_id", 0)
        if isinstance(next_id, bool) or not isinstance(next_id, int) or not 0 <= next_id < 2**62:
            raise ValueError(f"next_decision_id must be an integer in [0, 2**62), got {next_id!r}")
        names = PENDING_TENSORS
        present = [n for n in names if n in tensors]
        if not present:
            return OrderedDict(), next_id
        if len(present) != len(names):
            raise ValueError(f"pending decisions need tensors {list(names)}, got {present}")
        ids, contexts, chosen, indices = (tensors[n] for n in names)
        count = int(ids.shape[0]) if ids.ndim == 1 else -1
        if count > self.max_pending:
            raise ValueError(
                f"{count} decisions await feedback but max_pending is {self.max_pending} "
                "(pass max_pending= to load_agent to keep them)"
            )
        want = {"pending.ids": torch.int64, "pending.chosen": torch.float32,
                "pending.indices": torch.int64}  # fmt: skip
        for name, dtype in want.items():
            if tensors[name].dtype != dtype:
                raise ValueError(f"tensor {name} has dtype {tensors[name].dtype}, not {dtype}")
        if contexts.dtype.is_complex or contexts.dtype not in _CONTEXT_DTYPES:
            raise ValueError(f"tensor pending.contexts has dtype {contexts.dtype}")
        context_shape, action_dim = self.input_shapes or (tuple(contexts.shape[1:]), None)
        shapes = {
            "pending.ids": (count,),
            "pending.indices": (count,),
            "pending.contexts": (count, *context_shape),
            "pending.chosen": (count, chosen.shape[-1] if action_dim is None else action_dim),
        }
        for name, shape in shapes.items():
            if count < 1 or tuple(tensors[name].shape) != shape:
                raise ValueError(
                    f"tensor {name} has shape {tuple(tensors[name].shape)}, not {shape}"
                )
        keys = ids.tolist()
        if len(set(keys)) != count or min(keys) < 0 or max(keys) >= next_id:
            raise ValueError(f"pending decision ids must be distinct, in [0, {next_id})")
        for name, values in (("pending.contexts", contexts), ("pending.chosen", chosen)):
            if not _within(values.to(torch.float64), MAX_ABS_INPUT):
                raise ValueError(f"{name} holds NaN, inf or values beyond {MAX_ABS_INPUT:.0e}")
        if int(indices.min()) < 0:
            raise ValueError("pending.indices holds a negative candidate index")
        pending = OrderedDict(
            (key, _Pending(contexts[i].to(self.device), chosen[i].to(self.device), int(index)))
            for i, (key, index) in enumerate(zip(keys, indices.tolist(), strict=True))
        )
        return pending, next_id

    def set_pending_state(self, pending: OrderedDict[int, Any], next_id: int) -> None:
        """Set the pending decisions from :meth:`pending_state` output; the id counter never
        goes back (ids this agent already handed out stay used)."""
        self._pending = pending
        self._next_id = max(self._next_id, next_id)
