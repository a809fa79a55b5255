"""Intervals and across-problem aggregates of a grid's results, in NumPy.

* :func:`bootstrap_ci`: the 95 % percentile-bootstrap interval of a mean over seeds, the
  interval every table of the bench prints;
* :func:`iqm_rows`: each agent's interquartile mean (IQM) of normalized regret over all its
  (problem, seed) scores, with a stratified bootstrap interval: the seeds are resampled
  within each problem, so every resample keeps every problem (Agarwal et al., "Deep
  Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021);
* :func:`improvement_rows`: the probability of improvement of agent A over agent B, the
  chance that A's normalized regret on a problem is lower than B's (every seed of A against
  every seed of B, ties counted half), averaged over the problems both ran.

Every resampling draws from a generator seeded with :data:`BOOTSTRAP_SEED`, and values are
sorted before they are resampled, so an interval depends only on the values, never on the
order runs finished in: the same results folder gives the same intervals, resumed or not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "BOOTSTRAP_NOTE",
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "CONFIDENCE",
    "IMPROVEMENT_COLUMNS",
    "IQM_COLUMNS",
    "bootstrap_ci",
    "format_ci",
    "format_improvement_table",
    "format_iqm_table",
    "improvement_rows",
    "interquartile_mean",
    "iqm_rows",
]

CONFIDENCE = 0.95
"""Coverage of every interval."""
BOOTSTRAP_RESAMPLES = 2000
"""Bootstrap resamples per interval."""
BOOTSTRAP_SEED = 0
"""Seed of the bootstrap's generator (intervals are reproducible)."""
BOOTSTRAP_NOTE = (
    f"95% CI: percentile bootstrap of the mean over seeds ({BOOTSTRAP_RESAMPLES:,} resamples, "
    f"seed {BOOTSTRAP_SEED}); none with one seed"
)
"""The footnote of the tables that print :func:`bootstrap_ci` intervals."""

IQM_COLUMNS: tuple[str, ...] = ("agent", "problems", "scores", "iqm", "ci_low", "ci_high")
"""Columns of ``aggregates.csv``, one row per agent."""
IMPROVEMENT_COLUMNS: tuple[str, ...] = ("agent", "other", "problems", "probability")
"""Columns of ``improvement.csv``, one row per ordered pair of agents."""

Scores = Mapping[str, Mapping[str, Mapping[int, float]]]
"""agent -> problem -> seed -> normalized regret."""


