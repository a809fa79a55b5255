"""RetrievalBanditEnv: retrieval stage, oracle inside the candidate set, speed, bad input."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest

from bandexa_gym.envs import RetrievalBanditEnv


def _mu(env: RetrievalBanditEnv, user: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The documented expected reward, written out independently of the env's code."""
    m = env.reward_model
    assert m is not None
    x, a = user.astype(np.float64), items.astype(np.float64)
    logit = -1.5 + np.einsum("i,ij,kj->k", x, m.affinity, a) + 0.3 * a @ m.popularity
    for k in range(m.taste_mix.size):
        logit += m.taste_mix[k] * np.tanh((m.taste_context[k] @ x) * (a @ m.taste_action[k]))
    return 1.0 / (1.0 + np.exp(-logit))


def test_candidates_come_from_the_pool_and_oracle_is_within_them() -> None:
    env = RetrievalBanditEnv(n_actions=2000, candidate_size=64)
    obs, _ = env.reset(seed=0)
    assert env.items.shape == (2000, 16) and obs["candidates"].shape == (64, 16)
    rng = np.random.default_rng(0)
    noise, best_in_set, pool_mean, set_mean = [], [], [], []
    for _ in range(200):
        ids = env.candidate_ids
        assert len(np.unique(ids)) == 64 and ids.min() >= 0 and ids.max() < 2000
        np.testing.assert_array_equal(obs["candidates"], env.items[ids])
        mu = _mu(env, obs["context"], obs["candidates"])
        assert ((mu > 0) & (mu < 1)).all()
        pool_mean.append(_mu(env, obs["context"], env.items).mean())
        set_mean.append(mu.mean())
        best_in_set.append(mu.max())
        action = int(rng.integers(64))
        obs, reward, _, _, info = env.step(action)
        assert info["expected_reward"] == pytest.approx(mu[action], abs=1e-9)
        assert info["best_expected_reward"] == pytest.approx(mu.max(), abs=1e-9)
        assert info["optimal_action"] == int(np.argmax(mu))
        assert 0 <= info["regret"] == pytest.approx(mu.max() - mu[action], abs=1e-9)
        noise.append(reward - mu[action])
    assert np.std(noise) == pytest.approx(0.1, rel=0.2)
    # Retrieval helps: candidates beat the pool on average, and the best one is good.
    assert np.mean(set_mean) > np.mean(pool_mean) + 0.05
    assert np.mean(best_in_set) > 0.8


def test_retrieved_share_is_the_top_of_the_retrieval_score() -> None:
    env = RetrievalBanditEnv(n_actions=500, candidate_size=40, random_fraction=0.0)
    obs, _ = env.reset(seed=1)
    for _ in range(10):
        scores = env._retrieval_items @ (env._retrieval_query @ obs["context"])
        chosen = np.zeros(500, dtype=bool)
        chosen[env.candidate_ids] = True
        assert scores[chosen].min() >= scores[~chosen].max()
        obs, *_ = env.step(0)


def test_personalization_matters() -> None:
    """Ranking by the shared popularity term (all a linear model can do) leaves regret."""
    env = RetrievalBanditEnv(n_actions=2000, candidate_size=128)
    obs, _ = env.reset(seed=0)
    regrets = []
    for _ in range(200):
        action = int(np.argmax(obs["candidates"] @ env.reward_model.popularity))
        obs, _, _, _, info = env.step(action)
        regrets.append(info["regret"])
    assert np.mean(regrets) > 0.2


@pytest.mark.parametrize("candidate_size", [0, -1, 50])
def test_whole_pool(candidate_size: int) -> None:
    env = gym.make("Bandexa/Retrieval-v0", n_actions=50, candidate_size=candidate_size).unwrapped
    assert env.action_space.n == 50
    obs, _ = env.reset(seed=0)
    assert obs["candidates"].shape == (50, 16)
    np.testing.assert_array_equal(obs["candidates"], env.items)
    _, _, _, _, info = env.step(0)
    assert info["best_expected_reward"] == pytest.approx(_mu(env, obs["context"], env.items).max())


def test_larger_pool_extends_the_same_pool_and_users() -> None:
    small = RetrievalBanditEnv(n_actions=100, candidate_size=0)
    large = RetrievalBanditEnv(n_actions=200, candidate_size=0)
    obs_s, _ = small.reset(seed=4)
    obs_l, _ = large.reset(seed=4)
    np.testing.assert_array_equal(large.items[:100], small.items)
    np.testing.assert_array_equal(obs_l["context"], obs_s["context"])


def test_step_is_fast_at_default_size() -> None:
    env = gym.make("Bandexa/Retrieval-v0").unwrapped  # 10,000 items, 512 candidates
    assert env.action_space.n == 512
    env.reset(seed=0)
    for _ in range(20):
        env.step(0)
    n = 300
    start = time.perf_counter()
    for _ in range(n):
        env.step(0)
    per_step = (time.perf_counter() - start) / n
    assert per_step < 2e-3, f"{per_step * 1e3:.2f} ms per step"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_actions": 0}, "n_actions must be an integer >= 1"),
        ({"n_actions": 10, "candidate_size": 11}, "candidate_size must be at most n_actions=10"),
        ({"candidate_size": 2.5}, "candidate_size must be an integer"),
        ({"random_fraction": 1.5}, r"random_fraction must be in \[0, 1\]"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"context_dim": 0}, "context_dim"),
    ],
)
def test_invalid_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gym.make("Bandexa/Retrieval-v0", **kwargs)


def test_all_random_candidates() -> None:
    env = RetrievalBanditEnv(n_actions=300, candidate_size=30, random_fraction=1.0)
    env.reset(seed=0)
    first = env.candidate_ids
    assert len(np.unique(first)) == 30
    env.step(0)
    assert not np.array_equal(np.sort(first), np.sort(env.candidate_ids))


def test_problem_seed_fixes_pool_across_reset_seeds() -> None:
    env = RetrievalBanditEnv(n_actions=100, candidate_size=10, problem_seed=5)
    obs0, _ = env.reset(seed=0)
    items = env.items
    obs1, _ = env.reset(seed=1)
    assert env.items is items  # kept, not redrawn
    assert not np.array_equal(obs0["context"], obs1["context"])
    other = RetrievalBanditEnv(n_actions=100, candidate_size=10, problem_seed=5)
    other.reset(seed=9)
    np.testing.assert_array_equal(other.items, items)
    free = RetrievalBanditEnv(n_actions=100, candidate_size=10)
    free.reset(seed=0)
    pool0 = free.items
    free.reset(seed=1)
    assert not np.array_equal(free.items, pool0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_std": "0.1"}, "noise_std must be a real number"),
        ({"random_fraction": "0.5"}, "random_fraction must be a real number"),
        ({"random_fraction": None}, "random_fraction must be a real number"),
    ],
)
def test_wrong_types_are_type_errors_naming_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        gym.make("Bandexa/Retrieval-v0", **kwargs)
