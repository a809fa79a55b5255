"""SyntheticBanditEnv: oracle, nonlinearity, observed features, arms, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from bandexa_gym.envs import SyntheticBanditEnv


def _mu(env: SyntheticBanditEnv, context: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """The documented expected reward, written out independently of the env's code."""
    m = env.reward_model
    assert m is not None
    x, a = context.astype(np.float64), actions.astype(np.float64)
    total = np.zeros(len(a))
    for k in range(m.mix.size):
        prod = (m.context_proj[k] @ x) * (a @ m.action_proj[k])
        g = 1.6 * np.tanh(prod) if env.nonlinearity == "tanh" else prod
        total += m.mix[k] * g
    return 0.3 * (a @ m.theta) + m.interaction_scale * total


@pytest.mark.parametrize("nonlinearity", ["tanh", None])
def test_oracle_matches_documented_reward(nonlinearity: str | None) -> None:
    env = SyntheticBanditEnv(n_arms=6, context_dim=5, action_dim=4, nonlinearity=nonlinearity)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(1)
    noise = []
    for _ in range(400):
        mu = _mu(env, obs["context"], obs["candidates"])
        action = int(rng.integers(6))
        obs, reward, _, _, info = env.step(action)
        assert info["expected_reward"] == pytest.approx(mu[action], abs=1e-9)
        assert info["best_expected_reward"] == pytest.approx(mu.max(), abs=1e-9)
        assert info["optimal_action"] == int(np.argmax(mu))
        assert info["regret"] == pytest.approx(mu.max() - mu[action], abs=1e-9)
        assert info["regret"] >= 0
        noise.append(reward - mu[action])
    assert np.std(noise) == pytest.approx(0.1, rel=0.15)
    assert abs(np.mean(noise)) < 0.03


def _dataset(env: SyntheticBanditEnv, seed: int, rounds: int) -> tuple[np.ndarray, np.ndarray]:
    obs, _ = env.reset(seed=seed)
    rows, targets = [], []
    for _ in range(rounds):
        k = obs["candidates"].shape[0]
        rows.append(np.hstack([np.repeat(obs["context"][None], k, 0), obs["candidates"]]))
        mu = _mu(env, obs["context"], obs["candidates"])
        targets.append(mu)
        obs, *_ = env.step(0)
    return np.vstack(rows), np.concatenate(targets)


def _r2(pred: np.ndarray, y: np.ndarray) -> float:
    return float(1 - np.mean((pred - y) ** 2) / np.var(y))


def test_reward_is_nonlinear_linear_fails_mlp_fits() -> None:
    env = SyntheticBanditEnv()
    x, y = _dataset(env, seed=0, rounds=400)
    x_tr, y_tr, x_te, y_te = x[:3000], y[:3000], x[3000:], y[3000:]
    design = np.hstack([x_tr, np.ones((len(x_tr), 1))])
    w = np.linalg.lstsq(design, y_tr, rcond=None)[0]
    linear_r2 = _r2(np.hstack([x_te, np.ones((len(x_te), 1))]) @ w, y_te)
    assert linear_r2 < 0.5

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt = torch.tensor(x_tr, dtype=torch.float32)
    yt = torch.tensor(y_tr, dtype=torch.float32)
    for _ in range(250):
        opt.zero_grad()
        loss = ((net(xt)[:, 0] - yt) ** 2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        mlp_r2 = _r2(net(torch.tensor(x_te, dtype=torch.float32))[:, 0].numpy(), y_te)
    assert mlp_r2 > 0.9


def test_bilinear_variant_is_exactly_quadratic() -> None:
    env = SyntheticBanditEnv(n_arms=5, context_dim=3, action_dim=3, nonlinearity=None)
    x, y = _dataset(env, seed=0, rounds=100)
    ctx, act = x[:, :3], x[:, 3:]
    cross = (ctx[:, :, None] * act[:, None, :]).reshape(len(x), -1)
    design = np.hstack([act, cross, np.ones((len(x), 1))])
    w = np.linalg.lstsq(design, y, rcond=None)[0]
    assert _r2(design @ w, y) > 0.9999


def test_best_arm_depends_on_context_and_is_distinguishable() -> None:
    env = SyntheticBanditEnv()
    obs, _ = env.reset(seed=0)
    optimal, spread, gap = [], [], []
    for _ in range(1000):
        mu = env._round.expected_rewards  # checked against _mu in the oracle test
        top2 = np.sort(mu)[-2:]
        optimal.append(int(np.argmax(mu)))
        spread.append(mu.std())
        gap.append(top2[1] - top2[0])
        obs, *_ = env.step(0)
    assert np.bincount(optimal).max() / len(optimal) < 0.6  # no fixed arm is usually best
    assert 0.3 < np.mean(spread) < 2.0
    assert np.mean(gap) > 0.15

    flat = SyntheticBanditEnv(interaction_scale=0.0)
    flat.reset(seed=0)
    best = {int(flat.step(0)[4]["optimal_action"]) for _ in range(50)}
    assert len(best) == 1  # without interactions one arm is always best


def test_observed_context_dim_reveals_a_prefix_of_the_same_model() -> None:
    small = SyntheticBanditEnv(observed_context_dim=8)
    full = SyntheticBanditEnv()
    assert small.observation_space["context"].shape == (8,)
    obs_s, _ = small.reset(seed=5)
    obs_f, _ = full.reset(seed=5)
    for t in range(30):
        np.testing.assert_array_equal(obs_s["context"], obs_f["context"][:8])
        np.testing.assert_array_equal(obs_s["candidates"], obs_f["candidates"])
        obs_s, r_s, _, _, info_s = small.step(t % 10)
        obs_f, r_f, _, _, info_f = full.step(t % 10)
        assert r_s == r_f and info_s.keys() == info_f.keys()
        for key in info_s:
            np.testing.assert_array_equal(info_s[key], info_f[key])


def test_more_arms_extend_the_same_arms() -> None:
    ten, eleven = SyntheticBanditEnv(n_arms=10), SyntheticBanditEnv(n_arms=11)
    obs10, _ = ten.reset(seed=2)
    obs11, _ = eleven.reset(seed=2)
    assert obs11["candidates"].shape == (11, 10)
    for _ in range(5):
        np.testing.assert_array_equal(obs11["candidates"][:10], obs10["candidates"])
        np.testing.assert_array_equal(obs11["context"], obs10["context"])
        np.testing.assert_allclose(
            eleven._round.expected_rewards[:10], ten._round.expected_rewards, atol=1e-12
        )
        obs10, r10, *_ = ten.step(3)
        obs11, r11, *_ = eleven.step(3)
        assert r10 == pytest.approx(r11, abs=1e-12)


def test_fixed_vs_resampled_actions_and_unseeded_reset_keeps_problem() -> None:
    fixed = SyntheticBanditEnv()
    obs0, _ = fixed.reset(seed=0)
    obs1, *_ = fixed.step(0)
    np.testing.assert_array_equal(obs0["candidates"], obs1["candidates"])
    theta = fixed.reward_model.theta
    obs2, _ = fixed.reset()  # unseeded: same arms and reward model, new round
    np.testing.assert_array_equal(obs2["candidates"], obs0["candidates"])
    assert fixed.reward_model.theta is theta
    assert not np.array_equal(obs2["context"], obs0["context"])
    obs3, _ = fixed.reset(seed=1)
    assert not np.array_equal(obs3["candidates"], obs0["candidates"])

    moving = SyntheticBanditEnv(resample_actions=True)
    obs0, _ = moving.reset(seed=0)
    obs1, *_ = moving.step(0)
    assert not np.array_equal(obs0["candidates"], obs1["candidates"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_arms": 0}, "n_arms must be an integer >= 1"),
        ({"n_arms": 2.5}, "n_arms must be an integer >= 1"),
        ({"context_dim": 0}, "context_dim"),
        ({"action_dim": -1}, "action_dim"),
        ({"observed_context_dim": 11}, r"observed_context_dim must be an integer in \[1, "),
        ({"observed_context_dim": 0}, "observed_context_dim"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"interaction_scale": -1.0}, "interaction_scale"),
        ({"nonlinearity": "relu"}, "nonlinearity"),
    ],
)
def test_invalid_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gym.make("Bandexa/Synthetic-v0", **kwargs)


