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
from typing import Any, NamedTuple

import numpy as np
import torch

from bandexa_gym.agents.base import Agent, Observation, Observations
from bandexa_gym.agents.limits import check_count
from bandexa_gym.exploration import ExplorationRule, make_rule
from bandexa_gym.heads.gaussian import BayesianLinearRegression
from bandexa_gym.heads.numerics import (
    GAMMA_NORMALS,
    draw_row_length,
    gamma_variates,
    standard_gamma,
)
from bandexa_gym.heads.protocol import Head

__all__ = [
    "ArmFeatures",
    "ArmHeads",
    "ArmRegistry",
    "ArmSetChanged",
    "HeadAgent",
    "RewardScaler",
    "is_one_hot",
    "split_at",
]

MAX_FIXED_ARMS = 64
"""The most arms of a fixed arm set (one head per arm): a first candidate set of up to this
many rows is taken for one, and more distinct rows than this in all end it."""


def is_one_hot(candidates: torch.Tensor) -> bool:
    """Whether every row of ``candidates`` (..., K, d_a) is a one-hot vector."""
    binary = ((candidates == 0) | (candidates == 1)).all()
    return bool(binary and (candidates.sum(dim=-1) == 1).all())


class ArmSetChanged(ValueError):
    """Candidate rows keep changing: they are not a fixed set of arms (one head each)."""


class ArmRegistry:
    """Names the arms of a fixed arm set: which head scores a candidate row.

    One-hot rows are the arm at the position of their 1 (labels, classes). Other rows are
    arms by their content: the first distinct row seen is arm 0, the next arm 1, ... (the
    fixed arms of a synthetic bandit), up to ``capacity`` distinct rows; a row beyond it
    raises :class:`ArmSetChanged` (the candidates are not a fixed arm set after all).

    Args:
        action_dim: d_a.
        capacity: Most distinct content-keyed rows (ignored for one-hot rows).
    """

    def __init__(self, action_dim: int, capacity: int) -> None:
        self.action_dim, self.capacity = int(action_dim), int(capacity)
        self.one_hot: bool | None = None  # decided by the first candidate set
        self.rows: list[bytes] = []
        self._index: dict[bytes, int] = {}

    @property
    def n_arms(self) -> int:
        """Arms known so far (``action_dim`` for one-hot rows)."""
        return self.action_dim if self.one_hot else len(self.rows)

    def arms(self, candidates: torch.Tensor) -> torch.Tensor:
        """Arm index of every row of ``candidates`` (..., K, d_a): (..., K) int64.

        Raises:
            ArmSetChanged: More distinct rows than ``capacity``, or a non-one-hot row after
                one-hot ones (nothing is registered then).
        """
        if self.one_hot is None:
            self.one_hot = is_one_hot(candidates)
        if self.one_hot:
            if not is_one_hot(candidates):
                raise ArmSetChanged("a candidate row is not one-hot, unlike the first ones")
            return candidates.argmax(dim=-1)
        flat = candidates.reshape(-1, self.action_dim).to("cpu", torch.float32).numpy()
        keys = [row.tobytes() for row in flat]
        new = list(dict.fromkeys(k for k in keys if k not in self._index))
        if len(self.rows) + len(new) > self.capacity:
            raise ArmSetChanged(
                f"more than {self.capacity} distinct candidate rows: the candidates change "
                "from round to round, so they are not a fixed set of arms"
            )
        for key in new:
            self._index[key] = len(self.rows)
            self.rows.append(key)
        ids = torch.tensor([self._index[k] for k in keys], dtype=torch.int64)
        return ids.reshape(candidates.shape[:-1]).to(candidates.device)

    def state(self) -> tuple[dict[str, Any], torch.Tensor]:
        """(JSON scalars, the content-keyed rows (n, d_a) float32) for checkpoints."""
        rows = torch.tensor(
            [list(np.frombuffer(k, dtype=np.float32)) for k in self.rows], dtype=torch.float32
        ).reshape(len(self.rows), self.action_dim)
        return {"one_hot": self.one_hot, "capacity": self.capacity}, rows

    def load(self, scalars: Mapping[str, Any], rows: torch.Tensor) -> None:
        """Restore :meth:`state` output.

        Raises:
            ValueError: Rows of the wrong width or repeated rows.
        """
        if rows.ndim != 2 or rows.shape[1] != self.action_dim:
            raise ValueError(f"arm rows must be (n, {self.action_dim}), got {tuple(rows.shape)}")
        keys = [row.tobytes() for row in rows.to(torch.float32).numpy()]
        if len(set(keys)) != len(keys):
            raise ValueError("arm rows repeat a row")
        one_hot = scalars.get("one_hot")
        if one_hot not in (None, True, False):
            raise ValueError(f"one_hot must be a bool or null, got {one_hot!r}")
        self.one_hot, self.rows = one_hot, keys
        self._index = {k: i for i, k in enumerate(keys)}


