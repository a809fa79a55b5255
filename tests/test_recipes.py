"""The recipes of docs/development.md run as written: an env, two agents, a head, an encoder."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym import exploration
from bandexa_gym.agents import core, make_agent
from bandexa_gym.bench import run
from bandexa_gym.utils import check_agent

DOC = (Path(__file__).resolve().parents[1] / "docs" / "development.md").read_text()


def _recipe(section: str, index: int = 0) -> dict:
    """Run the ``index``-th Python block of ``section`` and return its namespace."""
    body = DOC.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)[index]
    namespace: dict = {}
    exec(compile(code, f"development.md: {section}", "exec"), namespace)
    return namespace


@pytest.fixture
def registries():
    """Registrations a recipe makes (agents, agent classes, rules) are undone afterwards."""
    tables = (core.AGENTS, core.AGENT_CLASSES, exploration.EXPLORATION_RULES)
    before = [dict(table) for table in tables]
    yield
    for table, saved in zip(tables, before, strict=True):
        table.clear()
        table.update(saved)


def test_the_env_recipe_passes_gymnasiums_checker_and_pays_as_described() -> None:
    env = _recipe("Adding an environment")["TwoCoinsEnv"]()
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    _, _, _, _, info = env.step(1)
    assert info["regret"] >= 0 and obs["candidates"].shape == (2, 2)


def test_the_new_rule_recipe_gives_a_registered_agent_that_keeps_the_contract(registries) -> None:
    namespace = _recipe("Adding an agent", 0)
    env = gym.make("Bandexa/Synthetic-v0", n_arms=5, context_dim=4, action_dim=3)
    fast = {"train_every": 8, "optimizer_steps": 3, "warmup_random": 4}
    factory = lambda seed: make_agent("neural_linear_log_ucb", env, seed=seed, **fast)  # noqa: E731
    assert check_agent(factory, env) == []
    assert isinstance(factory(0).exploration, namespace["LogUCB"])


def test_the_agent_from_scratch_recipe_keeps_the_contract_and_learns(registries) -> None:
    _recipe("Adding an agent", 1)
    env = gym.make("Bandexa/Adult-v0")
    assert check_agent(lambda seed: make_agent("arm_means", env, seed=seed), env) == []
    agent = make_agent("arm_means", env, seed=0)
    result = run(agent, env, 300, seed=0)
    uniform = run(make_agent("uniform", env, seed=0), env, 300, seed=0)
    assert result.cumulative_regret[-1] < uniform.cumulative_regret[-1]


def test_the_head_recipe_widens_the_draws_around_the_same_mean() -> None:
    namespace = _recipe("Adding a head")
    gen = torch.Generator().manual_seed(0)
    Z = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    r = torch.randn(40, generator=gen, dtype=torch.float64)
    wide, plain = namespace["WideHead"](3), namespace["BayesianLinearRegression"](3)
    for head in (wide, plain):
        head.update_batch(Z, r)
    probe = Z[None, :5]
    torch.testing.assert_close(wide.predict(probe)[0], plain.predict(probe)[0])
    mean = plain.predict(probe)[0]
    spread = [
        (h.thompson_scores(probe, generator=torch.Generator().manual_seed(1), draws=64) - mean)
        for h in (wide, plain)
    ]
    torch.testing.assert_close(spread[0], 2 * spread[1])  # the same draws, twice as far out
    env = gym.make("Bandexa/Synthetic-v0", n_arms=5, context_dim=4, action_dim=3)
    agent = namespace["WideLinearTS"]((4,), 3, seed=0)
    result = run(agent, env, 50, seed=0)
    assert isinstance(agent.heads[0], namespace["WideHead"]) and len(result.regrets) == 50


def test_the_minimal_agent_recipe_plays_in_run_the_bench_and_check_agent(
    tmp_path, monkeypatch, capsys
) -> None:
    body = DOC.split("## A minimal agent\n", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)[0]
    (tmp_path / "my_agents.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned bench workers inherit sys.path
    from my_agents import GreedyMeans

    env = gym.make("Bandexa/Synthetic-v0", n_arms=4)
    result = run(GreedyMeans(env.observation_space), env, 200, seed=0)
    assert result.info["agent"] == "GreedyMeans" and len(result.cumulative_regret) == 200
    built = make_agent("my_agents:GreedyMeans", env, seed=0)
    assert isinstance(built, GreedyMeans)
    skipped = check_agent("my_agents:GreedyMeans", env)
    assert [note.split(":")[0] for note in skipped] == [
        "decide",
        "probabilities",
        "batched",
        "rejected input",
        "save/load",
    ]
    assert all("GreedyMeans" in note for note in skipped)

    from bandexa_gym.bench.cli import main

    argv = ["--env", "Bandexa/Synthetic-v0", "--horizon", "60", "--seeds", "0", "1"]
    agents = ["--agents", "my_agents:GreedyMeans", "uniform", "--workers", "2", "--quiet"]
    assert main([*argv, *agents, "--out", str(tmp_path / "out")]) == 0
    assert "my_agents:GreedyMeans" in capsys.readouterr().out
