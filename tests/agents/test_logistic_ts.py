"""logistic_ts: Laplace logistic Thompson sampling on fixed features."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import LogisticTS, load_agent, load_state, make_agent
from bandexa_gym.bench import run
from bandexa_gym.checkpoint import CheckpointError
from bandexa_gym.posterior import LaplaceLogisticRegression
from bandexa_gym.transfer import evolve
from bandexa_gym.utils import check_agent
from tests.agents.bernoulli_env import BernoulliEnv


def _state(agent: LogisticTS) -> dict:
    scalars, tensors = agent.state_tensors()
    return {**scalars, "rounds": agent.rounds, **{k: v.clone() for k, v in tensors.items()}}


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if torch.is_tensor(value):
            assert torch.equal(value, b[key]), key
        elif key == "reward_scaler":  # bookkeeping only (logistic_ts does not standardize)
            assert value == pytest.approx(b[key], rel=1e-12), key
        else:
            assert value == b[key], key


def _play(agent: LogisticTS, env: gym.Env, rounds: int, seed: int = 0) -> list[int]:
    obs, _ = env.reset(seed=seed)
    actions = []
    for _ in range(rounds):
        action = agent.act(obs)
        next_obs, reward, *_ = env.step(action)
        agent.observe(obs, action, reward)
        obs, actions = next_obs, actions + [action]
    return actions


@pytest.mark.parametrize("one_hot", [False, True])
def test_learns_a_logistic_problem_and_beats_uniform(one_hot: bool) -> None:
    regret = {}
    for name in ("logistic_ts", "uniform"):
        env = BernoulliEnv(one_hot=one_hot)
        agent = make_agent(name, env, seed=0)
        regret[name] = run(agent, env, 600, seed=1).cumulative_regret[-1]
        if name == "logistic_ts":
            # Changing candidate rows: per-arm heads at first, then one concat head refit
            # from the store once more than 64 distinct rows (MAX_FIXED_ARMS) were seen.
            assert agent.feature_map == ("disjoint" if one_hot else "concat")
            assert agent.refits == 3  # after rounds 100, 200 and 400
    assert regret["logistic_ts"] < 0.5 * regret["uniform"], regret


def test_is_registered_with_binary_rewards_and_the_logistic_head() -> None:
    env = BernoulliEnv()
    agent = make_agent("logistic_ts", env, seed=0, prior_var=2.0, feature_map="concat")
    assert isinstance(agent, LogisticTS) and agent.name == "logistic_ts"
    assert agent.capabilities.binary_rewards
    _play(agent, env, 3)
    assert isinstance(agent.posterior, LaplaceLogisticRegression)
    assert agent.posterior.prior_var == 2.0 and agent.posterior.dim == 4 + 3  # [x; a]
    assert agent.posterior.state_dim == 4 + 3 + 1  # and the intercept
    assert agent.head_config.sample_scale == 0.5 and agent.head_config.intercept
    with pytest.raises(TypeError, match="Gaussian head"):
        make_agent("logistic_ts", env, noise=0.5)
    with pytest.raises(ValueError, match="refit_growth"):
        make_agent("logistic_ts", env, refit_growth=0.5)
    with pytest.raises(TypeError, match="refit_every"):
        make_agent("logistic_ts", env, refit_every=1.5)


def test_rewards_outside_zero_one_are_rejected_and_leave_the_agent_unchanged() -> None:
    env = BernoulliEnv()
    agent = make_agent("logistic_ts", env, seed=0)
    _play(agent, env, 30)
    obs, _ = env.reset(seed=5)
    before = _state(agent)
    for bad in (0.5, 2.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"\{0, 1\}|finite"):
            agent.observe(obs, 0, bad)
    venv = gym.vector.SyncVectorEnv([BernoulliEnv for _ in range(3)])
    vobs, _ = venv.reset(seed=0)
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        agent.observe(vobs, np.array([0, 1, 2]), np.array([1.0, 0.3, 0.0]))
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        agent.observe(obs, 7, 1.0)
    decision = agent.decide(obs)
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        agent.feedback(decision.id, 0.25)
    _assert_same_state(before, _state(agent))
    agent.feedback(decision.id, 1.0)  # the decision was not used up by the rejected reward
    assert agent.rounds == before["rounds"] + 1


def test_refits_follow_the_schedule_and_give_the_map_of_the_stored_rounds() -> None:
    env = BernoulliEnv(one_hot=True)
    agent = make_agent("logistic_ts", env, seed=0, refit_every=50, refit_growth=1.0)
    _play(agent, env, 149)
    assert agent.refits == 2 and agent.next_refit == 150
    _play(agent, env, 1, seed=1)
    assert agent.refits == 3 and agent.next_refit == 200
    X, A, R = next(agent.store.iter_chunks(10_000))
    assert X.shape == (150, 4) and X.dtype == torch.float64
    for arm, head in enumerate(agent.heads):
        rows = A.argmax(-1) == arm
        fresh = LaplaceLogisticRegression(4, intercept=True)
        fresh.rebuild([(X[rows], R[rows].double())])
        torch.testing.assert_close(head.mean, fresh.mean, rtol=0, atol=1e-8)
        torch.testing.assert_close(head.covariance(), fresh.covariance(), rtol=1e-6, atol=1e-9)
        assert head.n_obs == int(rows.sum())

    geometric = make_agent("logistic_ts", env, seed=0, refit_every=10, refit_growth=2.0)
    _play(geometric, env, 100)
    assert geometric.refits == 4 and geometric.next_refit == 160  # 10, 20, 40, 80


def test_store_keeps_the_newest_rounds_and_refits_read_them() -> None:
    env = BernoulliEnv()
    agent = make_agent(
        "logistic_ts", env, seed=0, store_capacity=40, refit_every=60, feature_map="concat"
    )
    _play(agent, env, 60)
    X, A, R = next(agent.store.iter_chunks(1000))
    assert len(agent.store) == 40 and agent.posterior.n_obs == 40
    fresh = LaplaceLogisticRegression(agent.posterior.dim, intercept=True)
    fresh.rebuild([(torch.cat([X, A.double()], 1), R.double())])
    torch.testing.assert_close(agent.posterior.mean, fresh.mean, rtol=0, atol=1e-8)


@pytest.mark.parametrize("one_hot", [False, True])
def test_batched_act_and_observe_equal_the_loop_with_refits_inside_batches(
    one_hot: bool,
) -> None:
    venv = gym.vector.SyncVectorEnv([lambda: BernoulliEnv(one_hot=one_hot)] * 4)
    fmap = "disjoint" if one_hot else "concat"
    settings = {"refit_every": 10, "refit_growth": 1.0, "feature_map": fmap}
    batched = make_agent("logistic_ts", venv, seed=3, **settings)
    looped = make_agent("logistic_ts", venv, seed=3, **settings)
    obs, _ = venv.reset(seed=0)
    for _ in range(15):  # 60 rounds: refits fall inside batches (after rounds 10, 30, ...)
        actions = batched.act(obs)
        rows = [{k: v[i] for k, v in obs.items()} for i in range(4)]
        assert [looped.act(row) for row in rows] == actions.tolist()
        next_obs, rewards, *_ = venv.step(actions)
        batched.observe(obs, actions, rewards)
        for row, action, reward in zip(rows, actions.tolist(), rewards.tolist(), strict=True):
            looped.observe(row, action, reward)
        obs = next_obs
    assert batched.refits == looped.refits == 6
    _assert_same_state(_state(batched), _state(looped))


def test_mask_is_honoured_and_same_seed_gives_same_actions() -> None:
    env = BernoulliEnv()
    agent = make_agent("logistic_ts", env, seed=0)
    obs, _ = env.reset(seed=0)
    mask = np.zeros(5, np.int8)
    mask[3] = 1
    for _ in range(10):
        assert agent.act({**obs, "action_mask": mask}) == 3
    probs = agent.action_distribution({**obs, "action_mask": mask})
    assert probs[3] == 1.0 and probs.sum() == 1.0
    first = _play(make_agent("logistic_ts", env, seed=7), BernoulliEnv(), 120)
    second = _play(make_agent("logistic_ts", env, seed=7), BernoulliEnv(), 120)
    assert first == second


@pytest.mark.parametrize("one_hot", [False, True])
def test_save_and_load_give_identical_scores_actions_and_later_refits(
    one_hot: bool, tmp_path: Path
) -> None:
    env = BernoulliEnv(one_hot=one_hot)
    agent = make_agent("logistic_ts", env, seed=0, refit_every=30, refit_growth=1.0)
    _play(agent, env, 45)
    path = agent.save(tmp_path / "agent.safetensors")
    again = load_agent(path)
    assert isinstance(again, LogisticTS) and again.name == "logistic_ts"
    _assert_same_state(_state(agent), _state(again))
    obs, _ = env.reset(seed=9)
    np.testing.assert_array_equal(agent.predict(obs)[0], again.predict(obs)[0])
    # Acting and learning on: the same actions, and the refit after round 60 agrees.
    assert _play(agent, BernoulliEnv(one_hot=one_hot), 30, seed=2) == _play(
        again, BernoulliEnv(one_hot=one_hot), 30, seed=2
    )
    assert agent.refits == again.refits == 2
    _assert_same_state(_state(agent), _state(again))

    # Its own schedule and sampling scale; the learned state is the checkpoint's.
    target = make_agent("logistic_ts", env, seed=1, refit_every=500, sample_scale=1.0)
    load_state(target, path)
    assert target.next_refit == 60 and target.refit_every == 500
    assert target.head_config.sample_scale == 1.0
    np.testing.assert_array_equal(target.predict(obs)[0], load_agent(path).predict(obs)[0])
    other = make_agent("logistic_ts", env, seed=0, intercept=False)
    with pytest.raises(CheckpointError, match="intercept"):
        load_state(other, path)


def test_fresh_and_unresolved_agents_round_trip(tmp_path: Path) -> None:
    env = BernoulliEnv()
    agent = make_agent("logistic_ts", env, seed=0)
    again = load_agent(agent.save(tmp_path / "fresh.safetensors"))
    assert again.feature_map == "auto" and len(again.store) == 0
    obs, _ = env.reset(seed=0)
    assert agent.act(obs) == again.act(obs)


def test_evolve_refits_the_padded_store_under_the_template(tmp_path: Path) -> None:
    small = BernoulliEnv(one_hot=True, context_dim=3, n_arms=4)
    trained = make_agent("logistic_ts", small, seed=0, refit_every=0)
    _play(trained, small, 80)
    trained.refit()  # its heads: the Laplace posterior of its store
    same = evolve(trained, make_agent("logistic_ts", small, seed=1))
    for old, new in zip(trained.heads, same.heads, strict=True):
        torch.testing.assert_close(new.mean, old.mean, rtol=0, atol=1e-8)
    grown = evolve(
        trained, make_agent("logistic_ts", BernoulliEnv(one_hot=True, context_dim=5, n_arms=6))
    )
    assert grown.rounds == 80 and len(grown.heads) == 6
    obs = {
        "context": np.array([0.5, -1.0, 0.2, 0.0, 0.0], np.float32),
        "candidates": np.eye(6, dtype=np.float32),
    }
    old_obs = {"context": obs["context"][:3], "candidates": np.eye(4, dtype=np.float32)}
    np.testing.assert_allclose(grown.predict(obs)[0][:4], trained.predict(old_obs)[0], atol=1e-8)
    assert grown.predict(obs)[0][4:].tolist() == [0.0, 0.0]  # new arms at the prior


def test_reset_forgets_the_store_and_schedule() -> None:
    env = BernoulliEnv()
    agent = make_agent("logistic_ts", env, seed=2)
    first = _play(agent, env, 120)
    agent.reset()
    assert len(agent.store) == 0 and agent.refits == 0 and agent.next_refit == 100
    assert _play(agent, env, 120) == first


@pytest.mark.parametrize("exploration", ["thompson", "ucb"])
def test_check_agent_passes_with_refits_inside_its_drive(exploration: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    for env in (
        gym.make("Bandexa/Synthetic-v0", n_arms=5, context_dim=4, action_dim=3),
        gym.make("Bandexa/Classification-v0", X=X, y=y),  # one-hot arms: per-arm heads
    ):
        assert (
            check_agent(
                lambda seed, env=env: make_agent(
                    "logistic_ts", env, seed=seed, refit_every=8, exploration=exploration
                ),
                env,
            )
            == []
        )


def test_forgetting_discounts_every_head_and_weights_refits_by_age() -> None:
    env = BernoulliEnv(one_hot=True)
    agent = make_agent("logistic_ts", env, seed=0, forgetting=0.98, refit_every=60)
    _play(agent, env, 60)
    assert agent.refits == 1
    X, A, R = next(agent.store.iter_chunks(1000))
    ages = torch.arange(59, -1, -1, dtype=torch.float64)
    for arm, head in enumerate(agent.heads):
        rows = A.argmax(-1) == arm
        fresh = LaplaceLogisticRegression(4, intercept=True)
        fresh.rebuild([(X[rows], R[rows].double(), 0.98 ** ages[rows])])
        torch.testing.assert_close(head.mean, fresh.mean, rtol=0, atol=1e-8)
        assert head.n_obs == pytest.approx(float((0.98 ** ages[rows]).sum()))
    # Between refits every head forgets each round, the unplayed ones too.
    before = [head.covariance() for head in agent.heads]
    obs, _ = env.reset(seed=3)
    agent.observe(obs, 0, 1.0)
    for arm in range(1, 5):
        torch.testing.assert_close(agent.heads[arm].covariance(), before[arm] / 0.98)
    assert (
        check_agent(
            lambda seed: make_agent("logistic_ts", env, seed=seed, forgetting=0.95, refit_every=8),
            env,
        )
        == []
    )
    with pytest.raises(ValueError, match="standardize_rewards"):
        make_agent("logistic_ts", env, standardize_rewards=True)


def test_a_fixed_set_of_feature_rows_gets_per_arm_heads_refit_from_the_store() -> None:
    env = BernoulliEnv(fixed_arms=True)
    agent = make_agent("logistic_ts", env, seed=0, refit_every=50)
    uniform = run(make_agent("uniform", env, seed=0), BernoulliEnv(fixed_arms=True), 400, seed=1)
    result = run(agent, env, 400, seed=1)
    assert agent.feature_map == "per_arm" and len(agent.heads) == 5 and agent.refits == 4
    assert result.cumulative_regret[-1] < 0.5 * uniform.cumulative_regret[-1]
    agent.refit()
    X, A, R = next(agent.store.iter_chunks(1000))
    arms = agent.registry.arms(A)  # the arms as the agent named them (first seen, first)
    for arm, head in enumerate(agent.heads):
        fresh = LaplaceLogisticRegression(4, intercept=True)
        fresh.rebuild([(X[arms == arm], R[arms == arm].double())])
        torch.testing.assert_close(head.mean, fresh.mean, rtol=0, atol=1e-8)
    assert (
        check_agent(lambda seed: make_agent("logistic_ts", env, seed=seed, refit_every=8), env)
        == []
    )


def test_a_switch_to_concat_refits_the_new_head_from_the_store() -> None:
    env = BernoulliEnv()  # candidates drawn afresh every round: not a fixed arm set
    agent = make_agent("logistic_ts", env, seed=0)
    obs, _ = env.reset(seed=0)
    with pytest.warns(RuntimeWarning, match="switching to one head"):
        while True:
            action = agent.act(obs)
            if agent.feature_map == "concat":
                break
            next_obs, reward, *_ = env.step(action)
            agent.observe(obs, action, reward)
            obs = next_obs
    assert agent.feature_map == "concat" and len(agent.store) == agent.rounds > 0
    X, A, R = next(agent.store.iter_chunks(1000))
    fresh = LaplaceLogisticRegression(4 + 3, intercept=True)
    fresh.rebuild([(torch.cat([X, A.double()], 1), R.double())])
    torch.testing.assert_close(agent.posterior.mean, fresh.mean, rtol=0, atol=1e-8)
    assert agent.posterior.n_obs == agent.rounds


def test_action_distribution_matches_the_frequency_of_thompson_choices() -> None:
    env = BernoulliEnv(one_hot=True)
    agent = make_agent("logistic_ts", env, seed=0, propensity_draws=20_000)
    _play(agent, env, 60)
    obs, _ = env.reset(seed=11)
    probs = agent.action_distribution(obs)  # per-arm heads: exact marginal score draws
    counts = np.bincount([agent.act(obs) for _ in range(4000)], minlength=5) / 4000
    np.testing.assert_allclose(probs, counts, atol=0.03)
    assert probs.sum() == pytest.approx(1.0)
