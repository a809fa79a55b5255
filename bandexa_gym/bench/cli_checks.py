"""What the ``bandexa-bench`` arguments ask for, checked: envs, agents, options, the backend,
and the grid's problems, agents and seeds."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from bandexa_gym.agents.core import AGENTS, ENTRY_POINT_GROUP, is_reference
from bandexa_gym.agents.core.duck import entry_point_factory, resolve_reference
from bandexa_gym.bench.arguments import _key_values
from bandexa_gym.bench.cli_options import (
    DEFAULT_AGENTS,
    DEFAULT_ENVS,
    DEFAULT_HORIZON,
    LOGS_EXTRA,
    RL_EXTRA,
    SB3_NAMES,
)
from bandexa_gym.bench.grid.local import local_backend
from bandexa_gym.bench.grid.ray_backend import RAY_EXTRA, RayBackend, ray_available
from bandexa_gym.bench.grid.suites import NORMALIZER, SUITES, Problem, default_agents


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
        if agent in known:
            pass
        elif is_reference(agent):  # module:NAME, imported here and again in each worker
            try:
                resolve_reference(agent)
            except ValueError as err:
                parser.error(str(err))
        elif entry_point_factory(agent) is None:
            parser.error(
                f"unknown agent {agent!r}; choose from {', '.join(known)}, module:NAME (a "
                f"class, factory or instance) or a name in the {ENTRY_POINT_GROUP!r} "
                "entry-point group"
            )
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
