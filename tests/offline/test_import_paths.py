"""Import paths of the logged-data modules: the old top-level modules re-export the same
objects from offline/, in one line each, and stay free of torch and pyarrow."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import bandexa_gym

PACKAGE = Path(bandexa_gym.__file__).resolve().parent

# old module -> {name: new module}
MOVED = {
    "bandexa_gym.logs": {
        "FORMAT_VERSION": "logs",
        "ROUND_FIELDS": "logs",
        "LogBatch": "logs",
        "LogFormatError": "logs",
        "LogReader": "logs",
        "read_log": "logs",
        "LogBusyError": "log_writer",
        "LogWriter": "log_writer",
    },
    "bandexa_gym.datasets": {
        name: "datasets"
        for name in (
            "BEHAVIOR_POLICIES",
            "CAMPAIGNS",
            "FOLDER",
            "KNOWN_MD5",
            "N_POSITIONS",
            "BehaviorPolicy",
            "Campaign",
            "OpenBanditData",
            "open_bandit",
        )
    },
    "bandexa_gym.ope_cli": {"PROG": "cli", "build_parser": "cli", "main": "cli"},
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_paths_give_the_same_objects(old: str) -> None:
    module = importlib.import_module(old)
    for name, new in MOVED[old].items():
        moved = importlib.import_module(f"bandexa_gym.offline.{new}")
        assert getattr(module, name) is getattr(moved, name), f"{old}.{name}"
    public = set(module.__all__)
    for name in public:
        assert name in MOVED[old], f"{old}.__all__ names {name}, which did not move"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_modules_are_one_line_re_exports(old: str) -> None:
    file = PACKAGE / f"{old.rpartition('.')[2]}.py"
    doc = ast.get_docstring(ast.parse(file.read_text()))
    assert doc is not None and "\n" not in doc and doc.startswith("Re-export of"), doc


def test_the_console_script_target_still_imports() -> None:
    # pyproject.toml: bandexa-ope = "bandexa_gym.ope_cli:main" (installed entry points keep it)
    from bandexa_gym.offline.cli import main
    from bandexa_gym.ope_cli import main as old_main

    assert old_main is main


def test_no_module_of_offline_exceeds_500_lines() -> None:
    for file in sorted((PACKAGE / "offline").glob("*.py")):
        lines = len(file.read_text().splitlines())
        assert lines <= 500, f"offline/{file.name} has {lines} lines"


def test_the_log_and_dataset_modules_import_neither_pyarrow_nor_torch() -> None:
    code = (
        "import sys, bandexa_gym.offline, bandexa_gym.offline.logs, "
        "bandexa_gym.offline.log_writer, bandexa_gym.offline.datasets; "
        "print(sorted(m for m in ('pyarrow', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
