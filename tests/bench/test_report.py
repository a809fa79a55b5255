"""Results a paper can use: bootstrap intervals over seeds, the suite's across-problem
aggregates (IQM with a stratified bootstrap interval, probability of improvement), the plot's
styles and legend, and ``bandexa-bench report DIR``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bandexa_gym.bench.grid.aggregates import (
    BOOTSTRAP_RESAMPLES,
    bootstrap_ci,
    format_improvement_table,
    format_iqm_table,
    improvement_rows,
    interquartile_mean,
    iqm_rows,
)
from bandexa_gym.bench.grid.jobs import Job, RunRecord
from bandexa_gym.bench.grid.results import format_table, summarize
from bandexa_gym.bench.grid.suite_table import format_suite_table, suite_cells
from bandexa_gym.bench.grid.summaries import SummaryWriter
from bandexa_gym.bench.runner import RunResult

PROBLEMS = ("p", "q")
AGENTS = ("uniform", "a")
SEEDS = (0, 1, 2)
ROUNDS = 30


def _result(env: str, agent: str, seed: int, regret: float) -> RunResult:
    info = {"env": env, "env_id": env, "agent": agent, "seed": seed}
    return RunResult(np.zeros(ROUNDS), np.full(ROUNDS, regret / ROUNDS), seconds=1.0, info=info)


def _grid() -> list[RunResult]:
    """2 agents x 2 problems x 3 seeds x 30 rounds; ``a`` has 0.2-0.5 of uniform's regret."""
    rng = np.random.default_rng(7)
    results = []
    for problem in PROBLEMS:
        for seed in SEEDS:
            base = 30.0 + 3 * seed + (10.0 if problem == "q" else 0.0)
            results.append(_result(problem, "uniform", seed, base))
            results.append(_result(problem, "a", seed, base * rng.uniform(0.2, 0.5)))
    return results


# -- intervals over seeds -------------------------------------------------------------------
def test_bootstrap_ci_is_a_deterministic_percentile_interval_of_the_mean() -> None:
    values = [10.0, 12.0, 17.0]
    low, high = bootstrap_ci(values)
    assert low is not None and high is not None
    assert min(values) <= low < np.mean(values) < high <= max(values)
    assert bootstrap_ci(values) == (low, high)  # fixed seed
    assert bootstrap_ci(values[::-1]) == (low, high)  # order of the runs does not matter
    # The percentile interval of B resampled means, recomputed by hand.
    rng = np.random.default_rng(0)
    means = np.sort(values)[rng.integers(0, 3, size=(BOOTSTRAP_RESAMPLES, 3))].mean(axis=1)
    assert (low, high) == tuple(np.percentile(means, [2.5, 97.5]))
    assert bootstrap_ci([4.0]) == (None, None)
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_summary_rows_table_and_csv_carry_the_interval(tmp_path: Path) -> None:
    results = _grid()
    rows = summarize(results, window=10)
    by_pair = {(row["env"], row["agent"]): row for row in rows}
    regrets = [float(r.regrets.sum()) for r in results if r.info["env"] == "p"][1::2]
    row = by_pair["p", "a"]
    assert (row["ci_low"], row["ci_high"]) == bootstrap_ci(regrets)
    assert row["ci_low"] <= row["cumulative_regret_mean"] <= row["ci_high"]

    lines = format_table(rows).splitlines()
    assert lines[0].split()[5:7] == ["95%", "CI"]
    assert f"[{row['ci_low']:.1f}, {row['ci_high']:.1f}]" in lines[3]
    assert lines[-1].startswith("cum. regret 95% CI: percentile bootstrap of the mean over seeds")
    single = summarize(results[:1], window=10)
    assert single[0]["ci_low"] is None and format_table(single).splitlines()[2].split()[4] == "-"

    records = [
        RunRecord(Job(r.info["env"], r.info["agent"], r.info["seed"], ROUNDS), "ok", r)
        for r in results
    ]
    SummaryWriter(tmp_path, {}, total=len(records), window=10).write(records, "complete")
    with (tmp_path / "summary.csv").open() as handle:
        summary = list(csv.DictReader(handle))
    assert "ci_low" in summary[0] and "ci_high" in summary[0]
    assert float(summary[1]["ci_low"]) == pytest.approx(row["ci_low"])


def test_suite_cells_and_table_carry_the_interval() -> None:
    results = _grid()
    cells = suite_cells(results)
    a = cells["p", "a"]
    assert a.ci_low is not None and a.ci_low <= a.mean <= a.ci_high
    assert cells["p", "uniform"].ci_low == cells["p", "uniform"].ci_high == 1.0
    lines = format_suite_table(cells, PROBLEMS, AGENTS).splitlines()
    assert lines[0].endswith("[95% CI]")
    assert f"[{a.ci_low:.2f}, {a.ci_high:.2f}]" in lines[3]
    assert lines[-1].startswith("95% CI: percentile bootstrap of the mean over seeds")


