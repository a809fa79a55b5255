"""Measure one agent on one env: ``run`` and the ``RunResult`` it returns.

Every measurement goes through :func:`measure`, which times the rounds an agent plays on
an env wrapped in :class:`~bandexa_gym.envs.wrappers.RegretMonitor` and reads reward and
regret back from the monitor, so bandit agents and stable-baselines3 baselines
(:mod:`bandexa_gym.bench.sb3`) are measured identically. The ``bandexa-bench`` grid and CLI live
in :mod:`bandexa_gym.bench`.
"""

from __future__ import annotations

import heapq
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from bandexa_gym.agents.core import Agent, agent_name
from bandexa_gym.bench.delays import DelayModel, parse_delay
from bandexa_gym.envs.wrappers import RegretMonitor

Observation = Mapping[str, Any]

__all__ = [
    "AGENT_STREAM",
    "DELAY_STREAM",
    "RunResult",
    "agent_seed",
    "check_horizon",
    "find_monitor",
    "measure",
    "monitored",
    "progress_bar",
    "run",
    "stream_seed",
]


AGENT_STREAM = 0
"""The child of ``SeedSequence(run seed)`` that seeds the agent (:func:`agent_seed`)."""
DELAY_STREAM = 1
"""The child of ``SeedSequence(run seed)`` that draws the delays of :func:`run`."""


def stream_seed(seed: int, stream: int) -> int:
    """A seed in [0, 2**32) for child ``stream`` of ``numpy.random.SeedSequence(seed)``.

    The env's generator is ``PCG64(SeedSequence(seed))`` (Gymnasium's ``reset(seed=seed)``,
    and ``numpy.random.default_rng(seed)`` alike); a spawned child of that sequence gives an
    independent stream, so whatever is seeded from it never draws in lockstep with the env.
    32 bits, because some libraries take no more (NumPy's legacy seeding, which SB3 uses).
    """
    child = np.random.SeedSequence(int(seed)).spawn(stream + 1)[stream]
    return int(child.generate_state(1, dtype=np.uint32)[0])


def agent_seed(seed: int) -> int:
    """The agent's seed for run seed ``seed``: its own stream, never the env's.

    ``bandexa-bench`` builds every agent (and SB3 model) with it while the env plays
    ``reset(seed=seed)``. Build an agent for :func:`run` the same way::

        agent = make_agent("linear_ts", env, seed=agent_seed(0))
        result = run(agent, env, 2000, seed=0)
    """
    return stream_seed(seed, AGENT_STREAM)


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
    delay: DelayModel | str | None = None,
    feedback_batch: int = 1,
    log: str | os.PathLike[str] | None = None,
    log_propensities: bool = True,
) -> RunResult:
    """Drive ``agent`` on ``env`` for ``horizon`` rounds and record reward and regret.

    ``agent`` is an :class:`Agent` or any object with ``act(obs)`` and
    ``observe(obs, action, reward)`` (its name: ``agent.name``, else its class name); a
    delay or a log also needs ``decide`` and ``feedback``.

    A single env is measured by :func:`measure`, through the same :class:`RegretMonitor`
    that measures stable-baselines3 baselines. A vector env plays ``num_envs`` rounds per
    step; its rounds are recorded step by step, sub-env by sub-env, from the step infos.

    Feedback (single env): by default every reward is observed before the next decision.
    With ``delay`` the agent decides (``agent.decide``) and each reward comes back through
    ``agent.feedback`` after the delay the model draws for it, in release order (ties in
    decision order); rewards still pending at the end are fed back then, so every decision
    is learned exactly once. With ``feedback_batch=B`` the agent decides B rounds as it is
    and then observes all B at once, as one batched ``observe`` (the same definition a
    vector env's batch uses). ``fixed:0`` and ``B = 1`` equal the ordinary loop.

    Args:
        agent: Any :class:`~bandexa_gym.agents.Agent`.
        env: A ``Bandexa/*`` env, or a Gymnasium vector env over one.
        horizon: Number of rounds (decisions) to play, >= 1.
        seed: Seeds the env's round stream (the agent keeps its own seed: build it with
            ``seed=agent_seed(seed)`` to give it a stream of its own) and, through a stream
            of their own (:data:`DELAY_STREAM`), the delays.
        progress: Show a tqdm progress bar.
        desc: Label of the progress bar.
        delay: A :class:`~bandexa_gym.bench.delays.DelayModel` or its text form
            (``"fixed:N"``, ``"geometric:MEAN"``, ``"uniform:LO:HI"``).
        feedback_batch: Rounds decided before their rewards are observed together.
        log: Write every round to a Parquet log in this folder (:mod:`bandexa_gym.logs`,
            extra ``[logs]``): context, candidates, mask, action, propensity, reward and
            every candidate's expected reward from the env's oracle.
        log_propensities: With ``log``, estimate each decision's propensity
            (``agent.decide``); False logs NaN and costs nothing extra.

    Returns:
        The :class:`RunResult`, with exactly ``horizon`` rounds.

    Raises:
        ValueError: Bad options (``delay`` together with ``feedback_batch > 1``, or either
            with a vector env).
    """
    delay = parse_delay(delay)
    if (
        isinstance(feedback_batch, bool)
        or not isinstance(feedback_batch, int)
        or feedback_batch < 1
    ):
        raise ValueError(f"feedback_batch must be an integer >= 1, got {feedback_batch!r}")
    if delay is not None and feedback_batch > 1:
        raise ValueError("delay and feedback_batch are alternatives: pass one of them")
    if isinstance(env, gym.vector.VectorEnv):
        if delay is not None or feedback_batch > 1 or log is not None:
            raise ValueError("delay, feedback_batch and log apply to a single env")
        return _run_vector(agent, env, horizon, seed=seed, progress=progress, desc=desc)

    def play(env: gym.Env, bar: tqdm) -> None:
        feedback = _Feedback(agent, delay, feedback_batch, seed)
        writer = _log_writer(log, agent, env, seed)
        decide = delay is not None or (writer is not None and log_propensities)
        direct = not decide and feedback_batch == 1  # observe each round as it comes
        obs, _ = env.reset(seed=seed)
        try:
            for t in range(horizon):
                feedback.release(t)
                if decide:
                    decision = agent.decide(obs, propensity=writer is not None and log_propensities)
                    action, propensity, decision_id = (
                        decision.action,
                        decision.propensity,
                        decision.id,
                    )
                else:
                    action, propensity, decision_id = agent.act(obs), math.nan, None
                next_obs, reward, terminated, truncated, info = env.step(action)
                if writer is not None:
                    writer.append(
                        **obs, action=action, propensity=propensity, reward=float(reward),
                        expected_rewards=info.get("expected_rewards"), round=t,
                    )  # fmt: skip
                if direct:  # what feedback.add does for B = 1, without the queue
                    agent.observe(obs, action, float(reward))
                else:
                    feedback.add(t, obs, action, float(reward), decision_id)
                obs = env.reset()[0] if terminated or truncated else next_obs
                bar.update(1)
            feedback.release(None)
        finally:
            if writer is not None:
                writer.close()

    return measure(
        env, horizon, play, name=agent_name(agent), seed=seed, progress=progress, desc=desc
    )


