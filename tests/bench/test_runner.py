"""The runner: delayed and batched feedback, and logs of every round."""

from __future__ import annotations

import heapq

import gymnasium as gym
import numpy as np
import pytest
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import LinearTS, make_agent
from bandexa_gym.bench.delays import DelayModel, parse_delay
from bandexa_gym.bench.runner import DELAY_STREAM, run, stream_seed

NEURAL = {"train_every": 10, "optimizer_steps": 3}


def _env() -> gym.Env:
    return gym.make("Bandexa/Synthetic-v0", n_arms=5, context_dim=4, action_dim=3)


def _agent(name: str, env: gym.Env):
    return make_agent(name, env, seed=3, **(NEURAL if name.startswith("neural") else {}))


def _state(agent) -> dict[str, torch.Tensor]:
    return agent.state_tensors()[1]


@pytest.mark.parametrize("name", ["linear_ts", "neural_linear_ts"])
@pytest.mark.parametrize("options", [{"delay": "fixed:0"}, {"feedback_batch": 1}])
def test_no_delay_and_batches_of_one_equal_the_ordinary_loop(name: str, options: dict) -> None:
    env = _env()
    plain, other = _agent(name, env), _agent(name, env)
    a = run(plain, env, 60, seed=1)
    b = run(other, _env(), 60, seed=1, **options)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    np.testing.assert_array_equal(a.regrets, b.regrets)
    for key, value in _state(plain).items():
        assert torch.equal(value, _state(other)[key]), key


class _Recorder(LinearTS):
    """Records the order in which decisions are fed back."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fed: list[int] = []

    def feedback(self, decision_id, reward) -> None:
        super().feedback(decision_id, reward)
        self.fed.extend(np.atleast_1d(decision_id).tolist())


@pytest.mark.parametrize("delay", ["geometric:7", "uniform:0:20", "fixed:5"])
def test_every_decision_is_fed_back_once_in_release_order(delay: str) -> None:
    env = _env()
    agent = _Recorder((4,), 3, seed=0)
    horizon = 120
    run(agent, env, horizon, seed=4, delay=delay)
    assert sorted(agent.fed) == list(range(horizon)) and agent.pending == 0
    assert agent.rounds == horizon
    # The order the delay model releases them: by release round, then by decision round.
    # Drawn from the run seed's delay stream, not the env's default_rng(4).
    rng = np.random.default_rng(stream_seed(4, DELAY_STREAM))
    draws = parse_delay(delay).draw(rng, size=horizon)
    heap = [(t + int(d) + 1, t) for t, d in enumerate(draws)]
    heapq.heapify(heap)
    assert agent.fed == [heapq.heappop(heap)[1] for _ in range(horizon)]


def test_delayed_feedback_costs_regret_and_batches_learn_everything() -> None:
    regret = {}
    for label, options in [("now", {}), ("late", {"delay": "fixed:300"})]:
        env = gym.make("Bandexa/Synthetic-v0", interaction_scale=0.0)
        regret[label] = run(make_agent("linear_ts", env, seed=0), env, 600, seed=0, **options)
    assert regret["late"].regrets.sum() > regret["now"].regrets.sum()
    env = _env()
    batched = make_agent("linear_ts", env, seed=0)
    run(batched, env, 95, seed=0, feedback_batch=20)  # 4 full batches and a last one of 15
    assert batched.rounds == 95 and sum(head.n_obs for head in batched.heads) == 95


def test_bad_feedback_options_are_refused() -> None:
    env = _env()
    agent = make_agent("linear_ts", env, seed=0)
    for options, message in [
        ({"delay": "soon"}, "fixed:N"),
        ({"delay": "fixed:-1"}, ">= 0"),
        ({"delay": "uniform:5:2"}, "low <= high"),
        ({"feedback_batch": 0}, "feedback_batch"),
        ({"delay": "fixed:1", "feedback_batch": 4}, "alternatives"),
    ]:
        with pytest.raises(ValueError, match=message):
            run(agent, env, 10, seed=0, **options)
    assert DelayModel("geometric", mean=2.0).draw(np.random.default_rng(0), size=4).shape == (4,)


def test_a_run_writes_every_round_to_its_log(tmp_path) -> None:
    pytest.importorskip("pyarrow")
    from bandexa_gym.logs import read_log

    env = _env()
    agent = make_agent("linear_ts", env, seed=0)
    result = run(agent, env, 50, seed=2, log=tmp_path / "log")
    batch = read_log(tmp_path / "log")
    assert len(batch) == 50
    np.testing.assert_array_equal(batch.reward, result.rewards)
    propensities = batch.propensity
    assert ((propensities > 0) & (propensities <= 1)).all()
    expected = batch.expected_rewards
    chosen = expected[np.arange(50), batch.action]
    np.testing.assert_allclose(expected.max(1) - chosen, result.regrets)
    assert batch.context.shape == (50, 4)
    run(make_agent("linear_ts", env, seed=0), env, 20, seed=2, log=tmp_path / "cheap",
        log_propensities=False)  # fmt: skip
    assert np.isnan(read_log(tmp_path / "cheap").propensity).all()


@pytest.mark.parametrize("batch", [1, 4])
def test_logging_propensities_leaves_no_decision_pending(tmp_path, batch: int) -> None:
    pytest.importorskip("pyarrow")
    env = _env()
    plain = make_agent("linear_ts", env, seed=0)
    logged = make_agent("linear_ts", env, seed=0, max_pending=8)  # fewer than the rounds
    a = run(plain, env, 40, seed=2, feedback_batch=batch)
    b = run(logged, _env(), 40, seed=2, feedback_batch=batch, log=tmp_path / "log")
    assert logged.pending == 0  # every decision's reward went back through feedback
    np.testing.assert_array_equal(a.rewards, b.rewards)
    for key, value in _state(plain).items():
        assert torch.equal(value, _state(logged)[key]), key


def test_delays_draw_from_a_stream_of_their_own() -> None:
    from dataclasses import dataclass

    firsts: list[float] = []

    @dataclass(frozen=True)
    class Recording(DelayModel):
        def draw(self, rng: np.random.Generator, size: int | None = None) -> int:
            if not firsts:
                firsts.append(float(rng.random()))
            return 0

    env = _env()
    run(_agent("uniform", env), env, 5, seed=3, delay=Recording("fixed"))
    # default_rng(3), what the delays drew from, is the stream env.reset(seed=3) plays.
    env_stream = gym.utils.seeding.np_random(3)[0]
    assert np.random.default_rng(3).random() == env_stream.random()
    assert firsts and firsts[0] != np.random.default_rng(3).random()
