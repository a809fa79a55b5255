"""Measure agents on Bandexa envs: ``run`` for one agent, ``bandexa-bench`` for a grid.

:func:`run` drives one bandit agent on one env and returns a :class:`RunResult`. The
``bandexa-bench`` command (also ``python -m bandexa_gym.bench``) runs agents x envs x
seeds, stable-baselines3 baselines included, and prints a results table::

    bandexa-bench                                   # the default run, about a minute on CPU
    bandexa-bench --env Bandexa/MNIST-v0 --agents linear_ts sb3:DQN --horizon 5000 \\
        --seeds 0 1 2 --workers 2 --out runs/mnist --plot
    bandexa-bench --suite classic --workers 2 --out runs/classic   # the benchmark suite
    bandexa-bench --suite classic --workers 2 --out runs/classic --resume
    bandexa-bench --suite classic --backend ray --address auto --out runs/classic

Every run, whatever the agent, plays the env wrapped in the same ``RegretMonitor`` on the
round stream seeded by the run's seed, so every row is measured the same way. With
``--out`` every run is written as it ends and the summaries are rebuilt from the runs, so
an interrupted grid keeps its finished runs and ``--resume`` runs only the rest. This
module is the command line; the grid machinery is :mod:`bandexa_gym.grid`. See
``docs/benchmarking.md``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import math
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import gymnasium as gym
import torch

from bandexa_gym import delays
from bandexa_gym.agents.core import AGENTS, PerformanceHint
from bandexa_gym.grid.driver import (
    ExistingRunsError,
    GridOutcome,
    OutputBusyError,
    output_lock,
    plan_grid,
    run_grid,
)
from bandexa_gym.grid.jobs import Job, run_job, seed_everything
from bandexa_gym.grid.local import local_backend
from bandexa_gym.grid.preflight import PreflightError, preflight
from bandexa_gym.grid.ray_backend import RAY_EXTRA, RayBackend, ray_available
from bandexa_gym.grid.results import DEFAULT_WINDOW, format_table, plot_regret, summarize
from bandexa_gym.grid.store import ConfigConflictError
from bandexa_gym.grid.suite_table import format_suite_table, suite_cells
from bandexa_gym.grid.suites import NORMALIZER, SUITES, Problem, default_agents
from bandexa_gym.grid.summaries import SummaryWriter, failure_notes
from bandexa_gym.runner import RunResult, find_monitor, run

__all__ = [
    "DEFAULT_AGENTS",
    "DEFAULT_ENVS",
    "DEFAULT_HORIZON",
    "Job",
    "RunResult",
    "build_parser",
    "find_monitor",
    "format_table",
    "main",
    "parse_delay",
    "parse_value",
    "plot_regret",
    "run",
    "run_job",
    "seed_everything",
    "summarize",
]

PROG = "bandexa-bench"
DEFAULT_ENVS: tuple[str, ...] = ("Bandexa/Synthetic-v0",)
DEFAULT_AGENTS: tuple[str, ...] = ("neural_linear_ts", "linear_ts", "uniform", "sb3:PPO")
DEFAULT_HORIZON = 20_000
"""Rounds per run of the default benchmark: about a minute for all four agents on 2 cores."""
SB3_NAMES: tuple[str, ...] = ("sb3:PPO", "sb3:A2C", "sb3:DQN", "sb3c:MaskablePPO")
RL_EXTRA = 'pip install "bandexa-gym[rl]"'
DELAY_FORMS = "fixed:N, geometric:MEAN or uniform:LO:HI"
LOGS_EXTRA = 'pip install "bandexa-gym[logs]"'
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


# -- parsing ----------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are integers, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {value}")
    return value


def _resources(minimum: float, strict: bool) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be a number {bound}, got {text}")
        return value

    return parse


def parse_delay(text: str) -> str:
    """Validate a ``--delay`` model (:func:`bandexa_gym.delays.parse_delay`) and return it in
    canonical form: ``fixed:N``, ``geometric:MEAN`` or ``uniform:LO:HI``.

    Raises:
        argparse.ArgumentTypeError: Anything else (the message says what is expected).
    """
    try:
        model = delays.parse_delay(text.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return str(model)


def parse_value(text: str) -> Any:
    """A command-line value as a Python literal where possible, else the string itself.

    ``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"True"``/``"true"`` -> True, ``"none"`` -> None,
    ``"[1, 2]"`` -> [1, 2], ``"{'hidden': 64}"`` -> dict, ``"concat"`` -> ``"concat"``.
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _key_values(pairs: Sequence[str], option: str) -> list[tuple[str, str, Any]]:
    """Split ``[scope<sep>]key=value`` items into (scope, key, value); sep is ':' or '.'."""
    sep = ":" if option == "--env-kwargs" else "."
    items = []
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise ValueError(f"{option} expects key=value items, got {pair!r}")
        scope, _, key = name.rpartition(sep)
        if not key.isidentifier():
            raise ValueError(f"{option}: {key!r} in {pair!r} is not a keyword name")
        items.append((scope, key, parse_value(value)))
    return items


