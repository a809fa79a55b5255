"""Reference agents that do not learn."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from gymnasium import spaces

from bandexa_gym.agents.base import Agent, Observations, register_agent


class UniformAgent(Agent):
    """Plays a uniformly random candidate among those on offer: the regret baseline."""

    name = "uniform"

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
        return {}

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any],
        *,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> UniformAgent:
        return cls(seed=seed, device=device, **kwargs)


@register_agent("uniform")
def _make_uniform(
    space: spaces.Dict,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    max_pending: int = 10_000,
) -> UniformAgent:
    """Uniformly random play: the regret baseline every table normalizes by."""
    agent = UniformAgent(seed=seed, device=device, max_pending=max_pending)
    agent.input_shapes = (tuple(space["context"].shape), int(space["candidates"].shape[-1]))
    return agent
