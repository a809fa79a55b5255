"""Exploration rules: how an agent turns a head's belief about its candidates into a choice.

A rule reads a :class:`~bandexa_gym.heads.protocol.Head` (``predict`` for the posterior mean and
variance, ``thompson_scores`` for posterior draws) on the features ``Z`` (..., K, d) of the
candidates and returns one score per candidate (..., K); the agent plays the best unmasked
score, breaking exact ties uniformly at random (:func:`select`). Rules:

* :class:`ThompsonSampling` — the score of one posterior draw (Thompson 1933).
* :class:`UCB` — ``mean + alpha · sd`` (LinUCB, Li et al. 2010, on the head's posterior).
* :class:`Greedy` — the posterior mean.
* :class:`EpsilonGreedy` — the posterior mean; with probability ``epsilon_t`` every
  candidate scores 0, so the tie-break plays a uniformly random unmasked candidate.

Every rule also states the probability with which it plays each candidate
(:meth:`ExplorationRule.probabilities`): exact for the deterministic rules (ties split
evenly, matching the random tie-break) and for ε-greedy, a Monte Carlo estimate from
posterior draws for Thompson sampling.

Randomness: a rule draws from the ``generator`` it is given, the same number of values per
row whether it scores one candidate set or a batch of B (B rows consume the generator as B
single calls do), so an agent acting on a vector env makes the same choices as one acting
row by row.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from bandexa_gym.heads.protocol import Head, tie_split

__all__ = [
    "EXPLORATION_RULES",
    "EpsilonGreedy",
    "ExplorationRule",
    "Greedy",
    "ThompsonSampling",
    "UCB",
    "make_rule",
    "select",
    "tie_split",
]


class ExplorationRule(ABC):
    """Turns a head and candidate features into scores; the agent plays the best."""

    name: ClassVar[str]
    monte_carlo: ClassVar[bool] = False
    """Whether :meth:`probabilities` is a Monte Carlo estimate (Thompson) or exact."""

    @abstractmethod
    def scores(
        self, head: Head, Z: Tensor, *, generator: torch.Generator | None = None, step: int = 0
    ) -> Tensor:
        """Scores of the candidates.

        Args:
            head: The agent's head.
            Z: Candidate features (..., K, d); a leading batch dim holds B candidate sets.
            generator: Source of the rule's randomness (on the head's device).
            step: Rounds the agent has learned from (for decaying schedules).

        Returns:
            Scores (..., K).
        """

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
        """Probability of playing each candidate, 0 on masked ones; rows sum to 1.

        Args:
            head: The agent's head.
            Z: Candidate features (..., K, d).
            mask: (..., K) bool, True for candidates on offer.
            generator: Randomness of a Monte Carlo estimate (unused by exact rules).
            step: As in :meth:`scores`.
            draws: Posterior draws of a Monte Carlo estimate.

        Returns:
            (..., K) probabilities (float64).
        """
        return tie_split(self.scores(head, Z, step=step), mask)

    def spec(self) -> dict[str, Any]:
        """JSON-serializable description; ``make_rule(rule.spec())`` rebuilds the rule."""
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "name")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExplorationRule) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.spec().items())))


class ThompsonSampling(ExplorationRule):
    """The score of one posterior draw per candidate set (one row of normals per set)."""

    name = "thompson"
    monte_carlo = True

    def draw(
        self, head: Head, Z: Tensor, generator: torch.Generator | None, draws: int | None = None
    ) -> Tensor:
        """Scores of one posterior draw per candidate set ((..., K)), or of ``draws`` of them
        ((draws, ..., K)); subclasses that transform a draw override this alone."""
        return head.thompson_scores(Z, generator=generator, draws=draws)

    def scores(
        self, head: Head, Z: Tensor, *, generator: torch.Generator | None = None, step: int = 0
    ) -> Tensor:
        return self.draw(head, Z, generator)

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
        """Monte Carlo: the share of ``draws`` posterior draws in which each candidate wins.

        One batched draw and one batched score for all ``draws`` (no Python loop). The
        standard error of each probability is ``sqrt(p (1 − p) / draws)``, at most
        ``0.5 / sqrt(draws)`` (0.05 for 100 draws).
        """
        if draws < 1:
            raise ValueError(f"draws must be >= 1, got {draws}")
        scores = self.draw(head, Z, generator, draws)  # (M, ..., K)
        return tie_split(scores, mask.expand_as(scores)).mean(dim=0)


@dataclass(frozen=True, eq=False)
class UCB(ExplorationRule):
    """Upper confidence bound ``mean + alpha · sd`` from the head's :meth:`predict`.

    On a linear head with ``prior_var = 1`` this is LinUCB (Li et al. 2010) with the
    width scaled by the head's noise estimate. ``alpha = 0`` is greedy.

    Attributes:
        alpha: Width of the bound in posterior standard deviations, >= 0.
    """

    alpha: float = 1.0
    name: ClassVar[str] = "ucb"

    def __post_init__(self) -> None:
        _check_nonnegative("alpha", self.alpha)

    def scores(
        self, head: Head, Z: Tensor, *, generator: torch.Generator | None = None, step: int = 0
    ) -> Tensor:
        mean, variance = head.predict(Z)
        if self.alpha == 0.0:
            return mean
        return mean + self.alpha * variance.sqrt()

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "alpha": float(self.alpha)}


class Greedy(ExplorationRule):
    """The posterior mean: no exploration beyond random tie-breaking."""

    name = "greedy"

    def scores(
        self, head: Head, Z: Tensor, *, generator: torch.Generator | None = None, step: int = 0
    ) -> Tensor:
        return head.predict(Z)[0]


@dataclass(frozen=True, eq=False)
class EpsilonGreedy(ExplorationRule):
    """Greedy, except with probability ``epsilon_t`` a uniformly random unmasked candidate.

    ``epsilon_t = max(min_epsilon, epsilon / (1 + decay · t))`` after ``t`` learned rounds
    (``decay = 0``: constant). Each candidate set consumes one uniform from the generator.

    Attributes:
        epsilon: Exploration probability at t = 0, in [0, 1].
        decay: Rate of the 1 / (1 + decay · t) schedule, >= 0.
        min_epsilon: Floor of the schedule, in [0, epsilon].
    """

    epsilon: float = 0.1
    decay: float = 0.0
    min_epsilon: float = 0.0
    name: ClassVar[str] = "epsilon_greedy"

    def __post_init__(self) -> None:
        _check_probability("epsilon", self.epsilon)
        _check_nonnegative("decay", self.decay)
        _check_probability("min_epsilon", self.min_epsilon)
        if self.min_epsilon > self.epsilon:
            raise ValueError(
                f"min_epsilon ({self.min_epsilon}) must not exceed epsilon ({self.epsilon})"
            )

    def epsilon_at(self, step: int) -> float:
        """``epsilon_t`` after ``step`` learned rounds."""
        return max(self.min_epsilon, self.epsilon / (1.0 + self.decay * step))

    def scores(
        self, head: Head, Z: Tensor, *, generator: torch.Generator | None = None, step: int = 0
    ) -> Tensor:
        mean = head.predict(Z)[0]
        coin = torch.rand(
            mean.shape[:-1], generator=generator, dtype=mean.dtype, device=mean.device
        )
        explore = (coin < self.epsilon_at(step)).unsqueeze(-1)
        return torch.where(explore, torch.zeros_like(mean), mean)

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
        eps = self.epsilon_at(step)
        greedy = tie_split(head.predict(Z)[0], mask)
        uniform = mask.to(greedy.dtype) / mask.sum(-1, keepdim=True).to(greedy.dtype)
        return eps * uniform + (1.0 - eps) * greedy

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "epsilon": float(self.epsilon),
            "decay": float(self.decay),
            "min_epsilon": float(self.min_epsilon),
        }


EXPLORATION_RULES: dict[str, type[ExplorationRule]] = {
    rule.name: rule for rule in (ThompsonSampling, UCB, Greedy, EpsilonGreedy)
}
"""Rules by name, as ``make_rule`` and ``exploration=`` accept them."""


def make_rule(rule: str | Mapping[str, Any] | ExplorationRule) -> ExplorationRule:
    """An exploration rule from a name, a spec dict or a rule.

    Args:
        rule: ``"thompson"``, ``"ucb"``, ``"greedy"``, ``"epsilon_greedy"``; a dict such as
            ``{"name": "ucb", "alpha": 2.0}`` (what :meth:`ExplorationRule.spec` returns);
            or a rule instance (returned as is).

    Raises:
        ValueError: Unknown name or settings.
    """
    if isinstance(rule, ExplorationRule):
        return rule
    if isinstance(rule, str):
        spec: dict[str, Any] = {"name": rule}
    elif isinstance(rule, Mapping):
        spec = dict(rule)
    else:
        raise ValueError(
            "exploration must be a rule name ('thompson', 'ucb', 'greedy', 'epsilon_greedy'), "
            f"a spec dict or an ExplorationRule, got {rule!r}"
        )
    name = spec.pop("name", None)
    if name not in EXPLORATION_RULES:
        raise ValueError(
            f"unknown exploration rule {name!r}; known: {', '.join(sorted(EXPLORATION_RULES))}"
        )
    try:
        return EXPLORATION_RULES[name](**spec)
    except TypeError as err:
        raise ValueError(f"bad settings for exploration rule {name!r}: {err}") from err


def select(scores: Tensor, mask: Tensor, keys: Tensor) -> Tensor:
    """Best unmasked candidate per row; exact ties broken by the largest ``key``.

    With ``keys`` i.i.d. uniform this picks uniformly among the tied candidates.

    Args:
        scores: (..., K).
        mask: (..., K) bool, True for candidates on offer (at least one per row).
        keys: (..., K) tie-break keys.

    Returns:
        (...,) int64 indices.

    Raises:
        ValueError: A score of an unmasked candidate is NaN.
    """
    masked = scores.masked_fill(~mask, -math.inf)
    best = masked.amax(dim=-1, keepdim=True)
    finite = math.isfinite(best.item()) if best.numel() == 1 else bool(best.isfinite().all())
    if not finite:
        raise ValueError("a candidate's score is NaN: the agent's state or input is not finite")
    return keys.masked_fill(masked != best, -1.0).argmax(dim=-1)


def _check_nonnegative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


def _check_probability(name: str, value: Any) -> None:
    _check_nonnegative(name, value)
    if value > 1:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
