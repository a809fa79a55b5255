"""Adapters of other bandit libraries: peer:bayesianbandits, peer:vw-squarecb,
peer:mabwiser-lints.

CI installs the ``[peers]`` extra, so there a missing library fails these tests; outside CI
(``CI`` unset) a test whose library is absent is skipped.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import bandexa_gym  # noqa: F401  (registers the ids)
from bandexa_gym.agents import PEERS, PEERS_EXTRA, NotApplicableError, make_agent
from bandexa_gym.agents.applicability import candidates_change, not_applicable_reason
from bandexa_gym.bench import main
from bandexa_gym.persist import format as checkpoint
from bandexa_gym.runner import run
from bandexa_gym.utils import check_agent

LIBRARY = {
    "peer:bayesianbandits": "bayesianbandits",
    "peer:vw-squarecb": "vowpalwabbit",
    "peer:mabwiser-lints": "mabwiser.mab",
}
PER_ARM = ("peer:bayesianbandits", "peer:mabwiser-lints")
RETRIEVAL_SMALL = {"n_actions": 200, "candidate_size": 16}


def _require(name: str) -> None:
    """Skip when ``name``'s library is missing, unless in CI (where it must be there)."""
    try:
        importlib.import_module(LIBRARY[name])
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{LIBRARY[name]} is not installed ({PEERS_EXTRA})")


@pytest.fixture(params=PEERS)
def peer(request: pytest.FixtureRequest) -> str:
    _require(request.param)
    return request.param


@pytest.fixture(params=PER_ARM)
def per_arm(request: pytest.FixtureRequest) -> str:
    _require(request.param)
    return request.param


def _space(
    context_shape: tuple[int, ...] = (3,), k: int = 4, d_a: int | None = None
) -> spaces.Dict:
    d_a = k if d_a is None else d_a
    return spaces.Dict(
        {
            "context": spaces.Box(-np.inf, np.inf, context_shape, np.float32),
            "candidates": spaces.Box(-np.inf, np.inf, (k, d_a), np.float32),
            "action_mask": spaces.Box(0, 1, (k,), np.int8),
        }
    )


def _obs(context: np.ndarray, k: int = 4, mask: np.ndarray | None = None) -> dict:
    return {
        "context": np.asarray(context, np.float32),
        "candidates": np.eye(k, dtype=np.float32),
        "action_mask": np.ones(k, np.int8) if mask is None else mask.astype(np.int8),
    }


def _actions(agent, env_id: str, rounds: int, seed: int = 0, **env_kwargs) -> list[int]:
    env = gym.make(env_id, **env_kwargs)
    obs, _ = env.reset(seed=seed)
    actions = []
    for _ in range(rounds):
        action = agent.act(obs)
        next_obs, reward, *_ = env.step(action)
        agent.observe(obs, action, reward)
        actions.append(int(action))
        obs = next_obs
    return actions


# -- learning ---------------------------------------------------------------------------
def test_each_peer_learns_on_synthetic(peer: str) -> None:
    """500 rounds on the default Synthetic problem: well below uniform's regret on the
    same round stream (an adapter that mixes up arms, costs or contexts stays near it)."""
    rounds = 500
    regrets = {}
    for name in ("uniform", peer):
        env = gym.make("Bandexa/Synthetic-v0")
        result = run(make_agent(name, env, seed=0), env, rounds, seed=0)
        regrets[name] = float(result.regrets.sum())
    assert regrets[peer] < 0.75 * regrets["uniform"], regrets


def test_each_peer_learns_a_context_dependent_best_arm(peer: str) -> None:
    """Two contexts with opposite best arms, noisy rewards: after 300 rounds the greedy
    choice follows the context (the reward sign and the context both reach the model)."""
    rng = np.random.default_rng(0)
    agent = make_agent(peer, _space(), seed=0)
    for _ in range(300):
        s = rng.choice([-1.0, 1.0])
        obs = _obs([s, 0.5 * s, 1.0])
        action = agent.act(obs)
        best = 0 if s > 0 else 3
        agent.observe(obs, action, float(action == best) + 0.1 * rng.normal())
    late = []
    for s, best in ((1.0, 0), (-1.0, 3)):
        late += [agent.act(_obs([s, 0.5 * s, 1.0])) == best for _ in range(20)]
    assert np.mean(late) > 0.8


