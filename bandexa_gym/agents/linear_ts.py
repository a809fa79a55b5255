"""Linear bandits: the Bayesian linear regression head on fixed features.

``linear_ts`` (Thompson sampling) and ``linear_ucb`` (LinUCB, Li et al. 2010) are one
class, :class:`LinearTS`, with different exploration rules.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar

import torch
from gymnasium import spaces

from bandexa_gym.agents.core import Observations, register_agent
from bandexa_gym.agents.head_agent import HeadAgent, absorb, is_power_of_two, split_at
from bandexa_gym.agents.limits import check_bytes
from bandexa_gym.agents.linear_evolve import evolve_linear
from bandexa_gym.features.arms import (
    MAX_FIXED_ARMS,
    ArmFeatures,
    ArmHeads,
    ArmRegistry,
    SwitchedToShared,
    arms_or_switch,
    retry_if_switched,
)
from bandexa_gym.features.fixed import (
    ConcatFeatures,
    ConcatHead,
    FeatureMap,
    check_feature_map,
    check_one_hot,
    choose_feature_map,
    concat_rows,
    flat_contexts,
    head_dim,
)
from bandexa_gym.features.scaling import RewardScaler, TargetStats
from bandexa_gym.heads.gaussian import BayesianLinearRegression
from bandexa_gym.heads.protocol import HeadConfig
from bandexa_gym.persist.state import Commit, Part, Scaler, heads_state, load_heads, take

__all__ = ["LinearTS"]

DEFAULT_HEAD = {"intercept": True}
"""Head settings the linear agents default to (an intercept, so standardized rewards fit)."""


class LinearTS(HeadAgent):
    """Exploration on a conjugate Bayesian linear head over fixed features.

    Three feature maps (:mod:`bandexa_gym.features.fixed`):

    * ``"concat"``: one head over φ(x, a) = [x; a] (the classic linear bandit), dim d_x + d_a.
    * ``"disjoint"``: one head per arm over the context, φ = x, for one-hot candidates (the arm
      is the position of the 1, e.g. the label on MNIST). Memory is O(d_a · d_x²); no dense
      (d_a · d_x)² matrix is ever formed.
    * ``"per_arm"``: the same for a fixed set of arms described by feature vectors: each
      distinct candidate row is an arm (:class:`~bandexa_gym.features.arms.ArmRegistry`),
      with its own head over the context.

    ``"auto"`` picks ``"disjoint"`` when the first candidate set seen is one-hot,
    ``"per_arm"`` when it has at most ``MAX_FIXED_ARMS`` (64) rows (a fixed arm set, as in a
    classic bandit; if more than 64 distinct rows come, the agent switches to ``"concat"``
    once, with a warning), and ``"concat"`` otherwise (large candidate sets, or an env that
    declares ``candidates_change``, e.g. retrieval). With
    ``exploration="ucb"`` this is LinUCB.

    Args:
        context_shape: Shape of one context; it is flattened to d_x features.
        action_dim: Width d_a of a candidate row.
        feature_map: ``"auto"``, ``"concat"``, ``"disjoint"`` or ``"per_arm"``.
        head: Hyper-parameters of the head(s) (default :class:`HeadConfig()`); or give
            ``prior_var``, ``noise``, ``a0``, ``b0``, ``forgetting`` one by one. With
            ``forgetting=γ < 1`` every head (every arm's, too) is discounted by γ each round.
        exploration: Exploration rule (see :class:`HeadAgent`), default Thompson sampling.
        standardize_rewards: Learn on rewards standardized by their running mean and
            standard deviation (re-fitted at rounds 2, 4, 8, ..., the heads re-expressed
            exactly from per-head statistics), so decisions do not depend on the reward's
            units and the prior means the same thing on every problem.
        seed: Seed of the agent's generators.
        device: Torch device.
        **kwargs: ``prior_var``, ``noise``, ``a0``, ``b0``, and the :class:`HeadAgent`
            options (``propensity_draws``, ``max_pending``, ``outliers``,
            ``outlier_factor``: an outlier row is skipped with a warning by default, see
            :class:`~bandexa_gym.agents.core.protocol.Agent`).
    """

    name = "linear_ts"
    head_config_type: ClassVar[type] = HeadConfig
    """The config type of the heads (its fields are also accepted one by one); subclasses
    with another head override it with :meth:`new_head`."""
    default_head: ClassVar[dict[str, Any]] = DEFAULT_HEAD
    """Head settings that differ from the config type's defaults unless given."""

    def __init__(
        self,
        context_shape: tuple[int, ...],
        action_dim: int,
        *,
        feature_map: FeatureMap = "auto",
        head: HeadConfig | None = None,
        exploration: Any = "thompson",
        standardize_rewards: bool = True,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> None:
        check_feature_map(feature_map)
        names = [f.name for f in dataclasses.fields(self.head_config_type)]
        head_fields = {k: kwargs.pop(k) for k in names if k in kwargs}
        if head is not None and head_fields:
            raise ValueError(f"pass either head= or {sorted(head_fields)}, not both")
        if head is not None and not isinstance(head, self.head_config_type):
            raise TypeError(f"head must be a {self.head_config_type.__name__}, got {head!r}")
        self.head_config = (
            head
            if head is not None
            else self.head_config_type(**{**self.default_head, **head_fields})
        )
        super().__init__(exploration=exploration, seed=seed, device=device, **kwargs)
        self.reward_scaler = RewardScaler(standardize_rewards)
        self.context_shape = tuple(int(s) for s in context_shape)
        self.context_dim = math.prod(self.context_shape)
        self.action_dim = int(action_dim)
        if self.context_dim < 1 or self.action_dim < 1:
            raise ValueError(
                f"context_shape {context_shape} and action_dim {action_dim} must be non-empty"
            )
        self.input_shapes = (self.context_shape, self.action_dim)
        dim = self.context_dim + self.action_dim + 1  # the largest head ([x; a] and intercept)
        check_bytes(f"{self.name}'s head over {dim} features (its d x d factor)", 8 * dim * dim)
        self.requested_feature_map: FeatureMap = feature_map
        self.feature_map: FeatureMap = feature_map
        self.heads: list[BayesianLinearRegression] = []
        self.target_stats: list[TargetStats] = []
        self.registry = ArmRegistry(self.action_dim, MAX_FIXED_ARMS)
        if feature_map != "auto":
            self.build_heads(feature_map)

    # -- construction -----------------------------------------------------------------
    def new_head(self, dim: int) -> BayesianLinearRegression:
        """A head at this agent's prior, ``dim`` features, on its device."""
        return BayesianLinearRegression(dim, self.head_config, device=self.device)

    def build_heads(self, feature_map: FeatureMap) -> None:
        """Fix the feature map and start prior heads for it (what ``"auto"`` does on first use)."""
        self.feature_map = feature_map
        n_heads = {"concat": 1, "disjoint": self.action_dim, "per_arm": 0}[feature_map]
        self.heads = [self.new_head(self.head_dim(feature_map)) for _ in range(n_heads)]
        self.target_stats = [TargetStats(h.state_dim, self.device) for h in self.heads]
        self.registry = ArmRegistry(self.action_dim, MAX_FIXED_ARMS)
        self.clear_feature_cache()

    def _grow_heads(self) -> None:
        """One head per arm the registry knows (``per_arm`` heads appear with their arms)."""
        while len(self.heads) < self.registry.n_arms:
            self.heads.append(self.new_head(self.head_dim(self.feature_map)))
            self.target_stats.append(TargetStats(self.heads[-1].state_dim, self.device))

    def _arms(self, candidates: torch.Tensor) -> torch.Tensor:
        """Arm of every candidate row (..., K, d_a) under a per-arm map: (..., K).

        Raises:
            SwitchedToShared: The rows are not a fixed arm set: now one ``concat`` head.
        """
        if self.feature_map == "disjoint":
            return candidates.argmax(dim=-1)
        arms = arms_or_switch(
            self.registry,
            candidates,
            owner=self.name,
            option="feature_map",
            required=self.requested_feature_map == "per_arm",
            shared="one head over [x; a], feature_map='concat'",
            switch=partial(self.build_heads, "concat"),
        )
        self._grow_heads()
        return arms

    def _resolve(self, candidates: torch.Tensor) -> None:
        if candidates.shape[-1] != self.action_dim:
            raise ValueError(
                f"candidates must have {self.action_dim} features per row, "
                f"got shape {tuple(candidates.shape)}"
            )
        if self.feature_map == "auto":
            self.build_heads(choose_feature_map(candidates, self.candidates_change))
        elif self.feature_map == "disjoint":
            check_one_hot(candidates)

    @property
    def posterior(self) -> BayesianLinearRegression:
        """The single head of a ``concat`` agent."""
        if self.feature_map != "concat":
            raise AttributeError("a disjoint LinearTS has one head per arm: use .heads")
        return self.heads[0]

    @property
    def head(self) -> ConcatHead | ArmHeads:
        if self.feature_map == "concat":
            return ConcatHead(self.heads[0], self.context_dim)
        return ArmHeads(self.heads)

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.reward_scaler = RewardScaler(self.reward_scaler.enabled)
        self.feature_map = self.requested_feature_map
        self.heads, self.target_stats = [], []
        self.registry = ArmRegistry(self.action_dim, MAX_FIXED_ARMS)
        if self.feature_map != "auto":
            self.build_heads(self.feature_map)

    # -- features -----------------------------------------------------------------------
    def compute_features(
        self, contexts: torch.Tensor, candidates: torch.Tensor
    ) -> ConcatFeatures | ArmFeatures:
        x = flat_contexts(contexts, self.context_shape)
        if self.feature_map == "concat":
            return ConcatFeatures(x, candidates.to(torch.float64))
        return ArmFeatures(x, self._arms(candidates))

    def _choose(self, batch: Observations) -> torch.Tensor:
        self._resolve(batch.candidates)
        return retry_if_switched(partial(super()._choose, batch))

    def _distribution(self, batch: Observations) -> torch.Tensor:
        self._resolve(batch.candidates)
        return retry_if_switched(partial(super()._distribution, batch))

    # -- learning ---------------------------------------------------------------------
    def _learn(
        self,
        contexts: torch.Tensor,
        chosen: torch.Tensor,
        indices: torch.Tensor,
        rewards: torch.Tensor,
    ) -> None:
        self._resolve(chosen[:, None])
        x = flat_contexts(contexts, self.context_shape)  # checked finite, below MAX_ABS_INPUT
        heads = None
        if self.feature_map != "concat":
            try:
                heads = self._arms(chosen[:, None])[:, 0]
            except SwitchedToShared:
                pass  # now a concat head
        z = concat_rows(x, chosen) if heads is None else x
        for begin, end in split_at(self.rounds, x.shape[0], is_power_of_two):
            self._absorb_rows(z[begin:end], None if heads is None else heads[begin:end],
                              rewards[begin:end])  # fmt: skip
            self.rounds += end - begin
            self.reward_scaler.update(rewards[begin:end])
            if is_power_of_two(self.rounds) and self.reward_scaler.refit():
                self.retarget_heads()

    def _absorb_rows(
        self, z: torch.Tensor, heads: torch.Tensor | None, rewards: torch.Tensor
    ) -> None:
        """Update the head(s) with standardized rewards and their raw statistics."""
        targets = self.reward_scaler(rewards)
        gamma = self.head_config.forgetting
        if gamma != 1.0:  # every head forgets every round: rows one at a time
            for i in range(z.shape[0]):
                arm = 0 if heads is None else int(heads[i])
                for j, (head, stats) in enumerate(zip(self.heads, self.target_stats, strict=True)):
                    stats.discount(gamma)
                    if j != arm:
                        head.discount(gamma)  # the updated head discounts inside its update
                self.heads[arm].update(z[i], targets[i])
                self.target_stats[arm].add(
                    self.heads[arm].augment(z[i : i + 1]), rewards[i : i + 1]
                )
            return
        if heads is None:
            absorb(self.heads[0], z, targets)
            self.target_stats[0].add(self.heads[0].augment(z), rewards)
            return
        for arm in torch.unique(heads).tolist():
            rows = heads == arm
            absorb(self.heads[arm], z[rows], targets[rows])
            self.target_stats[arm].add(self.heads[arm].augment(z[rows]), rewards[rows])

    def retarget_heads(self) -> None:
        """Re-express every head for the reward scaler's current shift and scale (O(d²) each)."""
        for head, stats in zip(self.heads, self.target_stats, strict=True):
            head.retarget(*stats.standardized(self.reward_scaler))
        self.clear_feature_cache()

    # -- persistence ------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {
            "context_shape": list(self.context_shape),
            "action_dim": self.action_dim,
            "feature_map": self.feature_map,
            "requested_feature_map": self.requested_feature_map,
            "head": self.head_config.to_dict(),
            "standardize_rewards": self.reward_scaler.enabled,
            "exploration": self.exploration.spec(),
        }

    def pinned_spec(self) -> dict[str, Any]:
        spec = self.spec()
        del spec["requested_feature_map"], spec["exploration"]
        if spec["feature_map"] == "auto":
            del spec["feature_map"]  # an unresolved agent accepts either map
        return spec

    def head_dim(self, feature_map: str) -> int:
        """Feature dimension of each head under ``feature_map``."""
        return head_dim(feature_map, self.context_dim, self.action_dim)

    def parts(self) -> list[Part]:
        return [_Heads(self), Scaler(self, lambda: RewardScaler(self.reward_scaler.enabled))]

    def after_load(self) -> None:
        self.clear_feature_cache()

    @classmethod
    def expected_shapes(
        cls, spec: Mapping[str, Any], shapes: Mapping[str, tuple]
    ) -> dict[str, tuple]:
        d_x, d_a = math.prod(spec["context_shape"]), int(spec["action_dim"])
        dim = d_x + (d_a if spec["feature_map"] == "concat" else 0)
        dim += int(cls.head_config_type.from_dict(spec["head"]).intercept)
        rows = shapes.get("arm_rows")
        if rows is None or len(rows) != 2 or rows[1] != d_a:
            raise ValueError(f"tensor arm_rows has shape {rows}, the spec needs (n, {d_a})")
        want = {"arm_rows": tuple(rows)}
        n_heads = sum(1 for k in shapes if k.startswith("heads.") and k.endswith(".mean"))
        for i in range(n_heads):
            want.update({f"heads.{i}.mean": (dim,), f"heads.{i}.sqrt_covariance": (dim, dim),
                         f"heads.{i}.zr": (dim,), f"heads.{i}.zs": (dim,),
                         f"heads.{i}.moments": (3,)})  # fmt: skip
        return want

    @classmethod
    def spec_arguments(cls, spec: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
        return {
            "context_shape": tuple(spec["context_shape"]),
            "action_dim": int(spec["action_dim"]),
            "feature_map": spec["feature_map"],
            "head": cls.head_config_type.from_dict(spec["head"]),
            "exploration": spec.get("exploration", "thompson"),
            "standardize_rewards": spec["standardize_rewards"],
        }

    def after_build(self, spec: Mapping[str, Any]) -> None:
        self.requested_feature_map = spec["requested_feature_map"]

    def evolve_from(self, trained: LinearTS, **options: Any) -> str:
        """Fill this cold-start agent with what ``trained`` learned (see
        :func:`bandexa_gym.transfer.evolve`); returns a one-line summary."""
        return evolve_linear(trained, self)


class _Heads(Part):
    """The heads, with their reward statistics, the resolved feature map and the arm
    registry; loaded into fresh heads, so a state that fails leaves the agent's own."""

    def __init__(self, agent: LinearTS) -> None:
        self.agent = agent

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        agent = self.agent
        heads, tensors = heads_state(agent.heads)
        for i, stats in enumerate(agent.target_stats):
            tensors.update(stats.tensors(f"heads.{i}"))
        registry, tensors["arm_rows"] = agent.registry.state()
        scalars = {"heads": heads, "feature_map": agent.feature_map, "registry": registry}
        return scalars, tensors

    def prepare(self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Commit:
        agent = self.agent
        feature_map = scalars.get("feature_map", agent.feature_map)
        if feature_map not in ("auto", "concat", "disjoint", "per_arm"):
            raise ValueError(f"unknown feature_map {feature_map!r}")
        registry = ArmRegistry(agent.action_dim, MAX_FIXED_ARMS)
        registry.load(scalars["registry"], take(tensors, "arm_rows"))
        expected = {"concat": 1, "disjoint": agent.action_dim, "auto": 0,
                    "per_arm": len(registry.rows)}[feature_map]  # fmt: skip
        if not isinstance(scalars["heads"], list) or len(scalars["heads"]) != expected:
            raise ValueError(
                f"{len(scalars['heads'])} heads do not fit feature_map={feature_map!r}"
            )
        dim = agent.head_dim(feature_map)
        settings = agent.head_config.to_dict()
        heads = load_heads(lambda: agent.new_head(dim), settings, scalars["heads"], tensors)
        stats = [
            TargetStats(head.state_dim, agent.device).load(tensors, f"heads.{i}")
            for i, head in enumerate(heads)
        ]

        def commit() -> None:
            if feature_map != "auto":
                agent.feature_map, agent.heads, agent.target_stats = feature_map, heads, stats
            agent.registry = registry

        return commit


@register_agent("linear_ts")
def _make_linear_ts(
    space: spaces.Dict,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> LinearTS:
    """Linear Thompson sampling on ``[x; a]`` (or per-arm heads for one-hot arms)."""
    return LinearTS(
        space["context"].shape, space["candidates"].shape[-1], seed=seed, device=device, **overrides
    )


@register_agent("linear_ucb")
def _make_linear_ucb(
    space: spaces.Dict,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    alpha: float = 1.0,
    **overrides: Any,
) -> LinearTS:
    """LinUCB (Li et al. 2010): the linear head with an upper-confidence rule of width
    ``alpha`` posterior standard deviations."""
    overrides.setdefault("exploration", {"name": "ucb", "alpha": alpha})
    return _make_linear_ts(space, seed=seed, device=device, **overrides)
