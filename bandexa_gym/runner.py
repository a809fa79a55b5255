"""Measure one agent on one env: ``run`` and the ``RunResult`` it returns.

Every measurement goes through :func:`measure`, which times the rounds an agent plays on
an env wrapped in :class:`~bandexa_gym.envs.wrappers.RegretMonitor` and reads reward and
regret back from the monitor, so bandit agents and stable-baselines3 baselines
(:mod:`bandexa_gym.sb3`) are measured identically. The ``bandexa-bench`` grid and CLI live
in :mod:`bandexa_gym.bench`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from bandexa_gym.agents.base import Agent
from bandexa_gym.envs.wrappers import RegretMonitor

__all__ = [
    "RunResult",
    "check_horizon",
    "find_monitor",
    "measure",
    "monitored",
    "progress_bar",
    "run",
]


@dataclass
class RunResult:
    """Per-round measurements of one agent on one env.

    Attributes:
        rewards: Observed reward of every round, shape (T,).
        regrets: Expected regret of every round, shape (T,).
        seconds: Wall time of the whole run (decisions, learning and env steps).
        info: Free-form extras (agent name, env id, seed, ...).
    """

    rewards: np.ndarray
    regrets: np.ndarray
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def cumulative_regret(self) -> np.ndarray:
        """Cumulative regret after every round, shape (T,)."""
        return np.cumsum(self.regrets)

    @property
    def horizon(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def decisions_per_second(self) -> float:
        return self.horizon / self.seconds if self.seconds > 0 else float("inf")

    def moving_average_reward(self, window: int = 500) -> float:
        """Mean observed reward over the last ``window`` rounds."""
        return float(self.rewards[-window:].mean()) if self.horizon else float("nan")


def run(
    agent: Agent,
    env: gym.Env | gym.vector.VectorEnv,
    horizon: int,
    *,
    seed: int | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> RunResult:
    """Drive ``agent`` on ``env`` for ``horizon`` rounds and record reward and regret.

    A single env is measured by :func:`measure`, through the same :class:`RegretMonitor`
    that measures stable-baselines3 baselines. A vector env plays ``num_envs`` rounds per
    step; its rounds are recorded step by step, sub-env by sub-env, from the step infos.

    Args:
        agent: Any :class:`~bandexa_gym.agents.Agent`.
        env: A ``Bandexa/*`` env, or a Gymnasium vector env over one.
        horizon: Number of rounds (decisions) to play, >= 1.
        seed: Seeds the env's round stream (the agent keeps its own seed).
        progress: Show a tqdm progress bar.
        desc: Label of the progress bar.

    Returns:
        The :class:`RunResult`, with exactly ``horizon`` rounds.
    """
    if not isinstance(env, gym.vector.VectorEnv):

        def play(env: gym.Env, bar: tqdm) -> None:
            obs, _ = env.reset(seed=seed)
            for _ in range(horizon):
                action = agent.act(obs)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                agent.observe(obs, action, reward)
                obs = env.reset()[0] if terminated or truncated else next_obs
                bar.update(1)

        return measure(env, horizon, play, name=agent.name, seed=seed, progress=progress, desc=desc)

    check_horizon(horizon)
    bar = progress_bar(horizon, progress, desc)
    start = time.perf_counter()
    rewards: list[np.ndarray] = []
    regrets: list[np.ndarray] = []
    obs, _ = env.reset(seed=seed)
    while len(rewards) * env.num_envs < horizon:
        actions = agent.act(obs)
        next_obs, reward, _, _, info = env.step(actions)
        agent.observe(obs, actions, reward)
        rewards.append(np.asarray(reward, dtype=np.float64))
        regrets.append(np.asarray(info["regret"], dtype=np.float64))
        obs = next_obs
        bar.update(env.num_envs)
    seconds = time.perf_counter() - start
    bar.close()
    return RunResult(
        np.concatenate(rewards)[:horizon],
        np.concatenate(regrets)[:horizon],
        seconds,
        {"seed": seed, "agent": agent.name},
    )


def measure(
    env: gym.Env,
    horizon: int,
    play: Callable[[gym.Env, tqdm], None],
    *,
    name: str,
    seed: int | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> RunResult:
    """Time ``play(env, bar)`` and return the ``horizon`` rounds it played, as recorded by
    the env's :class:`RegretMonitor` (wrapped around ``env`` unless it already is one).

    Every single-env measurement goes through here, bandit agents and SB3 baselines alike.

    Args:
        env: A ``Bandexa/*`` env.
        horizon: Rounds ``play`` must play, >= 1.
        play: Plays the rounds on the monitored env, ticking the progress ``bar``.
        name: Agent name recorded in the result.
        seed: Recorded in the result (``play`` seeds the env).
        progress: Show a tqdm progress bar.
        desc: Label of the progress bar.

    Raises:
        RuntimeError: ``play`` did not play exactly ``horizon`` rounds.
    """
    check_horizon(horizon)
    env = monitored(env)
    monitor = find_monitor(env)
    assert monitor is not None
    first = monitor.num_rounds
    bar = progress_bar(horizon, progress, desc)
    start = time.perf_counter()
    play(env, bar)
    seconds = time.perf_counter() - start
    bar.close()
    played = monitor.num_rounds - first
    if played != horizon:
        raise RuntimeError(f"{name} played {played} rounds instead of {horizon}")
    rewards = monitor.rewards[first:].copy()
    regrets = monitor.regrets[first:].copy()
    return RunResult(rewards, regrets, seconds, {"seed": seed, "agent": name})


def check_horizon(horizon: int) -> None:
    """``ValueError`` unless ``horizon`` is a positive number of rounds."""
    if horizon < 1:
        raise ValueError(f"horizon must be a positive number of rounds, got {horizon}")


def progress_bar(horizon: int, progress: bool, desc: str | None) -> tqdm:
    return tqdm(total=horizon, disable=not progress, file=sys.stderr, leave=False, desc=desc)


def monitored(env: gym.Env) -> gym.Env:
    """``env`` itself if its wrapper chain holds a :class:`RegretMonitor`, else wrapped in one."""
    return env if find_monitor(env) is not None else RegretMonitor(env)


def find_monitor(env: gym.Env) -> RegretMonitor | None:
    """The :class:`RegretMonitor` in ``env``'s wrapper chain, or None."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, RegretMonitor):
            return env
        env = env.env
    return None