# -- masks ------------------------------------------------------------------------------
def test_masked_candidates_are_never_chosen(peer: str) -> None:
    """The best arm (0) is often masked; neither single nor batched calls ever play it
    then, even once the agent has learned to prefer it."""
    rng = np.random.default_rng(1)
    agent = make_agent(peer, _space(), seed=0)
    for t in range(150):
        mask = rng.random(4) < 0.6
        mask[rng.integers(4)] = True
        obs = _obs(rng.normal(size=3), mask=mask)
        action = agent.act(obs)
        assert mask[action], (t, mask, action)
        agent.observe(obs, action, float(action == 0))
    masks = np.array([[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 1, 1]], np.int8)
    batch = {
        "context": rng.normal(size=(3, 3)).astype(np.float32),
        "candidates": np.tile(np.eye(4, dtype=np.float32), (3, 1, 1)),
        "action_mask": masks,
    }
    for _ in range(10):
        actions = agent.act(batch)
        assert masks[np.arange(3), actions].all()


# -- seeds, batches, reset --------------------------------------------------------------
def test_deterministic_given_the_seed(peer: str) -> None:
    runs = [
        _actions(
            make_agent(peer, gym.make("Bandexa/Synthetic-v0"), seed=s), "Bandexa/Synthetic-v0", 60
        )
        for s in (3, 3, 4)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_reset_replays_a_fresh_agent(peer: str) -> None:
    env = gym.make("Bandexa/Synthetic-v0")
    agent = make_agent(peer, env, seed=5)
    first = _actions(agent, "Bandexa/Synthetic-v0", 40)
    agent.reset()
    assert _actions(agent, "Bandexa/Synthetic-v0", 40) == first


def test_batched_calls_equal_looped_calls(peer: str) -> None:
    rng = np.random.default_rng(2)
    contexts = rng.normal(size=(5, 3)).astype(np.float32)
    batch = {
        "context": contexts,
        "candidates": np.tile(np.eye(4, dtype=np.float32), (5, 1, 1)),
        "action_mask": np.ones((5, 4), np.int8),
    }
    rewards = rng.normal(size=5)
    batched, looped = make_agent(peer, _space(), seed=9), make_agent(peer, _space(), seed=9)
    for _ in range(3):
        actions = batched.act(batch)
        singles = [looped.act(_obs(c)) for c in contexts]
        assert actions.tolist() == singles
        batched.observe(batch, actions, rewards)
        for c, a, r in zip(contexts, singles, rewards, strict=True):
            looped.observe(_obs(c), a, float(r))
    assert batched.rounds == looped.rounds == 15


@pytest.mark.parametrize("feedback", [{"delay": "geometric:4"}, {"feedback_batch": 5}])
def test_runner_delays_and_batched_feedback(peer: str, feedback: dict) -> None:
    """Delayed rewards (decide + feedback, out of order) and batched feedback (one batched
    observe) through the runner: every round learned once, still well below uniform."""
    env = gym.make("Bandexa/Synthetic-v0")
    agent = make_agent(peer, env, seed=0)
    result = run(agent, env, 400, seed=0, **feedback)
    assert agent.rounds == 400 and agent.pending == 0
    uniform = run(make_agent("uniform", env, seed=0), gym.make("Bandexa/Synthetic-v0"), 400, seed=0)
    assert result.regrets.sum() < 0.8 * uniform.regrets.sum()


# -- what peers cannot do ---------------------------------------------------------------
def test_capabilities_and_their_errors(peer: str, tmp_path: Path) -> None:
    agent = make_agent(peer, _space(), seed=0)
    caps = agent.capabilities
    assert not caps.save and caps.reason("save") != "not supported"
    with pytest.raises(checkpoint.CheckpointError, match="cannot be saved"):
        agent.save(tmp_path / "peer.safetensors")
    assert not caps.cuda
    with pytest.raises(ValueError, match="CPU"):
        make_agent(peer, _space(), seed=0, device="cuda")
    assert caps.changing_candidates == (peer == "peer:vw-squarecb")
    assert caps.propensities == (peer == "peer:vw-squarecb")
    if not caps.propensities:
        decision = agent.decide(_obs([0.1, 0.2, 0.3]))
        assert np.isnan(decision.propensity)
        with pytest.raises(NotImplementedError, match="probabilities"):
            agent.action_distribution(_obs([0.1, 0.2, 0.3]))


def test_check_agent_passes_on_one_hot_arms(peer: str) -> None:
    """The shared contract on a classification problem (fixed one-hot arms, masks drawn
    by the checker); only what the peer opts out of is skipped, with its reason."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    env = gym.make("Bandexa/Classification-v0", X=X, y=y)
    skipped = check_agent(peer, env)
    agent = make_agent(peer, env, seed=0)
    assert any(agent.capabilities.reason("save") in note for note in skipped)
    assert len(skipped) == 1 + (not agent.capabilities.propensities)


def test_per_arm_peers_run_blas_on_torch_threads(
    per_arm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Library calls run with NumPy's BLAS limited to torch's thread count (contending
    BLAS threads made MABWiser 50x slower on a busy 2-core machine)."""
    from threadpoolctl import threadpool_info

    agent = make_agent(per_arm, _space(), seed=0)
    seen = []
    choose_row = agent.choose_row

    def spy(x: np.ndarray, offered: np.ndarray) -> int:
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        return choose_row(x, offered)

    monkeypatch.setattr(agent, "choose_row", spy)
    agent.act(_obs([0.0, 1.0, 2.0]))
    assert seen and set(seen) == {torch.get_num_threads()}


# -- applicability ----------------------------------------------------------------------
def test_probe_tells_fixed_from_changing_candidates() -> None:
    assert not candidates_change(gym.make("Bandexa/Synthetic-v0"))
    assert candidates_change(gym.make("Bandexa/Synthetic-v0", resample_actions=True))
    assert candidates_change(gym.make("Bandexa/Retrieval-v0", **RETRIEVAL_SMALL))


def test_per_arm_peers_are_not_applicable_where_candidates_change(per_arm: str) -> None:
    env = gym.make("Bandexa/Synthetic-v0", resample_actions=True)
    agent = make_agent(per_arm, env, seed=0)
    reason = not_applicable_reason(agent, env)
    assert reason is not None and "one model per candidate index" in reason
    assert not_applicable_reason(agent, gym.make("Bandexa/Synthetic-v0")) is None
    # Run anyway: the agent notices the second round's new candidates itself.
    with pytest.raises(NotApplicableError, match="same candidate rows every round"):
        run(agent, env, 5, seed=0)
    assert issubclass(NotApplicableError, ValueError)


def test_per_arm_check_ignores_masked_rows_and_checks_observe(per_arm: str) -> None:
    agent = make_agent(per_arm, _space(), seed=0)
    obs = _obs([0.0, 1.0, 2.0], mask=np.array([1, 1, 1, 0]))
    agent.observe(obs, agent.act(obs), 1.0)
    moved = dict(obs, candidates=obs["candidates"].copy())
    moved["candidates"][3] = 7.0  # a masked row may hold anything
    agent.observe(moved, agent.act(moved), 0.0)
    moved["candidates"][0] = 7.0  # an offered row must not change
    with pytest.raises(NotApplicableError):
        agent.observe(moved, 1, 0.0)
    assert agent.rounds == 2


def test_vw_plays_changing_candidates() -> None:
    _require("peer:vw-squarecb")
    env = gym.make("Bandexa/Retrieval-v0", **RETRIEVAL_SMALL)
    agent = make_agent("peer:vw-squarecb", env, seed=0)
    assert not_applicable_reason(agent, env) is None
    assert run(agent, env, 30, seed=0).horizon == 30


def test_too_slow_is_not_applicable_unless_forced(per_arm: str) -> None:
    image = _space((1, 28, 28), k=10)
    with pytest.raises(NotApplicableError, match=r"too slow for 784-dimensional.*max_context_dim"):
        make_agent(per_arm, image, seed=0)
    agent = make_agent(per_arm, image, seed=0, max_context_dim=None)
    assert agent.context_dim == 784


# -- Vowpal Wabbit specifics ------------------------------------------------------------
def test_vw_reports_exact_probabilities_and_feedback_equals_observe() -> None:
    """decide + feedback (the reward right away) is act + observe, with the decision's
    propensity the agent's exact probability of the action."""
    _require("peer:vw-squarecb")
    decider = make_agent("peer:vw-squarecb", _space(), seed=1)
    actor = make_agent("peer:vw-squarecb", _space(), seed=1)
    rng = np.random.default_rng(3)
    for t in range(40):
        mask = np.array([1, 1, 1, t % 2], np.int8)
        obs = _obs(rng.normal(size=3), mask=mask)
        probs = decider.action_distribution(obs)
        assert probs.sum() == pytest.approx(1.0) and (probs[mask == 0] == 0).all()
        decision = decider.decide(obs)
        assert decision.propensity == pytest.approx(probs[decision.action])
        action = actor.act(obs)
        assert action == decision.action
        reward = float(action == 2) + 0.1 * rng.normal()
        decider.feedback(decision.id, reward)
        actor.observe(obs, action, reward)
    probe = _obs([0.3, -0.2, 1.0])
    np.testing.assert_array_equal(
        decider.action_distribution(probe), actor.action_distribution(probe)
    )


def test_vw_learns_from_delayed_feedback_in_any_order() -> None:
    _require("peer:vw-squarecb")
    agent = make_agent("peer:vw-squarecb", _space(), seed=2)
    rng = np.random.default_rng(4)
    pending = []
    for _ in range(90):
        decision = agent.decide(_obs(rng.normal(size=3)))
        pending.append((decision.id, float(decision.action == 2)))
        if len(pending) == 3:
            for i, r in reversed(pending):
                agent.feedback(i, r)
            pending.clear()
    assert agent.pending == 0 and agent.rounds == 90
    assert agent.action_distribution(_obs([0.3, -0.2, 1.0])).argmax() == 2
    with pytest.raises(ValueError, match="unknown or already used"):
        agent.feedback(0, 1.0)


def test_vw_maps_reward_to_negative_cost() -> None:
    """Rewarding candidate 1 raises its probability (costs are -reward, not +reward)."""
    _require("peer:vw-squarecb")
    agent = make_agent("peer:vw-squarecb", _space(), seed=0)
    obs = _obs([1.0, 0.0, 0.0])
    for _ in range(30):
        for action in range(4):
            agent.observe(obs, action, 1.0 if action == 1 else -1.0)
    assert agent.action_distribution(obs).argmax() == 1
    assert "--cb_explore_adf --squarecb" in agent.command_line
    # VW gets the agent's library stream, not the seed itself (the env's NumPy stream).
    assert f"--random_seed {agent.library_seed()}" in agent.command_line
    assert agent.library_seed() != 0


def test_vw_text_features_are_sparse_and_exact_for_float32() -> None:
    from bandexa_gym.agents.peer_vw import vw_features, vw_lines

    values = np.array([[0.5, -1.25e-8, 3.0], [0, 1, 0], [1 / 3, 2 / 3, 1]], np.float32)
    lines = vw_lines("|a ", values.astype(np.float64))
    assert lines[1] == "|a 1:1"  # zeros are left out (one-hot rows)
    assert lines == ["|a " + vw_features(row) for row in values.astype(np.float64)]
    parsed = [float(f.split(":")[1]) for f in lines[2].split()[1:]]
    np.testing.assert_array_equal(np.float32(parsed), values[2])


# -- missing extra ----------------------------------------------------------------------
@pytest.mark.parametrize("name", PEERS)
def test_missing_library_is_a_one_line_error_naming_the_extra(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = LIBRARY[name]
    monkeypatch.setitem(sys.modules, module, None)  # what an absent package looks like
    monkeypatch.setitem(sys.modules, module.split(".")[0], None)
    with pytest.raises(ImportError) as info:
        make_agent(name, _space(), seed=0)
    message = str(info.value)
    assert PEERS_EXTRA in message and module.split(".")[0] in message and "\n" not in message


def test_missing_extra_in_the_bench_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "vowpalwabbit", None)
    with pytest.raises(SystemExit) as info:
        main(["--agents", "uniform", "peer:vw-squarecb", "--horizon", "10"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and PEERS_EXTRA in err


def test_package_imports_without_the_peer_libraries() -> None:
    code = (
        "import sys\n"
        "for m in ('bayesianbandits', 'vowpalwabbit', 'mabwiser'): sys.modules[m] = None\n"
        "from bandexa_gym.agents import AGENTS, PEERS\n"
        "assert set(PEERS) <= set(AGENTS)\n"
        "import bandexa_gym.bench\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


# -- make_agent and the bench -----------------------------------------------------------
def test_bench_runs_peers_and_reports_not_applicable_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in PEERS:
        _require(name)
    argv = [
        "--env", "Bandexa/Synthetic-v0", "Bandexa/Retrieval-v0",
        "--env-kwargs", "Bandexa/Retrieval-v0:n_actions=200",
        "Bandexa/Retrieval-v0:candidate_size=16",
        "--agents", "uniform", *PEERS,
        "--horizon", "30", "--quiet", "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    for name in PEERS:
        assert any(line.startswith("Bandexa/Synthetic-v0") and name in line and "n/a" not in line
                   for line in table.splitlines())  # fmt: skip
    na_lines = [line for line in table.splitlines() if "n/a [" in line]
    assert sorted(line.split()[1] for line in na_lines) == sorted(PER_ARM)
    assert all(line.startswith("Bandexa/Retrieval-v0") for line in na_lines)
    assert "one model per candidate index" in table
    document = json.loads((tmp_path / "results.json").read_text())
    assert {(r["env"], r["agent"]) for r in document["config"]["not_applicable"]} == {
        ("Bandexa/Retrieval-v0", name) for name in PER_ARM
    }
    played = {(r["env"], r["agent"]) for r in document["runs"]}
    assert ("Bandexa/Retrieval-v0", "peer:vw-squarecb") in played
    assert not played & {("Bandexa/Retrieval-v0", name) for name in PER_ARM}
    assert document["versions"]["vowpalwabbit"] is not None


def test_bench_skips_a_too_slow_peer_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _require("peer:mabwiser-lints")
    argv = [
        "--env", "Bandexa/Synthetic-v0", "--env-kwargs", "context_dim=300",
        "--agents", "uniform", "peer:mabwiser-lints", "--horizon", "10", "--quiet",
    ]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "n/a [1]" in table and "too slow for 300-dimensional contexts" in table
    forced = [*argv, "--agent-kwargs", "peer:mabwiser-lints.max_context_dim=None"]
    assert main(forced) == 0
    assert "n/a" not in capsys.readouterr().out