def build_parser() -> argparse.ArgumentParser:
    """The ``bandexa-bench`` argument parser."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Run agents x environments x seeds on Bandexa contextual bandits and print "
            "cumulative regret, final moving-average reward, decisions per second and "
            "wall time. With no arguments: the default benchmark (about a minute on CPU)."
        ),
        epilog="Guide: docs/benchmarking.md",
    )
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--suite",
        choices=sorted(SUITES),
        help="a benchmark suite instead of --env: "
        + "; ".join(f"{name}: {suite.description}" for name, suite in sorted(SUITES.items())),
    )
    what.add_argument(
        "--env",
        nargs="+",
        default=None,
        metavar="ID",
        help="environment ids: Bandexa/Synthetic-v0, Bandexa/MNIST-v0, Bandexa/Adult-v0, "
        "Bandexa/Retrieval-v0, ..., or module:ID to import a module that registers ID "
        "(default: " + " ".join(DEFAULT_ENVS) + ")",
    )
    what.add_argument(
        "--env-kwargs",
        nargs="+",
        default=[],
        metavar="[ID:]KEY=VALUE",
        help="gym.make keyword arguments, values parsed as Python literals; "
        "prefix with 'ID:' to apply to one env only",
    )
    what.add_argument(
        "--agents",
        nargs="+",
        default=None,
        metavar="NAME",
        help="registered agents (uniform, linear_ts, neural_linear_ts, ...; other "
        "libraries as peer:bayesianbandits, peer:vw-squarecb, peer:mabwiser-lints with the "
        "[peers] extra) and sb3:PPO, sb3:A2C, sb3:DQN, sb3c:MaskablePPO (sb3-contrib, with "
        "the [rl] extra); an agent that cannot play an env is "
        "listed as n/a with the reason (default: " + " ".join(DEFAULT_AGENTS) + "; with "
        "--suite: uniform, linear_ts, neural_linear_ts, the peer:* agents, then every "
        "other registered agent)",
    )
    what.add_argument(
        "--agent-kwargs",
        nargs="+",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="agent overrides (make_agent keywords, or SB3 constructor arguments), "
        "e.g. linear_ts.prior_var=0.5 sb3:PPO.n_steps=64",
    )
    what.add_argument(
        "--horizon",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"rounds per run (default: {DEFAULT_HORIZON}; with --suite each problem's own, "
        "which N replaces)",
    )
    seeds = what.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds",
        nargs="+",
        type=_seed,
        default=None,
        metavar="SEED",
        help="seeds, one run per seed (default: 0; with --suite 0 ... n-1)",
    )
    seeds.add_argument(
        "--num-seeds", type=_positive_int, metavar="N", help="shorthand for --seeds 0 ... N-1"
    )
    how = parser.add_argument_group("how runs play")
    how.add_argument(
        "--device", default="cpu", help="torch device of the agents (default: %(default)s)"
    )
    how.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help="torch CPU threads per run; results can depend on it, and small models run "
        "fastest on one (default: %(default)s)",
    )
    how.add_argument(
        "--delay",
        type=parse_delay,
        metavar="MODEL",
        help=f"rewards arrive late: {DELAY_FORMS} rounds (SB3 baselines are skipped) "
        "(default: none, every reward before the next decision)",
    )
    how.add_argument(
        "--feedback-batch",
        type=_positive_int,
        metavar="B",
        help="rewards reach the agent in batches of B (SB3 baselines are skipped) (default: 1)",
    )
    how.add_argument(
        "--log",
        type=Path,
        metavar="DIR",
        help="write each run's decision log under DIR/<run name>",
    )
    where = parser.add_argument_group("where runs execute")
    where.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: this process or --workers processes; ray: one Ray task per run "
        f"({RAY_EXTRA}) (default: %(default)s)",
    )
    where.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="local: N parallel spawned processes (default: 1, this process); "
        "ray: at most N runs at once (default: as Ray's resources allow)",
    )
    where.add_argument(
        "--address",
        metavar="ADDRESS",
        help="ray: the cluster to join ('auto', 'ray://HOST:10001'); default: start a local Ray",
    )
    where.add_argument(
        "--num-cpus-per-run",
        type=_resources(0.0, strict=True),
        default=None,
        metavar="N",
        help="ray: CPUs each run asks for (default: --threads)",
    )
    where.add_argument(
        "--num-gpus-per-run",
        type=_resources(0.0, strict=False),
        default=None,
        metavar="N",
        help="ray: GPUs each run asks for, fractions allowed (default: 0)",
    )
    files = parser.add_argument_group("results")
    files.add_argument(
        "--window",
        type=_positive_int,
        default=DEFAULT_WINDOW,
        metavar="N",
        help="rounds of the final moving-average reward (default: %(default)s)",
    )
    files.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write each run to DIR/runs/ as it ends, and results.json, summary.csv, "
        "runs.csv (and regret.png with --plot) rebuilt from them",
    )
    files.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs in --out whose config is unchanged and run only the rest",
    )
    files.add_argument(
        "--overwrite",
        action="store_true",
        help="delete this grid's runs in --out and run everything again",
    )
    files.add_argument("--plot", action="store_true", help="also write DIR/regret.png")
    files.add_argument("--quiet", action="store_true", help="no progress bars or notes")
    return parser


# -- checks -------------------------------------------------------------------------------------
def _check_envs(parser: argparse.ArgumentParser, env_ids: Sequence[str]) -> None:
    """Every id resolves; ``module:ID`` imports ``module`` first, as ``gym.make`` does."""
    for env_id in env_ids:
        module, colon, name = env_id.partition(":")
        if not colon:
            module, name = "", env_id
        if module:
            try:
                importlib.import_module(module)
            except Exception as err:  # ImportError, or the module's own failure
                parser.error(
                    f"cannot import module {module!r} of {env_id!r} "
                    f"({type(err).__name__}: {err}); is it on PYTHONPATH?"
                )
        try:
            gym.spec(name)
        except Exception as err:  # gymnasium raises several kinds
            bandexa = ", ".join(k for k in gym.registry if k.startswith("Bandexa/"))
            parser.error(f"unknown environment {env_id!r} ({err}); Bandexa ids: {bandexa}")


def _check_agents(parser: argparse.ArgumentParser, agents: Sequence[str]) -> None:
    known = [*sorted(AGENTS), *SB3_NAMES]
    for agent in agents:
        if agent not in known:
            parser.error(f"unknown agent {agent!r}; choose from {', '.join(known)}")
        if agent.startswith("sb3c:") and importlib.util.find_spec("sb3_contrib") is None:
            parser.error(f"{agent} needs sb3-contrib, which is not installed: {RL_EXTRA}")
    if len(set(agents)) != len(agents):
        parser.error(f"--agents lists an agent twice: {' '.join(agents)}")


def _scoped_kwargs(
    parser: argparse.ArgumentParser, option: str, pairs: Sequence[str], names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per-name kwargs from ``[scope]key=value`` items; unscoped items apply to all names."""
    try:
        items = _key_values(pairs, option)
    except ValueError as err:
        parser.error(str(err))
    kwargs: dict[str, dict[str, Any]] = {name: {} for name in names}
    for scope, key, value in items:
        if scope and scope not in kwargs:
            parser.error(f"{option}: {scope!r} is not one of {', '.join(names)}")
        if not scope and option == "--agent-kwargs":
            parser.error(f"--agent-kwargs expects NAME.KEY=VALUE, got key {key!r} without NAME")
        for name in [scope] if scope else names:
            kwargs[name][key] = value
    return kwargs


