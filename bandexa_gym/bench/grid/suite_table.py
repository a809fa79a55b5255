"""The suite table: each agent's regret normalized to uniform's, and ranks per problem.

For a problem and a seed, an agent's normalized regret is its cumulative regret divided by
uniform's on the same seed (the same rounds), so 1.0 is no better than guessing and 0 is
the oracle. Cells are the mean ± standard deviation (ddof=1) over seeds, the agent's
rank on that problem among the agents that ran there (1 = lowest mean; ties share the
mean of their ranks) and the 95 % percentile-bootstrap interval of the mean over seeds
(:func:`~bandexa_gym.bench.grid.aggregates.bootstrap_ci`). The last column is the mean rank
over the problems the agent ran. :func:`normalized_regrets` gives the per-seed values the
across-problem aggregates (:mod:`~bandexa_gym.bench.grid.aggregates`) are computed from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bandexa_gym.bench.grid.aggregates import BOOTSTRAP_NOTE, bootstrap_ci, format_ci
from bandexa_gym.bench.runner import RunResult

__all__ = [
    "SUITE_COLUMNS",
    "SuiteCell",
    "format_suite_table",
    "normalized_regrets",
    "suite_cells",
    "suite_rows",
]

SUITE_COLUMNS: tuple[str, ...] = (
    "env",
    "agent",
    "seeds",
    "normalized_regret_mean",
    "normalized_regret_std",
    "ci_low",
    "ci_high",
    "rank",
)
"""Columns of ``suite.csv``, one row per (problem, agent)."""


@dataclass(frozen=True)
class SuiteCell:
    """One (problem, agent) cell of the suite table.

    Attributes:
        seeds: Seeds with both the agent's and uniform's run finished.
        mean: Mean normalized regret over those seeds.
        std: Its sample standard deviation (None with one seed).
        rank: Rank among the agents on the problem (1 = best).
        ci_low: Lower end of the mean's 95 % bootstrap interval over seeds (None with one).
        ci_high: Its upper end.
    """

    seeds: int
    mean: float
    std: float | None
    rank: float
    ci_low: float | None = None
    ci_high: float | None = None


def _ranks(means: Mapping[str, float]) -> dict[str, float]:
    """Rank 1 for the lowest value; ties get the mean of the ranks they span."""
    ordered = sorted(means, key=lambda agent: means[agent])
    ranks: dict[str, float] = {}
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and means[ordered[j + 1]] == means[ordered[i]]:
            j += 1
        for agent in ordered[i : j + 1]:
            ranks[agent] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def normalized_regrets(
    results: Sequence[RunResult], normalizer: str = "uniform"
) -> dict[str, dict[str, dict[int, float]]]:
    """Each run's cumulative regret divided by ``normalizer``'s on the same problem and seed.

    Args:
        results: Finished runs; ``info`` names ``env`` (the problem), ``agent``, ``seed``.
        normalizer: The agent whose regret on the same seed divides each agent's.

    Returns:
        problem -> agent -> seed -> normalized regret, seeds in increasing order; seeds
        without a finished ``normalizer`` run (or where its regret is 0) are left out.
    """
    regret: dict[str, dict[str, dict[int, float]]] = {}
    for result in results:
        by_agent = regret.setdefault(result.info["env"], {})
        by_agent.setdefault(result.info["agent"], {})[result.info["seed"]] = float(
            np.sum(result.regrets)
        )
    normalized: dict[str, dict[str, dict[int, float]]] = {}
    for problem, by_agent in regret.items():
        base = {s: r for s, r in by_agent.get(normalizer, {}).items() if r > 0}
        for agent, seeds in by_agent.items():
            values = {s: seeds[s] / base[s] for s in sorted(seeds) if s in base}
            if values:
                normalized.setdefault(problem, {})[agent] = values
    return normalized


def suite_cells(
    results: Sequence[RunResult], normalizer: str = "uniform"
) -> dict[tuple[str, str], SuiteCell]:
    """Normalized regret and rank of every (problem, agent) with finished runs.

    Args:
        results: Finished runs; ``info`` names ``env`` (the problem), ``agent``, ``seed``.
        normalizer: The agent whose regret on the same seed divides each agent's.

    Returns:
        (problem, agent) -> :class:`SuiteCell`; problems without a finished
        ``normalizer`` run (or where its regret is 0) have no cells.
    """
    cells: dict[tuple[str, str], SuiteCell] = {}
    for problem, by_agent in normalized_regrets(results, normalizer).items():
        stats: dict[str, tuple[int, float, float | None, tuple[float | None, float | None]]] = {}
        for agent, seeds in by_agent.items():
            values = np.array(list(seeds.values()))
            std = float(values.std(ddof=1)) if values.size > 1 else None
            stats[agent] = (int(values.size), float(values.mean()), std, bootstrap_ci(values))
        ranks = _ranks({agent: stat[1] for agent, stat in stats.items()})
        for agent, (n, mean, std, (low, high)) in stats.items():
            cells[problem, agent] = SuiteCell(n, mean, std, ranks[agent], low, high)
    return cells


def suite_rows(
    cells: Mapping[tuple[str, str], SuiteCell], problems: Sequence[str], agents: Sequence[str]
) -> list[dict[str, object]]:
    """``suite.csv`` rows (:data:`SUITE_COLUMNS`), in problem then agent order."""
    return [
        {
            "env": problem,
            "agent": agent,
            "seeds": cell.seeds,
            "normalized_regret_mean": cell.mean,
            "normalized_regret_std": cell.std,
            "ci_low": cell.ci_low,
            "ci_high": cell.ci_high,
            "rank": cell.rank,
        }
        for problem in problems
        for agent in agents
        if (cell := cells.get((problem, agent))) is not None
    ]


def format_suite_table(
    cells: Mapping[tuple[str, str], SuiteCell],
    problems: Sequence[str],
    agents: Sequence[str],
    not_applicable: Mapping[tuple[str, str], str] | None = None,
    failures: Mapping[tuple[str, str], str] | None = None,
) -> str:
    """One row per agent (best mean rank first), one column per problem, then the mean rank.

    A cell reads ``mean±std (rank) [low, high]`` (the 95 % interval, none with one seed);
    ``n/a [k]`` is a pair that was not run and ``-`` one
    without finished runs, with numbered notes (not run, failed) under the table.
    """
    not_applicable = dict(not_applicable or {})
    failures = dict(failures or {})
    notes: list[str] = []

    def note(text: str) -> str:
        notes.append(f"[{len(notes) + 1}] {text}")
        return f"[{len(notes)}]"

    mean_rank: dict[str, float | None] = {}
    for agent in agents:
        ranks = [cells[p, agent].rank for p in problems if (p, agent) in cells]
        mean_rank[agent] = float(np.mean(ranks)) if ranks else None
    order = sorted(
        agents, key=lambda a: (mean_rank[a] is None, mean_rank[a] or 0.0, agents.index(a))
    )
    header = ["agent", *problems, "mean rank"]
    body = []
    for agent in order:
        line = [agent]
        for problem in problems:
            cell = cells.get((problem, agent))
            if (problem, agent) in not_applicable:
                text = "n/a " + note(f"{agent} on {problem}: {not_applicable[problem, agent]}")
            elif cell is None:
                text = "-"
            else:
                spread = "" if cell.std is None else f"±{cell.std:.2f}"
                text = f"{cell.mean:.2f}{spread} ({cell.rank:g})"
                if cell.ci_low is not None:
                    text += " " + format_ci(cell.ci_low, cell.ci_high, 2)
            if (problem, agent) in failures:
                text += " " + note(f"{agent} on {problem}: {failures[problem, agent]}")
            line.append(text)
        rank = mean_rank[agent]
        line.append("-" if rank is None else f"{rank:.2f}")
        body.append(line)
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        cells_text = [
            text.ljust(width) if i == 0 else text.rjust(width)
            for i, (text, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells_text).rstrip()

    lines = [
        "regret / uniform's regret on the same seed: mean±std over seeds (rank per problem) "
        "[95% CI]",
        fmt(header),
        "  ".join("-" * w for w in widths),
        *(fmt(row) for row in body),
        *notes,
        BOOTSTRAP_NOTE,
    ]
    return "\n".join(lines)
