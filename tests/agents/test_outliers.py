"""One finite outlier (a context of 1e20, a reward of 1e30) must not take over a posterior
silently: agents skip it with an OutlierWarning (default), refuse it, or learn it on request."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bandexa_gym.agents import OutlierWarning, load_agent, make_agent
from tests.agents.linear_env import LinearEnv

AGENTS = {
    "linear_ts": {},
    "neural_linear_ts": {
        "train_every": 10,
        "optimizer_steps": 2,
        "batch_size": 8,
        "encoder_kwargs": {"hidden": (8,)},
        "feature_dim": 4,
    },
}


def _rounds(n: int, seed: int = 0) -> list[tuple[dict, int, float]]:
    """(observation, action, reward) of ``n`` rounds of a linear problem, uniform actions."""
    env = LinearEnv(context_dim=3, action_dim=3, n_arms=4, one_hot=True)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        action = int(rng.integers(4))
        nxt, reward, *_ = env.step(action)
        out.append((obs, action, float(reward)))
        obs = nxt
    return out


def _poisoned(rounds: list, at: int, kind: str, value: float | None = None) -> list:
    """``rounds`` with a context of 1e20 (or a reward of 1e30) at round ``at``."""
    out = list(rounds)
    obs, action, reward = out[at]
    if kind == "context":
        obs = {**obs, "context": np.full_like(obs["context"], value or 1e20)}
    else:
        reward = value or 1e30
    out[at] = (obs, action, reward)
    return out


def _learn(name: str, rounds: list, **settings) -> object:
    agent = make_agent(name, LinearEnv(3, 3, 4, one_hot=True), seed=0, **AGENTS[name], **settings)
    for obs, action, reward in rounds:
        agent.observe(obs, action, reward)
    return agent


def _means(agent) -> list[torch.Tensor]:
    return [head.mean.clone() for head in agent.heads]


@pytest.mark.parametrize("kind", ["context", "reward"])
@pytest.mark.parametrize("name", list(AGENTS))
def test_an_outlier_is_skipped_with_a_warning_and_the_posterior_is_not_dominated(
    name: str, kind: str
) -> None:
    clean = _rounds(60)
    poisoned = _poisoned(clean, 50, kind)
    with pytest.warns(OutlierWarning, match=rf"{kind} 1e\+(20|30)"):
        guarded = _learn(name, poisoned)
    without = _learn(name, clean[:50] + clean[51:])  # the run that never saw round 50
    assert guarded.rounds == without.rounds == 59
    for mine, theirs in zip(_means(guarded), _means(without), strict=True):
        torch.testing.assert_close(mine, theirs)

    with warnings.catch_warnings():
        warnings.simplefilter("error", OutlierWarning)  # accept: learned, and not said
        # a milder outlier (still far beyond the factor) keeps the heads' arithmetic fast
        accepted = _learn(name, _poisoned(clean, 50, kind, 1e8), outliers="accept")
    gap = max(
        float((a - b).abs().max()) for a, b in zip(_means(accepted), _means(without), strict=True)
    )
    assert gap > 0.1  # what the guard prevents: the outlier takes the posterior over


def test_ordinary_data_never_triggers_the_guard() -> None:
    env = LinearEnv(context_dim=3, action_dim=3, n_arms=4, noise_std=1.0, one_hot=True)
    agent = make_agent("linear_ts", env, seed=0)
    obs, _ = env.reset(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutlierWarning)
        for _ in range(300):
            action = agent.act(obs)
            nxt, reward, *_ = env.step(action)
            agent.observe(obs, action, reward)
            obs = nxt
    assert agent.rounds == 300


def test_raise_refuses_the_call_and_learns_nothing() -> None:
    rounds = _rounds(20)
    agent = _learn("linear_ts", rounds[:10], outliers="raise")
    before = _means(agent)
    obs, action, _ = rounds[10]
    with pytest.raises(ValueError, match=r"reward 1e\+30.*nothing was learned"):
        agent.observe(obs, action, 1e30)
    assert agent.rounds == 10
    for mine, theirs in zip(_means(agent), before, strict=True):
        assert torch.equal(mine, theirs)


def test_a_batch_with_an_outlier_learns_its_other_rows_as_the_loop_would() -> None:
    rounds = _poisoned(_rounds(30), 20, "context")
    looped = _learn("linear_ts", rounds[:16])
    batched = _learn("linear_ts", rounds[:16])
    tail = rounds[16:24]
    with pytest.warns(OutlierWarning):
        for obs, action, reward in tail:
            looped.observe(obs, action, reward)
    batch = {key: np.stack([obs[key] for obs, _, _ in tail]) for key in tail[0][0]}
    with pytest.warns(OutlierWarning, match="1 of 8 rows"):
        batched.observe(batch, np.array([a for _, a, _ in tail]), np.array([r for *_, r in tail]))
    assert batched.rounds == looped.rounds == 23
    assert batched.input_scale == looped.input_scale
    for mine, theirs in zip(_means(batched), _means(looped), strict=True):
        torch.testing.assert_close(mine, theirs)


def test_late_feedback_of_an_outlier_is_skipped_and_its_id_used_up() -> None:
    rounds = _rounds(12)
    agent = _learn("linear_ts", rounds[:10])
    decisions = [agent.decide(obs) for obs, _, _ in rounds[10:12]]
    with pytest.warns(OutlierWarning, match="reward"):
        agent.feedback(np.array([d.id for d in decisions]), np.array([1e30, 0.5]))
    assert agent.pending == 0 and agent.rounds == 11  # the other reward was learned
    with pytest.raises(ValueError, match="unknown or already used"):
        agent.feedback(decisions[0].id, 0.0)


def test_the_learned_scale_survives_a_checkpoint(tmp_path: Path) -> None:
    rounds = _rounds(12)
    agent = _learn("linear_ts", rounds[:10])
    loaded = load_agent(agent.save(tmp_path / "agent.safetensors"))
    assert loaded.input_scale == agent.input_scale
    obs, action, _ = rounds[10]
    with pytest.warns(OutlierWarning):
        loaded.observe(obs, action, 1e30)
    assert loaded.rounds == 10
    loaded.reset()
    assert loaded.input_scale == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"outliers": "clip"}, "outliers must be one of"),
        ({"outlier_factor": 1.0}, "outlier_factor must be a finite number > 1"),
        ({"outlier_factor": float("inf")}, "outlier_factor must be"),
    ],
)
def test_bad_outlier_settings(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_agent("linear_ts", LinearEnv(), seed=0, **settings)


def test_only_the_chosen_candidate_row_is_screened() -> None:
    """A huge candidate that was not chosen is no outlier; the chosen one is (the screen takes
    the parse's per-row magnitudes, so the chosen row's must be the one it reads)."""
    rounds = _rounds(20)
    agent = _learn("linear_ts", rounds[:10], outliers="raise")
    obs, action, reward = rounds[10]
    other = (action + 1) % 4
    candidates = obs["candidates"].copy()
    candidates[other] = 1e20
    agent.observe({**obs, "candidates": candidates}, action, reward)  # learned, no error
    assert agent.rounds == 11
    candidates = obs["candidates"].copy()
    candidates[action] = 1e20
    with pytest.raises(ValueError, match=r"candidate 1e\+20.*nothing was learned"):
        agent.observe({**obs, "candidates": candidates}, action, reward)
    assert agent.rounds == 11
