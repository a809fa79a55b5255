"""The ``bandexa-bench`` options: :func:`build_parser` and the defaults it names."""

from __future__ import annotations

import argparse
from pathlib import Path

from bandexa_gym.bench.arguments import _Parser, _positive_int, _resources, _seed, parse_delay
from bandexa_gym.bench.grid.ray_backend import RAY_EXTRA
from bandexa_gym.bench.grid.results import DEFAULT_WINDOW
from bandexa_gym.bench.grid.suites import SUITES

PROG = "bandexa-bench"
DEFAULT_ENVS: tuple[str, ...] = ("Bandexa/Synthetic-v0",)
DEFAULT_AGENTS: tuple[str, ...] = ("neural_linear_ts", "linear_ts", "uniform", "sb3:PPO")
DEFAULT_HORIZON = 20_000
"""Rounds per run of the default benchmark: about a minute for all four agents on 2 cores."""
SB3_NAMES: tuple[str, ...] = ("sb3:PPO", "sb3:A2C", "sb3:DQN", "sb3c:MaskablePPO")
RL_EXTRA = 'pip install "bandexa-gym[rl]"'
DELAY_FORMS = "fixed:N, geometric:MEAN or uniform:LO:HI"
LOGS_EXTRA = 'pip install "bandexa-gym[logs]"'


REPORT_COMMAND = "report"
"""The subcommand that writes a results folder's report (``bandexa-bench report DIR``)."""


def build_report_parser() -> argparse.ArgumentParser:
    """The ``bandexa-bench report`` argument parser."""
    parser = _Parser(
        prog=f"{PROG} {REPORT_COMMAND}",
        description=(
            "Write DIR/report.md, a self-contained Markdown report of a results folder written "
            "with --out DIR (finished, interrupted or resumed, local or Ray): the results table "
            "with 95% bootstrap intervals over seeds, the normalized-regret table and the "
            "across-problem aggregates (IQM, probability of improvement) where uniform ran, "
            "and the regret plot (DIR/regret.png) it embeds. The run files are only read."
        ),
        epilog="Guide: docs/benchmarking.md",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="the results folder")
    parser.add_argument(
        "--no-plot", action="store_true", help="do not draw regret.png (no matplotlib needed)"
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``bandexa-bench`` argument parser."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Run agents x environments x seeds on Bandexa contextual bandits and print "
            "cumulative regret, final moving-average reward, decisions per second and "
            "wall time. With no arguments: the default benchmark (about a minute on CPU)."
        ),
        epilog=f"{PROG} {REPORT_COMMAND} DIR writes DIR/report.md, a Markdown report of a "
        f"results folder (see {PROG} {REPORT_COMMAND} --help). Guide: docs/benchmarking.md",
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
        "the [rl] extra); your own as module:NAME (a class, factory or instance with "
        "act and observe, imported in every worker) or a name an installed package "
        "registers in the bandexa_gym.agents entry-point group; an agent that cannot "
        "play an env is listed as n/a with the reason (default: "
        + " ".join(DEFAULT_AGENTS)
        + "; with "
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