def _check_writable(parser: argparse.ArgumentParser, option: str, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        parser.error(
            f"{option} {str(folder)!r} is not a writable directory ({err.strerror or err})"
        )


def _check_runner_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--delay`` and ``--feedback-batch`` exclude each other; ``--log`` needs pyarrow."""
    if args.delay is not None and args.feedback_batch is not None:
        parser.error("--delay and --feedback-batch are alternatives: pass one of them")
    if args.log is not None and importlib.util.find_spec("pyarrow") is None:
        parser.error(f"--log writes Parquet and needs pyarrow: {LOGS_EXTRA}")


def _check_backend(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.backend != "ray":
        for option, value in (
            ("--address", args.address),
            ("--num-cpus-per-run", args.num_cpus_per_run),
            ("--num-gpus-per-run", args.num_gpus_per_run),
        ):
            if value is not None:
                parser.error(f"{option} needs --backend ray")
    elif not ray_available():
        parser.error(f"--backend ray needs Ray: {RAY_EXTRA}")


# -- the grid's problems and agents ----------------------------------------------------------
@dataclass
class _Grid:
    problems: list[Problem]
    agents: list[str]
    optional: set[str]  # agents that may be n/a when their library is missing
    seeds: list[int]
    suite: str | None


def _grid(parser: argparse.ArgumentParser, args: argparse.Namespace) -> _Grid:
    """The problems, agents and seeds the arguments ask for."""
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds lists a seed twice: {' '.join(map(str, args.seeds))}")
    if args.suite is not None:
        suite = SUITES[args.suite]
        for option, value in (("--env", args.env), ("--env-kwargs", args.env_kwargs)):
            if value:
                parser.error(f"{option} cannot be combined with --suite (the suite defines them)")
        agents = list(args.agents) if args.agents else list(suite.agents or default_agents())
        optional = set() if args.agents else set(agents)
        if NORMALIZER not in agents:
            agents.insert(0, NORMALIZER)  # the suite table divides by its regret
        problems = [
            Problem(p.name, p.env_id, args.horizon or p.rounds, dict(p.env_kwargs), p.skip)
            for p in suite.problems
        ]
        default_seeds = list(range(suite.num_seeds))
    else:
        env_ids = list(args.env or DEFAULT_ENVS)
        if len(set(env_ids)) != len(env_ids):
            parser.error(f"--env lists an environment twice: {' '.join(env_ids)}")
        agents, optional = list(args.agents or DEFAULT_AGENTS), set()
        env_kwargs = _scoped_kwargs(parser, "--env-kwargs", args.env_kwargs, env_ids)
        horizon = args.horizon or DEFAULT_HORIZON
        problems = [Problem(env_id, env_id, horizon, env_kwargs[env_id]) for env_id in env_ids]
        default_seeds = [0]
    seeds = list(range(args.num_seeds)) if args.num_seeds else list(args.seeds or default_seeds)
    return _Grid(problems, agents, optional, seeds, args.suite)


def _backend(args: argparse.Namespace) -> Any:
    if args.backend == "ray":
        return RayBackend(
            address=args.address,
            num_cpus=(
                args.num_cpus_per_run if args.num_cpus_per_run is not None else float(args.threads)
            ),
            num_gpus=args.num_gpus_per_run or 0.0,
            max_in_flight=args.workers,
        )
    return local_backend(args.workers or 1, args.threads)


# -- the command -------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bandexa-bench``; returns the exit code.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when every run finished (and every file was written), 1 when a run failed or a
        file could not be written, 130 / 143 when SIGINT / SIGTERM stopped the grid. Usage
        errors exit with code 2 and a one-line message on stderr.
    """
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
        return
    horizons = sorted({p.rounds for p in grid.problems})
    print(f"horizon {', '.join(map(str, horizons))} | seeds {seed_text} | device {args.device}")
    rows = summarize(outcome.results, args.window)
    print(format_table(rows, not_applicable, failures), flush=True)


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy, so that the classes and the
    # job function that worker processes unpickle are bandexa_gym.bench's own.
    from bandexa_gym.bench import main as _main

    sys.exit(_main())
