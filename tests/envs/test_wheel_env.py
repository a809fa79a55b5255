"""The wheel bandit: its reward regions and arguments."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.envs import WheelBanditEnv


def test_the_best_arm_is_safe_inside_the_radius_and_the_quadrants_outside() -> None:
    env = WheelBanditEnv(delta=0.5)
    assert env.expected_rewards(np.array([0.1, 0.2])).argmax() == 0
    for point, arm in [((0.6, 0.6), 1), ((0.6, -0.6), 2), ((-0.6, -0.6), 3), ((-0.6, 0.6), 4)]:
        means = env.expected_rewards(np.array(point))
        assert means.argmax() == arm and means[arm] == 50.0 and means[0] == 1.2


def test_contexts_fill_the_disc_and_the_oracle_agrees() -> None:
    env = gym.make("Bandexa/Wheel-v0", delta=0.95)
    obs, _ = env.reset(seed=0)
    radii, large = [], 0
    for _ in range(4000):
        radii.append(float(np.linalg.norm(obs["context"])))
        obs, reward, _, _, info = env.step(0)
        large += info["best_expected_reward"] == 50.0
    radii = np.array(radii)
    assert radii.max() <= 1.0 and abs((radii > 0.95).mean() - (1 - 0.95**2)) < 0.02
    assert abs(large / 4000 - (1 - 0.95**2)) < 0.02


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"delta": 1.0}, ValueError),
        ({"delta": "0.5"}, TypeError),
        ({"mean_large": 1.1}, ValueError),
    ],
)
def test_bad_arguments(kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        WheelBanditEnv(**kwargs)
