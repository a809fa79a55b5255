"""The suite table: each agent's regret normalized to uniform's, and ranks per problem.

For a problem and a seed, an agent's normalized regret is its cumulative regret divided by
uniform's on the same seed (the same rounds), so 1.0 is no better than guessing and 0 is
the oracle. Cells are the mean ± standard deviation (ddof=1) over seeds, and the agent's
rank on that problem among the agents that ran there (1 = lowest mean; ties share the
mean of their ranks). The last column is the mean rank over the problems the agent ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bandexa_gym.bench.runner import RunResult

__all__ = ["SUITE_COLUMNS", "SuiteCell", "format_suite_table", "suite_cells", "suite_rows"]

SUITE_COLUMNS: tuple[str, ...] = (
    "env",
    "agent",
    "seeds",
    "normalized_regret_mean",
    "normalized_regret_std",
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
    """

    seeds: int
    mean: float
    std: float | None
    rank: float


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
    regret: dict[str, dict[str, dict[int, float]]] = {}
    for result in results:
        by_agent = regret.setdefault(result.info["env"], {})
        by_agent.setdefault(result.info["agent"], {})[result.info["seed"]] = float(
            np.sum(result.regrets)
        )
    cells: dict[tuple[str, str], SuiteCell] = {}
    for problem, by_agent in regret.items():
        base = {s: r for s, r in by_agent.get(normalizer, {}).items() if r > 0}
        stats: dict[str, tuple[int, float, float | None]] = {}
        for agent, seeds in by_agent.items():
            values = np.array([seeds[s] / base[s] for s in sorted(seeds) if s in base])
            if values.size:
                std = float(values.std(ddof=1)) if values.size > 1 else None
                stats[agent] = (int(values.size), float(values.mean()), std)
        ranks = _ranks({agent: mean for agent, (_, mean, _) in stats.items()})
        for agent, (n, mean, std) in stats.items():
            cells[problem, agent] = SuiteCell(n, mean, std, ranks[agent])
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

    A cell reads ``mean±std (rank)``; ``n/a [k]`` is a pair that was not run and ``-`` one
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
        "regret / uniform's regret on the same seed: mean±std over seeds (rank per problem)",
        fmt(header),
        "  ".join("-" * w for w in widths),
        *(fmt(row) for row in body),
        *notes,
    ]
    return "\n".join(lines)