class ArmFeatures(NamedTuple):
    """Features for per-arm heads: what each candidate's head reads, and its arm.

    Attributes:
        x: (B, d) shared by the candidates of a row (the context, for per-arm linear
            heads), or (B, K, d) one per candidate (learned features z(x, a)).
        arms: Arm index of every candidate (B, K), int64.
    """

    x: torch.Tensor
    arms: torch.Tensor


class ArmHeads:
    """One head per arm seen as one head (what the exploration rules read).

    ``predict`` and ``thompson_scores`` on :class:`ArmFeatures`: candidate ``k`` of row ``b``
    is scored by the head of its arm. A Thompson draw samples, row by row, one weight
    vector per arm present in the row, in ascending arm order (so B rows consume the
    generator as B single rows do).
    """

    def __init__(self, heads: list[Any]) -> None:
        self.heads = heads

    def predict(self, features: ArmFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        x, arms = features
        present = torch.unique(arms)
        if x.shape[0] * arms.shape[1] * len(present) <= 4096 and self._gaussian_alike():
            return self._predict_at_once(x, arms, present)
        dtype = self.heads[0].dtype
        mean = torch.empty(arms.shape, dtype=dtype, device=x.device)
        variance = torch.empty_like(mean)
        for arm in torch.unique(arms).tolist():
            where = arms == arm
            if x.ndim == 2:  # one feature vector per row, shared by its candidates
                m, v = self.heads[arm].predict(x[:, None, :])  # (B, 1)
                mean = torch.where(where, m, mean)
                variance = torch.where(where, v, variance)
            else:
                mean[where], variance[where] = self.heads[arm].predict(x[where])
        return mean, variance

    def thompson_scores(
        self,
        features: ArmFeatures,
        generator: torch.Generator | None = None,
        draws: int | None = None,
    ) -> torch.Tensor:
        x, arms = features
        if draws is not None and all(
            len(set(row)) == len(row) for row in arms.tolist()
        ):  # every candidate its own arm: independent scores, drawn as scalars
            return self._independent_draws(features, draws, generator)
        shared = x.ndim == 2
        if not shared:
            x = x.to(self.heads[0].dtype)
        f = self.heads[0].dim  # a draw is [w | intercept] for a head with an intercept
        if draws is None and arms.shape[0] > 1 and self._gaussian_alike():
            return self._batched_draws(x, arms, f, generator)
        rows = []
        for b in range(arms.shape[0]):
            row_arms = arms[b].tolist()
            present = sorted(set(row_arms))
            w = {arm: self.heads[arm].sample(draws, generator=generator) for arm in present}
            if shared:  # (K,) or (M, K)
                parts = [_dot(w[arm], x[b], f) for arm in row_arms]
            else:
                parts = [_dot(w[arm], x[b, k], f) for k, arm in enumerate(row_arms)]
            rows.append(torch.stack(parts, dim=-1 if draws else 0))
        return torch.stack(rows, dim=0 if draws is None else 1)

    def _gaussian_alike(self) -> bool:
        """Whether every head is a Gaussian head of one width and noise model (their draws
        then take rows of normals of one length)."""
        first = self.heads[0]
        return all(
            isinstance(h, BayesianLinearRegression)
            and (h.dim, h.state_dim, h.noise) == (first.dim, first.state_dim, first.noise)
            for h in self.heads
        )

    def _predict_at_once(
        self, x: torch.Tensor, arms: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict` for small batches: every candidate projected on the ``[S | μ]``
        of every arm present in one product (A times the needed arithmetic, a handful of
        operations instead of a loop over arms), then each candidate's own arm picked."""
        heads = [self.heads[arm] for arm in present.tolist()]
        first = heads[0]
        projections = torch.stack([h.projection for h in heads])  # (A, d', d' + 1)
        z = first.augment(x.to(first.dtype))  # (B, d') or (B, K, d')
        if z.ndim == 2:
            z = z[:, None, :].expand(-1, arms.shape[1], -1)
        proj = torch.einsum("bki,aij->bkaj", z, projections)  # (B, K, A, d' + 1)
        slot = torch.searchsorted(present, arms)  # each candidate's arm among the present
        mine = proj.gather(2, slot[..., None, None].expand(-1, -1, 1, proj.shape[-1]))[..., 0, :]
        scales = torch.tensor([h.noise_scale() for h in heads], dtype=first.dtype)
        d = first.state_dim
        variance = mine[..., :d].pow(2).sum(-1) * scales.to(x.device)[slot]
        return mine[..., d], variance

    def _batched_draws(
        self,
        x: torch.Tensor,
        arms: torch.Tensor,
        f: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """One Thompson score per candidate (B, K), the draws of every row at once.

        The same numbers as the row-by-row loop: the loop's draws (row by row, one per arm
        present, ascending) take one row of normals each, so all the rows of normals are
        drawn in one call in that order and each head turns its own rows into weights.
        """
        first = self.heads[0]
        order = [(b, arm) for b in range(arms.shape[0]) for arm in sorted(set(arms[b].tolist()))]
        normals = torch.randn(
            len(order),
            draw_row_length(first.state_dim, first.noise == "nig"),
            generator=generator,
            dtype=first.dtype,
            device=x.device,
        )
        owners = torch.tensor([arm for _, arm in order], device=x.device)
        gammas = None
        if first.noise == "nig":  # every draw's Gamma(a) variate in one vectorized call
            shapes = torch.tensor([self.heads[arm].a for _, arm in order], dtype=first.dtype)
            d = first.state_dim
            gammas = standard_gamma(shapes, normals[:, d : d + GAMMA_NORMALS], generator)
        weights = torch.empty(len(order), first.state_dim, dtype=first.dtype, device=x.device)
        for arm in torch.unique(owners).tolist():
            rows = (owners == arm).nonzero().squeeze(1)
            weights[rows] = self.heads[arm].draws_from_normals(
                normals[rows], generator, None if gammas is None else gammas[rows]
            )
        slot = {key: i for i, key in enumerate(order)}
        index = torch.tensor(
            [[slot[(b, arm)] for arm in row] for b, row in enumerate(arms.tolist())],
            device=x.device,
        )
        w = weights[index]  # (B, K, d') the draw of each candidate's arm
        z = x[:, None, :] if x.ndim == 2 else x
        scores = (z * w[..., :f]).sum(-1)
        return scores + w[..., f] if w.shape[-1] > f else scores

    def _independent_draws(
        self, features: ArmFeatures, draws: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """``draws`` posterior draws of every candidate's score (M, B, K), one arm each.

        Heads are independent, so candidate k's score ``z·w`` has its exact marginal: a
        Gaussian ``N(m, q)`` for a fixed-noise head, a scaled t for a NIG head (drawn as
        ``m + sqrt(b / g) · sqrt(q) · ε`` with ``g ~ Gamma(a)``), where ``m`` and ``q`` are
        the posterior mean and the σ²-scaled variance of the score; ``N(m, c² q)`` for a
        logistic head, whose draws are ``w ~ N(μ, c² Σ)`` (``c = sample_scale``). O(M·K)
        draws instead of M weight vectors per arm.
        """
        mean, variance = self.predict(features)  # (B, K) each
        heads = self.heads
        arms = features.arms
        shape = (draws, *mean.shape)
        eps = torch.randn(shape, generator=generator, dtype=mean.dtype, device=mean.device)
        if hasattr(heads[0], "sample_scale"):  # Gaussian draws N(μ, c² Σ): a logistic head
            c = torch.tensor([h.sample_scale for h in heads], dtype=mean.dtype, device=mean.device)
            return mean + c[arms] * torch.sqrt(variance) * eps
        scale = torch.tensor([h.noise_scale() for h in heads], dtype=mean.dtype, device=mean.device)
        q = variance / scale[arms]  # σ²-scaled variance of each candidate's score
        if heads[0].noise == "nig":
            a = torch.tensor([h.a for h in heads], dtype=mean.dtype, device=mean.device)[arms]
            b = torch.tensor([h.b for h in heads], dtype=mean.dtype, device=mean.device)[arms]
            eps = eps * torch.sqrt(b / gamma_variates(a.expand(shape), generator))
        return mean + torch.sqrt(q) * eps


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


def _dot(w: torch.Tensor, x: torch.Tensor, f: int) -> torch.Tensor:
    """``x · w`` for draws ``w`` (d',) or (M, d') of a head over f features (+ intercept)."""
    out = w[..., :f] @ x
    return out + w[..., f] if w.shape[-1] > f else out


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
