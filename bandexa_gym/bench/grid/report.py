"""``bandexa-bench report DIR``: a self-contained Markdown report of a results folder.

:func:`write_report` reads the run files of any folder a grid wrote with ``--out`` (finished,
interrupted, resumed, local or Ray: they all keep one file per run under ``runs/``), rebuilds
the tables from them and writes ``report.md`` with ``regret.png`` beside it: what ran (the
command line, versions, status), the results table with 95 % bootstrap intervals over seeds,
for a suite the normalized-regret table, and, wherever ``uniform`` ran, the across-problem
aggregates (IQM with its stratified bootstrap interval, probability of improvement) and the
plot. Nothing else in the folder is changed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bandexa_gym.atomic import atomic_write
from bandexa_gym.bench.grid.aggregates import format_improvement_table, format_iqm_table
from bandexa_gym.bench.grid.jobs import RunRecord
from bandexa_gym.bench.grid.results import (
    DEFAULT_WINDOW,
    format_table,
    plot_regret,
    summarize,
)
from bandexa_gym.bench.grid.store import RUNS_FOLDER, RunFileError, RunStore
from bandexa_gym.bench.grid.suite_table import format_suite_table, suite_cells
from bandexa_gym.bench.grid.summaries import failure_notes, suite_aggregates

__all__ = ["REPORT_FILE", "ReportError", "read_results", "write_report"]

REPORT_FILE = "report.md"
"""The report's file name in the results folder."""
PLOT_FILE = "regret.png"


class ReportError(ValueError):
    """The folder is not a results folder, or none of its runs can be read."""


def read_results(out: Path) -> tuple[dict[str, Any], list[RunRecord], list[str]]:
    """The grid's ``results.json`` document and every readable run of ``out``.

    The runs are those ``results.json`` lists, in its order, then any run file under
    ``runs/`` it does not list yet (a grid stopped before its summaries were rewritten).

    Returns:
        ``(document, records, problems)``: the document (``{}`` when the folder has run
        files but no ``results.json``), the records read, and one line per run file that
        could not be read.

    Raises:
        ReportError: ``out`` has neither ``results.json`` nor run files.
    """
    out = Path(out)
    store = RunStore(out)
    document: dict[str, Any] = {}
    results_json = out / "results.json"
    if results_json.is_file():
        try:
            document = json.loads(results_json.read_text())
        except (OSError, ValueError) as err:
            raise ReportError(f"{results_json} is not readable JSON: {err}") from err
    listed = [out / run["file"] for run in document.get("runs", []) if run.get("file")]
    extra = sorted(set(store.folder.glob("*.npz")) - set(listed)) if store.folder.is_dir() else []
    if not document and not extra:
        raise ReportError(
            f"{out} is not a bandexa-bench results folder: it has no results.json and no "
            f"{RUNS_FOLDER}/*.npz (write one with bandexa-bench --out {out})"
        )
    records, problems = [], []
    for path in [*listed, *extra]:
        try:
            records.append(store.read(path))
        except (RunFileError, OSError) as err:
            problems.append(f"{path.name}: {err}")
    return document, records, problems


def _block(text: str) -> list[str]:
    return ["```text", text, "```", ""]


def _order(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


def write_report(out: Path, plot: bool = True) -> Path:
    """Write ``out/report.md`` (and ``out/regret.png``) from the runs in ``out``.

    Args:
        out: A folder written by ``bandexa-bench --out``.
        plot: Draw ``regret.png`` (needs matplotlib; without it the report says so).

    Returns:
        The report's path.

    Raises:
        ReportError: ``out`` is not a results folder, or no run in it finished.
        OSError: A file could not be written (an older report stays intact).
    """
    out = Path(out)
    document, records, unreadable = read_results(out)
    results = [record.result for record in records if record.result is not None]
    if not results:
        raise ReportError(f"{out} holds no finished run to report on")
    config = document.get("config", {})
    window = int(config.get("window") or DEFAULT_WINDOW)
    not_applicable = {
        (item["env"], item["agent"]): item["reason"] for item in document.get("not_applicable", [])
    }
    failures = failure_notes(records)
    seeds = sorted({record.job.seed for record in records})
    agents = _order([*config.get("agents", {}), *(r.job.agent for r in records)])
    problems = _order(
        [*(p["name"] for p in config.get("problems", [])), *(r.job.problem_name for r in records)]
    )
    status = document.get("status", {})
    lines = [f"# Benchmark report: {out.name}", ""]
    if config.get("argv") is not None:
        lines += [
            "Command:",
            "",
            "```text",
            " ".join(["bandexa-bench", *config["argv"]]),
            "```",
            "",
        ]
    lines += [
        f"- Runs: {len(results)} finished, {sum(not r.ok for r in records)} failed"
        + (f", of {status['runs']} in the grid" if status.get("runs") else "")
        + (f" (state when last written: {status['state']})" if status.get("state") else ""),
        f"- Seeds: {', '.join(map(str, seeds))}",
        f"- Problems: {', '.join(problems)}",
        f"- Agents: {', '.join(agents)}",
    ]
    versions = document.get("versions", {})
    shown = [f"{name} {version}" for name, version in versions.items() if version]
    if shown:
        lines.append(f"- Versions: {', '.join(shown)}")
    lines += [f"- Tables rebuilt from the run files in `{RUNS_FOLDER}/`", ""]
    for problem in unreadable:
        lines.append(f"- Not read: {problem}")
    if unreadable:
        lines.append("")

    lines += ["## Results", ""]
    lines += _block(format_table(summarize(results, window), not_applicable, failures))
    cells = suite_cells(results)
    if cells:
        lines += ["## Regret normalized to uniform's", ""]
        lines += _block(format_suite_table(cells, problems, agents, not_applicable, failures))
        iqm, improvement = suite_aggregates(results, agents)
        lines += ["## Across problems", ""]
        lines += _block(format_iqm_table(iqm))
        lines += _block(format_improvement_table(improvement, [row["agent"] for row in iqm]))
    else:
        lines += [
            "No normalized regret and no across-problem aggregates: `uniform` (the "
            "normalizer) has no finished run.",
            "",
        ]
    if plot:
        lines += ["## Cumulative regret", ""]
        try:
            plot_regret(out / PLOT_FILE, results)
            lines += [f"![cumulative regret per round, mean ± 1 sd over seeds]({PLOT_FILE})", ""]
        except ImportError:
            lines += ['No plot: matplotlib is not installed (pip install "bandexa-gym[plot]").', ""]
    path = out / REPORT_FILE
    atomic_write(path, "\n".join(lines).rstrip("\n").encode() + b"\n")
    return path
