"""Before a grid runs: build every problem's env and every agent once.

Bad settings (an env argument the env rejects, an agent override the agent rejects) then
fail before the first run instead of as a traceback after others, and the (problem, agent)
pairs that cannot run are known up front, each with the reason the tables print: skipped by
the suite (too slow there, say), not applicable (the agent refuses the problem, e.g. a
per-arm model on candidates that change every round, or a model of {0, 1} rewards on a
problem whose rewards are real numbers), an SB3 baseline under delayed or batched
feedback, or an optional agent whose library is not installed. A problem whose data files
are missing is fetched on first use (:func:`bandexa_gym.envs.downloads.fetch`, with a message
on stderr); when that fails too, a suite skips the problem with a note naming
``bandexa-data fetch <name>``, and a grid of named envs stops with that message.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from bandexa_gym.agents.applicability import candidates_change, not_applicable_reason
from bandexa_gym.agents.core import (
    NotApplicableError,
    infer_capabilities,
    make_agent,
    observation_space,
)
from bandexa_gym.bench.grid.suites import Problem
from bandexa_gym.envs.datafiles import MissingDataError
from bandexa_gym.envs.downloads import fetch

__all__ = [
    "REWARD_PROBE_ROUNDS",
    "SB3_FEEDBACK_REASON",
    "Preflight",
    "PreflightError",
    "non_binary_reward",
    "preflight",
]

SB3_FEEDBACK_REASON = "SB3 baselines cannot take delayed or batched feedback"


class PreflightError(ValueError):
    """A problem or an agent of the grid cannot be built with its settings (one line)."""


@dataclass
class Preflight:
    """What building everything once found out.

    Attributes:
        sb3_hyperparameters: The hyper-parameters each ``sb3:*`` agent will use.
        not_applicable: (problem name, agent) -> why the pair is not run.
        skipped_problems: Problem name -> why it is not run at all (its data is missing and
            could not be fetched), the whole error.
    """

    sb3_hyperparameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_applicable: dict[tuple[str, str], str] = field(default_factory=dict)
    skipped_problems: dict[str, str] = field(default_factory=dict)


REWARD_PROBE_ROUNDS = 32
"""Rounds :func:`non_binary_reward` plays to look for a reward outside {0, 1}."""


def non_binary_reward(env: gym.Env, rounds: int = REWARD_PROBE_ROUNDS) -> float | None:
    """A reward outside {0, 1} that ``env`` pays in its first ``rounds`` rounds, or None.

    Resets ``env`` with seed 0 and plays the first candidate on offer, so use a scratch env.
    """
    obs, _ = env.reset(seed=0)
    for _ in range(rounds):
        mask = np.asarray(obs.get("action_mask", np.ones(len(obs["candidates"])))).astype(bool)
        obs, reward, *_ = env.step(int(np.flatnonzero(mask)[0]))
        if float(reward) not in (0.0, 1.0):
            return float(reward)
    return None


def _make_fetching(problem: Problem) -> gym.Env:
    """``gym.make`` the problem's env, fetching its missing data once on first use."""
    try:
        return gym.make(problem.env_id, **problem.env_kwargs)
    except MissingDataError as err:
        print(f"{problem.name}: {err.dataset} data not found; fetching it ...", file=sys.stderr)
        fetch(err.dataset)  # MissingDataError again when it cannot
    return gym.make(problem.env_id, **problem.env_kwargs)


def preflight(
    problems: Sequence[Problem],
    agents: Sequence[str],
    agent_kwargs: Mapping[str, Mapping[str, Any]],
    *,
    device: str = "cpu",
    delayed_feedback: bool = False,
    optional: Collection[str] = (),
    skip_missing_data: bool = False,
) -> Preflight:
    """Build each problem's env and each agent on it once (seed 0).

    Args:
        problems: The grid's problems.
        agents: The grid's agents (registered names, ``sb3:*`` and ``sb3c:*``).
        agent_kwargs: Overrides per agent.
        device: Torch device of the agents.
        delayed_feedback: Runs get delayed or batched feedback (SB3 baselines cannot).
        optional: Agents that are reported as not applicable, instead of an error, when
            their library is not installed (a suite's default agents).
        skip_missing_data: Skip a problem whose data is missing and cannot be fetched
            (a suite), instead of raising.

    Returns:
        The :class:`Preflight` findings.

    Raises:
        PreflightError: An env or an agent cannot be built with its settings.
    """
    found = Preflight()
    for problem in problems:
        try:
            env = _make_fetching(problem)
        except MissingDataError as err:
            if not skip_missing_data:
                raise PreflightError(f"cannot make {problem.env_id}: {err}") from err
            found.skipped_problems[problem.name] = f"skipped: {err}"
            for agent in agents:
                found.not_applicable[problem.name, agent] = f"skipped: {err.summary}"
            continue
        except Exception as err:  # any failure here is a configuration error
            raise PreflightError(
                f"cannot make {problem.env_id} with {dict(problem.env_kwargs)}: "
                f"{type(err).__name__}: {err}"
            ) from err
        try:
            observation_space(env)
            changes = None  # whether the env's candidates change: probed once, if asked
            probed_rewards, non_binary = False, None  # a reward outside {0, 1}, if asked
            for agent in agents:
                pair = (problem.name, agent)
                overrides = agent_kwargs.get(agent, {})
                if agent in problem.skip:
                    found.not_applicable[pair] = problem.skip[agent]
                elif agent.startswith(("sb3:", "sb3c:")):
                    from bandexa_gym.bench.sb3 import sb3_hyperparameters

                    found.sb3_hyperparameters[agent] = sb3_hyperparameters(
                        agent, problem.rounds, **overrides
                    )
                    if delayed_feedback:
                        found.not_applicable[pair] = SB3_FEEDBACK_REASON
                else:
                    try:
                        built = make_agent(agent, env, seed=0, device=device, **overrides)
                    except ImportError as err:
                        if agent not in optional:
                            raise
                        found.not_applicable[pair] = f"not installed ({err})"
                        continue
                    except NotApplicableError as err:
                        found.not_applicable[pair] = str(err)
                        continue
                    caps = infer_capabilities(built)  # any object with act/observe
                    reason = None
                    if not caps.changing_candidates:
                        changes = candidates_change(env) if changes is None else changes
                        reason = not_applicable_reason(built, env, changes=changes)
                    if reason is None and caps.binary_rewards:
                        if not probed_rewards:
                            probed_rewards, non_binary = True, non_binary_reward(env)
                        if non_binary is not None:
                            reason = (
                                f"the rewards are not in {{0, 1}} (e.g. {non_binary:.4g}) and "
                                f"{agent} models {{0, 1}} rewards"
                            )
                    if reason is not None:
                        found.not_applicable[pair] = reason
        except Exception as err:  # bad overrides: TypeError, ValueError, ...
            raise PreflightError(f"{problem.env_id}: {type(err).__name__}: {err}") from err
        finally:
            env.close()
    return found
