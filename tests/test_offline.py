"""Agents on logged data: policy probabilities, warm starts, evaluation, bandexa-ope."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym import offline
from bandexa_gym.agents import make_agent
from bandexa_gym.runner import run

pytest.importorskip("pyarrow")

from bandexa_gym.logs import read_log  # noqa: E402
from bandexa_gym.ope_cli import main  # noqa: E402


def _env() -> gym.Env:
    return gym.make("Bandexa/Synthetic-v0", interaction_scale=0.0, n_arms=5, context_dim=4)


@pytest.fixture(scope="module")
def uniform_log(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("logs") / "uniform"
    env = _env()
    run(make_agent("uniform", env, seed=0), env, 1200, seed=0, log=path)
    return path


def test_policy_probabilities_are_distributions(uniform_log) -> None:
    batch = read_log(uniform_log)
    greedy = offline.warm_start(make_agent("linear_ts", offline.log_space(batch), seed=0,
                                           exploration="greedy"), batch)  # fmt: skip
    probs = offline.policy_probabilities(greedy, batch)
    assert probs.shape == (1200, 5) and np.allclose(probs.sum(1), 1.0)
    assert set(np.unique(probs)) <= {0.0, 1.0}  # a greedy policy, no ties
    np.testing.assert_allclose(np.asarray(batch.propensity), 0.2)  # the uniform logger's


def test_a_warm_started_agent_has_less_regret_than_a_cold_one(uniform_log) -> None:
    regret = {}
    for label in ("cold", "warm"):
        env = _env()
        agent = make_agent("linear_ts", env, seed=1, feature_map="concat")  # slower to learn
        if label == "warm":
            offline.warm_start(agent, uniform_log)
        regret[label] = run(agent, env, 300, seed=7).regrets.sum()
    assert regret["warm"] < 0.5 * regret["cold"]


def test_estimates_cover_the_true_value_of_a_learned_policy(uniform_log) -> None:
    batch = read_log(uniform_log)
    learn, test = offline._subset(batch, slice(0, 600)), offline._subset(batch, slice(600, 1200))
    policy = offline.warm_start(
        make_agent("linear_ts", offline.log_space(batch), seed=0, exploration="greedy"), learn
    )
    truth = float(
        (offline.policy_probabilities(policy, test) * test.expected_rewards).sum(1).mean()
    )
    model = lambda: make_agent("linear_ts", offline.log_space(batch), seed=0)  # noqa: E731
    estimates = offline.evaluate_policy(policy, test, reward_model=model, n_bootstrap=300)
    assert set(estimates) >= {"ips", "snips", "dm", "dr"}
    for name in ("ips", "snips", "dr"):
        assert estimates[name].ci_low <= truth <= estimates[name].ci_high, name
    assert abs(estimates["dr"].value - truth) < 0.1 * abs(truth) + 0.05


def test_the_command_prints_estimates_and_refuses_bad_input(uniform_log, capsys) -> None:
    assert main([str(uniform_log), "--policy", "uniform", "linear_ts:exploration=greedy",
                 "--fit", "0.5", "--bootstrap", "100"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "true value" in out and "dr-os" in out and "linear_ts:exploration=greedy" in out
    for argv in (["--policy", "no_such_agent"], ["--policy", "uniform", "--fit", "1.5"]):
        with pytest.raises(SystemExit) as exit_info:
            main([str(uniform_log), *argv])
        assert exit_info.value.code == 2
