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
an interrupted grid keeps its finished runs and ``--resume`` runs only the rest. The
pieces: :mod:`~bandexa_gym.bench.runner` (``run``, ``measure``, ``RunResult``),
:mod:`~bandexa_gym.bench.delays`, :mod:`~bandexa_gym.bench.sb3` (the SB3 baselines),
:mod:`~bandexa_gym.bench.check` (``check_agent``), the grid machinery
:mod:`bandexa_gym.bench.grid`, and the command line :mod:`~bandexa_gym.bench.cli`
(options in :mod:`~bandexa_gym.bench.cli_options`, checks in
:mod:`~bandexa_gym.bench.cli_checks`, value parsing shared with ``bandexa-ope`` in
:mod:`~bandexa_gym.bench.arguments`). See ``docs/benchmarking.md``.
"""

# The command line's constants outside __all__ stay importable from here, as before the split.
from bandexa_gym.bench.arguments import parse_delay, parse_value
from bandexa_gym.bench.cli import EXIT_SIGNAL, main  # noqa: F401
from bandexa_gym.bench.cli_options import (  # noqa: F401
    DEFAULT_AGENTS,
    DEFAULT_ENVS,
    DEFAULT_HORIZON,
    DELAY_FORMS,
    LOGS_EXTRA,
    PROG,
    RL_EXTRA,
    SB3_NAMES,
    build_parser,
)
from bandexa_gym.bench.grid.jobs import Job, run_job, seed_everything
from bandexa_gym.bench.grid.results import format_table, plot_regret, summarize
from bandexa_gym.bench.runner import RunResult, find_monitor, measure, run

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
    "measure",
    "parse_delay",
    "parse_value",
    "plot_regret",
    "run",
    "run_job",
    "seed_everything",
    "summarize",
]
