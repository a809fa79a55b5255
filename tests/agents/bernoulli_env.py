"""A tiny logistic candidate-set env with {0, 1} rewards for agent tests (no data)."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from bandexa_gym.envs.core import CandidateSetEnv, Round


class BernoulliEnv(CandidateSetEnv):
    """P(r = 1) = σ(θ·[x; a]) (general candidates) or σ(θₐ·x + bₐ) (one-hot arms).

    Contexts and candidate features ~ N(0, I), the candidates drawn afresh every round or,
    with ``fixed_arms``, once (a fixed arm set of feature rows); the problem (θ, fixed arms)
    comes from ``problem_seed``, so every sub-env of a vector env shares it.
    """

    def __init__(
        self,
        context_dim: int = 4,
        action_dim: int = 3,
        n_arms: int = 5,
        one_hot: bool = False,
        scale: float = 2.0,
        fixed_arms: bool = False,
        problem_seed: int = 0,
    ) -> None:
        self.context_dim, self.one_hot, self.scale = context_dim, one_hot, scale
        self.fixed_arms = fixed_arms
        self.problem_seed = problem_seed
        if one_hot:
            action_dim = n_arms
        super().__init__(
            spaces.Box(-np.inf, np.inf, (context_dim,), np.float32), n_arms, action_dim
        )

    def _on_reset(self, seeded: bool) -> None:
        rng = np.random.default_rng(self.problem_seed)
        if self.one_hot:
            self.theta = self.scale * rng.normal(size=(self.action_dim, self.context_dim))
            self.bias = rng.normal(size=self.action_dim) - 1.0
        else:
            self.theta = self.scale * rng.normal(size=self.context_dim + self.action_dim)
            shape = (self.n_candidates, self.action_dim)
            self.arms = rng.normal(size=shape).astype(np.float32) if self.fixed_arms else None
            # Fixed arms: an x-by-a interaction, so the best arm depends on the context.
            self.mix = rng.normal(size=(self.context_dim, self.action_dim))

    def _draw_round(self) -> Round:
        x = self.np_random.normal(size=self.context_dim).astype(np.float32)
        if self.one_hot:
            cands = np.eye(self.n_candidates, dtype=np.float32)
            logits = self.theta @ x + self.bias
        elif self.arms is not None:
            cands = self.arms.copy()
            logits = self.scale * (cands @ (x @ self.mix))
        else:
            cands = self.np_random.normal(size=(self.n_candidates, self.action_dim))
            cands = cands.astype(np.float32)
            feats = np.concatenate([np.tile(x, (self.n_candidates, 1)), cands], 1)
            logits = feats @ self.theta
        expected = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        return Round(x, cands, expected, np.ones(self.n_candidates, np.int8))

    def _draw_reward(self, round_: Round, action: int) -> float:
        return float(self.np_random.random() < round_.expected_rewards[action])
