"""Agents meet logged data: evaluate a policy on a log, warm-start an agent from one.

:mod:`bandexa_gym.offline.estimators` holds the estimators (arrays in, estimates out) and
:mod:`bandexa_gym.offline.logs` the log format; this module connects them to agents:

* :func:`policy_probabilities` — a frozen agent's probability of every candidate of every
  logged round (``agent.action_distribution``), the ``target_probs`` of the estimators;
* :func:`reward_predictions` — an agent's posterior-mean reward of every candidate, a
  reward model for the direct method and doubly robust estimators;
* :func:`fit_reward_model` — a reward model learned from the log itself, with two-fold
  cross-fitting (each half is predicted by a model fitted on the other half);
* :func:`evaluate_policy` — all of it, run through :func:`bandexa_gym.ope.evaluate`;
* :func:`warm_start` — off-policy learning: an agent learns the logged rounds (as batched
  ``observe`` calls) and then goes on online.

Warm starts need no importance weights for the agents here: their heads and encoders
regress the reward on (context, action), and a regression is unbiased under the logging
policy's choice of actions as long as every action the agent will need was logged with
some probability.

Example:
    >>> from bandexa_gym.agents import make_agent
    >>> from bandexa_gym.logs import read_log
    >>> log = read_log("runs/uniform-log")                        # doctest: +SKIP
    >>> agent = warm_start(make_agent("neural_linear_ts", env), log)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from bandexa_gym.agents.core import Agent
from bandexa_gym.offline.checks import Estimate
from bandexa_gym.offline.evaluate import evaluate
from bandexa_gym.offline.logs import LogBatch, read_log

__all__ = [
    "evaluate_policy",
    "subset_log",
    "fit_reward_model",
    "log_space",
    "policy_probabilities",
    "reward_predictions",
    "warm_start",
]

LogLike = LogBatch | str | os.PathLike[str]


def _log(log: LogLike) -> LogBatch:
    return log if isinstance(log, LogBatch) else read_log(log)


def _rows(batch: LogBatch, size: int) -> Iterator[tuple[dict[str, np.ndarray], slice]]:
    """Batched observations of the log's rounds, ``size`` rounds at a time."""
    for start in range(0, len(batch), size):
        rows = slice(start, min(start + size, len(batch)))
        obs = {
            "context": batch.context[rows],
            "candidates": batch.candidates[rows],
            "action_mask": batch.action_mask[rows],
        }
        yield obs, rows


def log_space(log: LogLike) -> spaces.Dict:
    """The observation space of a log's rounds, for ``make_agent(name, log_space(log))``."""
    batch = _log(log)
    context = batch.context
    low, high = (0.0, 1.0) if context.dtype == np.uint8 else (-np.inf, np.inf)
    k, d_a = batch.candidates.shape[1:]
    return spaces.Dict(
        {
            "context": spaces.Box(low, high, context.shape[1:], context.dtype),
            "candidates": spaces.Box(-np.inf, np.inf, (k, d_a), np.float32),
            "action_mask": spaces.Box(0, 1, (k,), np.int8),
        }
    )


def policy_probabilities(agent: Agent, log: LogLike, *, batch_size: int = 512) -> np.ndarray:
    """The frozen ``agent``'s probability of every candidate of every logged round.

    Args:
        agent: The policy to evaluate (it does not learn from the log).
        log: A :class:`~bandexa_gym.offline.logs.LogBatch` or the log's folder.
        batch_size: Rounds per batched call.

    Returns:
        (n, K) float64, rows summing to 1, 0 on masked candidates.
    """
    batch = _log(log)
    out = np.empty(batch.action_mask.shape, dtype=np.float64)
    for obs, rows in _rows(batch, batch_size):
        out[rows] = agent.action_distribution(obs)
    return out


def reward_predictions(agent: Agent, log: LogLike, *, batch_size: int = 512) -> np.ndarray:
    """``agent``'s posterior-mean reward of every candidate of every logged round: (n, K).

    Raises:
        TypeError: The agent has no ``predict`` (no posterior over rewards).
    """
    predict = getattr(agent, "predict", None)
    if predict is None:
        raise TypeError(f"{agent.name} has no posterior mean to use as a reward model")
    batch = _log(log)
    out = np.empty(batch.action_mask.shape, dtype=np.float64)
    for obs, rows in _rows(batch, batch_size):
        out[rows] = predict(obs)[0]
    return out


