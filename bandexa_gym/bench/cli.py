"""The ``bandexa-bench`` command: :func:`main` checks the arguments, runs the grid and prints
its table (the options are :mod:`bandexa_gym.bench.cli_options`, the checks
:mod:`bandexa_gym.bench.cli_checks`)."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from bandexa_gym.agents.core import PerformanceHint
from bandexa_gym.bench.cli_checks import (
    _backend,
    _check_agents,
    _check_backend,
    _check_envs,
    _check_runner_options,
    _check_writable,
    _Grid,
    _grid,
    _scoped_kwargs,
)
from bandexa_gym.bench.cli_options import (
    PROG,
    REPORT_COMMAND,
    build_parser,
    build_report_parser,
)
from bandexa_gym.bench.grid.aggregates import format_improvement_table, format_iqm_table
from bandexa_gym.bench.grid.driver import (
    ExistingRunsError,
    GridOutcome,
    OutputBusyError,
    output_lock,
    plan_grid,
    run_grid,
)
from bandexa_gym.bench.grid.jobs import Job
from bandexa_gym.bench.grid.preflight import PreflightError, preflight
from bandexa_gym.bench.grid.report import ReportError, write_report
from bandexa_gym.bench.grid.results import format_table, summarize
from bandexa_gym.bench.grid.store import ConfigConflictError
from bandexa_gym.bench.grid.suite_table import format_suite_table, suite_cells
from bandexa_gym.bench.grid.summaries import SummaryWriter, failure_notes, suite_aggregates

EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bandexa-bench``; returns the exit code.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when every run finished (and every file was written), 1 when a run failed or a
        file could not be written, 130 / 143 when SIGINT / SIGTERM stopped the grid. Usage
        errors exit with code 2 and a one-line message on stderr.
        ``bandexa-bench report DIR`` (:func:`report`) is the one subcommand.
    """
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == [REPORT_COMMAND]:
        return report(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # the checks build agents here, as runs do
    try:
        with warnings.catch_warnings():
            # --threads is the knob here (default 1): no hint to call set_num_threads
            warnings.simplefilter("ignore", PerformanceHint)
            return _main(parser, args, argv)
    except KeyboardInterrupt:  # Ctrl-C outside the grid (the checks): one line, no traceback
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_SIGNAL["SIGINT"]
    finally:
        torch.set_num_threads(threads)


def report(argv: Sequence[str]) -> int:
    """``bandexa-bench report DIR``: write ``DIR/report.md`` (and ``DIR/regret.png``).

    Returns:
        0 when the report was written, 1 when a file could not be written; a folder that is
        not a results folder (or holds no finished run) is a usage error (exit code 2).
    """
    parser = build_report_parser()
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        parser.error(f"{args.dir} is not a folder: give the --out DIR of a bandexa-bench grid")
    try:
        path = write_report(args.dir, plot=not args.no_plot)
    except ReportError as err:
        parser.error(str(err))
    except OSError as err:
        print(f"{PROG} {REPORT_COMMAND}: could not write the report: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _main(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str] | None
) -> int:
    """:func:`main` once the arguments are parsed."""
    grid = _grid(parser, args)
    _check_envs(parser, sorted({p.env_id for p in grid.problems}))
    _check_agents(parser, grid.agents)
    _check_backend(parser, args)
    _check_runner_options(parser, args)
    if args.plot:
        if args.out is None:
            parser.error("--plot needs --out DIR to write regret.png to")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error('--plot needs matplotlib: pip install "bandexa-gym[plot]"')
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")
    for option in ("--resume", "--overwrite"):
        if getattr(args, option[2:]) and args.out is None:
            parser.error(f"{option} needs --out DIR")
    if args.out is not None:
        _check_writable(parser, "--out", args.out)
    if args.log is not None:
        args.log = args.log.resolve()
        _check_writable(parser, "--log", args.log)
    agent_kwargs = _scoped_kwargs(parser, "--agent-kwargs", args.agent_kwargs, grid.agents)
    try:
        found = preflight(
            grid.problems,
            grid.agents,
            agent_kwargs,
            device=args.device,
            delayed_feedback=args.delay is not None or args.feedback_batch is not None,
            optional=grid.optional,
            skip_missing_data=grid.suite is not None,
        )
    except PreflightError as err:
        parser.error(str(err))
    for name, reason in found.skipped_problems.items():
        print(f"{PROG}: {name}: {reason}", file=sys.stderr)
    sb3_params, not_applicable = found.sb3_hyperparameters, found.not_applicable

    jobs = [
        Job(
            env_id=problem.env_id,
            agent=agent,
            seed=seed,
            horizon=problem.rounds,
            env_kwargs=dict(problem.env_kwargs),
            agent_kwargs=agent_kwargs[agent],
            device=args.device,
            threads=args.threads,
            problem=problem.name if problem.name != problem.env_id else None,
            delay=args.delay,
            feedback_batch=args.feedback_batch,
            log_dir=str(args.log) if args.log is not None else None,
        )
        for problem in grid.problems
        for agent in grid.agents
        if (problem.name, agent) not in not_applicable
        for seed in grid.seeds
    ]
    backend = _backend(args)
    config = _config(argv, args, grid, agent_kwargs, sb3_params, not_applicable, backend)
    if args.out is None:
        return _run(parser, args, grid, jobs, backend, config, not_applicable)
    try:
        with output_lock(args.out):
            return _run(parser, args, grid, jobs, backend, config, not_applicable)
    except OutputBusyError as err:
        parser.error(str(err))


def _config(
    argv: Sequence[str] | None,
    args: argparse.Namespace,
    grid: _Grid,
    agent_kwargs: dict[str, dict[str, Any]],
    sb3_params: dict[str, dict[str, Any]],
    not_applicable: dict[tuple[str, str], str],
    backend: Any,
) -> dict[str, Any]:
    """The grid's config as recorded in ``results.json``."""
    horizons = {p.rounds for p in grid.problems}
    return {
        "argv": list(sys.argv[1:] if argv is None else argv),
        "suite": grid.suite,
        "problems": [
            {
                "name": p.name,
                "env_id": p.env_id,
                "env_kwargs": dict(p.env_kwargs),
                "rounds": p.rounds,
            }
            for p in grid.problems
        ],
        "envs": {p.name: dict(p.env_kwargs) for p in grid.problems},
        "agents": {agent: agent_kwargs[agent] for agent in grid.agents},
        "sb3_hyperparameters": sb3_params,
        "not_applicable": [
            {"env": env, "agent": agent, "reason": reason}
            for (env, agent), reason in not_applicable.items()
        ],
        "horizon": horizons.pop() if len(horizons) == 1 else None,
        "seeds": grid.seeds,
        "device": args.device,
        "window": args.window,
        "threads": args.threads,
        "workers": backend.workers,
        "backend": {
            "name": args.backend,
            "address": args.address,
            "num_cpus_per_run": getattr(backend, "num_cpus", None),
            "num_gpus_per_run": getattr(backend, "num_gpus", None),
        },
        "delay": args.delay,
        "feedback_batch": args.feedback_batch,
        "log_dir": str(args.log) if args.log is not None else None,
    }


def _run(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    grid: _Grid,
    jobs: list[Job],
    backend: Any,
    config: dict[str, Any],
    not_applicable: dict[tuple[str, str], str],
) -> int:
    """Plan, run and report the grid; returns the exit code."""
    try:
        plan = plan_grid(jobs, args.out, resume=args.resume, overwrite=args.overwrite)
    except ConfigConflictError as err:
        parser.error(
            f"--resume: run {err.path.stem!r} in {err.path.parent} was made with a different "
            f"config ({'; '.join(err.differences)}); use another --out, or --overwrite"
        )
    except (ExistingRunsError, ValueError) as err:
        parser.error(str(err))
    note = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    sb3 = [agent for agent in grid.agents if agent.startswith(("sb3:", "sb3c:"))]
    if args.log is not None and sb3:
        note(f"--log: {', '.join(sb3)} are not logged (SB3 plays inside model.learn)")
    if args.resume:
        note(
            f"resume: {len(plan.done)} of {len(jobs)} runs already finished in {args.out}; "
            f"running {len(plan.todo)}"
            + (f" ({len(plan.failed_before)} failed before)" if plan.failed_before else "")
        )
        for path, reason in plan.unreadable:
            note(f"resume: running {path.name} again: {reason}")
    if plan.replaced_logs:
        note(
            f"--log: {len(plan.replaced_logs)} run(s) that run again restart their log, which "
            f"replaces the one in {plan.replaced_logs[0].parent} when the run finishes "
            f"(e.g. {plan.replaced_logs[0].name})"
        )
    summaries = None
    if args.out is not None:
        summaries = SummaryWriter(
            args.out,
            config,
            total=len(jobs),
            window=args.window,
            not_applicable=not_applicable,
            suite=(
                ([p.name for p in grid.problems], grid.agents) if grid.suite is not None else None
            ),
            plot=args.plot,
        )
    progress = not args.quiet and sys.stderr.isatty()
    outcome = run_grid(plan, backend, out=args.out, summaries=summaries, progress=progress)
    _print_tables(args, grid, outcome, not_applicable)
    note(
        f"{outcome.ran} runs in {outcome.seconds:.1f} s"
        + (f" ({outcome.resumed} resumed)" if outcome.resumed else "")
    )
    for error in outcome.write_errors:
        print(f"{PROG}: could not write {error}", file=sys.stderr)
    if outcome.failed:
        note(f"{len(outcome.failed)} run(s) failed; see the notes under the table")
    if args.out is not None and not outcome.write_errors:
        note(f"wrote {args.out}")
    if outcome.interrupted is not None:
        print(
            f"{PROG}: interrupted by {outcome.interrupted}: {len(outcome.records)} of "
            f"{len(jobs)} runs kept"
            + (f" in {args.out}; rerun with --resume to finish" if args.out is not None else ""),
            file=sys.stderr,
        )
        return EXIT_SIGNAL.get(outcome.interrupted, 130)
    return 1 if outcome.failed or outcome.write_errors else 0


def _print_tables(
    args: argparse.Namespace,
    grid: _Grid,
    outcome: GridOutcome,
    not_applicable: dict[tuple[str, str], str],
) -> None:
    failures = failure_notes(outcome.records)
    seed_text = ", ".join(map(str, grid.seeds))
    if grid.suite is not None:
        problems = [p.name for p in grid.problems]
        print(f"suite {grid.suite} | seeds {seed_text} | device {args.device}")
        cells = suite_cells(outcome.results)
        print(
            format_suite_table(cells, problems, grid.agents, not_applicable, failures),
            flush=True,
        )
        iqm, improvement = suite_aggregates(outcome.results, grid.agents)
        if iqm:
            print(f"\n{format_iqm_table(iqm)}\n", flush=True)
            ran = [row["agent"] for row in iqm]
            print(format_improvement_table(improvement, ran), flush=True)
        return
    horizons = sorted({p.rounds for p in grid.problems})
    print(f"horizon {', '.join(map(str, horizons))} | seeds {seed_text} | device {args.device}")
    rows = summarize(outcome.results, args.window)
    print(format_table(rows, not_applicable, failures), flush=True)
