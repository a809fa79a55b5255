"""RegretMonitor and FlattenCandidates."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from bandexa_gym.envs import FlattenCandidates, RegretMonitor, RewardAffine


def test_regret_monitor_matches_infos_and_survives_resets() -> None:
    env = RegretMonitor(gym.make("Bandexa/Synthetic-v0", max_episode_steps=7))
    env.reset(seed=0)
    rewards, regrets, expected, best = [], [], [], []
    rng = np.random.default_rng(0)
    for _ in range(30):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(10)))
        rewards.append(reward)
        regrets.append(info["regret"])
        expected.append(info["expected_reward"])
        best.append(info["best_expected_reward"])
        if terminated or truncated:
            env.reset()  # as SB3 does at episode ends
    assert env.num_rounds == 30
    np.testing.assert_array_equal(env.rewards, rewards)
    np.testing.assert_array_equal(env.regrets, regrets)
    np.testing.assert_array_equal(env.expected_rewards, expected)
    np.testing.assert_array_equal(env.best_expected_rewards, best)
    assert env.cumulative_regret[-1] == pytest.approx(sum(regrets))
    assert env.cumulative_regret[-1] > 0 and env.regrets.dtype == np.float64
    env.reset(seed=1)
    assert env.num_rounds == 30  # even a seeded reset keeps the records
    env.reset_records()
    assert env.num_rounds == 0 and env.regrets.shape == (0,) and env.cumulative_regret.shape == (0,)
    env.step(0)
    assert env.num_rounds == 1


def test_regret_monitor_needs_oracle_keys() -> None:
    env = RegretMonitor(gym.make("CartPole-v1"))
    env.reset(seed=0)
    with pytest.raises(KeyError, match="regret"):
        env.step(0)


def test_regret_monitor_in_vector_env_per_sub_env() -> None:
    vec = gym.vector.SyncVectorEnv(
        [lambda: RegretMonitor(gym.make("Bandexa/Retrieval-v0", n_actions=300, candidate_size=32))]
        * 2
    )
    vec.reset(seed=0)
    infos = []
    for _ in range(10):
        _, _, _, _, info = vec.step(np.array([0, 1]))
        infos.append(info["regret"])
    infos = np.stack(infos)
    for i, sub in enumerate(vec.envs):
        np.testing.assert_array_equal(sub.regrets, infos[:, i])
    totals = tuple(curve[-1] for curve in vec.get_attr("cumulative_regret"))
    assert totals == pytest.approx(tuple(infos.sum(axis=0)))


@pytest.mark.parametrize(
    ("kwargs", "size"),
    [
        ({"n_arms": 4, "context_dim": 3, "action_dim": 2}, 3 + 4 * 2 + 4),
        ({"n_arms": 5, "context_dim": 6, "observed_context_dim": 2}, 2 + 5 * 10 + 5),
    ],
)
def test_flatten_candidates_layout(kwargs: dict, size: int) -> None:
    inner = gym.make("Bandexa/Synthetic-v0", **kwargs)
    env = FlattenCandidates(inner)
    assert env.observation_space.shape == (size,)
    assert env.observation_space.dtype == np.float32
    flat, _ = env.reset(seed=0)
    dict_obs, _ = gym.make("Bandexa/Synthetic-v0", **kwargs).reset(seed=0)
    assert flat.shape == (size,) and flat.dtype == np.float32
    assert env.observation_space.contains(flat)
    np.testing.assert_array_equal(flat[env.slices["context"]], dict_obs["context"])
    np.testing.assert_array_equal(flat[env.slices["candidates"]], dict_obs["candidates"].ravel())
    np.testing.assert_array_equal(flat[env.slices["action_mask"]], dict_obs["action_mask"])
    flat2, reward, _, _, info = env.step(0)
    assert flat2.shape == (size,) and "regret" in info


def test_flatten_candidates_bounds_for_images() -> None:
    env = FlattenCandidates(gym.make("Bandexa/MNIST-v0", labels=range(8)))
    space = env.observation_space
    assert space.shape == (784 + 8 * 10 + 8,)
    assert space.low.min() == 0.0 and space.high.max() == 1.0


def test_flatten_candidates_rejects_other_spaces() -> None:
    with pytest.raises(ValueError, match="context"):
        FlattenCandidates(gym.make("CartPole-v1"))


# -- RewardAffine --------------------------------------------------------------------------


@pytest.mark.parametrize(("scale", "shift"), [(0.01, 0.0), (100.0, 0.0), (1.0, 100.0), (2.5, -3.0)])
def test_reward_affine_transforms_reward_and_oracle(scale: float, shift: float) -> None:
    kwargs = {"n_actions": 200, "candidate_size": 16}
    plain = gym.make("Bandexa/Retrieval-v0", **kwargs)
    wrapped = RewardAffine(gym.make("Bandexa/Retrieval-v0", **kwargs), scale=scale, shift=shift)
    obs_p, _ = plain.reset(seed=0)
    obs_w, _ = wrapped.reset(seed=0)
    for t in range(30):
        np.testing.assert_array_equal(obs_p["context"], obs_w["context"])
        _, r_p, _, _, i_p = plain.step(t % 16)
        _, r_w, _, _, i_w = wrapped.step(t % 16)
        assert r_w == pytest.approx(scale * r_p + shift, rel=1e-12, abs=1e-12)
        for key in ("expected_reward", "best_expected_reward"):
            assert i_w[key] == pytest.approx(scale * i_p[key] + shift, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(i_w["expected_rewards"], scale * i_p["expected_rewards"] + shift)
        assert i_w["regret"] == pytest.approx(scale * i_p["regret"], rel=1e-12, abs=1e-15)
        assert i_w["regret"] == pytest.approx(
            i_w["best_expected_reward"] - i_w["expected_reward"], abs=1e-9 * max(1, scale, shift)
        )
        assert i_w["optimal_action"] == i_p["optimal_action"]


def test_reward_affine_leaves_the_inner_info_alone_and_regret_over_scale_is_the_plain_regret() -> (
    None
):
    inner_infos = []

    class Spy(gym.Wrapper):
        def step(self, action):  # type: ignore[no-untyped-def]
            out = self.env.step(action)
            inner_infos.append((out[4], dict(out[4]), out[4]["expected_rewards"].copy()))
            return out

    monitored = RegretMonitor(RewardAffine(Spy(gym.make("Bandexa/Synthetic-v0")), 100.0, 7.0))
    plain = RegretMonitor(gym.make("Bandexa/Synthetic-v0"))
    monitored.reset(seed=2)
    plain.reset(seed=2)
    for t in range(40):
        monitored.step(t % 10)
        plain.step(t % 10)
    for info, snapshot, expected in inner_infos:
        assert info["regret"] == snapshot["regret"]
        np.testing.assert_array_equal(info["expected_rewards"], expected)
    np.testing.assert_allclose(monitored.regrets / 100.0, plain.regrets, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose((monitored.rewards - 7.0) / 100.0, plain.rewards, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"scale": 0.0}, ValueError, "scale must be a finite number > 0"),
        ({"scale": -2.0}, ValueError, "scale must be a finite number > 0"),
        ({"scale": float("inf")}, ValueError, "scale must be a finite number > 0"),
        ({"scale": float("nan")}, ValueError, "scale must be a finite number > 0"),
        ({"scale": "2"}, TypeError, "scale must be a real number"),
        ({"shift": float("inf")}, ValueError, "shift must be a finite number"),
        ({"shift": None}, TypeError, "shift must be a real number"),
    ],
)
def test_reward_affine_rejects_bad_arguments(
    kwargs: dict, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        RewardAffine(gym.make("Bandexa/Synthetic-v0"), **kwargs)


def test_regret_monitor_records_past_its_preallocated_rows() -> None:
    """The records grow past their first allocation with every round kept, in order."""
    env = RegretMonitor(gym.make("Bandexa/Synthetic-v0"))
    env.reset(seed=0)
    infos, rewards = [], []
    for _ in range(1100):
        _, reward, _, _, info = env.step(0)
        infos.append(info)
        rewards.append(reward)
    assert env.num_rounds == 1100
    np.testing.assert_array_equal(env.rewards, rewards)
    np.testing.assert_array_equal(env.regrets, [i["regret"] for i in infos])
    np.testing.assert_array_equal(
        env.best_expected_rewards, [i["best_expected_reward"] for i in infos]
    )
    regrets = env.regrets
    regrets[:] = -1.0  # a copy: the records are not touched
    assert env.regrets[0] >= 0.0
    env.reset_records()
    assert env.num_rounds == 0 and env.rewards.shape == (0,)