def _percentiles(stats: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The 95 % percentile-bootstrap interval of the mean of ``values`` (seeds).

    Args:
        values: One value per seed.

    Returns:
        ``(low, high)``; ``(None, None)`` for fewer than two values (no spread to resample).
    """
    arr = np.sort(np.asarray(values, dtype=np.float64))
    if arr.size < 2:
        return None, None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = arr[rng.integers(0, arr.size, size=(BOOTSTRAP_RESAMPLES, arr.size))].mean(axis=1)
    return _percentiles(means)


def format_ci(low: float | None, high: float | None, digits: int) -> str:
    """``[low, high]`` with ``digits`` decimals, ``-`` when there is no interval."""
    if low is None or high is None:
        return "-"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def interquartile_mean(values: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Mean of the middle half of ``values`` along ``axis`` (25 % cut from each end, as
    ``scipy.stats.trim_mean(values, 0.25)``)."""
    arr = np.sort(np.asarray(values, dtype=np.float64), axis=axis)
    n = arr.shape[axis]
    cut = int(0.25 * n)
    return np.take(arr, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def iqm_rows(scores: Scores, agents: Sequence[str]) -> list[dict[str, Any]]:
    """Each agent's IQM of normalized regret with its stratified bootstrap interval.

    Args:
        scores: agent -> problem -> seed -> normalized regret.
        agents: Agents in table order (those without scores are left out).

    Returns:
        :data:`IQM_COLUMNS` dicts: the problems and (problem, seed) scores behind the IQM,
        the IQM, and the 95 % interval from resampling the seeds within each problem
        (``None`` when no problem has two seeds).
    """
    rows = []
    for agent in agents:
        per_problem = [
            np.sort(np.fromiter(by_seed.values(), dtype=np.float64))
            for _, by_seed in sorted(scores.get(agent, {}).items())
            if by_seed
        ]
        if not per_problem:
            continue
        low = high = None
        if any(values.size > 1 for values in per_problem):
            rng = np.random.default_rng(BOOTSTRAP_SEED)
            resampled = np.concatenate(
                [
                    values[rng.integers(0, values.size, size=(BOOTSTRAP_RESAMPLES, values.size))]
                    for values in per_problem
                ],
                axis=1,
            )
            low, high = _percentiles(interquartile_mean(resampled, axis=1))
        rows.append(
            {
                "agent": agent,
                "problems": len(per_problem),
                "scores": int(sum(values.size for values in per_problem)),
                "iqm": float(interquartile_mean(np.concatenate(per_problem))),
                "ci_low": low,
                "ci_high": high,
            }
        )
    return rows


def _probability_lower(a: np.ndarray, b: np.ndarray) -> float:
    """P(a value of ``a`` < a value of ``b``) over all pairs, ties counted half."""
    diff = a[:, None] - b[None, :]
    return float(np.mean(diff < 0) + 0.5 * np.mean(diff == 0))


def improvement_rows(scores: Scores, agents: Sequence[str]) -> list[dict[str, Any]]:
    """The probability of improvement of every agent over every other one.

    Args:
        scores: agent -> problem -> seed -> normalized regret.
        agents: Agents in table order.

    Returns:
        :data:`IMPROVEMENT_COLUMNS` dicts for every ordered pair (agent, other) of distinct
        agents with a problem in common: the mean over those problems of P(agent's
        normalized regret < other's), every seed against every seed, ties counted half.
    """
    rows = []
    for agent in agents:
        for other in agents:
            if other == agent:
                continue
            mine, theirs = scores.get(agent, {}), scores.get(other, {})
            common = sorted(set(mine) & set(theirs))
            chances = [
                _probability_lower(
                    np.fromiter(mine[p].values(), dtype=np.float64),
                    np.fromiter(theirs[p].values(), dtype=np.float64),
                )
                for p in common
                if mine[p] and theirs[p]
            ]
            if chances:
                rows.append(
                    {
                        "agent": agent,
                        "other": other,
                        "problems": len(chances),
                        "probability": float(np.mean(chances)),
                    }
                )
    return rows


def _align(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(
            text.ljust(width) if i == 0 else text.rjust(width)
            for i, (text, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths), *(fmt(row) for row in body)]


def format_iqm_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """:func:`iqm_rows` as an aligned table, lowest IQM first, with its footnote."""
    ordered = sorted(rows, key=lambda row: float(row["iqm"]))
    body = [
        [
            str(row["agent"]),
            f"{row['iqm']:.3f}",
            format_ci(row["ci_low"], row["ci_high"], 3),
            str(row["problems"]),
            str(row["scores"]),
        ]
        for row in ordered
    ]
    lines = [
        "interquartile mean (IQM) of normalized regret over problems and seeds (lower is better)",
        *_align(["agent", "IQM", "95% CI", "problems", "runs"], body),
        f"95% CI: stratified percentile bootstrap (seeds resampled within each problem, "
        f"{BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}); '-' with one seed per problem",
    ]
    return "\n".join(lines)


def format_improvement_table(rows: Sequence[Mapping[str, Any]], agents: Sequence[str]) -> str:
    """:func:`improvement_rows` as a matrix: row A, column B reads P(A's regret < B's)."""
    chance = {(row["agent"], row["other"]): float(row["probability"]) for row in rows}
    body = [
        [
            agent,
            *("-" if (p := chance.get((agent, other))) is None else f"{p:.2f}" for other in agents),
        ]
        for agent in agents
    ]
    lines = [
        "probability of improvement: P(row agent's normalized regret < column agent's), "
        "every seed against every seed (ties half), averaged over the problems both ran",
        *_align(["agent", *agents], body),
    ]
    return "\n".join(lines)
