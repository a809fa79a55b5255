"""A tiny linear candidate-set env for agent tests (no data, no nonlinearity)."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from bandexa_gym.envs.core import CandidateSetEnv, Round


class LinearEnv(CandidateSetEnv):
    """Expected reward = θ·[x; a]; contexts and candidates ~ N(0, I); Gaussian noise."""

    def __init__(
        self,
        context_dim: int = 4,
        action_dim: int = 4,
        n_arms: int = 6,
        noise_std: float = 0.1,
        one_hot: bool = False,
        problem_seed: int = 0,
    ) -> None:
        self.problem_seed = problem_seed
        self.context_dim, self.one_hot, self.noise_std = context_dim, one_hot, noise_std
        if one_hot:
            action_dim = n_arms
        super().__init__(
            spaces.Box(-np.inf, np.inf, (context_dim,), np.float32), n_arms, action_dim
        )

    def _on_reset(self, seeded: bool) -> None:
        # The problem comes from problem_seed so that every sub-env of a vector env shares it.
        shape = (
            (self.action_dim, self.context_dim)
            if self.one_hot
            else (self.context_dim + self.action_dim)
        )
        self.theta = np.random.default_rng(self.problem_seed).normal(size=shape)

    def _draw_round(self) -> Round:
        x = self.np_random.normal(size=self.context_dim).astype(np.float32)
        if self.one_hot:
            cands = np.eye(self.n_candidates, dtype=np.float32)
            expected = self.theta @ x
        else:
            cands = self.np_random.normal(size=(self.n_candidates, self.action_dim)).astype(
                np.float32
            )
            expected = np.concatenate([np.tile(x, (self.n_candidates, 1)), cands], 1) @ self.theta
        return Round(x, cands, expected.astype(np.float64), np.ones(self.n_candidates, np.int8))

    def _draw_reward(self, round_: Round, action: int) -> float:
        return float(round_.expected_rewards[action] + self.noise_std * self.np_random.normal())
