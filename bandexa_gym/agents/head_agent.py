"""Agents made of three parts: features of the candidates, a Bayesian head, an exploration rule.

``HeadAgent`` is the representation → head → exploration split that ``linear_ts``,
``neural_linear_ts`` and their UCB, greedy and ε-greedy variants share: a subclass says how
it computes the features ``Z`` of a batch of candidate sets (:meth:`HeadAgent.features`)
and which head reads them (:attr:`HeadAgent.head`); deciding, reporting action
probabilities and predicting are the same for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from bandexa_gym.agents.base import Agent, Observation, Observations
from bandexa_gym.agents.limits import check_count
from bandexa_gym.exploration import ExplorationRule, make_rule
from bandexa_gym.features.arms import ArmFeatures
from bandexa_gym.posterior import Head

__all__ = ["HeadAgent", "RewardScaler", "split_at"]


class RewardScaler:
    """Standardizes rewards, ``r̃ = (r − shift) / scale``, from the rewards seen so far.

    Heads and encoders then learn on targets of mean 0 and variance 1 whatever the reward's
    units: an agent decides the same on rewards multiplied by 100 or shifted by +100 (the
    argmax of standardized scores is the argmax of raw ones), its priors mean the same
    thing on every problem, and a network's readout does not have to move by tens. The
    running mean and variance are updated with every reward; ``shift`` and ``scale``
    change only at :meth:`refit`, after which the agent re-expresses its head in the new
    units (exactly: see ``BayesianLinearRegression.retarget`` and ``rebuild``).

    Args:
        enabled: When False, ``shift = 0`` and ``scale = 1`` always (raw rewards).
        tolerance: :meth:`refit` reports a change only when the shift moves by more than
            this many scales or the scale by more than this factor (relative).
    """

    def __init__(self, enabled: bool = True, tolerance: float = 0.05) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"standardize_rewards must be True or False, got {enabled!r}")
        self.enabled, self.tolerance = enabled, float(tolerance)
        self.shift, self.scale = 0.0, 1.0
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, rewards: torch.Tensor) -> None:
        """Add rewards (n,) to the running moments (Chan et al.'s parallel update)."""
        n = int(rewards.numel())
        if n == 0:
            return
        if n == 1:  # the per-round case: no tensor arithmetic
            mean, m2 = float(rewards.reshape(())), 0.0
        else:
            values = rewards.detach().to("cpu", torch.float64)
            mean, m2 = float(values.mean()), float(((values - values.mean()) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def refit(self) -> bool:
        """Set ``shift``/``scale`` to the running mean/std; True if they changed notably.

        The scale stays 1 until two distinct rewards have been seen (a variance of 0 says
        nothing about the reward's units).
        """
        if not self.enabled or self.count == 0:
            return False
        variance = self.m2 / self.count
        scale = math.sqrt(variance) if variance > 1e-24 * (1.0 + self.mean * self.mean) else None
        new_scale = self.scale if scale is None else scale
        moved = abs(self.mean - self.shift) > self.tolerance * self.scale
        rescaled = abs(math.log(new_scale / self.scale)) > self.tolerance
        if not (moved or rescaled):
            return False
        self.shift, self.scale = self.mean, new_scale
        return True

    def __call__(self, rewards: torch.Tensor) -> torch.Tensor:
        """Standardized rewards (same shape)."""
        if self.shift == 0.0 and self.scale == 1.0:
            return rewards
        return (rewards - self.shift) / self.scale

    def state(self) -> dict[str, float | int]:
        """JSON scalars for checkpoints."""
        return {"shift": self.shift, "scale": self.scale, "count": self.count,
                "mean": self.mean, "m2": self.m2}  # fmt: skip

    def load(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state` output.

        Raises:
            ValueError: Non-finite values, a scale <= 0 or a negative count.
        """
        values = {k: state[k] for k in ("shift", "scale", "count", "mean", "m2")}
        if not all(math.isfinite(float(v)) for v in values.values()):
            raise ValueError(f"reward scaler state holds non-finite values: {values}")
        if values["scale"] <= 0 or values["count"] < 0 or values["m2"] < 0:
            raise ValueError(f"invalid reward scaler state: {values}")
        self.shift, self.scale = float(values["shift"]), float(values["scale"])
        self.count, self.mean, self.m2 = (
            int(values["count"]),
            float(values["mean"]),
            float(values["m2"]),
        )


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
        **kwargs: Passed to :class:`~bandexa_gym.agents.base.Agent` (``seed``, ``device``,
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
