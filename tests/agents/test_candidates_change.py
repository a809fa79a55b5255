"""Fixed arm sets against changing candidates: what the env declares, and the one limit."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import gymnasium as gym
import pytest

import bandexa_gym  # noqa: F401  (registers the ids)
from bandexa_gym.agents import make_agent
from bandexa_gym.bench import run
from bandexa_gym.features.arms import MAX_FIXED_ARMS
from tests.agents.linear_env import LinearEnv

SWITCH = "distinct candidate rows"
QUICK_RETRIEVAL = {"n_actions": 300, "candidate_size": 16}  # the quick suite's problem


def _switch_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if SWITCH in str(w.message)]


@pytest.mark.parametrize("name", ["linear_ts", "linear_ucb", "neural_linear_ts"])
def test_retrieval_declares_changing_candidates_and_agents_start_shared(name: str) -> None:
    env = gym.make("Bandexa/Retrieval-v0", **QUICK_RETRIEVAL)
    assert env.unwrapped.candidates_change is True
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        agent = make_agent(name, env, seed=0)
        run(agent, env, 30, seed=0)  # 16 rows a round: past the limit by round 5
    assert _switch_warnings(record) == []
    assert agent.candidates_change is True
    if name == "neural_linear_ts":
        assert agent.arm_mode == "shared" and len(agent.heads) == 1
    else:
        assert agent.feature_map == "concat" and len(agent.heads) == 1


def test_a_vector_env_passes_the_declaration_on() -> None:
    vec = gym.make_vec("Bandexa/Retrieval-v0", num_envs=2, **QUICK_RETRIEVAL)
    try:
        agent = make_agent("linear_ts", vec, seed=0)
        obs, _ = vec.reset(seed=0)
        agent.act(obs)
    finally:
        vec.close()
    assert agent.candidates_change is True and agent.feature_map == "concat"


def test_the_whole_pool_is_a_fixed_arm_set() -> None:
    env = gym.make("Bandexa/Retrieval-v0", n_actions=12, candidate_size=0)
    assert env.unwrapped.candidates_change is False
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        agent = make_agent("linear_ts", env, seed=0)
        run(agent, env, 20, seed=0)
    assert _switch_warnings(record) == []
    assert agent.feature_map == "per_arm" and len(agent.heads) == 12


@pytest.mark.parametrize("name", ["linear_ts", "neural_linear_ts"])
@pytest.mark.parametrize("source", ["undeclared env", "space"])
def test_undeclared_changing_candidates_still_switch_with_a_warning(name: str, source: str) -> None:
    # Nothing declared: a small candidate set is taken for a fixed set of arms, and rows
    # beyond the limit are a surprise worth saying.
    if source == "space":
        env = gym.make("Bandexa/Retrieval-v0", **QUICK_RETRIEVAL)
        agent = make_agent(name, env.observation_space, seed=0)
    else:
        env = LinearEnv()  # six new rows every round
        agent = make_agent(name, env, seed=0)
    assert agent.candidates_change is None
    with pytest.warns(RuntimeWarning, match=f"more than {MAX_FIXED_ARMS} {SWITCH}"):
        run(agent, env, 30, seed=0)
    assert len(agent.heads) == 1


def test_the_switch_during_random_warm_up_is_absorbed_by_observe() -> None:
    # Warm-up decisions are random, so new rows reach the arm registry through observe: the
    # switch to one shared head happens there (it escaped as an exception once).
    env = LinearEnv()  # six rows on the first round, then one new chosen row a round
    agent = make_agent("neural_linear_ts", env, seed=0, warmup_random=200)
    with pytest.warns(RuntimeWarning, match=f"more than {MAX_FIXED_ARMS} {SWITCH}"):
        run(agent, env, 80, seed=0)
    assert agent.arm_mode == "shared" and len(agent.heads) == 1
    assert len(agent.buffer) == 80


def test_the_readme_quotes_the_one_limit() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"up to {MAX_FIXED_ARMS} candidate rows" in readme
    quoted = set(re.findall(r"(\d+) (?:distinct )?candidate rows", readme))
    assert quoted == {str(MAX_FIXED_ARMS)}, quoted
