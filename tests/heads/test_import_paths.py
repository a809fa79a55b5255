"""Import paths of the heads: the old modules re-export the same objects, and heads/ imports
nothing from the layers above it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import bandexa_gym.heads

PACKAGE = Path(bandexa_gym.heads.__file__).resolve().parents[1]
HEADS = PACKAGE / "heads"

# old module -> {name: new module}
MOVED = {
    "bandexa_gym.posterior": {
        "BayesianLinearRegression": "gaussian",
        "HEAD_FIELDS": "protocol",
        "Head": "protocol",
        "HeadConfig": "protocol",
        "LaplaceLogisticRegression": "logistic",
        "LogisticHeadConfig": "logistic",
        "NumericalWarning": "numerics",
        "accumulate_statistics": "conjugate",
        "grown_state": "conjugate",
        "load_rebased": "conjugate",
        "rebase_head_state": "conjugate",
        "safe_cholesky": "numerics",
        "score": "protocol",
        "score_dtype": "protocol",
    },
    "bandexa_gym.posterior_logistic": {
        "LaplaceLogisticRegression": "logistic",
        "LogisticHeadConfig": "logistic",
        "RefitInfo": "logistic_fit",
    },
    "bandexa_gym.network_heads": {
        "DiagonalGradientHead": "gradient",
        "EnsembleHead": "ensemble",
    },
    "bandexa_gym.numerics": {
        name: "numerics"
        for name in (
            "GAMMA_NORMALS",
            "NumericalWarning",
            "draw_row_length",
            "gamma_from_normals",
            "gamma_variates",
            "safe_cholesky",
            "seeded_init",
            "standard_gamma",
        )
    },
    "bandexa_gym.exploration": {"tie_split": "protocol"},
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_paths_give_the_same_objects(old: str) -> None:
    module = importlib.import_module(old)
    for name, new in MOVED[old].items():
        moved = importlib.import_module(f"bandexa_gym.heads.{new}")
        assert getattr(module, name) is getattr(moved, name), f"{old}.{name}"
        assert name in module.__all__, f"{old}.__all__ lacks {name}"


def test_the_heads_package_exports_its_public_names() -> None:
    for name in bandexa_gym.heads.__all__:
        assert getattr(bandexa_gym.heads, name) is not None
    assert (
        bandexa_gym.heads.BayesianLinearRegression
        is importlib.import_module("bandexa_gym.posterior").BayesianLinearRegression
    )


def _package_imports(file: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``bandexa_gym`` import in ``file``, at any level."""
    found = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bandexa_gym"):
            found.append((node.module or "", [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("bandexa_gym")]
    return found


def test_heads_import_nothing_above_them() -> None:
    for file in sorted(HEADS.glob("*.py")):
        for module, _ in _package_imports(file):
            assert module.startswith("bandexa_gym.heads"), f"{file.name} imports {module}"


def test_no_underscore_name_of_the_heads_is_imported_outside_them() -> None:
    for file in sorted(PACKAGE.rglob("*.py")):
        if HEADS in file.parents:
            continue
        for module, names in _package_imports(file):
            if module.startswith("bandexa_gym.heads"):
                private = [n for n in names if n.startswith("_") and not n.endswith("__")]
                assert not private, f"{file.relative_to(PACKAGE)} imports {private} from {module}"
