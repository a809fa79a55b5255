"""Observations as agents take them: validated once, converted to tensors on the agent's
device with a batch dim, and the checks of actions and rewards that go with them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = ["MAX_ABS_INPUT", "MAX_ABS_REWARD", "Observation", "ObservationParsing", "Observations"]

Observation = Mapping[str, Any]
MAX_ABS_REWARD = 1e100
"""Rewards beyond this magnitude are rejected: their squares overflow the heads' statistics."""
MAX_ABS_INPUT = 1e100
"""Context and candidate values beyond this magnitude are rejected for the same reason."""
_OBS_KEYS = ("context", "candidates", "action_mask")


class Observations(NamedTuple):
    """An observation as tensors on the agent's device, always with a batch dim.

    Attributes:
        contexts: (B, *context_shape), the env's dtype.
        candidates: (B, K, d_a) float32.
        masks: (B, K) bool, True for candidates on offer.
        batched: Whether the observation came batched (a vector env).
    """

    contexts: torch.Tensor
    candidates: torch.Tensor
    masks: torch.Tensor
    batched: bool

    @property
    def size(self) -> int:
        """Number of rows B."""
        return int(self.candidates.shape[0])

    def rows(self, index: torch.Tensor | slice) -> Observations:
        """The observations of the selected rows."""
        return Observations(
            self.contexts[index], self.candidates[index], self.masks[index], self.batched
        )


class ObservationParsing:
    """Mixin of :class:`~bandexa_gym.agents.core.protocol.Agent`: :meth:`observations` and
    the reward checks."""

    name: str
    device: torch.device
    input_shapes: tuple[tuple[int, ...], int] | None
    _converted: tuple[tuple, list, Observations, tuple | None] | None
    _signature: tuple | None = None

    def observations(self, obs: Observation) -> Observations:
        """Validate ``obs`` and convert it to tensors on the device, with a batch dim.

        The tensors are the agent's own copies (a caller may reuse or mutate its arrays).
        The last conversion is reused when the same arrays come back with the same
        content (``observe`` right after ``act``), compared by value, never by identity
        alone.

        Raises:
            ValueError: Missing keys, bad shapes, NaN or inf values (or magnitudes beyond
                ``MAX_ABS_INPUT``), or no candidate on offer in some row.
            TypeError: Complex or non-numeric values.
        """
        try:
            parts = (obs["context"], obs["candidates"], obs.get("action_mask"))
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(
                "observation must be a mapping with 'context' and 'candidates' "
                "(and optionally 'action_mask'), as produced by a Bandexa env"
            ) from err
        cached = self._converted
        if cached is not None and all(
            _same(new, old_ref, old_copy)
            for new, old_ref, old_copy in zip(parts, cached[0], cached[1], strict=True)
        ):
            return cached[2]
        context, candidates, mask = (
            None if p is None else _real_array(p, n) for p, n in zip(parts, _OBS_KEYS, strict=True)
        )
        assert context is not None and candidates is not None
        signature = (
            context.shape,
            context.dtype,
            candidates.shape,
            candidates.dtype,
            None if mask is None else (mask.shape, mask.dtype),
            self.input_shapes,
        )
        if signature != self._signature:  # shapes checked when they change, not every round
            self._check_shapes(context, candidates, mask)
        batched = candidates.ndim == 3
        # One copy of each array, shared by the tensors and the change check.
        copies = [
            np.array(context, copy=True),
            np.array(candidates, dtype=np.float32, copy=True),
            np.ones(candidates.shape[:-1], bool) if mask is None else mask != 0,  # a new array
        ]
        if mask is not None and not copies[2].any(axis=-1).all():
            raise ValueError("action_mask leaves no candidate on offer")
        # Largest magnitude of the context and of each candidate row (NaN fails the
        # comparison, so these reductions check finiteness too); the outlier screen reuses
        # them for a single row.
        context_max = float(np.abs(copies[0]).max()) if copies[0].size else 0.0
        row_max = np.abs(copies[1]).max(axis=-1) if copies[1].size else None
        largest = (context_max, 0.0 if row_max is None else float(row_max.max()))
        for name, value in zip(_OBS_KEYS[:2], largest, strict=True):
            if not value <= MAX_ABS_INPUT:
                raise ValueError(
                    f"{name} holds NaN, inf or values beyond {MAX_ABS_INPUT:.0e} in magnitude"
                )
        tensors = [torch.from_numpy(a if batched else a[None]) for a in copies]
        if self.device.type != "cpu":
            tensors = [t.to(self.device) for t in tensors]
        batch = Observations(*tensors, batched=batched)
        kept = [None if p is None else c for p, c in zip(parts, copies, strict=True)]
        # Magnitudes (context, each candidate) the screen can take as they are: floats and
        # unsigned integers (a signed integer's abs may overflow; the screen widens it).
        exact = copies[0].dtype.kind in "fu" and row_max is not None and not batched
        self._converted = (parts, kept, batch, (context_max, row_max) if exact else None)
        self._signature = signature  # only once the whole observation passed
        return batch

    def _check_shapes(
        self, context: np.ndarray, candidates: np.ndarray, mask: np.ndarray | None
    ) -> None:
        """The shape checks of :meth:`observations` (see there)."""
        if candidates.ndim not in (2, 3) or candidates.shape[-2] == 0:
            raise ValueError(
                "candidates must have shape (K, d_a) or (B, K, d_a) with K >= 1, "
                f"got {tuple(candidates.shape)}"
            )
        batched = candidates.ndim == 3
        if mask is not None and mask.shape != candidates.shape[:-1]:
            raise ValueError(
                f"action_mask must have shape {tuple(candidates.shape[:-1])}, got {mask.shape}"
            )
        if self.input_shapes is not None:
            context_shape, action_dim = self.input_shapes
            if tuple(context.shape[batched:]) != context_shape:
                raise ValueError(
                    f"context must have shape {context_shape} (or (B, *{context_shape}) batched), "
                    f"got {tuple(context.shape)}"
                )
            if candidates.shape[-1] != action_dim:
                raise ValueError(
                    f"candidates must have {action_dim} features per row, got shape "
                    f"{tuple(candidates.shape)}"
                )
        if batched and context.shape[:1] != candidates.shape[:1]:
            raise ValueError(
                f"batched context and candidates disagree on B: {context.shape} vs "
                f"{candidates.shape}"
            )

    def _check_rewards(self, reward: Any, size: int, batched: bool) -> torch.Tensor:
        """Rewards as (B,) float64 on the device, validated (see :meth:`observe`)."""
        if type(reward) is float and size == 1 and not batched:  # the common case, fast
            if not abs(reward) <= MAX_ABS_REWARD or (
                self.capabilities.binary_rewards and reward not in (0.0, 1.0)
            ):
                return self._check_rewards(np.float64(reward), size, batched)  # the error path
            values = torch.from_numpy(np.array([reward]))
            return values if self.device.type == "cpu" else values.to(self.device)
        arr = np.asarray(reward)
        if arr.dtype == object or arr.dtype.kind not in "iuf" or arr.dtype == np.bool_:
            raise TypeError(
                f"reward must be a real number (or an array of {size} for a batch), got {reward!r}"
            )
        if (arr.ndim > 0) != batched and not (arr.size == 1 and size == 1):
            raise ValueError(f"expected {size} reward(s), got shape {arr.shape}")
        values = arr.astype(np.float64).reshape(-1)
        if values.size != size:
            raise ValueError(f"expected {size} rewards, got {values.size}")
        if not np.isfinite(values).all():
            raise ValueError(f"reward must be a finite number, got {reward!r}")
        if np.abs(values).max() > MAX_ABS_REWARD:
            raise ValueError(
                f"reward {values[np.argmax(np.abs(values))]:.3g} is too large for the agent's "
                f"head (|reward| must be at most {MAX_ABS_REWARD:.0e}; rescale the rewards)"
            )
        if self.capabilities.binary_rewards and not np.isin(values, (0.0, 1.0)).all():
            raise ValueError(
                f"{self.name} models rewards in {{0, 1}} (Bernoulli), got {reward!r}; use an "
                "agent with a Gaussian head for other rewards"
            )
        return torch.as_tensor(values, dtype=torch.float64, device=self.device)


