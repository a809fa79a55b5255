"""Summaries of a grid's runs: the table, the summary files and the regret plot.

Everything here is computed from :class:`~bandexa_gym.bench.grid.jobs.RunRecord` s (or plain
:class:`~bandexa_gym.bench.runner.RunResult` s), so the summary files can be rebuilt at any time
from the run files that exist. Each file is replaced atomically: a reader sees the previous
complete version or the new one, never a half-written file.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bandexa_gym.atomic import atomic_path, atomic_write
from bandexa_gym.bench.grid.aggregates import BOOTSTRAP_NOTE, bootstrap_ci, format_ci
from bandexa_gym.bench.grid.jobs import RunRecord
from bandexa_gym.bench.grid.store import RunStore
from bandexa_gym.bench.runner import RunResult

__all__ = [
    "DEFAULT_WINDOW",
    "PairNotes",
    "format_table",
    "json_default",
    "package_versions",
    "platform_info",
    "line_style",
    "plot_regret",
    "regret_figure",
    "run_rows",
    "summarize",
    "write_csv",
    "write_json",
]

DEFAULT_WINDOW = 500
"""Rounds of the final moving-average reward."""

PairNotes = Mapping[tuple[str, str], str]
"""(env, agent) -> a note shown under the table (why it was not run, or what failed)."""

RUN_COLUMNS: tuple[str, ...] = (
    "env",
    "env_id",
    "agent",
    "seed",
    "status",
    "horizon",
    "cumulative_regret",
    "final_reward",
    "mean_reward",
    "decisions_per_second",
    "wall_seconds",
    "error",
    "file",
)
"""Columns of ``runs.csv``, one row per (env, agent, seed)."""


# -- summary rows ---------------------------------------------------------------------
def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1; None for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if arr.size > 1 else None)


def summarize(results: Sequence[RunResult], window: int = DEFAULT_WINDOW) -> list[dict[str, Any]]:
    """One row per (env, agent), in first-seen order, aggregated over seeds.

    Args:
        results: Results of :func:`~bandexa_gym.bench.grid.jobs.run_job` (their ``info``
            names env, agent and seed).
        window: Rounds of the final moving-average reward.

    Returns:
        Dicts with ``env``, ``env_id``, ``agent``, ``seeds``, ``horizon``, ``window``,
        ``cumulative_regret_mean``/``_std``, ``ci_low``/``ci_high`` (the 95 %
        percentile-bootstrap interval of the mean cumulative regret over seeds, see
        :func:`~bandexa_gym.bench.grid.aggregates.bootstrap_ci`),
        ``final_reward_mean``/``_std``, ``decisions_per_second_mean`` and
        ``wall_seconds_mean``/``_total``. Standard deviations are over seeds (ddof=1);
        standard deviations and intervals are None with one seed.
    """
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for result in results:
        groups.setdefault((result.info["env"], result.info["agent"]), []).append(result)
    rows = []
    for (env, agent), group in groups.items():
        regrets = [float(r.regrets.sum()) for r in group]
        regret_mean, regret_std = _mean_std(regrets)
        ci_low, ci_high = bootstrap_ci(regrets)
        reward_mean, reward_std = _mean_std([r.moving_average_reward(window) for r in group])
        seconds = [r.seconds for r in group]
        rows.append(
            {
                "env": env,
                "env_id": group[0].info.get("env_id", env),
                "agent": agent,
                "seeds": len(group),
                "horizon": group[0].horizon,
                "window": min(window, group[0].horizon),
                "cumulative_regret_mean": regret_mean,
                "cumulative_regret_std": regret_std,
                "ci_low": ci_low,
                "ci_high": ci_high,
                "final_reward_mean": reward_mean,
                "final_reward_std": reward_std,
                "decisions_per_second_mean": float(
                    np.mean([r.decisions_per_second for r in group])
                ),
                "wall_seconds_mean": float(np.mean(seconds)),
                "wall_seconds_total": float(np.sum(seconds)),
            }
        )
    return rows


def run_rows(
    records: Sequence[RunRecord], window: int = DEFAULT_WINDOW, store: RunStore | None = None
) -> list[dict[str, Any]]:
    """One tidy row per run (``runs.csv``): :data:`RUN_COLUMNS`, failed runs included."""
    rows = []
    for record in records:
        job, result = record.job, record.result
        row: dict[str, Any] = dict.fromkeys(RUN_COLUMNS)
        row.update(
            env=job.problem_name,
            env_id=job.env_id,
            agent=job.agent,
            seed=job.seed,
            status=record.status,
            horizon=job.horizon,
            error=record.error,
            file=store.relative(job) if store is not None else None,
        )
        if result is not None:
            row.update(
                horizon=result.horizon,
                cumulative_regret=float(result.regrets.sum()),
                final_reward=result.moving_average_reward(window),
                mean_reward=float(result.rewards.mean()) if result.horizon else None,
                decisions_per_second=_finite(result.decisions_per_second),
                wall_seconds=float(result.seconds),
            )
        rows.append(row)
    return rows


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# -- the table ------------------------------------------------------------------------------
def _pm(mean: float, std: float | None, digits: int) -> str:
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def format_table(
    rows: Sequence[dict[str, Any]],
    not_applicable: PairNotes | None = None,
    failures: PairNotes | None = None,
) -> str:
    """Render :func:`summarize` rows as an aligned plain-text table.

    Columns: env, agent, seeds, cumulative regret (mean ± std over seeds) and the 95 %
    percentile-bootstrap interval of its mean (``-`` with one seed; the footnote says how it
    is computed), final moving-average reward (mean ± std), decisions per second and wall
    seconds per run.

    Args:
        rows: :func:`summarize` rows.
        not_applicable: (env, agent) pairs that were not run, with the reason: an "n/a"
            row after the env's rows and a numbered note under the table.
        failures: (env, agent) pairs with failed runs, with what failed: a numbered note
            (and a "failed" row when no seed of the pair finished).
    """
    window = rows[0]["window"] if rows else DEFAULT_WINDOW
    header = (
        "env",
        "agent",
        "seeds",
        "cum. regret",
        "95% CI",
        f"reward (last {window})",
        "decisions/s",
        "wall s/run",
    )
    body = [
        [
            row["env"],
            row["agent"],
            str(row["seeds"]),
            _pm(row["cumulative_regret_mean"], row["cumulative_regret_std"], 1),
            format_ci(row.get("ci_low"), row.get("ci_high"), 1),
            _pm(row["final_reward_mean"], row["final_reward_std"], 3),
            f"{row['decisions_per_second_mean']:,.0f}",
            f"{row['wall_seconds_mean']:.2f}",
        ]
        for row in rows
    ]
    notes: list[str] = []

    def insert(env: str, line: list[str]) -> None:
        envs = [r[0] for r in body]
        at = len(envs) - envs[::-1].index(env) if env in envs else len(body)
        body.insert(at, line)

    for (env, agent), reason in (not_applicable or {}).items():
        notes.append(f"[{len(notes) + 1}] {agent} on {env}: not run: {reason}")
        insert(env, [env, agent, "-", f"n/a [{len(notes)}]", "-", "n/a", "-", "-"])
    for (env, agent), what in (failures or {}).items():
        notes.append(f"[{len(notes) + 1}] {agent} on {env}: {what}")
        mark = f" [{len(notes)}]"
        for line in body:
            if line[0] == env and line[1] == agent:
                line[2] += mark
                break
        else:
            insert(env, [env, agent, "0" + mark, "failed", "-", "-", "-", "-"])
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    left = 2  # env and agent are left-aligned, numbers right-aligned

    def fmt(line: Sequence[str]) -> str:
        cells = [
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    footnote = [f"cum. regret {BOOTSTRAP_NOTE}"] if rows else []
    return "\n".join([fmt(header), rule, *(fmt(line) for line in body), *notes, *footnote])


# -- files ----------------------------------------------------------------------------------
def package_versions() -> dict[str, str | None]:
    """Versions of Python and of the packages that shape the results."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in (
        "bandexa-gym",
        "torch",
        "gymnasium",
        "stable-baselines3",
        "numpy",
        "bayesianbandits",
        "vowpalwabbit",
        "mabwiser",
        "ray",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def platform_info() -> dict[str, Any]:
    """The machine the grid's driver runs on."""
    return {
        "system": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def now_utc() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback: NumPy scalars and arrays, tuples, sets, paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (strict JSON has none)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def write_json(path: Path, document: Any) -> Path:
    """Atomically replace ``path`` with ``document`` as indented, strict JSON (a
    non-finite float is written as null)."""
    text = json.dumps(_strict(document), indent=1, default=json_default, allow_nan=False) + "\n"
    atomic_write(path, text.encode())
    return path


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Atomically replace ``path`` with ``rows`` as CSV (None is an empty cell)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


LINE_STYLES: tuple[str, ...] = ("-", "--", ":", "-.")
"""Line styles cycled with the colours: past ten agents each line still looks different."""
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")
"""Markers cycled with the colours and line styles (a few per curve, not one per round)."""


def line_style(index: int) -> dict[str, Any]:
    """The colour, line style and marker of the ``index``-th agent of a plot.

    The first ten agents get the ten colours of matplotlib's ``tab10`` with solid lines; each
    further block of ten reuses the colours with the next line style and marker, so no two
    of the first 40 agents look alike (and marker, style and colour keep cycling after).
    """
    block = index // 10
    return {
        "color": f"C{index % 10}",
        "linestyle": LINE_STYLES[block % len(LINE_STYLES)],
        "marker": MARKERS[(index + block) % len(MARKERS)],
    }


def plot_regret(path: Path, results: Sequence[RunResult]) -> Path:
    """Save :func:`regret_figure` of ``results`` as a PNG (atomically replaced).

    Args:
        path: The PNG file to write.
        results: Results of :func:`~bandexa_gym.bench.grid.jobs.run_job`.

    Returns:
        ``path``.

    Raises:
        ImportError: matplotlib is not installed (``pip install "bandexa-gym[plot]"``).
    """
    fig = regret_figure(results)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    return path


def regret_figure(results: Sequence[RunResult]) -> Any:
    """Cumulative regret vs round: one panel per env, one line per agent.

    Lines are the mean over seeds with a ±1 standard-deviation band. Each agent keeps its
    colour, line style and marker (:func:`line_style`) in every panel, and one legend sits
    outside the panels, on their right. Uses matplotlib's Agg canvas directly, so no display
    and no global backend switch are involved.

    Args:
        results: Results of :func:`~bandexa_gym.bench.grid.jobs.run_job`.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: matplotlib is not installed (``pip install "bandexa-gym[plot]"``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves: dict[str, dict[str, list[np.ndarray]]] = {}
    agents: list[str] = []
    for result in results:
        per_env = curves.setdefault(result.info["env"], {})
        per_env.setdefault(result.info["agent"], []).append(result.cumulative_regret)
        if result.info["agent"] not in agents:
            agents.append(result.info["agent"])
    styles = {agent: line_style(i) for i, agent in enumerate(agents)}
    panels = max(1, len(curves))
    fig = Figure(figsize=(5.5 * panels, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    handles: dict[str, Any] = {}
    for ax, (env_id, by_agent) in zip(axes, curves.items(), strict=False):
        for agent, runs in by_agent.items():
            stack = np.stack(runs)
            rounds = np.arange(1, stack.shape[1] + 1)
            mean = stack.mean(axis=0)
            style = styles[agent]
            (line,) = ax.plot(
                rounds,
                mean,
                label=agent,
                markevery=max(1, len(rounds) // 6),
                markersize=4,
                linewidth=1.3,
                **style,
            )
            handles.setdefault(agent, line)
            if len(runs) > 1:
                std = stack.std(axis=0, ddof=1)
                ax.fill_between(rounds, mean - std, mean + std, color=style["color"], alpha=0.15)
        ax.set_title(env_id)
        ax.set_xlabel("round")
        ax.set_ylabel("cumulative regret")
        ax.grid(alpha=0.3)
    fig.legend(
        list(handles.values()),
        [handle.get_label() for handle in handles.values()],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize="small",
        title="mean ± 1 sd over seeds",
        title_fontsize="small",
    )
    return fig