# -- across-problem aggregates --------------------------------------------------------------
def test_interquartile_mean_drops_a_quarter_at_each_end() -> None:
    assert interquartile_mean(np.array([100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -50.0])) == 3.5
    assert interquartile_mean(np.array([1.0, 2.0, 3.0])) == 2.0  # nothing cut from 3
    both = interquartile_mean(np.array([[4.0, 1.0, 2.0, 3.0], [0.0, 0.0, 8.0, 8.0]]), axis=1)
    assert both.tolist() == [2.5, 4.0]
    scipy_stats = pytest.importorskip("scipy.stats")
    values = np.random.default_rng(3).normal(size=11)
    assert interquartile_mean(values) == pytest.approx(scipy_stats.trim_mean(values, 0.25))


def test_iqm_rows_use_a_stratified_bootstrap() -> None:
    scores = {
        "a": {"p": {0: 0.1, 1: 0.2, 2: 0.3}, "q": {0: 0.5, 1: 0.6, 2: 0.9}},
        "b": {"p": {0: 0.4}, "q": {0: 0.8}},  # one seed per problem: no interval
    }
    rows = iqm_rows(scores, ["a", "b", "c"])
    assert [row["agent"] for row in rows] == ["a", "b"]  # c has no scores
    a, b = rows
    assert (a["problems"], a["scores"]) == (2, 6)
    assert a["iqm"] == pytest.approx(np.mean([0.2, 0.3, 0.5, 0.6]))
    assert a["ci_low"] < a["iqm"] < a["ci_high"]
    # Stratified: every resample keeps three of p's values and three of q's, so the IQM of
    # a resample is at least the mean of the middle of (0.1, 0.1, 0.1, 0.5, 0.5, 0.5).
    assert a["ci_low"] >= np.mean([0.1, 0.5, 0.5, 0.1]) - 1e-12
    assert iqm_rows(scores, ["a"]) == [a]  # deterministic
    assert b["iqm"] == pytest.approx(0.6) and b["ci_low"] is None and b["ci_high"] is None
    table = format_iqm_table(rows).splitlines()
    assert table[1].split() == ["agent", "IQM", "95%", "CI", "problems", "runs"]
    assert table[3].split()[0] == "a" and table[4].split()[:3] == ["b", "0.600", "-"]
    assert table[-1].startswith("95% CI: stratified percentile bootstrap")


def test_probability_of_improvement_counts_every_seed_pair_and_ties_half() -> None:
    scores = {
        "a": {"p": {0: 0.1, 1: 0.5}, "q": {0: 0.3}},
        "b": {"p": {0: 0.2, 1: 0.5}, "q": {0: 0.3}, "r": {0: 9.0}},
    }
    rows = {(r["agent"], r["other"]): r for r in improvement_rows(scores, ["a", "b"])}
    # p: a<b in (0.1,0.2), (0.1,0.5); tie (0.5,0.5) counts half; (0.5,0.2) not: 2.5/4.
    # q: a tie: 0.5. Mean over the two common problems.
    assert rows["a", "b"]["probability"] == pytest.approx((2.5 / 4 + 0.5) / 2)
    assert rows["a", "b"]["problems"] == 2
    assert rows["a", "b"]["probability"] + rows["b", "a"]["probability"] == pytest.approx(1.0)
    table = format_improvement_table(list(rows.values()), ["a", "b"]).splitlines()
    assert table[1].split() == ["agent", "a", "b"]
    assert table[3].split() == ["a", "-", "0.56"] and table[4].split() == ["b", "0.44", "-"]


def test_suite_writer_writes_the_aggregates(tmp_path: Path) -> None:
    results = _grid()
    records = [
        RunRecord(
            Job(r.info["env"], r.info["agent"], r.info["seed"], ROUNDS, problem=r.info["env"]),
            "ok",
            r,
        )
        for r in results
    ]
    writer = SummaryWriter(tmp_path, {}, total=len(records), window=10, suite=(PROBLEMS, AGENTS))
    writer.write(records, "complete")
    with (tmp_path / "aggregates.csv").open() as handle:
        iqm = list(csv.DictReader(handle))
    assert [row["agent"] for row in iqm] == list(AGENTS)
    assert float(iqm[0]["iqm"]) == 1.0 and float(iqm[1]["iqm"]) < 0.5
    with (tmp_path / "improvement.csv").open() as handle:
        improvement = list(csv.DictReader(handle))
    assert [(r["agent"], r["other"], float(r["probability"])) for r in improvement] == [
        ("uniform", "a", 0.0),
        ("a", "uniform", 1.0),
    ]
    with (tmp_path / "suite.csv").open() as handle:
        suite = list(csv.DictReader(handle))
    assert all(row["ci_low"] and row["ci_high"] for row in suite)
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["aggregates"]["iqm"][1]["agent"] == "a"


