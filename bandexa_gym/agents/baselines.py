"""Reference agents that do not learn."""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces

from bandexa_gym.agents.base import Agent, register_agent


class UniformAgent(Agent):
    """Plays a uniformly random candidate among those on offer: the regret baseline."""

    name = "uniform"

    def _act_one(self, context: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor) -> int:
        return self.random_index(mask)

    def _act_batch(
        self, contexts: torch.Tensor, candidates: torch.Tensor, masks: torch.Tensor
    ) -> list[int]:
        draws = torch.multinomial(masks.to(torch.float32), 1, generator=self.generator)
        return draws.squeeze(1).tolist()

    def _observe_one(
        self, context: torch.Tensor, action: torch.Tensor, reward: float, index: int
    ) -> None:
        return None

    def _observe_batch(self, *args: Any) -> None:
        return None


@register_agent("uniform")
def _make_uniform(
    space: spaces.Dict, *, seed: int | None = None, device: str | torch.device = "cpu"
) -> UniformAgent:
    return UniformAgent(seed=seed, device=device)
