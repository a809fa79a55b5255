"""neural_linear_ots: a new agent from existing parts (the proof that a new agent is small)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import NeuralLinearTS, make_agent
from bandexa_gym.agents.neural_linear_ots import OptimisticThompsonSampling
from bandexa_gym.exploration import ThompsonSampling, make_rule
from bandexa_gym.heads.gaussian import BayesianLinearRegression
from bandexa_gym.utils import check_agent
from tests.agents import zoo_contract as contract

OBS = contract.observations((4,), 6, 3, 40, seed=0)
PROBES = contract.observations((4,), 6, 3, 4, seed=1)
SPACE = spaces.Dict(
    {
        "context": spaces.Box(-np.inf, np.inf, (4,), np.float32),
        "candidates": spaces.Box(-np.inf, np.inf, (6, 3), np.float32),
        "action_mask": spaces.Box(0, 1, (6,), np.int8),
    }
)


def _agent() -> NeuralLinearTS:
    settings = {**contract.FAST, "encoder_kwargs": {"hidden": (16,)}, "feature_dim": 8}
    settings["arm_heads"] = "shared"  # the candidates are drawn afresh: no fixed arms
    return make_agent("neural_linear_ots", SPACE, seed=0, **settings)


@pytest.mark.parametrize(
    "check",
    [
        contract.check_determinism,
        contract.check_masks,
        contract.check_batched_equals_looped,
        contract.check_rejected_input,
    ],
)
def test_the_zoo_contract_holds(check) -> None:
    check(_agent, OBS)


def test_save_load_rebuilds_the_rule(tmp_path: Path) -> None:
    loaded = contract.check_save_load(_agent, OBS[:30], PROBES, tmp_path)
    assert isinstance(loaded.exploration, OptimisticThompsonSampling)
    assert make_rule(loaded.exploration.spec()) == OptimisticThompsonSampling()


def test_check_agent_passes() -> None:
    env = gym.make("Bandexa/Synthetic-v0", n_arms=5, context_dim=4, action_dim=3)
    fast = {"train_every": 8, "optimizer_steps": 3, "warmup_random": 4}
    assert (
        check_agent(lambda seed: make_agent("neural_linear_ots", env, seed=seed, **fast), env) == []
    )


def test_a_score_is_never_below_the_mean_and_is_the_draw_above_it() -> None:
    head = BayesianLinearRegression(3, device="cpu")
    gen = torch.Generator().manual_seed(0)
    Z = torch.randn(2, 50, 3, generator=gen, dtype=torch.float64)
    head.update_batch(Z[0, :20], torch.randn(20, generator=gen, dtype=torch.float64))
    mean, _ = head.predict(Z)
    optimistic = OptimisticThompsonSampling().scores(
        head, Z, generator=torch.Generator().manual_seed(1)
    )
    draw = ThompsonSampling().scores(head, Z, generator=torch.Generator().manual_seed(1))
    assert torch.equal(optimistic, torch.maximum(draw, mean))  # the same draw, raised to the mean
    assert bool((draw < mean).any()) and bool((optimistic >= mean).all())
    probs = OptimisticThompsonSampling().probabilities(
        head, Z, torch.ones(2, 50, dtype=torch.bool), generator=gen, draws=200
    )
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, dtype=torch.float64))
