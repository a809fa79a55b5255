"""Reference agents that do not learn."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from gymnasium import spaces

from bandexa_gym.agents.core import DEFAULT_OUTLIER_FACTOR, Agent, Observations, register_agent


class UniformAgent(Agent):
    """Plays a uniformly random candidate among those on offer: the regret baseline."""

    name = "uniform"

    def __init__(
        self, *, input_shapes: tuple[tuple[int, ...], int] | None = None, **kwargs: Any
    ) -> None:
        """Args: ``input_shapes`` ``(context_shape, d_a)`` of the observations (checked when
        given); ``kwargs`` as :class:`~bandexa_gym.agents.core.protocol.Agent`."""
        super().__init__(**kwargs)
        self.input_shapes = input_shapes

    def _choose(self, batch: Observations) -> torch.Tensor:
        return self.uniform_choice(batch.masks)

    def _distribution(self, batch: Observations) -> torch.Tensor:
        masks = batch.masks.to(torch.float64)
        return masks / masks.sum(-1, keepdim=True)

    def _learn(
        self,
        contexts: torch.Tensor,
        chosen: torch.Tensor,
        indices: torch.Tensor,
        rewards: torch.Tensor,
    ) -> None:
        self.rounds += int(rewards.shape[0])

    def spec(self) -> dict[str, Any]:
        if self.input_shapes is None:
            return {}
        context_shape, action_dim = self.input_shapes
        return {"context_shape": list(context_shape), "action_dim": action_dim}

    @classmethod
    def spec_arguments(cls, spec: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
        if "context_shape" not in spec:
            return {}
        shape = spec["context_shape"]
        if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape
        ):
            raise ValueError(f"context_shape must be a list of sizes >= 1, got {shape!r}")
        action_dim = spec["action_dim"]
        if isinstance(action_dim, bool) or not isinstance(action_dim, int) or action_dim < 1:
            raise ValueError(f"action_dim must be an integer >= 1, got {action_dim!r}")
        return {"input_shapes": (tuple(shape), action_dim)}


@register_agent("uniform")
def _make_uniform(
    space: spaces.Dict,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    max_pending: int = 10_000,
    outliers: str = "skip",
    outlier_factor: float = DEFAULT_OUTLIER_FACTOR,
) -> UniformAgent:
    """Uniformly random play: the regret baseline every table normalizes by."""
    return UniformAgent(
        input_shapes=(tuple(space["context"].shape), int(space["candidates"].shape[-1])),
        seed=seed,
        device=device,
        max_pending=max_pending,
        outliers=outliers,
        outlier_factor=outlier_factor,
    )
