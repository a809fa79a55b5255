"""Whether an agent can play a problem at all, decided before anything runs.

Some agents cannot play some problems: a per-arm model (one regressor per candidate
index, as in the peer libraries' LinTS) needs the same candidate rows every round, so it
has nothing to say on ``Bandexa/Retrieval-v0`` or on ``Bandexa/Synthetic-v0`` with
``resample_actions=True``. Such an agent states it through
``Capabilities(changing_candidates=False)``; :func:`not_applicable_reason` probes the env
and says why the pair is not applicable, so that ``bandexa-bench`` reports "n/a" instead of
failing mid-run. The agent itself still checks every round (and raises
:class:`~bandexa_gym.agents.core.protocol.NotApplicableError` if the rows change later than the
probe looked).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from bandexa_gym.agents.core import Agent

__all__ = ["PROBE_ROUNDS", "candidates_change", "not_applicable_reason"]

PROBE_ROUNDS = 16
"""Rounds :func:`candidates_change` plays to see whether the candidate rows move."""


def candidates_change(env: gym.Env, rounds: int = PROBE_ROUNDS) -> bool:
    """Whether ``env`` offers different candidate rows in its first ``rounds`` rounds.

    Resets ``env`` with seed 0 and steps it ``rounds`` times (playing the first candidate
    on offer), so use a scratch env, not one a run is about to play. Rows that are masked
    out in a round are not compared.

    Args:
        env: A ``Bandexa/*`` env (a single env, not a vector env).
        rounds: Rounds to compare with the first one.

    Returns:
        True when some unmasked candidate row differs from the first round's.
    """
    obs, _ = env.reset(seed=0)
    first = np.asarray(obs["candidates"])
    for _ in range(rounds):
        mask = np.asarray(obs.get("action_mask", np.ones(first.shape[0]))).astype(bool)
        obs, *_ = env.step(int(np.flatnonzero(mask)[0]))
        candidates = np.asarray(obs["candidates"])
        mask = np.asarray(obs.get("action_mask", np.ones(first.shape[0]))).astype(bool)
        if candidates.shape != first.shape or not np.array_equal(candidates[mask], first[mask]):
            return True
    return False


def not_applicable_reason(agent: Agent, env: gym.Env, *, changes: bool | None = None) -> str | None:
    """Why ``agent`` cannot play ``env`` (None when it can), from its capabilities.

    Args:
        agent: The agent, built for ``env``.
        env: A scratch ``Bandexa/*`` env (it is reset and stepped, see
            :func:`candidates_change`).
        changes: The result of :func:`candidates_change` when the caller already has it
            (one probe serves every agent of an env).

    Returns:
        A one-line reason, or None.
    """
    if agent.capabilities.changing_candidates:
        return None
    if changes is None:
        changes = candidates_change(env)
    if not changes:
        return None
    return (
        "the candidates change from round to round and "
        f"{agent.capabilities.reason('changing_candidates')}"
    )
