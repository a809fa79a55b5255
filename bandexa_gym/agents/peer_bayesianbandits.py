"""``peer:bayesianbandits``: per-arm normal-inverse-gamma Thompson sampling from the
`bayesianbandits <https://github.com/bayesianbandits/bayesianbandits>`_ library.

One ``NormalInverseGammaRegressor`` per arm (the library's defaults: prior mean 0,
precision ``lam=1``, noise prior ``IG(a=0.1, b=0.1)``) regresses the reward on the
context, inside the library's ``ContextualAgent`` with its ``ThompsonSampling`` policy.
Arms are candidate indices (see :class:`~bandexa_gym.agents.peer_base.FixedArms`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from bandexa_gym.agents.core import register_agent
from bandexa_gym.agents.peer_base import PerArmPeer, check_context_dim, import_peer_library

__all__ = ["BAYESIANBANDITS_MAX_CONTEXT_DIM", "BayesianBanditsTS"]

BAYESIANBANDITS_MAX_CONTEXT_DIM = 256
"""Widest context ``peer:bayesianbandits`` takes by default. Measured on 2 busy cores
with one BLAS thread and K = 10: 200-700 rounds/s at 10-36 features, 25-50 at 784 (a
4,096-round MNIST run takes 1.5-3 minutes a seed, too long for the classic suite)."""


class BayesianBanditsTS(PerArmPeer):
    """Per-arm NIG linear regression with Thompson sampling, run by ``bayesianbandits``.

    Deciding draws one joint posterior sample per offered arm through the library's
    ``ThompsonSampling`` policy (masked arms are not handed to it) and plays the arm with
    the largest sampled reward; learning calls the chosen arm's ``update`` with the
    context row and the reward as it is (the library models real-valued rewards, so no
    mapping is needed).

    Args:
        context_shape: Shape of one context (flattened for the regressors).
        n_candidates: K, the number of arms.
        action_dim: d_a (unused by the model: arms are indices).
        intercept: Append a constant 1 feature (each arm gets a bias).
        learner_kwargs: Keyword arguments of ``NormalInverseGammaRegressor`` (default:
            none, the library's defaults).
        seed: Seeds the library's NumPy generator (shared by its policy and learners).
        device: The CPU.
        max_pending: Decisions awaiting feedback that the agent keeps at most.
    """

    name = "peer:bayesianbandits"
    library = "bayesianbandits"

    def __init__(
        self,
        context_shape: tuple[int, ...],
        n_candidates: int,
        action_dim: int,
        *,
        intercept: bool = True,
        learner_kwargs: Mapping[str, Any] | None = None,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        max_pending: int = 10_000,
    ) -> None:
        self._bb = import_peer_library("bayesianbandits", self.name)
        self.learner_kwargs = dict(learner_kwargs or {})
        self._bb.NormalInverseGammaRegressor(**self.learner_kwargs)  # bad keywords fail here
        super().__init__(
            context_shape,
            n_candidates,
            action_dim,
            intercept=intercept,
            seed=seed,
            device=device,
            max_pending=max_pending,
        )
        self.build()

    def build(self) -> None:
        bb = self._bb
        arms = [
            bb.Arm(k, learner=bb.NormalInverseGammaRegressor(**self.learner_kwargs))
            for k in range(self.n_candidates)
        ]
        rng = np.random.default_rng(self.library_seed())
        self.model = bb.ContextualAgent(arms, bb.ThompsonSampling(), random_seed=rng)

    def choose_row(self, x: np.ndarray, offered: np.ndarray) -> int:
        arms = self.model.arms
        (chosen,) = self.model.policy([arms[k] for k in offered], x, self.model.rng)
        return int(chosen.action_token)

    def learn_row(self, x: np.ndarray, arm: int, reward: float) -> None:
        self.model.select_for_update(arm).update(x, np.array([reward]))


@register_agent("peer:bayesianbandits")
def _make_bayesianbandits(
    space: spaces.Dict,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    max_context_dim: int | None = BAYESIANBANDITS_MAX_CONTEXT_DIM,
    **overrides: Any,
) -> BayesianBanditsTS:
    """bayesianbandits' per-arm normal-inverse-gamma Thompson sampling (fixed arms only)."""
    context_shape = space["context"].shape
    check_context_dim(
        "peer:bayesianbandits",
        int(np.prod(context_shape)),
        max_context_dim,
        "about 25-50 rounds/s at 784 features and 10 arms",
    )
    n_candidates, action_dim = space["candidates"].shape
    return BayesianBanditsTS(
        context_shape, n_candidates, action_dim, seed=seed, device=device, **overrides
    )
