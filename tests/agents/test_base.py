"""The agent protocol shared by every agent: input handling, decisions and feedback."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import Decision, make_agent
from bandexa_gym.agents.head_agent import absorb, is_power_of_two
from bandexa_gym.posterior import BayesianLinearRegression

FAST = {"train_every": 5, "optimizer_steps": 2}


def _env() -> gym.Env:
    return gym.make("Bandexa/Synthetic-v0", n_arms=4, context_dim=3, action_dim=2)


def _state(agent) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in agent.state_tensors()[1].items()}


@pytest.mark.parametrize("name", ["linear_ts", "neural_linear_ts"])
def test_a_reused_observation_dict_is_never_served_stale(name: str) -> None:
    env = _env()
    obs, _ = env.reset(seed=0)
    next_obs, *_ = env.step(0)
    holder = dict(obs)
    reused = make_agent(name, env, seed=0, **({} if name == "linear_ts" else FAST))
    fresh = make_agent(name, env, seed=0, **({} if name == "linear_ts" else FAST))
    reused.act(holder)
    holder.update(next_obs)  # same dict object, new round
    reused.observe(holder, 1, 1.0)
    fresh.act(obs)
    fresh.observe(next_obs, 1, 1.0)
    for key, value in _state(fresh).items():
        torch.testing.assert_close(_state(reused)[key], value)
    # A caller mutating its arrays in place is seen too.
    later, *_ = env.step(1)
    reused.observe(later, 2, -0.5)  # two different rewards: the head has a slope to show
    arrays = {k: np.array(v, copy=True) for k, v in next_obs.items()}
    first = reused.predict(arrays)[0].copy()
    arrays["context"][:] = -arrays["context"]
    assert not np.array_equal(reused.predict(arrays)[0], first)


def test_a_batch_with_one_bad_row_is_rejected_whole() -> None:
    env = _env()
    agent = make_agent("neural_linear_ts", env, seed=0, **FAST)
    obs, _ = env.reset(seed=0)
    for _ in range(7):
        agent.observe(obs, agent.act(obs), 0.5)
    batch = {k: np.stack([np.asarray(v)] * 3) for k, v in obs.items()}
    batch["context"][2, 0] = np.nan
    before, n = _state(agent), len(agent.buffer)
    with pytest.raises(ValueError, match="context"):
        agent.observe(batch, np.array([0, 1, 2]), np.array([1.0, 0.0, 1.0]))
    assert len(agent.buffer) == n and agent.rounds == 7
    assert all(torch.equal(v, _state(agent)[k]) for k, v in before.items())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"prior_var": -1}, "prior_var"),
        ({"noise": "banana"}, "noise"),
        ({"a0": 0}, "a0"),
        ({"exploration": "softmax"}, "exploration rule"),
        ({"feature_map": "sparse"}, "feature_map"),
    ],
)
def test_bad_settings_fail_at_construction(settings: dict, message: str) -> None:
    for name in ("linear_ts", "neural_linear_ts"):
        if name == "neural_linear_ts" and "feature_map" in settings:
            continue
        with pytest.raises(ValueError, match=message):
            make_agent(name, _env(), **settings)


def test_neural_settings_of_the_wrong_type_are_named() -> None:
    with pytest.raises(TypeError, match="train_every"):
        make_agent("neural_linear_ts", _env(), train_every="50")
    with pytest.raises(TypeError, match="unknown settings"):
        make_agent("neural_linear_ts", _env(), trainevery=50)


def test_rewards_and_inputs_of_the_wrong_kind_are_rejected() -> None:
    env = _env()
    agent = make_agent("linear_ts", env, seed=0)
    obs, _ = env.reset(seed=0)
    action = agent.act(obs)
    with pytest.raises(TypeError, match="reward"):
        agent.observe(obs, action, "0.5")
    with pytest.raises(TypeError, match="reward"):
        agent.observe(obs, action, True)
    with pytest.raises(TypeError, match="reward"):
        agent.observe(obs, action, 0.5 + 1j)
    with pytest.raises(ValueError, match="too large"):
        agent.observe(obs, action, 1e200)
    with pytest.raises(TypeError, match="context"):
        agent.act({**obs, "context": obs["context"].astype(np.complex64)})
    with pytest.raises(ValueError, match="context holds NaN"):
        agent.act({**obs, "context": np.full(3, np.nan, np.float32)})
    with pytest.raises(TypeError, match="action"):
        agent.observe(obs, True, 0.5)
    assert agent.rounds == 0


@pytest.mark.parametrize("name", ["linear_ts", "neural_linear_ts"])
def test_observe_refuses_a_masked_action(name: str) -> None:
    env = _env()
    agent = make_agent(name, env, seed=0, **({} if name == "linear_ts" else FAST))
    obs, _ = env.reset(seed=0)
    masked = {**obs, "action_mask": np.array([1, 0, 1, 1], np.int8)}
    before = _state(agent)
    with pytest.raises(ValueError, match=r"action 1 is masked \(its action_mask is 0\)"):
        agent.observe(masked, 1, 1.0)
    batch = {k: np.stack([np.asarray(v)] * 3) for k, v in masked.items()}
    with pytest.raises(ValueError, match=r"action 1 in row 2 is masked"):
        agent.observe(batch, np.array([0, 2, 1]), np.array([1.0, 0.0, 1.0]))
    assert agent.rounds == 0
    assert all(torch.equal(v, _state(agent)[k]) for k, v in before.items())
    agent.observe(masked, 2, 1.0)  # a candidate on offer is learned
    agent.observe(obs, 1, 1.0)  # without the mask, candidate 1 is on offer
    assert agent.rounds == 2


def test_decide_then_feedback_in_any_order() -> None:
    env = _env()
    agent = make_agent("linear_ts", env, seed=0, max_pending=3)
    obs, _ = env.reset(seed=0)
    decisions = [agent.decide(obs) for _ in range(3)]
    assert all(isinstance(d, Decision) and 0 < d.propensity <= 1 for d in decisions)
    assert len({d.id for d in decisions}) == 3 and agent.pending == 3
    with pytest.raises(ValueError, match="max_pending"):
        agent.decide(obs)
    before = _state(agent)
    with pytest.raises(ValueError, match="unknown or already used"):
        agent.feedback(12345, 1.0)
    with pytest.raises(ValueError, match="finite"):
        agent.feedback(decisions[0].id, float("nan"))
    assert agent.pending == 3 and all(torch.equal(v, _state(agent)[k]) for k, v in before.items())
    agent.feedback(np.array([decisions[2].id, decisions[0].id]), np.array([1.0, 0.0]))
    agent.feedback(decisions[1].id, 0.5)
    assert agent.pending == 0 and agent.rounds == 3
    with pytest.raises(ValueError, match="already used"):
        agent.feedback(decisions[1].id, 0.5)


def test_batched_decisions_carry_arrays() -> None:
    env = _env()
    agent = make_agent("neural_linear_ts", env, seed=0, **FAST)
    obs, _ = env.reset(seed=0)
    batch = {k: np.stack([np.asarray(v)] * 4) for k, v in obs.items()}
    decision = agent.decide(batch)
    assert decision.action.shape == decision.propensity.shape == decision.id.shape == (4,)
    probs = agent.action_distribution(batch)
    assert probs.shape == (4, 4) and np.allclose(probs.sum(1), 1.0)


def test_absorb_rows_equals_one_update_per_row_and_the_power_of_two_rounds() -> None:
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    r = torch.randn(5, generator=gen, dtype=torch.float64)
    batched, looped = (BayesianLinearRegression(3, intercept=True) for _ in range(2))
    absorb(batched, z[:1], r[:1])
    absorb(batched, z[1:], r[1:])
    for row, target in zip(z, r, strict=True):
        looped.update(row, target)
    mean, variance = batched.predict(z[None])
    want_mean, want_variance = looped.predict(z[None])
    torch.testing.assert_close(mean, want_mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(variance, want_variance, rtol=1e-10, atol=1e-12)
    assert [t for t in range(20) if is_power_of_two(t)] == [1, 2, 4, 8, 16]


def test_uniform_choice_draws_what_multinomial_draws():
    """The uniform draw skips ``torch.multinomial``'s input checks but keeps its stream."""
    env = gym.make("Bandexa/Synthetic-v0")
    agent = make_agent("uniform", env, seed=3)
    reference = torch.Generator().manual_seed(3)
    masks = torch.tensor([[True, False, True, True], [False, False, True, False]])
    for _ in range(50):
        want = torch.multinomial(masks.to(torch.float32), 1, generator=reference).squeeze(1)
        assert torch.equal(agent.uniform_choice(masks), want)


def test_observation_checks_hold_after_rounds_of_the_same_shapes():
    """Shapes are checked again when they change; values are checked every round."""
    env = gym.make("Bandexa/Synthetic-v0")
    agent = make_agent("uniform", env, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        action = agent.act(obs)
        next_obs, reward, *_ = env.step(action)
        agent.observe(obs, action, reward)
        obs = next_obs
    bad_mask = dict(obs, action_mask=obs["action_mask"][:-1])
    with pytest.raises(ValueError, match="action_mask must have shape"):
        agent.act(bad_mask)
    nan = dict(obs, context=np.full_like(obs["context"], np.nan))
    with pytest.raises(ValueError, match="context holds NaN"):
        agent.act(nan)
    none_offered = dict(obs, action_mask=np.zeros_like(obs["action_mask"]))
    with pytest.raises(ValueError, match="no candidate on offer"):
        agent.act(none_offered)
    wide = dict(obs, context=np.zeros(obs["context"].shape[0] + 1, np.float32))
    with pytest.raises(ValueError, match="context must have shape"):
        agent.act(wide)
    assert isinstance(agent.act(obs), int)
