"""Benchmark grids: problems x agents x seeds, run locally or on Ray, kept on disk.

The pieces, each in its own module:

* :mod:`~bandexa_gym.bench.grid.jobs`: one run (:class:`Job`, :func:`run_job`,
  :func:`execute_job`, :class:`RunRecord`);
* :mod:`~bandexa_gym.bench.grid.store`: one atomic ``.npz`` file per run, and resuming;
* :mod:`~bandexa_gym.bench.grid.local` and :mod:`~bandexa_gym.bench.grid.ray_backend`: backends;
* :mod:`~bandexa_gym.bench.grid.driver`: :func:`plan_grid` and :func:`run_grid` (signals,
  progress, summaries as runs end);
* :mod:`~bandexa_gym.bench.grid.results`, :mod:`~bandexa_gym.bench.grid.summaries` and
  :mod:`~bandexa_gym.bench.grid.suite_table`: tables and summary files;
* :mod:`~bandexa_gym.bench.grid.aggregates`: bootstrap intervals over seeds and the
  across-problem aggregates (IQM, probability of improvement);
* :mod:`~bandexa_gym.bench.grid.report`: :func:`write_report`, the Markdown report of a
  results folder (``bandexa-bench report DIR``);
* :mod:`~bandexa_gym.bench.grid.suites`: the benchmark suites as data.

The ``bandexa-bench`` command line is :mod:`bandexa_gym.bench`.
"""

from bandexa_gym.bench.grid.aggregates import bootstrap_ci, improvement_rows, iqm_rows
from bandexa_gym.bench.grid.base import Backend, GridEvents, GridInterrupted
from bandexa_gym.bench.grid.driver import (
    ExistingRunsError,
    GridOutcome,
    GridPlan,
    OutputBusyError,
    output_lock,
    plan_grid,
    run_grid,
    run_jobs,
)
from bandexa_gym.bench.grid.jobs import Job, RunRecord, execute_job, run_job, seed_everything
from bandexa_gym.bench.grid.local import InProcessBackend, ProcessPoolBackend, local_backend
from bandexa_gym.bench.grid.ray_backend import RAY_EXTRA, RayBackend, ray_available
from bandexa_gym.bench.grid.report import write_report
from bandexa_gym.bench.grid.results import DEFAULT_WINDOW, format_table, plot_regret, summarize
from bandexa_gym.bench.grid.store import ConfigConflictError, RunFileError, RunStore
from bandexa_gym.bench.grid.suite_table import format_suite_table, suite_cells
from bandexa_gym.bench.grid.suites import SUITES, Problem, Suite, default_agents
from bandexa_gym.bench.grid.summaries import SummaryWriter

__all__ = [
    "DEFAULT_WINDOW",
    "RAY_EXTRA",
    "SUITES",
    "Backend",
    "ConfigConflictError",
    "ExistingRunsError",
    "GridEvents",
    "GridInterrupted",
    "GridOutcome",
    "GridPlan",
    "InProcessBackend",
    "Job",
    "OutputBusyError",
    "Problem",
    "ProcessPoolBackend",
    "RayBackend",
    "RunFileError",
    "RunRecord",
    "RunStore",
    "Suite",
    "SummaryWriter",
    "bootstrap_ci",
    "default_agents",
    "execute_job",
    "format_suite_table",
    "format_table",
    "improvement_rows",
    "iqm_rows",
    "local_backend",
    "output_lock",
    "plan_grid",
    "plot_regret",
    "ray_available",
    "run_grid",
    "run_job",
    "run_jobs",
    "seed_everything",
    "suite_cells",
    "summarize",
    "write_report",
]
