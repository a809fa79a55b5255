"""gym.make_vec over Bandexa ids: N round streams of one problem unless asked otherwise."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from bandexa_gym.envs import RegretMonitor, make_vector_env
from bandexa_gym.envs.vector import SharedProblemAsyncVectorEnv, SharedProblemSyncVectorEnv

SMALL = {
    "Bandexa/Synthetic-v0": {"n_arms": 5, "context_dim": 4, "action_dim": 3},
    "Bandexa/Retrieval-v0": {"n_actions": 300, "candidate_size": 20},
}


def _problem(env: gym.Env) -> list[np.ndarray]:
    """The arrays that define the problem of a sub-env."""
    base = env.unwrapped
    model = base.reward_model
    if hasattr(base, "items"):
        return [model.affinity, model.taste_context, model.popularity, base.items]
    return [model.theta, model.context_proj, model.action_proj, model.mix, base._actions]


def _same_problem(a: gym.Env, b: gym.Env) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_problem(a), _problem(b), strict=True))


@pytest.mark.parametrize("env_id", list(SMALL))
def test_make_vec_shares_one_problem_by_default(env_id: str) -> None:
    vec = gym.make_vec(env_id, num_envs=4, **SMALL[env_id])
    assert isinstance(vec, SharedProblemSyncVectorEnv)
    obs, _ = vec.reset(seed=5)
    assert all(_same_problem(vec.envs[0], sub) for sub in vec.envs[1:])
    contexts = obs["context"]
    assert len({c.tobytes() for c in contexts}) == 4  # four different round streams
    # Sub-env 0 is exactly the single env reset with the vector env's seed.
    single = gym.make(env_id, **SMALL[env_id])
    obs_single, _ = single.reset(seed=5)
    assert _same_problem(single, vec.envs[0])
    for t in range(10):
        np.testing.assert_array_equal(obs["context"][0], obs_single["context"])
        np.testing.assert_array_equal(obs["candidates"][0], obs_single["candidates"])
        obs, rewards, _, _, info = vec.step(np.full(4, t % 5))
        obs_single, reward, _, _, info_single = single.step(t % 5)
        assert rewards[0] == reward and info["regret"][0] == info_single["regret"]
        np.testing.assert_array_equal(info["expected_rewards"][0], info_single["expected_rewards"])
    # A seeded reset moves every sub-env to the problem of the new seed.
    vec.reset(seed=6)
    single.reset(seed=6)
    assert all(_same_problem(single, sub) for sub in vec.envs)
    vec.close()


@pytest.mark.parametrize("env_id", list(SMALL))
def test_per_env_problems_on_request(env_id: str) -> None:
    vec = gym.make_vec(env_id, num_envs=3, problem="per_env", **SMALL[env_id])
    assert not isinstance(vec, SharedProblemSyncVectorEnv)
    vec.reset(seed=5)
    assert not _same_problem(vec.envs[0], vec.envs[1])
    assert not _same_problem(vec.envs[1], vec.envs[2])
    # Sub-env i is the single env with seed 5 + i, as with Gymnasium's own vectorizer.
    single = gym.make(env_id, **SMALL[env_id])
    single.reset(seed=7)
    assert _same_problem(single, vec.envs[2])
    vec.close()


def test_unseeded_first_reset_still_shares_and_later_resets_keep_the_problem() -> None:
    vec = gym.make_vec("Bandexa/Synthetic-v0", num_envs=3)
    vec.reset()
    assert _same_problem(vec.envs[0], vec.envs[1]) and _same_problem(vec.envs[0], vec.envs[2])
    model = vec.envs[0].unwrapped.reward_model
    vec.step(np.zeros(3, dtype=np.int64))
    vec.reset()  # unseeded: every sub-env keeps the shared problem
    assert all(sub.unwrapped.reward_model is not None for sub in vec.envs)
    assert vec.envs[0].unwrapped.reward_model is model
    assert _same_problem(vec.envs[0], vec.envs[2])
    vec.close()


def test_seed_lists_must_be_consecutive_when_shared() -> None:
    vec = gym.make_vec("Bandexa/Synthetic-v0", num_envs=3)
    vec.reset(seed=[4, 5, 6])
    single = gym.make("Bandexa/Synthetic-v0")
    single.reset(seed=4)
    assert all(_same_problem(single, sub) for sub in vec.envs)
    with pytest.raises(ValueError, match=r"s \+ i"):
        vec.reset(seed=[1, 7, 3])
    vec.close()


def test_resampled_arms_differ_per_stream_but_the_model_is_shared() -> None:
    vec = gym.make_vec("Bandexa/Synthetic-v0", num_envs=2, resample_actions=True)
    obs, _ = vec.reset(seed=0)
    assert not np.array_equal(obs["candidates"][0], obs["candidates"][1])
    m0, m1 = (sub.unwrapped.reward_model for sub in vec.envs)
    np.testing.assert_array_equal(m0.theta, m1.theta)
    vec.close()


def test_gymnasium_vectorizers_need_problem_seed_to_share() -> None:
    # Gymnasium's own sync vectorizer knows nothing of sharing: documented, not hidden.
    plain = gym.make_vec("Bandexa/Synthetic-v0", num_envs=2, vectorization_mode="sync")
    plain.reset(seed=0)
    assert not _same_problem(plain.envs[0], plain.envs[1])
    fixed = gym.make_vec(
        "Bandexa/Synthetic-v0", num_envs=2, vectorization_mode="sync", problem_seed=1
    )
    fixed.reset(seed=0)
    assert _same_problem(fixed.envs[0], fixed.envs[1])


def test_make_vector_env_with_wrappers_records_each_stream() -> None:
    vec = make_vector_env(
        "Bandexa/Retrieval-v0", 2, wrappers=[RegretMonitor], **SMALL["Bandexa/Retrieval-v0"]
    )
    vec.reset(seed=0)
    regrets = []
    for _ in range(5):
        regrets.append(vec.step(np.array([0, 1]))[4]["regret"])
    recorded = np.stack(vec.get_attr("regrets"), axis=1)
    np.testing.assert_array_equal(recorded, np.stack(regrets))
    assert _same_problem(vec.envs[0], vec.envs[1])
    vec.close()


def test_asynchronous_sub_envs_share_the_problem() -> None:
    vec = make_vector_env(
        "Bandexa/Synthetic-v0", 2, asynchronous=True, **SMALL["Bandexa/Synthetic-v0"]
    )
    try:
        assert isinstance(vec, SharedProblemAsyncVectorEnv)
        obs, _ = vec.reset(seed=3)
        np.testing.assert_array_equal(obs["candidates"][0], obs["candidates"][1])
        assert not np.array_equal(obs["context"][0], obs["context"][1])
        _, _, _, _, info = vec.step(np.array([0, 0]))
        # (get_attr would call the callable reward model; its latent draws define it.)
        latents = vec.get_attr("_latent")
        np.testing.assert_array_equal(latents[0].context_proj, latents[1].context_proj)
        single = gym.make("Bandexa/Synthetic-v0", **SMALL["Bandexa/Synthetic-v0"])
        single.reset(seed=3)
        np.testing.assert_array_equal(single.unwrapped._latent.theta, latents[1].theta)
        assert info["expected_rewards"].shape == (2, 5)
    finally:
        vec.close()


def test_data_envs_vectorize_with_gymnasium_and_share_their_dataset() -> None:
    vec = gym.make_vec("Bandexa/MNIST-v0", num_envs=2)
    obs, _ = vec.reset(seed=0)
    assert obs["context"].shape == (2, 1, 28, 28)
    assert vec.envs[0].unwrapped._images is vec.envs[1].unwrapped._images
    vec.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"problem": "each"}, ValueError, 'problem must be "shared" or "per_env"'),
        ({"num_envs": 0}, ValueError, "num_envs must be an integer >= 1"),
        ({"asynchronous": "no"}, TypeError, "asynchronous must be True or False"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make_vector_env("Bandexa/Synthetic-v0", **{"num_envs": 2, **kwargs})


def test_shared_problem_needs_a_candidate_set_env() -> None:
    with pytest.raises(TypeError, match="candidate-set env"):
        make_vector_env("CartPole-v1", 2)
