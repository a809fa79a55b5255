"""The agent contract: check_agent passes on every registered agent and names broken ones."""

from __future__ import annotations

import importlib
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import AGENTS, Agent, make_agent
from bandexa_gym.agents.baselines import UniformAgent
from bandexa_gym.agents.peers import PEER_LIBRARIES, PEERS_EXTRA
from bandexa_gym.bench.check import AgentCheckError, check_agent

# Short training schedules so that training bursts fall inside the checker's drive.
FAST = {"train_every": 8, "optimizer_steps": 3, "warmup_random": 4}


def _small_env() -> gym.Env:
    return gym.make("Bandexa/Synthetic-v0", n_arms=5, context_dim=4, action_dim=3)


def _factory(name: str, env: gym.Env):
    def build(seed: int) -> Agent:
        try:
            return make_agent(name, env, seed=seed, **FAST)
        except TypeError:  # an agent without a training schedule
            return make_agent(name, env, seed=seed)

    return build


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_registered_agent_keeps_the_contract(name: str) -> None:
    if name in PEER_LIBRARIES:
        _require_peer_library(name)
    env = _small_env()
    skipped = check_agent(_factory(name, env), env)
    agent = _factory(name, env)(0)
    missing = [c for c in ("save", "propensities", "batched") if not getattr(agent.capabilities, c)]
    assert len(skipped) == len(missing)  # only what the agent opts out of, with its reason
    for capability in missing:
        assert any(agent.capabilities.reason(capability) in note for note in skipped)


def _require_peer_library(name: str) -> None:
    """Skip a peer whose library is absent, outside CI only (CI installs ``[peers]``)."""
    try:
        importlib.import_module(PEER_LIBRARIES[name])
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{PEER_LIBRARIES[name]} is not installed ({PEERS_EXTRA})")


def test_per_arm_linear_heads_keep_the_contract() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    env = gym.make("Bandexa/Classification-v0", X=X, y=y)
    for name in ("linear_ts", "linear_ucb"):
        check_agent(lambda seed, n=name: make_agent(n, env, seed=seed), env)
        assert make_agent(name, env, seed=0).act(env.reset(seed=0)[0]) in range(3)


class _Toy(UniformAgent):
    """A uniform agent sized for the small env (so that shape checks apply)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.input_shapes = ((4,), 3)


class _IgnoresTheMask(_Toy):
    def _choose(self, batch):  # plays the first candidate, offered or not
        return torch.zeros(batch.size, dtype=torch.int64)


class _LearnsFromRejectedRewards(_Toy):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rejected = 0

    def _check_rewards(self, reward, size, batched):  # keeps a trace of a rejected call
        try:
            return super()._check_rewards(reward, size, batched)
        except ValueError:
            self.rejected += 1
            raise

    def state_tensors(self):
        return {"rejected": self.rejected}, {}


class _ForgetsTheBatch(_Toy):
    def _learn(self, contexts, chosen, indices, rewards):
        self.rounds += 1  # one round per call, whatever the batch size


@pytest.mark.parametrize(
    ("agent_class", "property_name"),
    [
        (_IgnoresTheMask, "masks"),
        (_LearnsFromRejectedRewards, "rejected input"),
        (_ForgetsTheBatch, "batched"),
    ],
)
def test_a_broken_agent_fails_with_the_property_named(agent_class, property_name: str) -> None:
    env = _small_env()
    with pytest.raises(AgentCheckError, match=property_name):
        check_agent(lambda seed: agent_class(seed=seed), env)


def test_a_registered_name_is_accepted_and_skips_are_reported() -> None:
    env = _small_env()
    assert check_agent("linear_ts", env) == []

    class NoSave(_Toy):
        capabilities = UniformAgent.capabilities.__class__(
            save=False, reasons={"save": "it holds a handle to a remote service"}
        )

    skipped = check_agent(lambda seed: NoSave(seed=seed), env)
    assert skipped == ["save/load: skipped (uniform: it holds a handle to a remote service)"]


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def torch_threads(request):
    """Run the test under 1 and then 2 torch threads (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("head", ["gaussian", "logistic"])
def test_batched_equals_looped_under_one_and_two_threads(torch_threads: int, head: str) -> None:
    # Training bursts fall inside the batches, so the encoder runs on one row in the loop
    # and on B rows in a batch: float32 round-off differs by kernel and CPU, within rtol.
    env = _small_env()
    factory = lambda seed: make_agent(  # noqa: E731
        "neural_linear_ts", env, seed=seed, head=head, **FAST
    )
    assert check_agent(factory, env) == []


def _pairs_rewards_with_the_wrong_rows(agent: Agent) -> Agent:
    """The agent, with a batched ``observe`` that rolls the rewards by one row."""
    learn = agent._learn

    def broken(contexts, chosen, indices, rewards):
        learn(contexts, chosen, indices, rewards.roll(1) if contexts.shape[0] > 1 else rewards)

    agent._learn = broken
    return agent


@pytest.mark.parametrize("name", ["linear_ts", "neural_linear_ts"])
def test_the_batched_tolerance_still_catches_a_batching_defect(name: str) -> None:
    # The defect moves the state by O(1/rows): far outside the round-off tolerance.
    env = _small_env()
    with pytest.raises(AgentCheckError, match="batched: after rows"):
        check_agent(lambda seed: _pairs_rewards_with_the_wrong_rows(_factory(name, env)(seed)), env)
    assert check_agent(_factory(name, env), env) == []