def warm_start(
    agent: Agent, log: LogLike, *, rows: slice | None = None, batch_size: int = 256
) -> Agent:
    """Let ``agent`` learn the logged rounds, in log order, then return it (to go on online).

    Args:
        agent: An agent built for the log's observation space.
        log: A :class:`~bandexa_gym.offline.logs.LogBatch` or the log's folder.
        rows: Only these rounds (default: all).
        batch_size: Rounds per batched ``observe`` (the agent learns them as if one at a
            time, its training schedule included).

    Returns:
        ``agent``, having observed the rounds.
    """
    batch = _log(log)
    selected = range(len(batch))[rows] if rows is not None else range(len(batch))
    start, stop = selected.start, selected.stop
    for begin in range(start, stop, batch_size):
        part = slice(begin, min(begin + batch_size, stop))
        obs = {
            "context": batch.context[part],
            "candidates": batch.candidates[part],
            "action_mask": batch.action_mask[part],
        }
        agent.observe(obs, batch.action[part], batch.reward[part])
    return agent


def fit_reward_model(
    factory: Callable[[], Agent], log: LogLike, *, folds: int = 2, batch_size: int = 256
) -> np.ndarray:
    """Cross-fitted reward predictions (n, K): fold i is predicted by a fresh agent from
    ``factory()`` warm-started on the other folds (no round predicts itself)."""
    batch = _log(log)
    n = len(batch)
    if folds < 2 or folds > n:
        raise ValueError(f"folds must be in [2, {n}], got {folds}")
    bounds = np.linspace(0, n, folds + 1).astype(int)
    out = np.empty(batch.action_mask.shape, dtype=np.float64)
    for i in range(folds):
        model = factory()
        for j in range(folds):
            if j != i:
                warm_start(
                    model, batch, rows=slice(bounds[j], bounds[j + 1]), batch_size=batch_size
                )
        held_out = slice(bounds[i], bounds[i + 1])
        out[held_out] = reward_predictions(model, subset_log(batch, held_out))
    return out


def subset_log(batch: LogBatch, rows: slice) -> LogBatch:
    """The rounds ``rows`` of ``batch`` (every field and extra column)."""
    fields = ("context", "candidates", "action_mask", "action", "propensity", "reward",
              "expected_rewards")  # fmt: skip
    values = {f: None if getattr(batch, f) is None else getattr(batch, f)[rows] for f in fields}
    extra = {k: v[rows] for k, v in batch.extra.items()}
    return LogBatch(**values, extra=extra, num_rows=len(range(len(batch))[rows]))


def evaluate_policy(
    policy: Agent,
    log: LogLike,
    *,
    reward_model: np.ndarray | Agent | Callable[[], Agent] | None = None,
    estimators: Sequence[str] | None = None,
    **options: Any,
) -> dict[str, Estimate]:
    """Off-policy estimates of ``policy``'s value on a log (with bootstrap intervals).

    Args:
        policy: The (frozen) agent to evaluate.
        log: A log with propensities (a :class:`~bandexa_gym.offline.logs.LogBatch` or its folder).
        reward_model: For DM and the doubly robust estimators: predictions (n, K), an
            agent whose posterior mean serves as the model, or a factory of agents that
            are cross-fitted on the log (:func:`fit_reward_model`). None runs only the
            estimators that need no model.
        estimators: Names in :data:`bandexa_gym.ope.ESTIMATORS` (default: all that apply).
        **options: Passed to :func:`bandexa_gym.ope.evaluate` (``n_bootstrap``, ``seed``,
            ``min_propensity``, ``confidence``).

    Returns:
        Estimate per estimator name.

    Raises:
        ValueError: The log's propensities are missing, 0 or outside (0, 1].
    """
    batch = _log(log)
    target = policy_probabilities(policy, batch)
    if isinstance(reward_model, Agent):
        q = reward_predictions(reward_model, batch)
    elif callable(reward_model):
        q = fit_reward_model(reward_model, batch)
    else:
        q = reward_model
    return evaluate(
        batch.reward, batch.propensity, target, batch.action, q, estimators=estimators, **options
    )
