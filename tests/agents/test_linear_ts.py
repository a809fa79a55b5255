import gymnasium as gym
import numpy as np
import pytest
import torch

from bandexa_gym.agents import LinearTS, make_agent
from bandexa_gym.bench import run
from tests.agents.linear_env import LinearEnv


def test_linear_ts_learns_a_linear_problem_and_beats_uniform():
    horizon = 600
    results = {}
    for name in ("linear_ts", "uniform"):
        env = LinearEnv()
        results[name] = run(make_agent(name, env, seed=0), env, horizon, seed=1)
    ts, uniform = results["linear_ts"].cumulative_regret, results["uniform"].cumulative_regret
    assert ts[-1] < 0.25 * uniform[-1]
    # Sub-linear: the second half costs much less than the first.
    assert ts[-1] - ts[horizon // 2 - 1] < 0.5 * ts[horizon // 2 - 1]


def test_auto_feature_map_picks_disjoint_for_one_hot_candidates_and_learns():
    env = LinearEnv(one_hot=True, n_arms=5)
    agent = make_agent("linear_ts", env, seed=0)
    result = run(agent, env, 400, seed=0)
    assert agent.feature_map == "disjoint"
    assert len(agent.heads) == 5 and all(h.dim == 4 for h in agent.heads)
    uniform = run(
        make_agent("uniform", env, seed=0), LinearEnv(one_hot=True, n_arms=5), 400, seed=0
    )
    assert result.cumulative_regret[-1] < 0.3 * uniform.cumulative_regret[-1]


def test_auto_feature_map_takes_a_small_candidate_set_for_fixed_arms_until_it_changes():
    env = LinearEnv()  # six new candidate rows every round
    agent = make_agent("linear_ts", env, seed=0)
    obs, _ = env.reset(seed=0)
    agent.act(obs)
    assert agent.feature_map == "per_arm" and len(agent.heads) == 6
    with pytest.warns(RuntimeWarning, match="switching to one head over"):
        for _ in range(40):
            action = agent.act(obs)
            obs, reward, *_ = env.step(action)
            agent.observe(obs, action, reward)
    assert agent.feature_map == "concat" and agent.posterior.dim == 8
    wide = LinearEnv(n_arms=80)
    agent = make_agent("linear_ts", wide, seed=0)
    agent.act(wide.reset(seed=0)[0])
    assert agent.feature_map == "concat"  # more than 64 candidates: not taken for arms


def test_fixed_feature_arms_get_a_head_each():
    env = gym.make("Bandexa/Synthetic-v0", n_arms=5, context_dim=3, action_dim=4)
    agent = make_agent("linear_ts", env, seed=0)
    run(agent, env, 200, seed=0)
    assert agent.feature_map == "per_arm" and len(agent.heads) == 5
    assert sum(h.n_obs for h in agent.heads) == 200


def test_same_seed_gives_same_actions():
    actions = []
    for _ in range(2):
        env = LinearEnv()
        agent = make_agent("linear_ts", env, seed=3)
        obs, _ = env.reset(seed=0)
        seq = []
        for _ in range(50):
            a = agent.act(obs)
            next_obs, r, *_ = env.step(a)
            agent.observe(obs, a, r)
            obs, seq = next_obs, seq + [a]
        actions.append(seq)
    assert actions[0] == actions[1]


def test_mask_is_honoured():
    env = LinearEnv()
    agent = make_agent("linear_ts", env, seed=0)
    obs, _ = env.reset(seed=0)
    mask = np.zeros(6, np.int8)
    mask[4] = 1
    for _ in range(20):
        assert agent.act({**obs, "action_mask": mask}) == 4
    with pytest.raises(ValueError, match="no candidate"):
        agent.act({**obs, "action_mask": np.zeros(6, np.int8)})


def test_bad_reward_leaves_posterior_unchanged():
    env = LinearEnv()
    agent = make_agent("linear_ts", env, seed=0, feature_map="concat")
    obs, _ = env.reset(seed=0)
    agent.observe(obs, 0, 1.0)
    before = {
        k: (v.clone() if torch.is_tensor(v) else v) for k, v in agent.posterior.state_dict().items()
    }
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            agent.observe(obs, 1, bad)
    after = agent.posterior.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]) if torch.is_tensor(value) else value == after[key]
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        agent.observe(obs, 6, 1.0)


def test_integer_contexts_are_accepted():
    agent = LinearTS((3,), 2, feature_map="concat", seed=0)
    obs = {"context": np.array([1, 2, 3]), "candidates": np.array([[0, 1], [1, 0]])}
    action = agent.act(obs)
    agent.observe(obs, action, 1)
    assert agent.posterior.n_obs == 1


def test_batched_observations_from_a_vector_env():
    venv = gym.vector.SyncVectorEnv([LinearEnv for _ in range(4)])
    agent = make_agent("linear_ts", venv, seed=0, feature_map="concat")  # new rows every round
    obs, _ = venv.reset(seed=0)
    actions = agent.act(obs)
    assert isinstance(actions, np.ndarray) and actions.shape == (4,)
    _, rewards, *_ = venv.step(actions)
    agent.observe(obs, actions, rewards)
    assert agent.posterior.n_obs == 4
    result = run(make_agent("linear_ts", venv, seed=0, feature_map="concat"), venv, 402, seed=0)
    assert result.regrets.shape == (402,)
    early, late = result.regrets[:100].mean(), result.regrets[-100:].mean()
    assert late < 0.5 * early


def test_with_forgetting_every_arm_forgets_every_round():
    agent = LinearTS((2,), 3, feature_map="disjoint", forgetting=0.9, standardize_rewards=False)
    obs = {"context": np.ones(2, np.float32), "candidates": np.eye(3, dtype=np.float32)}
    agent.observe(obs, 1, 1.0)
    before = agent.heads[2].scaled_covariance()
    for _ in range(5):
        agent.observe(obs, 0, 1.0)  # arm 2 is never played, yet its uncertainty grows
    torch.testing.assert_close(agent.heads[2].scaled_covariance(), before / 0.9**5)
    assert agent.heads[1].n_obs == pytest.approx(0.9**5)
