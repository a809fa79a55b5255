"""neural_linear_ts with head="logistic": the Laplace logistic head on learned features."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import NeuralLinearTS, NeuralLinearTSConfig, load_agent, make_agent
from bandexa_gym.agents.loading import load_state
from bandexa_gym.bench import run
from bandexa_gym.checkpoint import CheckpointError, read_metadata
from bandexa_gym.encoders import MLPEncoder
from bandexa_gym.posterior import BayesianLinearRegression, HeadConfig, LaplaceLogisticRegression
from bandexa_gym.transfer import evolve
from bandexa_gym.utils import check_agent
from tests.agents.bernoulli_env import BernoulliEnv

FAST = {"train_every": 25, "optimizer_steps": 5, "batch_size": 16}


def _agent(env: gym.Env, seed: int = 0, **settings) -> NeuralLinearTS:
    kwargs = {**FAST, "encoder_kwargs": {"hidden": (16,)}, "feature_dim": 8, **settings}
    return make_agent("neural_linear_ts", env, seed=seed, head="logistic", **kwargs)


def _state(agent: NeuralLinearTS) -> dict:
    scalars, tensors = agent.state_tensors()
    return {
        **scalars,
        "rounds": agent.rounds,
        "buffer": len(agent.buffer),
        **{k: v.clone() for k, v in tensors.items()},
    }


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if torch.is_tensor(value):
            assert torch.equal(value, b[key]), key
        elif key == "reward_scaler":  # bookkeeping only (the logistic head does not standardize)
            assert value == pytest.approx(b[key], rel=1e-12), key
        else:
            assert value == b[key], key


def test_head_logistic_builds_the_logistic_head_with_bce_and_binary_rewards() -> None:
    env = BernoulliEnv()
    agent = _agent(env)
    assert isinstance(agent.posterior, LaplaceLogisticRegression)
    assert agent.config.head_kind == "logistic" and agent.config.loss == "bce"
    assert agent.capabilities.binary_rewards
    default = make_agent("neural_linear_ts", env, seed=0)
    assert isinstance(default.posterior, BayesianLinearRegression)
    assert default.config.head_kind == "gaussian" and default.config.loss == "mse"
    assert (
        not default.capabilities.binary_rewards and not NeuralLinearTS.capabilities.binary_rewards
    )
    direct = NeuralLinearTS(
        MLPEncoder(4, 3, feature_dim=8),
        config=NeuralLinearTSConfig(
            head=HeadConfig(prior_var=2.0), head_kind="logistic", loss="bce"
        ),
    )
    assert isinstance(direct.posterior, LaplaceLogisticRegression)
    assert direct.posterior.prior_var == 2.0


def test_settings_that_do_not_fit_the_logistic_head_are_rejected() -> None:
    env = BernoulliEnv()
    with pytest.raises(ValueError, match="loss='bce'"):
        make_agent("neural_linear_ts", env, head="logistic", loss="mse")
    with pytest.raises(ValueError, match="Gaussian head"):
        make_agent("neural_linear_ts", env, head="logistic", noise=0.5)
    with pytest.raises(ValueError, match="head must be 'gaussian', 'logistic'"):
        make_agent("neural_linear_ts", env, head="probit")
    with pytest.raises(ValueError, match="disagree"):
        make_agent("neural_linear_ts", env, head="logistic", head_kind="gaussian")
    with pytest.raises(ValueError, match="head_kind"):
        NeuralLinearTSConfig(head_kind="probit")


def test_rewards_outside_zero_one_are_rejected_and_store_nothing() -> None:
    env = BernoulliEnv()
    agent = _agent(env)
    run(agent, env, 30, seed=0)
    obs, _ = env.reset(seed=3)
    before = _state(agent)
    for bad in (0.5, 3.0, -1.0):
        with pytest.raises(ValueError, match=r"\{0, 1\}"):
            agent.observe(obs, 1, bad)
        with pytest.raises(ValueError, match=r"\{0, 1\}"):
            agent.update(
                torch.as_tensor(obs["context"]), torch.as_tensor(obs["candidates"][0]), bad
            )
    _assert_same_state(before, _state(agent))


def test_rebuild_is_the_newton_map_of_the_re_encoded_buffer() -> None:
    env = BernoulliEnv()
    agent = _agent(env, train_every=0)
    run(agent, env, 120, seed=0)
    agent.train_encoder(optimizer_steps=10)
    agent.rebuild_posterior(chunk_size=32)
    X, A, R = next(agent.buffer.iter_chunks(10_000))
    with torch.no_grad():
        Z = agent.standardize(agent.encode(X, A)).double()  # as the head sees them
    Z = torch.cat([Z, torch.ones(Z.shape[0], 1, dtype=torch.float64)], 1)  # the intercept
    # An independent Newton solve of the MAP and the Hessian there.
    w, eye = torch.zeros(9, dtype=torch.float64), torch.eye(9, dtype=torch.float64)
    r = R.double()
    for _ in range(60):
        p = torch.sigmoid(Z @ w)
        hess = Z.T @ (Z * (p * (1 - p)).unsqueeze(1)) + eye
        w = w - torch.linalg.solve(hess, Z.T @ (p - r) + w)
    p = torch.sigmoid(Z @ w)
    hess = Z.T @ (Z * (p * (1 - p)).unsqueeze(1)) + eye
    torch.testing.assert_close(agent.posterior.mean, w, rtol=0, atol=1e-6)
    torch.testing.assert_close(agent.posterior.precision(), hess, rtol=1e-6, atol=1e-6)
    assert agent.posterior.n_obs == 120


def test_learns_a_bernoulli_problem_and_beats_uniform() -> None:
    regret = {}
    for name in ("neural_linear_ts", "uniform"):
        env = BernoulliEnv(one_hot=True)
        extra = {"head": "logistic"} if name == "neural_linear_ts" else {}
        agent = make_agent(name, env, seed=0, **extra)
        regret[name] = run(agent, env, 500, seed=0).cumulative_regret[-1]
    assert regret["neural_linear_ts"] < 0.5 * regret["uniform"], regret


@pytest.mark.parametrize("one_hot", [False, True])
def test_batched_observe_equals_the_loop_with_training_inside_batches(one_hot: bool) -> None:
    # Candidates drawn afresh every round: one shared head; one-hot arms: one head per arm.
    venv = gym.vector.SyncVectorEnv([lambda: BernoulliEnv(one_hot=one_hot)] * 4)
    arm_heads = "per_arm" if one_hot else "shared"
    batched, looped = (_agent(venv, seed=2, train_every=10, arm_heads=arm_heads) for _ in range(2))
    obs, _ = venv.reset(seed=0)
    for _ in range(8):  # 32 rounds; trainings after rounds 10, 20 and 30 fall inside batches
        actions = batched.act(obs)
        rows = [{k: v[i] for k, v in obs.items()} for i in range(4)]
        assert [looped.act(row) for row in rows] == actions.tolist()
        next_obs, rewards, *_ = venv.step(actions)
        batched.observe(obs, actions, rewards)
        for row, action, reward in zip(rows, actions.tolist(), rewards.tolist(), strict=True):
            looped.observe(row, action, reward)
        obs = next_obs
    assert batched.trainings == looped.trainings == 3
    # The encoder sees the same buffer; the head's online steps read features that the
    # float32 encoder computes in a batch of 4 or of 1, equal to round-off (as for the
    # Gaussian head).
    a, b = _state(batched), _state(looped)
    heads = [k for k in a if k.startswith("heads.")]
    assert len(heads) == (2 * 5 if one_hot else 2)
    for key in heads:
        torch.testing.assert_close(a.pop(key), b.pop(key), rtol=0, atol=1e-6)
    _assert_same_state(a, b)


def test_checkpoint_records_the_head_and_round_trips(tmp_path: Path) -> None:
    env = BernoulliEnv()
    agent = _agent(env)
    run(agent, env, 60, seed=0)
    path = agent.save(tmp_path / "logistic.safetensors")
    assert read_metadata(path)["spec"]["config"]["head_kind"] == "logistic"
    again = load_agent(path, expected=agent)
    assert isinstance(again.posterior, LaplaceLogisticRegression)
    assert again.capabilities.binary_rewards
    obs, _ = env.reset(seed=4)
    np.testing.assert_array_equal(again.predict(obs)[0], agent.predict(obs)[0])
    assert [again.act(obs) for _ in range(10)] == [agent.act(obs) for _ in range(10)]

    gaussian = make_agent(
        "neural_linear_ts", env, seed=0, feature_dim=8, encoder_kwargs={"hidden": (16,)}
    )
    before = gaussian.posterior.state_dict()
    with pytest.raises(CheckpointError, match="head_kind"):
        load_state(gaussian, path)
    assert torch.equal(gaussian.posterior.state_dict()["mean"], before["mean"])


def test_evolve_keeps_the_logistic_head_and_refuses_another_kind() -> None:
    env = BernoulliEnv()
    trained = _agent(env)
    run(trained, env, 60, seed=0)
    template = evolve(trained, _agent(env, seed=1))
    torch.testing.assert_close(template.posterior.mean, trained.posterior.mean)
    gaussian = make_agent("neural_linear_ts", env, feature_dim=8, encoder_kwargs={"hidden": (16,)})
    with pytest.raises(ValueError, match="head_kind differs"):
        evolve(trained, gaussian)
    with pytest.raises(ValueError, match="prior_var differs"):
        evolve(trained, _agent(env, prior_var=3.0))


def test_check_agent_passes_with_the_logistic_head() -> None:
    env = gym.make("Bandexa/Synthetic-v0", n_arms=5, context_dim=4, action_dim=3)
    fast = {"train_every": 8, "optimizer_steps": 3, "warmup_random": 4}
    factory = lambda seed: make_agent(  # noqa: E731
        "neural_linear_ts", env, seed=seed, head="logistic", **fast
    )
    assert check_agent(factory, env) == []


def test_config_defaults_follow_the_head_kind_and_forgetting_weights_rebuilds() -> None:
    logistic, gaussian = NeuralLinearTSConfig(head_kind="logistic"), NeuralLinearTSConfig()
    assert (logistic.loss, logistic.standardize_rewards) == ("bce", False)
    assert (gaussian.loss, gaussian.standardize_rewards) == ("mse", True)
    with pytest.raises(ValueError, match="standardize"):
        NeuralLinearTSConfig(head_kind="logistic", standardize_rewards=True)
    env = BernoulliEnv()
    agent = _agent(env, train_every=0, forgetting=0.97)
    assert agent.posterior.config.forgetting == 0.97
    run(agent, env, 50, seed=0)
    agent.rebuild_posterior()
    X, A, R = next(agent.buffer.iter_chunks(1000))
    with torch.no_grad():
        Z = agent.standardize(agent.encode(X, A))  # as the head sees them
    fresh = LaplaceLogisticRegression(8, intercept=True)
    fresh.rebuild([(Z, R.double(), 0.97 ** torch.arange(49, -1, -1, dtype=torch.float64))])
    torch.testing.assert_close(agent.posterior.mean, fresh.mean, rtol=0, atol=1e-8)
    windowed = _agent(env, train_every=0, window=20)
    run(windowed, env, 50, seed=0)
    windowed.rebuild_posterior()
    assert windowed.posterior.n_obs == 20


def test_per_arm_heads_are_logistic_and_rebuild_from_their_arms_rows() -> None:
    env = BernoulliEnv(one_hot=True)
    agent = _agent(env, train_every=0)
    run(agent, env, 80, seed=0)
    assert agent.arm_mode == "per_arm" and len(agent.heads) == 5
    assert all(isinstance(h, LaplaceLogisticRegression) for h in agent.heads)
    agent.train_encoder(optimizer_steps=5)
    agent.rebuild_posterior()
    X, A, R = next(agent.buffer.iter_chunks(1000))
    with torch.no_grad():
        Z = agent.standardize(agent.encode(X, A))  # as the head sees them
    for arm, head in enumerate(agent.heads):
        rows = A.argmax(-1) == arm
        fresh = LaplaceLogisticRegression(8, intercept=True)
        fresh.rebuild([(Z[rows], R[rows].double())])
        torch.testing.assert_close(head.mean, fresh.mean, rtol=0, atol=1e-8)
        assert head.n_obs == int(rows.sum())