def _within(values: torch.Tensor, bound: float) -> bool:
    """Whether every value is finite and at most ``bound`` in magnitude (True when empty)."""
    return values.numel() == 0 or bool(values.abs().max() <= bound)


def _real_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a numpy array of real numbers (a view where possible: copied later)."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise TypeError(f"{name} must be real, got a complex tensor")
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in ("b", "i", "u", "f"):
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    return arr


def _same(new: Any, old_ref: Any, old_copy: np.ndarray | None) -> bool:
    """Whether ``new`` is the object converted last time and still holds the same values."""
    if new is None or old_ref is None:
        return new is None and old_ref is None
    if new is not old_ref or not isinstance(new, np.ndarray):
        return False
    return new.shape == old_copy.shape and bool((new == old_copy).all())


def _check_actions(
    action: Any, size: int, n_candidates: int, batched: bool, offered: np.ndarray | None = None
) -> np.ndarray:
    """Actions as (B,) int64 indices; ``offered`` (B, K) bool refuses masked candidates."""
    if type(action) is int and size == 1:  # the common case, fast
        if not 0 <= action < n_candidates:
            raise ValueError(f"action {action} is outside [0, {n_candidates - 1}]")
        if offered is not None and not offered.reshape(-1)[action]:
            raise ValueError(f"action {action} is masked (its action_mask is 0): not on offer")
        return np.array([action], dtype=np.int64)
    arr = np.asarray(action)
    if not np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        raise TypeError(
            f"action must be an integer in [0, {n_candidates - 1}] (one per row of a batch), "
            f"got {action!r}"
        )
    flat = arr.reshape(-1)
    if flat.size != size or (arr.ndim > 0) != batched and size != 1:
        raise ValueError(f"expected {size} action(s), got shape {arr.shape}")
    bad = flat[(flat < 0) | (flat >= n_candidates)]
    if bad.size:
        raise ValueError(f"action {int(bad[0])} is outside [0, {n_candidates - 1}]")
    if offered is not None:
        masked = ~offered.reshape(size, n_candidates)[np.arange(size), flat]
        if masked.any():
            row = int(np.argmax(masked))
            raise ValueError(
                f"action {int(flat[row])} in row {row} is masked (its action_mask is 0): not on "
                "offer"
            )
    return flat.astype(np.int64)


def _unbatch(values: torch.Tensor, batched: bool) -> Any:
    if not batched:
        item = values[0].item()
        return int(item) if isinstance(item, int) else float(item)
    return values.detach().cpu().numpy()
