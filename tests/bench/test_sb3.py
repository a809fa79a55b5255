"""stable-baselines3 baselines: seeding, round accounting and hyper-parameters."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import bandexa_gym  # noqa: F401  (registers the ids)
from bandexa_gym import bench
from bandexa_gym.agents import make_agent
from bandexa_gym.bench import run
from bandexa_gym.bench.sb3 import (
    SB3_DEFAULTS,
    SB3_NAMES,
    is_sb3_name,
    make_sb3_model,
    run_sb3,
    sb3_algorithm,
    sb3_class,
    sb3_hyperparameters,
    sb3_name,
)
from bandexa_gym.envs.wrappers import RegretMonitor
from tests.envs.rl_support import MaskAudit, MaskedSyntheticEnv, require_rl_library


class _ResetLog(gym.Wrapper):
    """Records the seed of every reset and the context of every observation."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.seeds: list[int | None] = []
        self.contexts: list[np.ndarray] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.seeds.append(kwargs.get("seed"))
        obs, info = self.env.reset(**kwargs)
        self.contexts.append(obs["context"].copy())
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, *rest = self.env.step(action)
        self.contexts.append(obs["context"].copy())
        return (obs, *rest)


@pytest.mark.parametrize("algo", ["PPO", "A2C", "DQN"])
def test_run_sb3_plays_the_seeded_stream_for_exactly_horizon_rounds(algo: str) -> None:
    horizon = 70  # not a multiple of PPO's rollout or A2C's n_steps
    log = _ResetLog(gym.make("Bandexa/Synthetic-v0"))
    monitor = RegretMonitor(log)
    result = run_sb3(f"sb3:{algo}", monitor, horizon, seed=5)
    assert log.seeds == [5]  # one reset, with the run's seed, none unseeded
    assert result.horizon == horizon and monitor.num_rounds == horizon
    np.testing.assert_array_equal(result.regrets, monitor.regrets)
    np.testing.assert_array_equal(result.rewards, monitor.rewards)
    assert result.info["agent"] == f"sb3:{algo}"
    assert result.seconds > 0

    # A bandit agent driven by bench.run on the same seed sees the very same contexts.
    reference = _ResetLog(gym.make("Bandexa/Synthetic-v0"))
    run(make_agent("uniform", reference, seed=1), reference, horizon, seed=5)
    assert reference.seeds == [5]
    np.testing.assert_array_equal(np.stack(log.contexts), np.stack(reference.contexts))


def test_run_sb3_is_reproducible_and_seed_dependent() -> None:
    def regrets(seed: int) -> np.ndarray:
        return run_sb3("PPO", gym.make("Bandexa/Synthetic-v0"), 130, seed=seed).regrets

    np.testing.assert_array_equal(regrets(0), regrets(0))
    assert not np.array_equal(regrets(0), regrets(1))


def test_run_sb3_wraps_a_bare_env_and_reuses_an_existing_monitor() -> None:
    monitor = RegretMonitor(gym.make("Bandexa/Synthetic-v0"))
    run_sb3("A2C", monitor, 20, seed=0)
    second = run_sb3("A2C", monitor, 30, seed=0)
    assert monitor.num_rounds == 50
    np.testing.assert_array_equal(second.regrets, monitor.regrets[20:])


def test_run_sb3_on_mnist_and_retrieval() -> None:
    mnist = run_sb3("DQN", gym.make("Bandexa/MNIST-v0"), 40, seed=0)
    assert set(np.unique(mnist.rewards)) <= {0.0, 1.0}
    env = gym.make("Bandexa/Retrieval-v0", n_actions=300, candidate_size=16)
    retrieval = run_sb3("PPO", env, 40, seed=0)
    assert retrieval.horizon == 40 and (retrieval.regrets >= 0).all()


def test_hyperparameters_defaults_overrides_and_buffer_cap() -> None:
    env = gym.make("Bandexa/Synthetic-v0")
    ppo = make_sb3_model("sb3:PPO", RegretMonitor(env), seed=0, n_steps=32, batch_size=32)
    assert ppo.gamma == 0.0 and ppo.n_steps == 32
    assert ppo.n_epochs == SB3_DEFAULTS["PPO"]["n_epochs"]
    assert isinstance(ppo.observation_space, gym.spaces.Box)  # FlattenCandidates
    assert ppo.observation_space.shape == (10 + 10 * 10 + 10,)
    dqn = make_sb3_model("DQN", env, seed=0, horizon=300)
    assert dqn.gamma == 0.0 and dqn.buffer_size == 300 and dqn.learning_starts == 64
    assert dqn.train_freq.frequency == 1
    assert sb3_hyperparameters("DQN", 10**6)["buffer_size"] == SB3_DEFAULTS["DQN"]["buffer_size"]
    assert sb3_hyperparameters("A2C", gamma=0.5)["gamma"] == 0.5
    assert SB3_DEFAULTS["A2C"]["gamma"] == 0.0  # overrides do not leak into the defaults


