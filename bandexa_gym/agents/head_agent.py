"""Agents made of three parts: features of the candidates, a Bayesian head, an exploration rule.

``HeadAgent`` is the representation → head → exploration split that ``linear_ts``,
``neural_linear_ts`` and their UCB, greedy and ε-greedy variants share: a subclass says how
it computes the features ``Z`` of a batch of candidate sets (:meth:`HeadAgent.features`)
and which head reads them (:attr:`HeadAgent.head`); deciding, reporting action
probabilities and predicting are the same for all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from bandexa_gym.agents.core import Agent, Observation, Observations
from bandexa_gym.agents.limits import check_count
from bandexa_gym.exploration import ExplorationRule, make_rule
from bandexa_gym.features.arms import ArmFeatures
from bandexa_gym.features.scaling import RewardScaler
from bandexa_gym.heads.protocol import Head

__all__ = ["HeadAgent", "absorb", "is_power_of_two", "split_at"]


def absorb(head: Head, z: torch.Tensor, targets: torch.Tensor) -> None:
    """Rows z (n, d) with their targets (n,) into ``head``: one row by a rank-1 update,
    several by an exact batch update."""
    if z.shape[0] == 1:
        head.update(z[0], targets[0])
    else:
        head.update_batch(z, targets)


def is_power_of_two(rounds: int) -> bool:
    """Whether ``rounds`` is 1, 2, 4, 8, ...: the rounds the agents re-standardize at."""
    return rounds > 0 and rounds & (rounds - 1) == 0


def split_at(start_round: int, n: int, due: Any) -> list[tuple[int, int]]:
    """Split n rows learned from round ``start_round`` on at the rounds where ``due(rounds)``.

    Returns ``[(begin, end), ...]`` row ranges: each ends with the row that brings the round
    count to a due round (or with the last row), so a batch can be learned as the same rows
    one at a time would be, with the agent's scheduled work (training, re-standardizing)
    done between the same rows.
    """
    out, begin = [], 0
    for i in range(n):
        if due(start_round + i + 1) or i == n - 1:
            out.append((begin, i + 1))
            begin = i + 1
    return out


class HeadAgent(Agent):
    """An agent that scores candidates with an exploration rule on a Bayesian head.

    Args:
        exploration: The rule (``"thompson"``, ``"ucb"``, ``"greedy"``,
            ``"epsilon_greedy"``, a spec dict such as ``{"name": "ucb", "alpha": 2}``, or
            an :class:`~bandexa_gym.exploration.ExplorationRule`).
        propensity_draws: Posterior draws M behind a Thompson-sampling propensity.
        **kwargs: Passed to :class:`~bandexa_gym.agents.core.protocol.Agent` (``seed``, ``device``,
            ``max_pending``, and ``outliers``/``outlier_factor``: a row far beyond the
            magnitudes learned so far is skipped with an ``OutlierWarning`` by default).
    """

    def __init__(
        self,
        *,
        exploration: str | Mapping[str, Any] | ExplorationRule = "thompson",
        propensity_draws: int = 100,
        **kwargs: Any,
    ) -> None:
        self.exploration = make_rule(exploration)
        self.propensity_draws = check_count("propensity_draws", propensity_draws)
        self.reward_scaler = RewardScaler(enabled=False)  # agents that standardize replace it
        super().__init__(**kwargs)
        self._feature_cache: tuple[torch.Tensor, torch.Tensor, Any] | None = None

    # -- what subclasses provide --------------------------------------------------------
    @property
    def head(self) -> Head:
        """The head the exploration rule reads."""
        raise NotImplementedError

    def compute_features(self, contexts: torch.Tensor, candidates: torch.Tensor) -> Any:
        """Features of every candidate of every row: what :attr:`head` reads (B, K, d)."""
        raise NotImplementedError

    # -- shared machinery ---------------------------------------------------------------
    def features(self, batch: Observations) -> Any:
        """:meth:`compute_features` of ``batch``, reused while the same contexts and
        candidates come back (e.g. ``decide`` then ``observe``); compared by content, not
        by object identity, so a mutated observation dict is never served stale features."""
        cached = self._feature_cache
        if cached is not None and cached[0] is batch.contexts and cached[1] is batch.candidates:
            return cached[2]  # the agent's own tensors of a reused conversion: never mutated
        if (
            cached is not None
            and cached[0].shape == batch.contexts.shape
            and cached[1].shape == batch.candidates.shape
            and torch.equal(cached[1], batch.candidates)
            and torch.equal(cached[0], batch.contexts)
        ):
            return cached[2]
        Z = self.compute_features(batch.contexts, batch.candidates)
        self._feature_cache = (batch.contexts, batch.candidates, Z)
        return Z

    def clear_feature_cache(self) -> None:
        """Forget cached features (call after changing the representation's weights)."""
        self._feature_cache = None

    def cached_chosen_features(
        self, contexts: torch.Tensor, chosen: torch.Tensor, indices: torch.Tensor
    ) -> torch.Tensor | None:
        """Features of the chosen rows (B, d) if the last decision computed them, else None."""
        cached = self._feature_cache
        if cached is None:
            return None
        ctx, cand, Z = cached
        if isinstance(Z, ArmFeatures) and Z.x.ndim == 3:
            Z = Z.x  # per-arm heads on per-candidate features
        if not isinstance(Z, torch.Tensor) or Z.ndim != 3:
            return None
        if ctx is not contexts and (ctx.shape != contexts.shape or not torch.equal(ctx, contexts)):
            return None
        rows = torch.arange(contexts.shape[0], device=indices.device)
        if not torch.equal(cand[rows, indices], chosen):
            return None
        return Z[rows, indices]

    def _choose(self, batch: Observations) -> torch.Tensor:
        scores = self.exploration.scores(
            self.head, self.features(batch), generator=self.generator, step=self.rounds
        )
        return self.select(scores, batch.masks)

    def _distribution(self, batch: Observations) -> torch.Tensor:
        return self.exploration.probabilities(
            self.head,
            self.features(batch),
            batch.masks,
            generator=self.propensity_generator,
            step=self.rounds,
            draws=self.propensity_draws,
        )

    def _propensities(self, batch: Observations, actions: torch.Tensor) -> torch.Tensor:
        probs = self._distribution(batch)
        chosen = probs.gather(1, actions.unsqueeze(1).to(probs.device)).squeeze(1)
        if self.exploration.monte_carlo:
            # The draw that chose the action counts as one of M + 1: never 0 for a played action.
            draws = self.propensity_draws
            chosen = (1.0 + draws * chosen) / (draws + 1.0)
        return chosen.cpu()

    def predict(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of every candidate's expected reward.

        Deterministic (no draw): two agents in the same state give identical values. In the
        rewards' own units (agents that standardize rewards convert back).

        Returns:
            ``(mean, variance)``, each (K,) (or (B, K) for a batched observation), float64.
        """
        batch = self.observations(obs)
        mean, variance = self.head.predict(self.features(batch))
        scaler = self.reward_scaler  # the head works in standardized reward units
        mean = (mean * scaler.scale + scaler.shift).cpu().numpy()
        variance = (variance * scaler.scale**2).cpu().numpy()
        return (mean, variance) if batch.batched else (mean[0], variance[0])

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.clear_feature_cache()
