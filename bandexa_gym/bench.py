"""Measure agents on Bandexa envs: ``run`` for one agent, ``bandexa-bench`` for a grid.

:func:`run` drives one bandit agent on one env and returns a :class:`RunResult`. The
``bandexa-bench`` command (also ``python -m bandexa_gym.bench``) runs agents x envs x
seeds, stable-baselines3 baselines included, and prints a results table::

    bandexa-bench                                   # the default run, about a minute on CPU
    bandexa-bench --env Bandexa/MNIST-v0 --agents linear_ts sb3:DQN --horizon 5000 \\
        --seeds 0 1 2 --workers 2 --out runs/mnist --plot

Every run, whatever the agent, plays the env wrapped in the same ``RegretMonitor`` on the
round stream seeded by the run's seed, so every row is measured the same way. See
``docs/benchmarking.md``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NoReturn

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from bandexa_gym.agents.applicability import candidates_change, not_applicable_reason
from bandexa_gym.agents.base import AGENTS, NotApplicableError, make_agent, observation_space
from bandexa_gym.runner import RunResult, find_monitor, run

__all__ = [
    "DEFAULT_AGENTS",
    "DEFAULT_ENVS",
    "DEFAULT_HORIZON",
    "Job",
    "RunResult",
    "find_monitor",
    "format_table",
    "main",
    "run",
    "run_job",
    "summarize",
]

PROG = "bandexa-bench"
DEFAULT_ENVS: tuple[str, ...] = ("Bandexa/Synthetic-v0",)
DEFAULT_AGENTS: tuple[str, ...] = ("neural_linear_ts", "linear_ts", "uniform", "sb3:PPO")
DEFAULT_HORIZON = 20_000
"""Rounds per run of the default benchmark: about a minute for all four agents on 2 cores."""
DEFAULT_WINDOW = 500
SB3_NAMES: tuple[str, ...] = ("sb3:PPO", "sb3:A2C", "sb3:DQN")
NotApplicable = dict[tuple[str, str], str]
"""(env id, agent) -> why the agent cannot play the env (reported as "n/a", not run)."""


# -- one benchmark job ----------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One (agent, env, seed) run of the benchmark; picklable for worker processes.

    Attributes:
        env_id: Gymnasium id of a ``Bandexa/*`` env.
        agent: A registered agent name or ``sb3:PPO`` / ``sb3:A2C`` / ``sb3:DQN``.
        seed: Seeds the env's round stream, the agent, and Python/NumPy/torch.
        horizon: Rounds to play.
        env_kwargs: Keyword arguments of ``gym.make``.
        agent_kwargs: Agent overrides (``make_agent``) or SB3 constructor arguments.
        device: Torch device of the agent.
        progress: Show a progress bar for this run.
        threads: Torch intra-op CPU threads for this run (restored afterwards).
    """

    env_id: str
    agent: str
    seed: int
    horizon: int
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    progress: bool = False
    threads: int = 1

    @property
    def label(self) -> str:
        """Short human-readable name of the run."""
        return f"{self.agent} | {self.env_id} | seed {self.seed}"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (for code that uses them)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party code may draw from it
    torch.manual_seed(seed)


