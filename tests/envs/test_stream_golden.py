"""The round streams of the default envs are pinned: new options must not move them.

The digests were recorded before ``drift=``, shared vector problems and
``info["expected_rewards"]`` existed. Contexts, candidates and masks are hashed exactly
(they come straight from the random streams); rewards and the oracle are rounded to 9
decimals, so that a last-bit difference in ``tanh``/``exp`` between platforms cannot
fail the test while any change of the stream does.
"""

from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np
import pytest

# (id, kwargs, {seed: digest}); drift=None is passed explicitly where the env takes it.
GOLDEN = [
    ("Bandexa/Synthetic-v0", {}, {0: "4249d40d08ee1ba2", 7: "5078fea46b4ab2b9"}),
    (
        "Bandexa/Synthetic-v0",
        {"resample_actions": True, "n_arms": 5},
        {0: "1dcc3dce7bf26680", 7: "6062e20983c4e268"},
    ),
    (
        "Bandexa/Synthetic-v0",
        {"problem_seed": 3, "observed_context_dim": 4},
        {0: "65b2531a611daaf4", 7: "5bdd83453f726834"},
    ),
    (
        "Bandexa/Synthetic-v0",
        {"nonlinearity": None, "interaction_scale": 1.5},
        {0: "cc31acd6f792d4fa", 7: "131763809107cae6"},
    ),
    (
        "Bandexa/Retrieval-v0",
        {"n_actions": 500, "candidate_size": 40},
        {0: "36581233684f4dbe", 7: "423f381394090a17"},
    ),
    (
        "Bandexa/Retrieval-v0",
        {"n_actions": 300, "candidate_size": 0, "problem_seed": 2},
        {0: "5555697d6411266a", 7: "30d7c7be441bd45c"},
    ),
    ("Bandexa/Retrieval-v0", {}, {0: "fc80f9a2198764fc", 7: "7199abbdb5044bf1"}),
    ("Bandexa/MNIST-v0", {}, {0: "164331b985a3e971", 7: "5e0180d8245c5c82"}),
]


def stream_digest(env: gym.Env, seed: int, rounds: int = 60) -> str:
    """Digest of ``rounds`` rounds playing arm ``t % K``, with an unseeded reset at t = 20."""
    digest = hashlib.sha256()
    obs, _ = env.reset(seed=seed)
    k = env.action_space.n
    for t in range(rounds):
        for key in ("context", "candidates", "action_mask"):
            digest.update(np.ascontiguousarray(obs[key]).tobytes())
        obs, reward, _, _, info = env.step(t % k)
        oracle = [reward, info["expected_reward"], info["best_expected_reward"], info["regret"]]
        digest.update(np.round(np.array(oracle, dtype=np.float64), 9).tobytes())
        digest.update(str(info["optimal_action"]).encode())
        if t == 20:
            obs, _ = env.reset()  # an unseeded reset continues the stream
    return digest.hexdigest()[:16]


@pytest.mark.parametrize(("env_id", "kwargs", "digests"), GOLDEN)
def test_round_stream_is_unchanged(env_id: str, kwargs: dict, digests: dict[int, str]) -> None:
    if env_id != "Bandexa/MNIST-v0":
        kwargs = {**kwargs, "drift": None}
    env = gym.make(env_id, **kwargs)
    for seed, expected in digests.items():
        assert stream_digest(env, seed) == expected
