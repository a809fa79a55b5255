"""Linear Thompson sampling: the Bayesian linear regression head on fixed features."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import torch
from gymnasium import spaces

from bandexa_gym.agents.base import Agent, masked_argmax, register_agent
from bandexa_gym.posterior import BayesianLinearRegression

FeatureMap = Literal["auto", "concat", "disjoint"]


def is_one_hot(candidates: torch.Tensor) -> bool:
    """Whether every row of ``candidates`` (..., K, d_a) is a one-hot vector."""
    binary = ((candidates == 0) | (candidates == 1)).all()
    return bool(binary and (candidates.sum(dim=-1) == 1).all())


class LinearTS(Agent):
    """Thompson sampling with a conjugate Bayesian linear head on fixed features.

    Two feature maps:

    * ``"concat"``: one head over φ(x, a) = [x; a] (the classic LinearTS), dim d_x + d_a.
    * ``"disjoint"``: one head per arm over the context, φ = x, for one-hot candidates (the arm
      is the position of the 1, e.g. the label on MNIST). Memory is O(d_a · d_x²); no dense
      (d_a · d_x)² matrix is ever formed.

    ``"auto"`` picks ``"disjoint"`` when the first candidate set seen is one-hot, else
    ``"concat"``.

    Args:
        context_shape: Shape of one context; it is flattened to d_x features.
        action_dim: Width d_a of a candidate row.
        feature_map: ``"auto"``, ``"concat"`` or ``"disjoint"``.
        prior_var: Prior variance of each weight.
        noise: ``"nig"`` (unknown noise variance) or a fixed noise variance.
        a0: Inverse-gamma shape of the noise prior (``"nig"`` only).
        b0: Inverse-gamma scale of the noise prior (``"nig"`` only).
        seed: Seed of the agent's generator.
        device: Torch device.
    """

    name = "linear_ts"

    def __init__(
        self,
        context_shape: tuple[int, ...],
        action_dim: int,
        *,
        feature_map: FeatureMap = "auto",
        prior_var: float = 1.0,
        noise: str | float = "nig",
        a0: float = 1.0,
        b0: float = 1.0,
        seed: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if feature_map not in ("auto", "concat", "disjoint"):
            raise ValueError(
                f"feature_map must be 'auto', 'concat' or 'disjoint', got {feature_map!r}"
            )
        super().__init__(seed=seed, device=device)
        self.context_shape = tuple(int(s) for s in context_shape)
        self.context_dim = math.prod(self.context_shape)
        self.action_dim = int(action_dim)
        self.requested_feature_map: FeatureMap = feature_map
        self.head_kwargs: dict[str, Any] = {
            "prior_var": prior_var,
            "noise": noise,
            "a0": a0,
            "b0": b0,
        }
        self.feature_map: FeatureMap = feature_map
        self.heads: list[BayesianLinearRegression] = []
        if feature_map != "auto":
            self.build_heads(feature_map)

    # -- construction -----------------------------------------------------------------
    def new_head(self, dim: int) -> BayesianLinearRegression:
        """A head at this agent's prior, ``dim`` features, on its device."""
        return BayesianLinearRegression(dim, device=self.device, **self.head_kwargs)

    def build_heads(self, feature_map: FeatureMap) -> None:
        """Fix the feature map and start prior heads for it (what ``"auto"`` does on first use)."""
        self.feature_map = feature_map
        if feature_map == "concat":
            self.heads = [self.new_head(self.context_dim + self.action_dim)]
        else:
            self.heads = [self.new_head(self.context_dim) for _ in range(self.action_dim)]

    def _resolve(self, candidates: torch.Tensor) -> None:
        if self.feature_map == "auto":
            self.build_heads("disjoint" if is_one_hot(candidates) else "concat")
        elif self.feature_map == "disjoint" and not is_one_hot(candidates):
            raise ValueError(
                "feature_map='disjoint' needs one-hot candidate rows (the arm is the position "
                "of the 1); use feature_map='concat' for general action features"
            )

    @property
    def posterior(self) -> BayesianLinearRegression:
        """The single head of a ``concat`` agent."""
        if self.feature_map != "concat":
            raise AttributeError("a disjoint LinearTS has one head per arm: use .heads")
        return self.heads[0]

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.feature_map = self.requested_feature_map
        self.heads = []
        if self.feature_map != "auto":
            self.build_heads(self.feature_map)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write an inference checkpoint to ``path``.

        See :func:`bandexa_gym.checkpoint.save_agent`; load it back with
        :func:`bandexa_gym.checkpoint.load_agent`.
        """
        from bandexa_gym.checkpoint import save_agent  # checkpoint imports this module

        return save_agent(self, path)

    # -- features and scores ----------------------------------------------------------
    def _flat(self, context: torch.Tensor) -> torch.Tensor:
        """(*context_shape) or (B, *context_shape) -> (d_x,) or (B, d_x), float64."""
        lead = context.shape[: context.ndim - len(self.context_shape)]
        if tuple(context.shape[len(lead) :]) != self.context_shape:
            raise ValueError(
                f"context must have shape {self.context_shape} (or batched), "
                f"got {tuple(context.shape)}"
            )
        return context.reshape(*lead, self.context_dim).to(torch.float64)

    def features(self, context: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """φ(x, a) for the ``concat`` map: (d_x + d_a,) float64."""
        return torch.cat([self._flat(context), action.to(torch.float64)])

    def scores(self, context: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """One Thompson draw of every candidate's reward: (K,) float64."""
        x = self._flat(context)
        if self.feature_map == "concat":
            w = self.heads[0].sample(generator=self.generator)
            return candidates.to(torch.float64) @ w[self.context_dim :] + x @ w[: self.context_dim]
        arms = candidates.argmax(dim=-1).tolist()
        draws = {arm: self.heads[arm].sample(generator=self.generator) for arm in set(arms)}
        return torch.stack([x @ draws[arm] for arm in arms])

    # -- protocol ---------------------------------------------------------------------
    def _act_one(self, context: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor) -> int:
        self._check_candidates(candidates)
        self._resolve(candidates)
        return int(masked_argmax(self.scores(context, candidates), mask))

    def _act_batch(
        self, contexts: torch.Tensor, candidates: torch.Tensor, masks: torch.Tensor
    ) -> list[int]:
        self._check_candidates(candidates[0])
        self._resolve(candidates)
        if self.feature_map != "concat":
            return super()._act_batch(contexts, candidates, masks)
        x = self._flat(contexts)  # (B, d_x)
        w = self.heads[0].sample(x.shape[0], generator=self.generator)  # (B, d)
        scores = torch.einsum("bka,ba->bk", candidates.to(torch.float64), w[:, self.context_dim :])
        scores = scores + (x * w[:, : self.context_dim]).sum(dim=-1, keepdim=True)
        return masked_argmax(scores, masks).tolist()

    def _observe_one(
        self, context: torch.Tensor, action: torch.Tensor, reward: float, index: int
    ) -> None:
        self._resolve(action[None])
        if self.feature_map == "concat":
            self.heads[0].update(self.features(context, action), reward)
        else:
            self.heads[int(action.argmax())].update(self._flat(context), reward)

    def _observe_batch(
        self,
        contexts: torch.Tensor,
        candidates: torch.Tensor,
        indices: list[int],
        rewards: list[float],
    ) -> None:
        chosen = candidates[torch.arange(len(indices), device=self.device), indices]
        self._resolve(chosen)
        if self.feature_map != "concat":
            super()._observe_batch(contexts, candidates, indices, rewards)
            return
        z = torch.cat([self._flat(contexts), chosen.to(torch.float64)], dim=1)
        self.heads[0].update_batch(z, torch.tensor(rewards, dtype=torch.float64))

    def _check_candidates(self, candidates: torch.Tensor) -> None:
        if candidates.shape[-1] != self.action_dim:
            raise ValueError(
                f"candidates must have {self.action_dim} features per row, "
                f"got shape {tuple(candidates.shape)}"
            )


@register_agent("linear_ts")
def _make_linear_ts(
    space: spaces.Dict,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> LinearTS:
    return LinearTS(
        space["context"].shape,
        space["candidates"].shape[-1],
        seed=seed,
        device=device,
        **overrides,
    )