@pytest.mark.parametrize("action", [10, -1, 2.0, "1"])
def test_action_outside_discrete_is_value_error(action: object) -> None:
    env = SyntheticBanditEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        env.step(action)
    obs, *_ = env.step(np.int64(9))  # numpy integers are fine
    assert obs["candidates"].shape == (10, 10)


def test_problem_seed_shares_the_bandit_across_vector_sub_envs() -> None:
    vec = gym.vector.SyncVectorEnv(
        [lambda: gym.make("Bandexa/Synthetic-v0", problem_seed=3, resample_actions=False)] * 2
    )
    obs, _ = vec.reset(seed=0)
    np.testing.assert_array_equal(obs["candidates"][0], obs["candidates"][1])
    assert not np.array_equal(obs["context"][0], obs["context"][1])
    m0, m1 = (e.unwrapped.reward_model for e in vec.envs)
    np.testing.assert_array_equal(m0.context_proj, m1.context_proj)

    free = gym.vector.SyncVectorEnv([lambda: gym.make("Bandexa/Synthetic-v0")] * 2)
    obs, _ = free.reset(seed=0)
    assert not np.array_equal(obs["candidates"][0], obs["candidates"][1])

    env = SyntheticBanditEnv(problem_seed=3, resample_actions=True)
    a0, _ = env.reset(seed=0)
    theta = env.reward_model.theta.copy()
    a1, _ = env.reset(seed=1)  # new rounds and arms, same reward model
    np.testing.assert_array_equal(env.reward_model.theta, theta)
    assert not np.array_equal(a0["candidates"], a1["candidates"])
    b0, _ = env.reset(seed=0)
    np.testing.assert_array_equal(b0["candidates"], a0["candidates"])  # still reproducible
    with pytest.raises(ValueError, match="problem_seed"):
        SyntheticBanditEnv(problem_seed=-1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resample_actions": "no"}, "resample_actions must be True or False"),
        ({"resample_actions": 0}, "resample_actions must be True or False"),
        ({"noise_std": "0.1"}, "noise_std must be a real number"),
        ({"noise_std": None}, "noise_std must be a real number"),
        ({"interaction_scale": "1.5"}, "interaction_scale must be a real number"),
    ],
)
def test_wrong_types_are_type_errors_naming_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        gym.make("Bandexa/Synthetic-v0", **kwargs)
    # numpy scalars are numbers and bools
    env = SyntheticBanditEnv(noise_std=np.float32(0.2), resample_actions=np.bool_(True))
    assert env.noise_std == pytest.approx(0.2) and env.resample_actions is True