def test_names_and_errors() -> None:
    assert is_sb3_name("sb3:PPO") and is_sb3_name("sb3:DQN")
    assert not is_sb3_name("PPO") and not is_sb3_name("sb3:SAC")
    assert sb3_algorithm("sb3:A2C") == sb3_algorithm("A2C") == "A2C"
    with pytest.raises(ValueError, match="unknown SB3 baseline"):
        sb3_algorithm("sb3:SAC")
    with pytest.raises(ValueError, match="does not accept no_such"):
        sb3_hyperparameters("PPO", no_such=1)
    with pytest.raises(ValueError, match="does not accept"):
        sb3_hyperparameters("PPO", seed=3)  # the run's seed is not a hyper-parameter
    with pytest.raises(ValueError, match="positive"):
        run_sb3("PPO", gym.make("Bandexa/Synthetic-v0"), 0, seed=0)


def test_maskable_ppo_baseline_never_plays_a_masked_row() -> None:
    require_rl_library("sb3_contrib")
    audit = MaskAudit(MaskedSyntheticEnv())
    result = run_sb3("sb3c:MaskablePPO", audit, 300, seed=0)
    assert result.info["agent"] == "sb3c:MaskablePPO"
    assert result.regrets.shape == (300,) and (result.regrets >= 0).all()
    assert audit.played == 300 and audit.masked == 0
    # SB3's PPO sees the mask as a feature only and plays masked rows on the same stream.
    unmasked = MaskAudit(MaskedSyntheticEnv())
    run_sb3("sb3:PPO", unmasked, 300, seed=0)
    assert unmasked.masked > 0


def test_maskable_ppo_names_defaults_and_missing_library(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_sb3_name("sb3c:MaskablePPO") and "sb3c:MaskablePPO" in SB3_NAMES
    assert not is_sb3_name("sb3:MaskablePPO") and not is_sb3_name("sb3c:PPO")
    assert sb3_algorithm("sb3c:MaskablePPO") == sb3_algorithm("MaskablePPO") == "MaskablePPO"
    assert sb3_name("MaskablePPO") == "sb3c:MaskablePPO" and sb3_name("A2C") == "sb3:A2C"
    assert set(bench.SB3_NAMES) == set(SB3_NAMES)  # the CLI's list, kept light to import
    with pytest.raises(ValueError, match="unknown SB3 baseline"):
        sb3_algorithm("sb3c:PPO")
    require_rl_library("sb3_contrib")
    assert sb3_hyperparameters("sb3c:MaskablePPO") == SB3_DEFAULTS["PPO"]
    with pytest.raises(ValueError, match="sb3c:MaskablePPO does not accept no_such"):
        sb3_hyperparameters("sb3c:MaskablePPO", no_such=1)
    monkeypatch.setitem(sys.modules, "sb3_contrib", None)  # as if not installed
    with pytest.raises(ImportError, match=r"needs sb3-contrib.*bandexa-gym\[rl\]"):
        sb3_class("sb3c:MaskablePPO")


def test_bench_runs_maskable_ppo_and_names_the_extra_when_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    require_rl_library("sb3_contrib")
    argv = ["--env", "Bandexa/Synthetic-v0", "--env-kwargs", "n_arms=4", "--horizon", "40"]
    argv += ["--agents", "sb3c:MaskablePPO", "--agent-kwargs", "sb3c:MaskablePPO.n_steps=32"]
    assert bench.main([*argv, "--quiet", "--out", str(tmp_path / "out")]) == 0
    assert "sb3c:MaskablePPO" in capsys.readouterr().out
    config = json.loads((tmp_path / "out" / "results.json").read_text())["config"]
    assert config["sb3_hyperparameters"]["sb3c:MaskablePPO"]["n_steps"] == 32
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sb3_contrib" else find_spec(name, *a),
    )
    with pytest.raises(SystemExit):
        bench.main([*argv, "--quiet"])
    assert "sb3c:MaskablePPO needs sb3-contrib" in capsys.readouterr().err