def run_job(job: Job) -> RunResult:
    """Run one benchmark job in a fresh env and return its measurements.

    The global generators are seeded with ``job.seed`` first and torch uses
    ``job.threads`` CPU threads, so a job gives the same numbers whatever ran before it,
    in this process or in a worker (CPU float results can depend on the thread count).

    Args:
        job: What to run.

    Returns:
        The :class:`RunResult`; ``info`` holds ``env``, ``agent`` and ``seed``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    seed_everything(job.seed)
    env = gym.make(job.env_id, **job.env_kwargs)
    try:
        if job.agent.startswith("sb3:"):
            from bandexa_gym.sb3 import run_sb3  # imports stable-baselines3

            result = run_sb3(
                job.agent,
                env,
                job.horizon,
                seed=job.seed,
                device=job.device,
                progress=job.progress,
                desc=job.label,
                **job.agent_kwargs,
            )
        else:
            agent = make_agent(job.agent, env, seed=job.seed, device=job.device, **job.agent_kwargs)
            result = run(
                agent, env, job.horizon, seed=job.seed, progress=job.progress, desc=job.label
            )
    finally:
        env.close()
        torch.set_num_threads(threads)
    result.info.update({"env": job.env_id, "agent": job.agent, "seed": job.seed})
    return result


def _init_worker() -> None:
    torch.set_num_threads(1)  # run_job sets the job's own count; never oversubscribe


def run_jobs(jobs: Sequence[Job], workers: int = 1, progress: bool = False) -> list[RunResult]:
    """Run ``jobs`` in order in this process, or in ``workers`` spawned processes.

    Args:
        jobs: The jobs; their results come back in the same order.
        workers: Number of processes; 1 runs in this process.
        progress: With several workers, show one bar over jobs (per-run bars are the
            jobs' own ``progress`` flag).

    Returns:
        One :class:`RunResult` per job.
    """
    if workers <= 1:
        return [run_job(job) for job in jobs]
    results: list[RunResult | None] = [None] * len(jobs)
    context = get_context("spawn")
    with (
        ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool,
        tqdm(total=len(jobs), disable=not progress, file=sys.stderr, desc="runs") as bar,
    ):
        futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
    return [r for r in results if r is not None]


# -- summary and table ----------------------------------------------------------------
def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1; None for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if arr.size > 1 else None)


def summarize(results: Sequence[RunResult], window: int = DEFAULT_WINDOW) -> list[dict[str, Any]]:
    """One row per (env, agent), in first-seen order, aggregated over seeds.

    Args:
        results: Results of :func:`run_job` (their ``info`` names env, agent and seed).
        window: Rounds of the final moving-average reward.

    Returns:
        Dicts with ``env``, ``agent``, ``seeds``, ``horizon``, ``window``,
        ``cumulative_regret_mean``/``_std``, ``final_reward_mean``/``_std``,
        ``decisions_per_second_mean`` and ``wall_seconds_mean``/``_total``. Standard
        deviations are over seeds (ddof=1), None with one seed.
    """
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for result in results:
        groups.setdefault((result.info["env"], result.info["agent"]), []).append(result)
    rows = []
    for (env_id, agent), group in groups.items():
        regret_mean, regret_std = _mean_std([float(r.regrets.sum()) for r in group])
        reward_mean, reward_std = _mean_std([r.moving_average_reward(window) for r in group])
        seconds = [r.seconds for r in group]
        rows.append(
            {
                "env": env_id,
                "agent": agent,
                "seeds": len(group),
                "horizon": group[0].horizon,
                "window": min(window, group[0].horizon),
                "cumulative_regret_mean": regret_mean,
                "cumulative_regret_std": regret_std,
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


def _pm(mean: float, std: float | None, digits: int) -> str:
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def format_table(
    rows: Sequence[dict[str, Any]], not_applicable: NotApplicable | None = None
) -> str:
    """Render :func:`summarize` rows as an aligned plain-text table.

    Columns: env, agent, seeds, cumulative regret (mean ± std over seeds), final
    moving-average reward (mean ± std), decisions per second and wall seconds per run.
    Pairs in ``not_applicable`` get an "n/a" row after their env's rows and a numbered
    note with the reason under the table.
    """
    not_applicable = dict(not_applicable or {})
    window = rows[0]["window"] if rows else DEFAULT_WINDOW
    header = (
        "env",
        "agent",
        "seeds",
        "cum. regret",
        f"reward (last {window})",
        "decisions/s",
        "wall s/run",
    )
    body = [
        (
            row["env"],
            row["agent"],
            str(row["seeds"]),
            _pm(row["cumulative_regret_mean"], row["cumulative_regret_std"], 1),
            _pm(row["final_reward_mean"], row["final_reward_std"], 3),
            f"{row['decisions_per_second_mean']:,.0f}",
            f"{row['wall_seconds_mean']:.2f}",
        )
        for row in rows
    ]
    notes = []
    for (env_id, agent), reason in not_applicable.items():
        notes.append(f"[{len(notes) + 1}] {agent} on {env_id}: {reason}")
        line = (env_id, agent, "-", f"n/a [{len(notes)}]", "n/a", "-", "-")
        envs = [r[0] for r in body]
        at = len(envs) - envs[::-1].index(env_id) if env_id in envs else len(body)
        body.insert(at, line)
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    left = 2  # env and agent are left-aligned, numbers right-aligned

    def fmt(line: Sequence[str]) -> str:
        cells = [
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in body), *notes])


# -- files ------------------------------------------------------------------------------
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
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_results(
    out: Path,
    config: dict[str, Any],
    jobs: Sequence[Job],
    results: Sequence[RunResult],
    rows: Sequence[dict[str, Any]],
) -> list[Path]:
    """Write ``results.json`` and ``summary.csv`` to ``out``; return their paths."""
    runs = [
        {
            "env": job.env_id,
            "env_kwargs": job.env_kwargs,
            "agent": job.agent,
            "agent_kwargs": job.agent_kwargs,
            "seed": job.seed,
            "horizon": result.horizon,
            "cumulative_regret": float(result.regrets.sum()),
            "final_reward": result.moving_average_reward(config["window"]),
            "seconds": result.seconds,
            "decisions_per_second": result.decisions_per_second,
            "rewards": result.rewards.tolist(),
            "regrets": result.regrets.tolist(),
        }
        for job, result in zip(jobs, results, strict=True)
    ]
    document = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "versions": package_versions(),
        "platform": {
            "system": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "summary": list(rows),
        "runs": runs,
    }
    json_path, csv_path = out / "results.json", out / "summary.csv"
    json_path.write_text(json.dumps(document, indent=1, default=_json_default) + "\n")
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["env", "agent"])
        writer.writeheader()
        writer.writerows(rows)
    return [json_path, csv_path]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple, set)):
        return list(value)
    return repr(value)


def plot_regret(path: Path, results: Sequence[RunResult]) -> Path:
    """Save cumulative regret vs round: one panel per env, one line per agent.

    Lines are the mean over seeds with a ±1 standard-deviation band. Uses matplotlib's
    Agg canvas directly, so no display and no global backend switch are involved.

    Args:
        path: The PNG file to write.
        results: Results of :func:`run_job`.

    Returns:
        ``path``.

    Raises:
        ImportError: matplotlib is not installed (``pip install "bandexa-gym[plot]"``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves: dict[str, dict[str, list[np.ndarray]]] = {}
    for result in results:
        per_env = curves.setdefault(result.info["env"], {})
        per_env.setdefault(result.info["agent"], []).append(result.cumulative_regret)
    fig = Figure(figsize=(5.5 * len(curves), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (env_id, agents) in zip(axes, curves.items(), strict=True):
        for agent, runs in agents.items():
            stack = np.stack(runs)
            rounds = np.arange(1, stack.shape[1] + 1)
            mean = stack.mean(axis=0)
            (line,) = ax.plot(rounds, mean, label=f"{agent} (n={len(runs)})")
            if len(runs) > 1:
                std = stack.std(axis=0, ddof=1)
                ax.fill_between(rounds, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_title(env_id)
        ax.set_xlabel("round")
        ax.set_ylabel("cumulative regret")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    fig.savefig(path, dpi=110)
    return path


# -- command line -----------------------------------------------------------------------
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
    parser.add_argument(
        "--env",
        nargs="+",
        default=list(DEFAULT_ENVS),
        metavar="ID",
        help="environment ids: Bandexa/Synthetic-v0, Bandexa/MNIST-v0, "
        "Bandexa/FashionMNIST-v0, Bandexa/Retrieval-v0 (default: " + " ".join(DEFAULT_ENVS) + ")",
    )
    parser.add_argument(
        "--env-kwargs",
        nargs="+",
        default=[],
        metavar="[ID:]KEY=VALUE",
        help="gym.make keyword arguments, values parsed as Python literals; "
        "prefix with 'ID:' to apply to one env only",
    )
    parser.add_argument(
        "--agents",
        nargs="+",
        default=list(DEFAULT_AGENTS),
        metavar="NAME",
        help="registered agents (uniform, linear_ts, neural_linear_ts, ...; other "
        "libraries as peer:bayesianbandits, peer:vw-squarecb, peer:mabwiser-lints with the "
        "[peers] extra) and sb3:PPO, sb3:A2C, sb3:DQN; an agent that cannot play an env is "
        "listed as n/a with the reason (default: " + " ".join(DEFAULT_AGENTS) + ")",
    )
    parser.add_argument(
        "--agent-kwargs",
        nargs="+",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="agent overrides (make_agent keywords, or SB3 constructor arguments), "
        "e.g. linear_ts.prior_var=0.5 sb3:PPO.n_steps=64",
    )
    parser.add_argument(
        "--horizon",
        type=_positive_int,
        default=DEFAULT_HORIZON,
        metavar="N",
        help="rounds per run (default: %(default)s)",
    )
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds",
        nargs="+",
        type=_seed,
        default=[0],
        metavar="SEED",
        help="seeds, one run per seed (default: 0)",
    )
    seeds.add_argument(
        "--num-seeds", type=_positive_int, metavar="N", help="shorthand for --seeds 0 ... N-1"
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device of the agents (default: %(default)s)"
    )
    parser.add_argument(
        "--window",
        type=_positive_int,
        default=DEFAULT_WINDOW,
        metavar="N",
        help="rounds of the final moving-average reward (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help="torch CPU threads per run; results can depend on it, and small models run "
        "fastest on one (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="independent runs in N parallel spawned processes (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write results.json and summary.csv (and regret.png with --plot) here",
    )
    parser.add_argument("--plot", action="store_true", help="also write DIR/regret.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes")
    return parser


def _check_envs(parser: argparse.ArgumentParser, env_ids: Sequence[str]) -> None:
    for env_id in env_ids:
        try:
            gym.spec(env_id)  # also imports "module:" prefixes
        except Exception as err:  # gymnasium raises several kinds
            bandexa = ", ".join(k for k in gym.registry if k.startswith("Bandexa/"))
            parser.error(f"unknown environment {env_id!r} ({err}); Bandexa ids: {bandexa}")


def _check_agents(parser: argparse.ArgumentParser, agents: Sequence[str]) -> None:
    known = [*sorted(AGENTS), *SB3_NAMES]
    for agent in agents:
        if agent not in known:
            parser.error(f"unknown agent {agent!r}; choose from {', '.join(known)}")
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


def _preflight(
    parser: argparse.ArgumentParser,
    env_kwargs: dict[str, dict[str, Any]],
    agent_kwargs: dict[str, dict[str, Any]],
    horizon: int,
    device: str,
) -> tuple[dict[str, dict[str, Any]], NotApplicable]:
    """Build every env and agent once so that bad settings fail before any run.

    An agent that cannot play an env (its factory raises
    :class:`~bandexa_gym.agents.base.NotApplicableError`, or its capabilities rule the
    env out, see :func:`~bandexa_gym.agents.applicability.not_applicable_reason`) is not
    an error: the pair is returned as not applicable.

    Returns:
        The SB3 hyper-parameters each ``sb3:*`` agent will use (recorded in the config),
        and the not-applicable (env, agent) pairs with their reasons.
    """
    sb3_params: dict[str, dict[str, Any]] = {}
    not_applicable: NotApplicable = {}
    for env_id, kwargs in env_kwargs.items():
        try:
            env = gym.make(env_id, **kwargs)
        except Exception as err:  # any failure here is a configuration error
            parser.error(f"cannot make {env_id} with {kwargs}: {type(err).__name__}: {err}")
        try:
            observation_space(env)
            changes = None  # whether the env's candidates change: probed once, if asked
            for agent, overrides in agent_kwargs.items():
                if agent.startswith("sb3:"):
                    from bandexa_gym.sb3 import sb3_hyperparameters

                    sb3_params[agent] = sb3_hyperparameters(agent, horizon, **overrides)
                    continue
                try:
                    built = make_agent(agent, env, seed=0, device=device, **overrides)
                except NotApplicableError as err:
                    not_applicable[env_id, agent] = str(err)
                    continue
                if not built.capabilities.changing_candidates and changes is None:
                    changes = candidates_change(env)
                reason = not_applicable_reason(built, env, changes=changes)
                if reason is not None:
                    not_applicable[env_id, agent] = reason
        except Exception as err:  # bad overrides: TypeError, ValueError, ...
            parser.error(f"{env_id}: {type(err).__name__}: {err}")
        finally:
            env.close()
    return sb3_params, not_applicable


def _check_out(parser: argparse.ArgumentParser, out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        parser.error(f"--out {str(out)!r} is not a writable directory ({err.strerror or err})")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bandexa-bench``; returns the exit code.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        0 on success. Usage errors exit with code 2 and a one-line message on stderr.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    seeds = list(range(args.num_seeds)) if args.num_seeds else list(args.seeds)
    if len(set(seeds)) != len(seeds):
        parser.error(f"--seeds lists a seed twice: {' '.join(map(str, seeds))}")
    if len(set(args.env)) != len(args.env):
        parser.error(f"--env lists an environment twice: {' '.join(args.env)}")
    _check_envs(parser, args.env)
    _check_agents(parser, args.agents)
    if args.plot:
        if args.out is None:
            parser.error("--plot needs --out DIR to write regret.png to")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error('--plot needs matplotlib: pip install "bandexa-gym[plot]"')
    if args.out is not None:
        _check_out(parser, args.out)
    env_kwargs = _scoped_kwargs(parser, "--env-kwargs", args.env_kwargs, args.env)
    agent_kwargs = _scoped_kwargs(parser, "--agent-kwargs", args.agent_kwargs, args.agents)
    sb3_params, not_applicable = _preflight(
        parser, env_kwargs, agent_kwargs, args.horizon, args.device
    )

    progress = not args.quiet and sys.stderr.isatty()
    jobs = [
        Job(
            env_id=env_id,
            agent=agent,
            seed=seed,
            horizon=args.horizon,
            env_kwargs=env_kwargs[env_id],
            agent_kwargs=agent_kwargs[agent],
            device=args.device,
            progress=progress and args.workers == 1,
            threads=args.threads,
        )
        for env_id in args.env
        for agent in args.agents
        for seed in seeds
        if (env_id, agent) not in not_applicable
    ]
    config = {
        "argv": list(sys.argv[1:] if argv is None else argv),
        "envs": {env_id: env_kwargs[env_id] for env_id in args.env},
        "agents": {agent: agent_kwargs[agent] for agent in args.agents},
        "sb3_hyperparameters": sb3_params,
        "not_applicable": [
            {"env": env_id, "agent": agent, "reason": reason}
            for (env_id, agent), reason in not_applicable.items()
        ],
        "horizon": args.horizon,
        "seeds": seeds,
        "device": args.device,
        "window": args.window,
        "threads": args.threads,
        "workers": args.workers,
    }
    start = time.perf_counter()
    results = run_jobs(jobs, args.workers, progress=progress)
    elapsed = time.perf_counter() - start
    rows = summarize(results, args.window)

    seed_text = ", ".join(map(str, seeds))
    print(f"horizon {args.horizon} | seeds {seed_text} | device {args.device}")
    print(format_table(rows, not_applicable), flush=True)
    if not args.quiet:
        print(f"{len(jobs)} runs in {elapsed:.1f} s", file=sys.stderr)
    if args.out is not None:
        written = write_results(args.out, config, jobs, results, rows)
        if args.plot and results:
            written.append(plot_regret(args.out / "regret.png", results))
        if not args.quiet:
            print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy, so that the classes and the
    # job function that worker processes unpickle are bandexa_gym.bench's own.
    from bandexa_gym.bench import main as _main

    sys.exit(_main())
