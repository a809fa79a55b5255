"""Decisions do not depend on the reward's units: rewards through ``RewardAffine``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import make_agent
from bandexa_gym.envs import RewardAffine
from bandexa_gym.runner import run

ROUNDS = 300


def _regrets(scale: float, shift: float, **settings) -> np.ndarray:
    """Per-round regret in the plain reward's units (regret is shift-free, scaled by scale)."""
    env = gym.make("Bandexa/Synthetic-v0", n_arms=5, context_dim=4, action_dim=3)
    if (scale, shift) != (1.0, 0.0):
        env = RewardAffine(env, scale, shift)
    agent = make_agent("linear_ts", env, seed=0, **settings)
    return run(agent, env, ROUNDS, seed=1).regrets / scale


@pytest.mark.parametrize(("scale", "shift"), [(100.0, 0.0), (0.01, 0.0), (1.0, 100.0)])
def test_linear_ts_decides_the_same_whatever_the_units(scale: float, shift: float) -> None:
    plain, moved = _regrets(1.0, 0.0), _regrets(scale, shift)
    # The same action every round after the first few (the standardization needs two rewards
    # to know the units): the per-round regrets agree.
    np.testing.assert_allclose(moved[10:], plain[10:], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("scale", "shift"), [(100.0, 0.0), (1.0, 100.0)])
def test_a_head_on_raw_rewards_fails_the_same_check(scale: float, shift: float) -> None:
    naive = {"standardize_rewards": False, "intercept": False}  # no target handling
    plain, moved = _regrets(1.0, 0.0, **naive), _regrets(scale, shift, **naive)
    assert not np.allclose(moved[10:], plain[10:], rtol=1e-6, atol=1e-9)
    assert abs(moved.sum() - plain.sum()) > 0.05 * plain.sum()  # and it costs regret
