"""Every Bandexa/* id against Gymnasium's and SB3's checkers, seeding and vector envs."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from bandexa_gym.envs import ENV_IDS, CandidateSetEnv, FlattenCandidates, RegretMonitor
from tests.envs.env_ids import ENV_KWARGS

IDS = list(ENV_IDS)
MakeEnv = Callable[..., gym.Env]


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env(env_id: str, make_env: MakeEnv) -> None:
    env = make_env(env_id)
    with warnings.catch_warnings():
        # Gaussian contexts and features are unbounded on purpose.
        warnings.filterwarnings("ignore", message=".*infinity.*")
        gym_check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", IDS)
def test_sb3_check_env(env_id: str, make_env: MakeEnv) -> None:
    env = make_env(env_id)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*(unconventional shape|is an image|minimal resolution).*"
        )
        sb3_check_env(env, warn=True)
    flat = FlattenCandidates(make_env(env_id))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the flat form raises no SB3 concern at all
        sb3_check_env(flat, warn=True)


def _rollout(env: gym.Env, seed: int, rounds: int = 100) -> list[tuple]:
    obs, _ = env.reset(seed=seed)
    actions = np.random.default_rng(0).integers(0, env.action_space.n, size=rounds)
    records = []
    for action in actions:
        records.append((obs["context"], obs["candidates"], obs["action_mask"]))
        obs, reward, terminated, truncated, info = env.step(int(action))
        assert not terminated and not truncated
        records.append((reward, info["expected_reward"], info["regret"]))
    return records


def _same(a: list[tuple], b: list[tuple]) -> bool:
    return all(
        all(np.array_equal(x, y) for x, y in zip(ra, rb, strict=True))
        for ra, rb in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_stream_other_seed_differs(env_id: str, make_env: MakeEnv) -> None:
    first = _rollout(make_env(env_id), seed=7)
    second = _rollout(make_env(env_id), seed=7)
    other = _rollout(make_env(env_id), seed=8)
    assert _same(first, second)
    assert not _same(first, other)
    # The contexts themselves differ (not just the noise).
    assert not np.array_equal(first[0][0], other[0][0])
    # A seeded reset of a used env replays the stream from the start.
    env = make_env(env_id)
    _rollout(env, seed=3, rounds=5)
    assert _same(_rollout(env, seed=7), first)


@pytest.mark.parametrize("env_id", IDS)
def test_sync_vector_env(env_id: str, make_env: MakeEnv) -> None:
    make_env(env_id)  # skips when the data is absent
    kwargs = ENV_KWARGS.get(env_id, {})
    vec = gym.vector.SyncVectorEnv([lambda: RegretMonitor(gym.make(env_id, **kwargs))] * 3)
    single = vec.single_observation_space
    obs, _ = vec.reset(seed=0)
    k = single["candidates"].shape[0]
    assert obs["context"].shape == (3, *single["context"].shape)
    assert obs["candidates"].shape == (3, *single["candidates"].shape)
    assert obs["action_mask"].shape == (3, k)
    assert not np.array_equal(obs["context"][0], obs["context"][1])  # seeds 0, 1, 2
    regrets = []
    for _ in range(5):
        actions = np.array([0, k - 1, k // 2])
        obs, rewards, terminated, truncated, info = vec.step(actions)
        assert rewards.shape == (3,) and not terminated.any() and not truncated.any()
        assert info["regret"].shape == (3,) and info["_regret"].all()
        assert (info["regret"] >= 0).all()
        assert np.allclose(info["regret"], info["best_expected_reward"] - info["expected_reward"])
        assert obs["candidates"].shape == (3, *single["candidates"].shape)
        regrets.append(info["regret"])
    recorded = np.stack(vec.get_attr("regrets"), axis=1)
    np.testing.assert_array_equal(recorded, np.stack(regrets))
    vec.close()


@pytest.mark.parametrize("env_id", IDS)
def test_info_carries_every_candidates_expected_reward(env_id: str, make_env: MakeEnv) -> None:
    env = make_env(env_id)
    obs, _ = env.reset(seed=0)
    k = env.action_space.n
    previous = None
    for t in range(10):
        action = (3 * t) % k
        obs, _, _, _, info = env.step(action)
        expected = info["expected_rewards"]
        assert expected.shape == (k,) and expected.dtype == np.float64
        assert expected[action] == info["expected_reward"]
        assert expected.max() == info["best_expected_reward"]
        assert int(np.argmax(expected)) == info["optimal_action"]
        # A copy of its own: writable, and not shared with the env or an earlier info.
        assert expected.flags.writeable and expected is not previous
        assert not np.shares_memory(expected, env.unwrapped._round.expected_rewards)
        previous = expected


def test_ppo_runs_on_synthetic_and_is_monitored() -> None:
    env = RegretMonitor(gym.make("Bandexa/Synthetic-v0"))
    model = PPO("MultiInputPolicy", env, n_steps=64, batch_size=64, n_epochs=2, seed=0)
    model.learn(total_timesteps=256)
    assert model.num_timesteps == 256
    assert env.num_rounds == 256  # every round SB3 played was recorded
    assert env.cumulative_regret[-1] > 0
    action, _ = model.predict(env.reset(seed=1)[0], deterministic=True)
    assert env.action_space.contains(int(action))


@pytest.mark.parametrize(
    ("env_id", "kwargs", "match"),
    [
        ("Bandexa/Synthetic-v0", {"n_arms": 10**9}, r"n_arms=1000000000.*candidates"),
        ("Bandexa/Synthetic-v0", {"action_dim": 10**9}, r"action_dim=1000000000.*candidates"),
        ("Bandexa/Synthetic-v0", {"context_dim": 10**9}, r"context_dim=1000000000.*projection"),
        ("Bandexa/Synthetic-v0", {"context_dim": 20_000, "action_dim": 20_000}, "projection"),
        ("Bandexa/Retrieval-v0", {"n_actions": 10**9}, r"n_actions=1000000000.*item pool"),
        ("Bandexa/Retrieval-v0", {"n_actions": 2 * 10**8, "action_dim": 1}, "item ids"),
        ("Bandexa/Retrieval-v0", {"context_dim": 10**9}, r"context_dim=1000000000.*affinity"),
        (
            "Bandexa/Classification-v0",
            {"X": np.zeros((50_000, 1)), "y": np.arange(50_000)},
            "50000 distinct classes.*reward matrix",
        ),
    ],
)
def test_sizes_past_memory_are_refused_at_once(env_id: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as caught:
        gym.make(env_id, **kwargs)
    assert "no array over 1 GiB (MAX_ARRAY_BYTES)" in str(caught.value)


def test_candidate_set_base_refuses_a_candidate_array_past_memory() -> None:
    context = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    with pytest.raises(ValueError, match=r"n_candidates=100000000, action_dim=4.*1\.5 GiB"):
        CandidateSetEnv(context, 10**8, 4)
    assert CandidateSetEnv(context, 2**20, 2).n_candidates == 2**20  # 8 MiB: fine
