"""Agents on logged data: policy probabilities, warm starts, evaluation, bandexa-ope."""

from __future__ import annotations

import json
import re

import gymnasium as gym
import numpy as np
import pytest

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym import offline
from bandexa_gym.agents import make_agent
from bandexa_gym.runner import run

pytest.importorskip("pyarrow")

from bandexa_gym.logs import LogWriter, read_log  # noqa: E402
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
    learn, test = (
        offline.subset_log(batch, slice(0, 600)),
        offline.subset_log(batch, slice(600, 1200)),
    )
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


def _json(argv: list[str], capsys) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_command_names_a_folder_without_parquet_parts(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--policy", "uniform"])
    assert exit_info.value.code == 2
    assert f"no Parquet parts found in {tmp_path}" in capsys.readouterr().err


def test_the_table_prints_significant_digits_and_marks_conditional_intervals(
    uniform_log, capsys
) -> None:
    argv = [str(uniform_log), "--policy", "uniform", "--bootstrap", "30", "--estimators",
            "ips", "dm"]  # fmt: skip
    doc = _json(argv, capsys)["policies"]["uniform"]
    ips, dm = doc["estimates"]["ips"], doc["estimates"]["dm"]
    assert not ips["conditional"] and dm["conditional"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:3] == "  i"}
    assert rows["ips"][1] == format(ips["value"], ".4g")  # e.g. 0.003812, not 0.0038
    assert f"[{dm['ci_low']:.4g}, {dm['ci_high']:.4g}]*" in out
    assert f"[{ips['ci_low']:.4g}, {ips['ci_high']:.4g}] " in out
    assert "* conditional on the fitted reward model" in out
    assert f"(true value {doc['true_value']:.4g})" in out


def test_the_command_evaluates_a_logged_action_distribution(uniform_log, tmp_path, capsys) -> None:
    # A copy of the log with each round's position (0-2) in a column named "slot".
    batch = read_log(uniform_log)
    n, k = batch.action_mask.shape
    slot = np.arange(n) % 3
    log = tmp_path / "with_slot"
    with LogWriter(log) as writer:
        writer.append_batch(
            context=batch.context, candidates=batch.candidates, action_mask=batch.action_mask,
            action=batch.action, propensity=batch.propensity, reward=batch.reward,
            expected_rewards=batch.expected_rewards, slot=slot, round=np.arange(n),
        )  # fmt: skip
    # The uniform agent's distribution as (n, K), and as (n, K, 3) whose slice at each
    # round's slot is it (the other slices put everything on candidate 0).
    probs = offline.policy_probabilities(make_agent("uniform", offline.log_space(batch)), batch)
    np.save(tmp_path / "flat.npy", probs)
    by_slot = np.zeros((n, k, 3))
    by_slot[:, 0, :] = 1.0
    by_slot[np.arange(n), :, slot] = probs
    np.save(tmp_path / "by_slot.npy", by_slot)
    flat, three = str(tmp_path / "flat.npy"), str(tmp_path / "by_slot.npy")
    argv = [str(log), "--policy", "uniform", flat, three, "--position", "slot", "--bootstrap",
            "40", "--estimators", "ips", "snips", "dm", "dr", "dr-os", "replay"]  # fmt: skip
    doc = _json(argv, capsys)["policies"]
    for spec in (flat, three):
        assert doc[spec]["true_value"] == doc["uniform"]["true_value"]
        for name, est in doc["uniform"]["estimates"].items():
            assert doc[spec]["estimates"][name] == est, (spec, name)
    assert doc["uniform"]["estimates"]["replay"]["n_matched"] > 0
    np.save(tmp_path / "short.npy", probs[:10])
    for policy, extra, message in (
        (str(tmp_path / "short.npy"), [], r"holds shape \(10, 5\); expected .* \(1200, 5\)"),
        (three, ["--position", "nowhere"], r"no 'nowhere' column; .* --position"),
        (three, ["--position", "round"], r"position: 3 at round 3 is outside \[0, 3\)"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([str(log), "--policy", policy, "--bootstrap", "0", *extra])
        assert exit_info.value.code == 2
        assert re.search(message, capsys.readouterr().err), message


def test_the_command_refits_the_reward_model_in_every_resample(uniform_log, capsys) -> None:
    argv = [str(uniform_log), "--policy", "uniform", "--fit", "0.8", "--bootstrap", "12",
            "--estimators", "dm", "dr"]  # fmt: skip
    fixed = _json(argv, capsys)["policies"]["uniform"]["estimates"]
    refit = _json([*argv, "--refit-bootstrap"], capsys)["policies"]["uniform"]["estimates"]
    for name in ("dm", "dr"):
        assert fixed[name]["conditional"] and not refit[name]["conditional"]
        assert refit[name]["value"] == pytest.approx(fixed[name]["value"])
    assert refit["dm"]["ci_high"] - refit["dm"]["ci_low"] > (
        fixed["dm"]["ci_high"] - fixed["dm"]["ci_low"]
    )
    assert main([*argv, "--refit-bootstrap"]) == 0
    out = capsys.readouterr().out
    assert "*" not in out and "refit the reward model" in out
    for extra, message in (
        (["--reward-model", "none"], "--reward-model is none"),
        (["--estimators", "ips"], "none is among ['ips']"),
    ):
        with pytest.raises(SystemExit):
            main([*argv, "--refit-bootstrap", *extra])
        assert message in capsys.readouterr().err


def test_the_command_bounds_the_bootstrap(uniform_log, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(uniform_log), "--policy", "uniform", "--bootstrap", str(10**9)])
    assert exit_info.value.code == 2
    assert "expected 0 to 1,000,000 resamples" in capsys.readouterr().err