class _Feedback:
    """When rewards reach the agent: at once, in batches of B, or after drawn delays."""

    def __init__(self, agent: Agent, delay: DelayModel | None, batch: int, seed: int | None):
        self.agent, self.delay, self.batch = agent, delay, batch
        self.rng = np.random.default_rng(
            None if seed is None else stream_seed(seed, DELAY_STREAM)
        )  # not default_rng(seed): that is the env's own stream
        self.queued: list[tuple[Observation, int, float, Any]] = []  # rounds not yet learned
        self.heap: list[tuple[int, int, Any, float]] = []  # (release round, t, id, reward)

    def add(
        self,
        t: int,
        obs: Observation,
        action: int,
        reward: float,
        decision_id: int | None,
    ) -> None:
        """Queue round ``t``'s reward: ``decision_id`` when the agent ``decide``-d it (the
        reward then goes back through ``feedback``, so no decision stays pending), None when
        it ``act``-ed (``observe``)."""
        if self.delay is not None:
            release = t + int(self.delay.draw(self.rng)) + 1
            heapq.heappush(self.heap, (release, t, decision_id, reward))
            return
        self.queued.append((obs, action, reward, decision_id))
        if len(self.queued) == self.batch:
            self._learn_queued()

    def release(self, t: int | None) -> None:
        """Feed back what is due before the decision of round ``t`` (None: everything)."""
        while self.heap and (t is None or self.heap[0][0] <= t):
            _, _, decision_id, reward = heapq.heappop(self.heap)
            self.agent.feedback(decision_id, reward)
        if t is None and self.queued:
            self._learn_queued()

    def _learn_queued(self) -> None:
        """Learn the queued rounds at once: one ``feedback`` or ``observe`` call (B = 1: the
        plain single-round call)."""
        rows, self.queued = self.queued, []
        rewards = [reward for _, _, reward, _ in rows]
        if rows[0][3] is not None:  # decided: every queued round has a pending decision
            ids = [decision_id for _, _, _, decision_id in rows]
            if len(rows) == 1:
                self.agent.feedback(ids[0], rewards[0])
            else:
                self.agent.feedback(np.asarray(ids, dtype=np.int64), np.asarray(rewards))
            return
        if len(rows) == 1:
            obs, action, reward, _ = rows[0]
            self.agent.observe(obs, action, reward)
            return
        stacked = {key: np.stack([np.asarray(obs[key]) for obs, *_ in rows]) for key in rows[0][0]}
        actions = np.asarray([action for _, action, _, _ in rows], dtype=np.int64)
        self.agent.observe(stacked, actions, np.asarray(rewards))


def _log_writer(
    log: str | os.PathLike[str] | None, agent: Agent, env: gym.Env, seed: int | None
) -> Any:
    if log is None:
        return None
    from bandexa_gym.offline.log_writer import LogWriter  # pyarrow is an optional extra

    spec = getattr(env, "spec", None)
    meta = {"env": getattr(spec, "id", None), "agent": agent_name(agent), "seed": seed}
    return LogWriter(log, metadata=meta)


def _run_vector(
    agent: Agent,
    env: gym.vector.VectorEnv,
    horizon: int,
    *,
    seed: int | None,
    progress: bool,
    desc: str | None,
) -> RunResult:
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
        {"seed": seed, "agent": agent_name(agent)},
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
