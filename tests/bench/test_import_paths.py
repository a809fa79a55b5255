"""Import paths of the measurement layer: bandexa_gym.bench is the package, and the old modules
(runner, delays, sb3, utils, grid) give the very same objects."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bandexa_gym.bench
import bandexa_gym.bench.grid

BENCH = Path(bandexa_gym.bench.__file__).resolve().parent
PACKAGE = BENCH.parent

# old module -> the module it re-exports
MOVED = {
    "bandexa_gym.runner": "bandexa_gym.bench.runner",
    "bandexa_gym.delays": "bandexa_gym.bench.delays",
    "bandexa_gym.sb3": "bandexa_gym.bench.sb3",
    "bandexa_gym.utils": "bandexa_gym.bench.check",
    "bandexa_gym.grid": "bandexa_gym.bench.grid",
}
# what bandexa_gym.bench offered when it was one module, and measure
BENCH_NAMES = (
    "DEFAULT_AGENTS",
    "DEFAULT_ENVS",
    "DEFAULT_HORIZON",
    "DELAY_FORMS",
    "EXIT_SIGNAL",
    "Job",
    "LOGS_EXTRA",
    "PROG",
    "RL_EXTRA",
    "RunResult",
    "SB3_NAMES",
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
)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_modules_re_export_the_same_objects(old: str) -> None:
    if old == "bandexa_gym.sb3":
        pytest.importorskip("stable_baselines3")
    old_module, new_module = importlib.import_module(old), importlib.import_module(MOVED[old])
    assert old_module.__all__ == new_module.__all__
    for name in new_module.__all__:
        assert getattr(old_module, name) is getattr(new_module, name), name
    doc = (old_module.__doc__ or "").strip()
    assert doc.startswith("Re-export of") and "\n" not in doc, doc


def test_old_grid_modules_are_the_new_modules() -> None:
    modules = sorted(p.stem for p in (BENCH / "grid").glob("*.py") if p.stem != "__init__")
    assert "jobs" in modules and "suites" in modules
    for name in modules:
        old = importlib.import_module(f"bandexa_gym.grid.{name}")
        assert old is importlib.import_module(f"bandexa_gym.bench.grid.{name}"), name
    from bandexa_gym.grid.suites import default_agents

    assert default_agents is bandexa_gym.bench.grid.suites.default_agents


def test_bench_package_keeps_its_names() -> None:
    from bandexa_gym.bench import cli, cli_options, runner

    for name in BENCH_NAMES:
        assert hasattr(bandexa_gym.bench, name), name
    assert bandexa_gym.bench.run is runner.run and bandexa_gym.bench.measure is runner.measure
    assert bandexa_gym.bench.main is cli.main
    assert bandexa_gym.bench.build_parser is cli_options.build_parser


def test_python_dash_m_runs_the_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bandexa_gym.bench", "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(PACKAGE.parent)),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: bandexa-bench")


def test_every_bench_module_is_under_500_lines() -> None:
    for path in sorted(BENCH.rglob("*.py")):
        lines = len(path.read_text().splitlines())
        assert lines < 500, f"{path.relative_to(PACKAGE)}: {lines} lines"
