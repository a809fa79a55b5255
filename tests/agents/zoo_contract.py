"""Contract checks shared by the tests of the neural zoo agents (neural_ts, neural_ucb,
bootstrapped_nn): determinism, masks, batched == looped, rejected input, save/load."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bandexa_gym.agents import Agent, OutlierWarning, load_agent
from bandexa_gym.persist import format as checkpoint

Factory = Callable[[], Agent]
FAST = {"warmup_random": 5, "train_every": 10, "optimizer_steps": 3, "batch_size": 8}


def observations(
    context_shape: tuple[int, ...], n_arms: int, action_dim: int, n: int, seed: int
) -> list[dict[str, np.ndarray]]:
    """``n`` random single observations."""
    gen = torch.Generator().manual_seed(seed)
    return [
        {
            "context": torch.rand(context_shape, generator=gen).numpy(),
            "candidates": torch.randn(n_arms, action_dim, generator=gen).numpy(),
            "action_mask": np.ones(n_arms, dtype=np.int8),
        }
        for _ in range(n)
    ]


def reward_of(obs: dict[str, np.ndarray], action: int) -> float:
    """A deterministic nonlinear reward for test streams."""
    x, a = obs["context"].reshape(-1), obs["candidates"][action]
    return float(np.tanh(x[: a.shape[0]] @ a) + 0.1 * a[0])


def stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """B single observations as one batched observation."""
    return {key: np.stack([r[key] for r in rows]) for key in rows[0]}


def play(agent: Agent, obs_list: list[dict[str, np.ndarray]]) -> list[int]:
    """Act and observe on every observation; the actions."""
    actions = []
    for obs in obs_list:
        action = agent.act(obs)
        agent.observe(obs, action, reward_of(obs, action))
        actions.append(action)
    return actions


def snapshot(agent: Agent) -> dict[str, Any]:
    """Everything learned or random about ``agent`` (tensors cloned)."""
    scalars, tensors = agent.state_tensors()
    state = {f"t.{k}": v.detach().clone() for k, v in tensors.items()}
    state.update({f"rng.{k}": g.get_state() for k, g in agent._generators().items()})
    state.update({f"s.{k}": v for k, v in _flat(scalars).items()})
    state["rounds"] = agent.rounds
    state["buffer"] = len(getattr(agent, "buffer", ()))
    state["pending"] = agent.pending
    return state


def _flat(values: Any, prefix: str = "") -> dict[str, Any]:
    """Nested checkpoint scalars as one flat dict."""
    if isinstance(values, (dict, list)):
        out: dict[str, Any] = {}
        items = values.items() if isinstance(values, dict) else enumerate(values)
        for key, value in items:
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: values}


def assert_same_state(a: dict[str, Any], b: dict[str, Any], exact: bool = True) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if torch.is_tensor(a[key]):
            if exact or key.startswith("rng."):
                assert torch.equal(a[key], b[key]), key
            else:  # round-off of float32 features computed in different shapes: the
                # norm-wise tolerance check_agent derives (see its ``rtol``)
                x, y = a[key].double(), b[key].double()
                assert x.shape == y.shape, key
                if x.numel():
                    scale = torch.maximum(x.abs().max(), y.abs().max())
                    assert (x - y).abs().max() <= 1e-8 + 1e-4 * scale, key
        elif isinstance(a[key], float) and not exact:
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), key
        else:
            assert a[key] == b[key], key


def check_determinism(factory: Factory, obs_list: list[dict[str, np.ndarray]]) -> None:
    first, second = factory(), factory()
    assert play(first, obs_list) == play(second, obs_list)
    assert_same_state(snapshot(first), snapshot(second))
    first.reset()
    assert play(first, obs_list) == play(factory(), obs_list)


def check_masks(factory: Factory, obs_list: list[dict[str, np.ndarray]]) -> None:
    agent = factory()
    for i, obs in enumerate(obs_list):
        mask = np.zeros_like(obs["action_mask"])
        allowed = [i % mask.size, (i + 2) % mask.size]
        mask[allowed] = 1
        masked = {**obs, "action_mask": mask}
        action = agent.act(masked)
        assert action in allowed
        probs = agent.action_distribution(masked)
        assert probs[mask == 0].sum() == 0 and probs.sum() == pytest.approx(1.0)
        decision = agent.decide(masked)
        assert decision.action in allowed and 0 < decision.propensity <= 1
        agent.feedback(decision.id, reward_of(obs, decision.action))


def check_batched_equals_looped(
    factory: Factory, obs_list: list[dict[str, np.ndarray]], batch: int = 4
) -> None:
    """B stacked observations act and learn like B single calls (training bursts inside)."""
    batched, looped = factory(), factory()
    for start in range(0, len(obs_list) - batch + 1, batch):
        rows = obs_list[start : start + batch]
        actions = batched.act(stack(rows))
        assert isinstance(actions, np.ndarray) and actions.shape == (batch,)
        assert actions.tolist() == [looped.act(r) for r in rows]
        rewards = np.array([reward_of(r, int(a)) for r, a in zip(rows, actions, strict=True)])
        batched.observe(stack(rows), actions, rewards)
        for r, a, rew in zip(rows, actions, rewards, strict=True):
            looped.observe(r, int(a), float(rew))
    assert batched.rounds == looped.rounds
    assert_same_state(snapshot(batched), snapshot(looped), exact=False)


def check_rejected_input(factory: Factory, obs_list: list[dict[str, np.ndarray]]) -> None:
    """NaN reward, bad index, wrong shapes, a buffer-rejected dtype: nothing changes."""
    agent = factory()
    play(agent, obs_list)
    obs = obs_list[0]
    before = snapshot(agent)
    wrong_context = {**obs, "context": np.zeros(obs["context"].size + 1, np.float32)}
    wrong_candidates = {**obs, "candidates": np.zeros((3, obs["candidates"].shape[1] + 1))}
    calls = [
        (ValueError, lambda: agent.observe(obs, 0, float("nan"))),
        (ValueError, lambda: agent.observe(obs, 99, 1.0)),
        (ValueError, lambda: agent.observe(obs, -1, 1.0)),
        (TypeError, lambda: agent.observe(obs, 0.5, 1.0)),
        (ValueError, lambda: agent.observe(stack([obs, obs]), np.array([0, 1]), [1.0, np.inf])),
        (ValueError, lambda: agent.observe(wrong_context, 0, 1.0)),
        (ValueError, lambda: agent.observe(wrong_candidates, 0, 1.0)),
        (ValueError, lambda: agent.act(wrong_context)),
        (ValueError, lambda: agent.act(wrong_candidates)),
        (ValueError, lambda: agent.feedback(12345, 1.0)),
    ]
    for error, call in calls:
        with pytest.raises(error):
            call()
        assert_same_state(snapshot(agent), before)
    # A context too large for the stored float32 (or for finite features) stores nothing:
    # the outlier guard skips it with a warning, and without the guard it is refused.
    huge = {**obs, "context": np.full(obs["context"].shape, 1e39)}
    with pytest.warns(OutlierWarning):
        agent.observe(huge, 0, 1.0)
    assert_same_state(snapshot(agent), before)
    agent.outliers = "accept"
    with pytest.raises(ValueError):
        agent.observe(huge, 0, 1.0)
    assert_same_state(snapshot(agent), before)


def check_save_load(
    factory: Factory, obs_list: list[dict[str, np.ndarray]], probes: list, tmp_path: Path
) -> Agent:
    agent = factory()
    play(agent, obs_list)
    path = agent.save(tmp_path / "agent.safetensors")
    loaded = load_agent(path, map_location="cpu", expected=agent)
    assert type(loaded) is type(agent) and loaded.name == agent.name
    assert loaded.rounds == agent.rounds and loaded.trainings == agent.trainings > 0
    for obs in probes:
        for got, want in zip(loaded.predict(obs), agent.predict(obs), strict=True):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(
            loaded.action_distribution(obs), agent.action_distribution(obs)
        )
    assert [loaded.act(o) for o in probes * 3] == [agent.act(o) for o in probes * 3]
    return loaded


def rewrite_checkpoint(path: Path, edit: Callable[[dict], None]) -> None:
    """Edit a checkpoint's metadata in place, with a consistent digest (bad values, not a
    damaged file)."""
    meta = checkpoint.read_metadata(path)
    tensors = load_file(str(path))
    edit(meta)
    meta["sha256"] = checkpoint._digest(meta, tensors)
    save_file(tensors, str(path), metadata={"bandexa_gym": json.dumps(meta)})
