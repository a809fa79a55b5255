"""Your own agent: ``module:NAME`` references, the ``bandexa_gym.agents`` entry-point group,
and any object with ``act``/``observe`` in ``make_agent``, ``bench.run`` and ``check_agent``."""

from __future__ import annotations

import importlib.metadata
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import Agent, make_agent
from bandexa_gym.agents.core import ENTRY_POINT_GROUP, infer_capabilities
from bandexa_gym.bench import run
from bandexa_gym.bench.check import AgentCheckError, check_agent
from bandexa_gym.bench.cli import main

MODULE = '''
import numpy as np


class First:
    """Plays the first unmasked candidate."""

    def __init__(self, space=None, *, seed=None, device="cpu", bias=0):
        self.seed, self.bias = seed, bias

    def act(self, obs):
        return int(np.flatnonzero(obs["action_mask"])[0])

    def observe(self, obs, action, reward):
        pass


def make_first(space, **kwargs):
    return First(space, **kwargs)


first = First()
first.name = "first-instance"
not_an_agent = 42
'''


@pytest.fixture
def module(tmp_path, monkeypatch) -> str:
    """A module ``duck_agents_mod`` on sys.path."""
    (tmp_path / "duck_agents_mod.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "duck_agents_mod"


def _env() -> gym.Env:
    return gym.make("Bandexa/Synthetic-v0", n_arms=4, context_dim=3, action_dim=2)


@pytest.mark.parametrize("attribute", ["First", "make_first", "first"])
def test_make_agent_builds_a_class_a_factory_or_an_instance_from_module_name(
    module, attribute
) -> None:
    agent = make_agent(f"{module}:{attribute}", _env(), seed=3)
    assert type(agent).__name__ == "First"
    if attribute != "first":
        assert agent.seed == 3  # seed passed where the signature takes it
    else:
        assert agent.name == "first-instance"
        assert agent is not importlib.import_module(module).first  # a copy per build
    assert make_agent(f"{module}:First", _env(), bias=2).bias == 2  # overrides pass through


def test_bad_module_references_name_the_problem(module) -> None:
    with pytest.raises(ValueError, match="cannot import module 'no_such_mod'"):
        make_agent("no_such_mod:Agent", _env())
    with pytest.raises(ValueError, match="has no attribute 'Missing'"):
        make_agent(f"{module}:Missing", _env())
    with pytest.raises(TypeError, match="expected a class, a factory or an object with act"):
        make_agent(f"{module}:not_an_agent", _env())
    with pytest.raises(ValueError, match="unknown agent 'nope'.*entry-point group"):
        make_agent("nope", _env())


def test_entry_point_agents_load_lazily_when_a_name_is_not_registered(module, monkeypatch) -> None:
    calls = []

    def entry_points(**kwargs):
        calls.append(kwargs)
        return [
            importlib.metadata.EntryPoint("from_pkg", f"{module}:make_first", ENTRY_POINT_GROUP)
        ]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    make_agent("uniform", _env())
    assert calls == []  # registered names never look at entry points
    agent = make_agent("from_pkg", _env(), seed=1)
    assert type(agent).__name__ == "First" and calls == [{"group": ENTRY_POINT_GROUP}]
    out = main(
        ["--env", "Bandexa/Synthetic-v0", "--agents", "from_pkg", "--horizon", "20", "--quiet"]
    )
    assert out == 0


def test_the_bench_cli_rejects_an_unknown_reference_by_name(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--env", "Bandexa/Synthetic-v0", "--agents", "no_such_mod:Agent"])
    assert "cannot import module 'no_such_mod'" in capsys.readouterr().err


def test_run_takes_a_plain_object_and_names_it_after_its_class(module) -> None:
    agent = importlib.import_module(module).First()
    result = run(agent, _env(), 30, seed=0)
    assert result.info["agent"] == "First" and len(result.rewards) == 30


class OnlyHooks(Agent):
    """An agent from scratch with only the two required hooks (no _distribution, no spec)."""

    def _choose(self, batch):
        return self.select(torch.zeros(batch.masks.shape, dtype=torch.float64), batch.masks)

    def _learn(self, contexts, chosen, indices, rewards):
        self.rounds += int(rewards.shape[0])


def test_capabilities_follow_the_methods_an_agent_overrides() -> None:
    caps = infer_capabilities(OnlyHooks(seed=0))
    assert (caps.propensities, caps.save, caps.batched) == (False, False, True)
    assert "_distribution" in caps.reason("propensities") and "spec" in caps.reason("save")
    plain = infer_capabilities(object())
    assert (plain.propensities, plain.save, plain.batched) == (False, False, False)
    linear = infer_capabilities(make_agent("linear_ts", _env()))
    assert (linear.propensities, linear.save, linear.batched) == (True, True, True)


def test_check_agent_skips_what_an_agent_from_scratch_does_not_offer() -> None:
    env = _env()

    def build(seed: int) -> OnlyHooks:
        agent = OnlyHooks(seed=seed)
        agent.input_shapes = (env.observation_space["context"].shape, 2)  # checked
        return agent

    skipped = check_agent(build, env)  # raised NotImplementedError before
    assert [note.split(":")[0] for note in skipped] == ["probabilities", "save/load"]
    assert "_distribution" in skipped[0] and "spec" in skipped[1]


def test_check_agent_still_catches_a_plain_object_that_plays_a_masked_candidate() -> None:
    class Masked:
        def act(self, obs):
            masked = np.flatnonzero(~np.asarray(obs["action_mask"], bool))
            return int(masked[0]) if masked.size else 0

        def observe(self, obs, action, reward):
            pass

    env = gym.make("Bandexa/Synthetic-v0", n_arms=5, context_dim=4, action_dim=3)
    with pytest.raises(AgentCheckError, match="masks"):
        check_agent(lambda seed: Masked(), env)
