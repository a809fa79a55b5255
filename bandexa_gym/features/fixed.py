"""Fixed feature maps: what a linear head reads of (contexts, candidates), nothing learned.

The maps of ``linear_ts`` / ``linear_ucb`` / ``logistic_ts`` (:data:`FEATURE_MAPS`):

* ``"concat"``: one head over φ(x, a) = [x; a] (the classic linear bandit), d_x + d_a
  features, kept in two parts (:class:`ConcatFeatures`, read by :class:`ConcatHead`).
* ``"disjoint"``: one head per arm over the context, φ = x, for one-hot candidates (the arm
  is the position of the 1).
* ``"per_arm"``: the same for a fixed set of arms described by feature vectors
  (:class:`~bandexa_gym.features.arms.ArmRegistry` names them).

``"auto"`` is resolved on the first candidate set by :func:`choose_feature_map`. The
per-arm maps give :class:`~bandexa_gym.features.arms.ArmFeatures` (the flat context and the
arm of every candidate).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, get_args

import torch

from bandexa_gym.features.arms import fixed_arm_set, is_one_hot
from bandexa_gym.heads.gaussian import BayesianLinearRegression

__all__ = [
    "FEATURE_MAPS",
    "ConcatFeatures",
    "ConcatHead",
    "FeatureMap",
    "check_feature_map",
    "check_one_hot",
    "choose_feature_map",
    "concat_rows",
    "flat_contexts",
    "head_dim",
]

FeatureMap = Literal["auto", "concat", "disjoint", "per_arm"]
FEATURE_MAPS: tuple[str, ...] = get_args(FeatureMap)
"""The feature map names a linear agent accepts (``"auto"``: chosen on first use)."""


def check_feature_map(feature_map: str) -> None:
    """Raise a ``ValueError`` naming the choices unless ``feature_map`` is one of them."""
    if feature_map not in FEATURE_MAPS:
        raise ValueError(
            f"feature_map must be 'auto', 'concat', 'disjoint' or 'per_arm', got {feature_map!r}"
        )


def choose_feature_map(
    candidates: torch.Tensor, candidates_change: bool | None
) -> Literal["concat", "disjoint", "per_arm"]:
    """The map ``"auto"`` resolves to on its first candidate set (..., K, d_a).

    ``"disjoint"`` for one-hot rows, ``"per_arm"`` for a fixed arm set
    (:func:`~bandexa_gym.features.arms.fixed_arm_set`: at most ``MAX_FIXED_ARMS`` rows from
    an env that does not declare ``candidates_change``), ``"concat"`` otherwise.
    """
    if is_one_hot(candidates):
        return "disjoint"
    return "per_arm" if fixed_arm_set(candidates, candidates_change) else "concat"


def check_one_hot(candidates: torch.Tensor) -> None:
    """Raise a ``ValueError`` unless every row suits ``"disjoint"`` (one-hot)."""
    if not is_one_hot(candidates):
        raise ValueError(
            "feature_map='disjoint' needs one-hot candidate rows (the arm is the position "
            "of the 1); use feature_map='concat' for general action features"
        )


def head_dim(feature_map: str, context_dim: int, action_dim: int) -> int:
    """Features each head reads under ``feature_map`` (without an intercept)."""
    return context_dim + (action_dim if feature_map == "concat" else 0)


def flat_contexts(contexts: torch.Tensor, context_shape: tuple[int, ...]) -> torch.Tensor:
    """Contexts (B, *context_shape) as the heads read them: (B, d_x) float64.

    Raises:
        ValueError: Contexts of another shape.
    """
    if tuple(contexts.shape[1:]) != context_shape:
        raise ValueError(
            f"context must have shape {context_shape} (or batched), got {tuple(contexts.shape[1:])}"
        )
    return contexts.reshape(contexts.shape[0], math.prod(context_shape)).to(torch.float64)


def concat_rows(x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """φ(x, a) = [x; a] of rows: flat contexts (n, d_x) and their chosen candidates
    (n, d_a) -> (n, d_x + d_a) float64."""
    return torch.cat([x, chosen.to(torch.float64)], dim=1)


class ConcatFeatures(NamedTuple):
    """Features φ(x, a) = [x; a] of the ``concat`` map, kept in two parts.

    Attributes:
        x: Flat contexts (B, d_x), float64.
        candidates: Candidate features (B, K, d_a), float64.
    """

    x: torch.Tensor
    candidates: torch.Tensor

    def dense(self) -> torch.Tensor:
        """``[x; a]`` for every candidate: (B, K, d_x + d_a)."""
        k = self.candidates.shape[1]
        return torch.cat([self.x[:, None, :].expand(-1, k, -1), self.candidates], dim=-1)


class ConcatHead:
    """The ``concat`` head read on :class:`ConcatFeatures`: a Thompson score is
    ``a·w_a + x·w_x`` (two products, no (B, K, d) feature tensor)."""

    def __init__(self, head: BayesianLinearRegression, context_dim: int) -> None:
        self.head, self.context_dim = head, context_dim

    def predict(self, features: ConcatFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.predict(features.dense())

    def thompson_scores(
        self,
        features: ConcatFeatures,
        generator: torch.Generator | None = None,
        draws: int | None = None,
    ) -> torch.Tensor:
        x, cand = features
        n = x.shape[0] * (1 if draws is None else draws)
        w = self.head.sample(n, generator=generator)  # (n, d'): one row per candidate set
        dx, f = self.context_dim, self.head.dim  # w = [w_x | w_a | intercept]
        if draws is None:
            if x.shape[0] == 1:
                w = w[0]
                base = x[0] @ w[:dx] + (w[f] if f < w.shape[0] else 0.0)
                return torch.addmv(base, cand[0], w[dx:f]).unsqueeze(0)
            base = (x * w[:, :dx]).sum(-1, True) + w[:, f:].sum(-1, True)
            return torch.einsum("bka,ba->bk", cand, w[:, dx:f]) + base
        w = w.reshape(draws, x.shape[0], -1)
        base = (x * w[..., :dx]).sum(-1, True) + w[..., f:].sum(-1, True)
        return torch.einsum("bka,mba->mbk", cand, w[..., dx:f]) + base