# -- the plot ---------------------------------------------------------------------------------
def test_plot_styles_stay_distinct_past_ten_agents_and_the_legend_is_outside(
    tmp_path: Path,
) -> None:
    pytest.importorskip("matplotlib")
    from bandexa_gym.bench.grid.results import line_style, plot_regret, regret_figure

    styles = [tuple(sorted(line_style(i).items())) for i in range(40)]
    assert len(set(styles)) == 40
    assert line_style(0)["color"] == line_style(10)["color"]
    assert line_style(0)["linestyle"] != line_style(10)["linestyle"]

    agents = [f"agent{i}" for i in range(12)]
    results = [
        _result(problem, agent, seed, 1.0 + i + seed)
        for problem in PROBLEMS
        for i, agent in enumerate(agents)
        for seed in SEEDS
    ]
    fig = regret_figure(results)
    (legend,) = fig.legends
    assert [text.get_text() for text in legend.get_texts()] == agents  # one entry per agent
    lines = fig.axes[0].get_lines()
    assert {(ln.get_color(), ln.get_linestyle(), ln.get_marker()) for ln in lines} == {
        (s["color"], s["linestyle"], s["marker"]) for s in map(line_style, range(12))
    }
    fig.canvas.draw()
    legend_box = legend.get_window_extent()
    for ax in fig.axes:
        assert legend_box.x0 >= ax.get_window_extent().x1  # right of every panel
    path = plot_regret(tmp_path / "regret.png", results)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- bandexa-bench report DIR ---------------------------------------------------------------
def _grid_argv(out: Path, seeds: tuple[int, ...] = SEEDS) -> list[str]:
    return [
        "--env",
        "Bandexa/Synthetic-v0",
        "Bandexa/Retrieval-v0",
        "--agents",
        *AGENTS[:1],
        "linear_ts",
        "--seeds",
        *map(str, seeds),
        "--horizon",
        str(ROUNDS),
        "--out",
        str(out),
        "--quiet",
    ]


def _section(report: str, title: str) -> str:
    return report.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_report_of_a_resumed_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bandexa_gym.bench import main

    out = tmp_path / "out"
    assert main(_grid_argv(out, seeds=(0, 1))) == 0
    capsys.readouterr()
    assert main([*_grid_argv(out), "--resume"]) == 0  # runs only seed 2
    printed = capsys.readouterr().out
    with (out / "summary.csv").open() as handle:
        summary = list(csv.DictReader(handle))
    assert all(float(r["ci_low"]) <= float(r["cumulative_regret_mean"]) for r in summary)

    assert main(["report", str(out), "--no-plot"]) == 0
    report = (out / "report.md").read_text()
    assert report.startswith("# Benchmark report: out\n")
    assert "- Runs: 12 finished, 0 failed, of 12 in the grid" in report
    assert "- Seeds: 0, 1, 2" in report
    results = _section(report, "Results")
    # The printed table, timing columns aside: the same runs give the same numbers.
    table = [line.rsplit(maxsplit=2)[0] for line in printed.splitlines()[1:7]]
    assert [line.rsplit(maxsplit=2)[0] for line in results.splitlines()[2:8]] == table
    assert "95% CI: percentile bootstrap" in results
    assert "linear_ts" in _section(report, "Regret normalized to uniform's")
    across = _section(report, "Across problems")
    assert "interquartile mean (IQM)" in across and "probability of improvement" in across
    assert "regret.png" not in report
    first = report
    assert main(["report", str(out), "--no-plot"]) == 0
    assert (out / "report.md").read_text() == first  # deterministic


def test_report_reads_runs_missing_from_results_json_and_draws_the_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bandexa_gym.bench import main

    out = tmp_path / "out"
    assert main(_grid_argv(out)) == 0
    (out / "results.json").unlink()  # e.g. stopped before its summaries were written
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "- Runs: 12 finished, 0 failed\n" in report
    assert "![cumulative regret per round, mean ± 1 sd over seeds](regret.png)" in report
    assert (out / "regret.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_a_folder_without_runs_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bandexa_gym.bench import main

    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "is not a bandexa-bench results folder" in err and "--out" in err
    assert not (tmp_path / "report.md").exists()
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path / "missing")])
    assert "is not a folder" in capsys.readouterr().err


# -- make bench -------------------------------------------------------------------------------
def test_make_bench_runs_three_seeds_into_a_results_folder_and_reports_it() -> None:
    import shlex

    from bandexa_gym.bench.cli_options import build_parser, build_report_parser

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    recipe = makefile.split("\nbench: ", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    commands = [shlex.split(line.strip().replace("$(BENCH_OUT)", "bench-out")) for line in recipe]
    assert [command[0] for command in commands] == ["$(VENV)/bin/bandexa-bench"] * 2
    args = build_parser().parse_args(commands[0][1:])
    assert args.num_seeds >= 3 and args.out == Path("bench-out") and args.plot
    assert args.overwrite and args.workers == 2
    assert commands[1][1] == "report"
    assert build_report_parser().parse_args(commands[1][2:]).dir == args.out
    assert "BENCH_OUT ?= bench-out" in makefile
    ignored = (Path(__file__).resolve().parents[2] / ".gitignore").read_text().split()
    assert "bench-out/" in ignored
