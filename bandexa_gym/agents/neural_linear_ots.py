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
from bandexa_gym.exploration import EXPLORATION_RULES, ExplorationRule, tie_split
from bandexa_gym.heads.protocol import Head

__all__ = ["OptimisticThompsonSampling"]


class OptimisticThompsonSampling(ExplorationRule):
    """``max(draw, mean)`` per candidate: one posterior draw per candidate set, never below
    the posterior mean (the mean comes from the head's ``predict``)."""

    name = "optimistic_thompson"
    monte_carlo = True

    def scores(
        self, head: Head, Z: Tensor, *, generator: torch.Generator | None = None, step: int = 0
    ) -> Tensor:
        mean, _ = head.predict(Z)
        return torch.maximum(head.thompson_scores(Z, generator=generator), mean)

    def probabilities(
        self,
        head: Head,
        Z: Tensor,
        mask: Tensor,
        *,
        generator: torch.Generator | None = None,
        step: int = 0,
        draws: int = 100,
    ) -> Tensor:
        """Monte Carlo, as Thompson sampling's: the share of ``draws`` optimistic draws
        in which each candidate wins (ties split evenly)."""
        if draws < 1:
            raise ValueError(f"draws must be >= 1, got {draws}")
        mean, _ = head.predict(Z)
        scores = torch.maximum(head.thompson_scores(Z, generator=generator, draws=draws), mean)
        return tie_split(scores, mask.expand_as(scores)).mean(dim=0)


EXPLORATION_RULES.setdefault(OptimisticThompsonSampling.name, OptimisticThompsonSampling)


@register_agent("neural_linear_ots")
def _make_neural_linear_ots(space: spaces.Dict, **kwargs: Any) -> NeuralLinearTS:
    """Optimistic Thompson sampling on the neural-linear head (settings as
    ``neural_linear_ts``)."""
    kwargs.setdefault("exploration", OptimisticThompsonSampling())
    return make_neural_linear(space, **kwargs)
