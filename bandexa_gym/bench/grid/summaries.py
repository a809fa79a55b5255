"""The summary files of a grid's output folder, rebuilt from its runs.

:class:`SummaryWriter` writes, each file atomically:

* ``results.json``: the grid's config, versions, platform, status (runs total, finished,
  failed, not applicable; ``running``, ``complete`` or ``interrupted``), the summary rows,
  every run's figures and file (no per-round curves: those are in ``runs/*.npz``), the
  not-applicable pairs and the failures;
* ``summary.csv``: one row per (env, agent) over its finished seeds, with ``ci_low`` /
  ``ci_high``, the 95 % percentile-bootstrap interval over seeds of the mean cumulative regret;
* ``runs.csv``: one row per run, failed runs included;
* ``suite.csv`` (suites): each agent's regret normalized to uniform's, its 95 % interval
  and its rank;
* ``aggregates.csv`` (suites): each agent's interquartile mean of normalized regret over
  problems and seeds, with its stratified bootstrap interval;
* ``improvement.csv`` (suites): the probability of improvement of every agent over every
  other one (see :mod:`~bandexa_gym.bench.grid.aggregates`);
* ``regret.png`` (``plot=True``, on the final write): the regret curves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bandexa_gym.bench.grid.aggregates import (
    IMPROVEMENT_COLUMNS,
    IQM_COLUMNS,
    improvement_rows,
    iqm_rows,
)
from bandexa_gym.bench.grid.jobs import RunRecord
from bandexa_gym.bench.grid.results import (
    DEFAULT_WINDOW,
    RUN_COLUMNS,
    now_utc,
    package_versions,
    platform_info,
    plot_regret,
    run_rows,
    summarize,
    write_csv,
    write_json,
)
from bandexa_gym.bench.grid.store import RunStore
from bandexa_gym.bench.grid.suite_table import (
    SUITE_COLUMNS,
    normalized_regrets,
    suite_cells,
    suite_rows,
)

__all__ = ["SUMMARY_COLUMNS", "SummaryWriter", "failure_notes", "suite_aggregates"]

SUMMARY_COLUMNS: tuple[str, ...] = (
    "env",
    "env_id",
    "agent",
    "seeds",
    "horizon",
    "window",
    "cumulative_regret_mean",
    "cumulative_regret_std",
    "ci_low",
    "ci_high",
    "final_reward_mean",
    "final_reward_std",
    "decisions_per_second_mean",
    "wall_seconds_mean",
    "wall_seconds_total",
)
"""Columns of ``summary.csv``, one row per (env, agent)."""


def failure_notes(records: Sequence[RunRecord]) -> dict[tuple[str, str], str]:
    """(env, agent) -> "seed s failed: Error: message; ..." for the failed runs."""
    notes: dict[tuple[str, str], list[str]] = {}
    for record in records:
        if not record.ok:
            job = record.job
            notes.setdefault((job.problem_name, job.agent), []).append(
                f"seed {job.seed} failed: {record.error}"
            )
    return {pair: "; ".join(texts) for pair, texts in notes.items()}


def suite_aggregates(
    results: Sequence[Any], agents: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The across-problem aggregates of a suite's finished runs: the IQM rows
    (:data:`~bandexa_gym.bench.grid.aggregates.IQM_COLUMNS`) and the probability-of-improvement
    rows (:data:`~bandexa_gym.bench.grid.aggregates.IMPROVEMENT_COLUMNS`), both in
    ``agents`` order, from the regret normalized to uniform's on the same seed."""
    scores: dict[str, dict[str, dict[int, float]]] = {}
    for problem, by_agent in normalized_regrets(results).items():
        for agent, by_seed in by_agent.items():
            scores.setdefault(agent, {})[problem] = by_seed
    return iqm_rows(scores, agents), improvement_rows(scores, agents)


@dataclass
class SummaryWriter:
    """Rebuilds a grid's summary files from its records.

    Attributes:
        out: The output folder.
        config: The grid's config (written into ``results.json``).
        total: Number of runs in the grid.
        window: Rounds of the final moving-average reward.
        not_applicable: (env, agent) -> why the pair is not run.
        suite: For a suite: ``(problem names, agent names)`` in table order.
        plot: Write ``regret.png`` on the final write.
    """

    out: Path
    config: Mapping[str, Any]
    total: int
    window: int = DEFAULT_WINDOW
    not_applicable: Mapping[tuple[str, str], str] = field(default_factory=dict)
    suite: tuple[Sequence[str], Sequence[str]] | None = None
    plot: bool = False

    def write(self, records: Sequence[RunRecord], status: str, final: bool = False) -> list[Path]:
        """Rebuild every summary file from ``records`` (in grid order).

        Args:
            records: The grid's runs that ended, finished or failed.
            status: ``"running"``, ``"complete"`` or ``"interrupted"``.
            final: Also draw ``regret.png`` (when ``plot``).

        Returns:
            The files written.

        Raises:
            OSError: A file could not be written; the previous version of that file (and
                of the files not yet rewritten) is intact.
        """
        store = RunStore(self.out)
        results = [r.result for r in records if r.result is not None]
        rows = summarize(results, self.window)
        runs = run_rows(records, self.window, store)
        for run, record in zip(runs, records, strict=True):
            run["env_kwargs"] = record.job.env_kwargs
            run["agent_kwargs"] = record.job.agent_kwargs
            run["config_hash"] = record.job.config_hash()
        failed = sum(not r.ok for r in records)
        document: dict[str, Any] = {
            "created": now_utc(),
            "status": {
                "state": status,
                "runs": self.total,
                "finished": len(records) - failed,
                "failed": failed,
                "not_applicable": len(self.not_applicable),
            },
            "config": dict(self.config),
            "versions": package_versions(),
            "platform": platform_info(),
            "summary": rows,
            "runs": runs,
            "not_applicable": [
                {"env": env, "agent": agent, "reason": reason}
                for (env, agent), reason in self.not_applicable.items()
            ],
            "failures": [
                {
                    "env": r.job.problem_name,
                    "agent": r.job.agent,
                    "seed": r.job.seed,
                    "error": r.error,
                }
                for r in records
                if not r.ok
            ],
        }
        written = []
        if self.suite is not None:
            problems, agents = self.suite
            cells = suite_rows(suite_cells(results), problems, agents)
            document["suite"] = cells
            iqm, improvement = suite_aggregates(results, agents)
            document["aggregates"] = {"iqm": iqm, "improvement": improvement}
            written.append(write_csv(self.out / "suite.csv", cells, SUITE_COLUMNS))
            written.append(write_csv(self.out / "aggregates.csv", iqm, IQM_COLUMNS))
            written.append(
                write_csv(self.out / "improvement.csv", improvement, IMPROVEMENT_COLUMNS)
            )
        written.append(write_csv(self.out / "summary.csv", rows, SUMMARY_COLUMNS))
        written.append(write_csv(self.out / "runs.csv", runs, RUN_COLUMNS))
        written.insert(0, write_json(self.out / "results.json", document))
        if final and self.plot and results:
            written.append(plot_regret(self.out / "regret.png", results))
        return written
