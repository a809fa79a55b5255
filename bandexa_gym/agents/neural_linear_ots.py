"""``neural_linear_ots``: optimistic Thompson sampling on the Neural-Linear model.

Optimistic Thompson sampling (May et al., 2012, "Optimistic Bayesian sampling in contextual
bandit problems") scores a candidate by ``max(draw, posterior mean)``: a draw below the mean
is replaced by the mean, so sampling only ever adds optimism. It explores less than plain
Thompson sampling on arms whose draws fall low and keeps the same representation, heads,
schedule and checkpoints as ``neural_linear_ts``: only the exploration rule is new.

The agent is built from parts the toolkit already has (:func:`make_neural_linear`); this
module adds the rule, registers it with the exploration rules (so checkpoints rebuild it)
and registers the agent.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from torch import Tensor

from bandexa_gym.agents.core import register_agent
from bandexa_gym.agents.neural_linear import NeuralLinearTS, make_neural_linear
from bandexa_gym.exploration import EXPLORATION_RULES, ThompsonSampling
from bandexa_gym.heads.protocol import Head

__all__ = ["OptimisticThompsonSampling"]


class OptimisticThompsonSampling(ThompsonSampling):
    """``max(draw, mean)`` per candidate: Thompson sampling's draws (and its Monte Carlo
    probabilities over them), never below the posterior mean (the head's ``predict``)."""

    name = "optimistic_thompson"

    def draw(
        self, head: Head, Z: Tensor, generator: torch.Generator | None, draws: int | None = None
    ) -> Tensor:
        mean, _ = head.predict(Z)
        return torch.maximum(super().draw(head, Z, generator, draws), mean)


EXPLORATION_RULES.setdefault(OptimisticThompsonSampling.name, OptimisticThompsonSampling)


@register_agent("neural_linear_ots")
def _make_neural_linear_ots(space: spaces.Dict, **kwargs: Any) -> NeuralLinearTS:
    """Optimistic Thompson sampling on the neural-linear head (settings as
    ``neural_linear_ts``)."""
    kwargs.setdefault("exploration", OptimisticThompsonSampling())
    return make_neural_linear(space, **kwargs)
