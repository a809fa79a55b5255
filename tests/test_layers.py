"""The package's modules depend downward only: the layer table of docs/architecture.md holds
for every import, there are no import cycles, and modules stay small."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_TOOL = REPO.parent / "shared" / "tools" / "import_cycles.py"


def _imports(package: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (module- and function-level)."""
    modules = {}
    for file in package.rglob("*.py"):
        rel = file.relative_to(package.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        modules[".".join(parts)] = file
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, file in modules.items():
        is_package = file.name == "__init__.py"
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    # Package __init__ faces only re-export their own modules: not layers.
    return {m: {t for t in ts if modules[t].name != "__init__.py"} for m, ts in graph.items()}


def test_no_import_cycles() -> None:
    graph = _imports(REPO / "bandexa_gym")
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, " -> ".join(cycle)
    if SHARED_TOOL.is_file():  # the maintainers' own check agrees
        out = subprocess.run(
            [sys.executable, str(SHARED_TOOL), "bandexa_gym"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0 and not out.stdout.strip(), out.stdout


ARCHITECTURE = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "bandexa_gym"


def _layer_table() -> dict[str, set[str]]:
    """Unit -> the units it may import, from the table between the ``layers`` markers."""
    text = ARCHITECTURE.read_text()
    table = text.split("<!-- layers", 1)[1].split("<!-- /layers -->", 1)[0]
    allowed: dict[str, set[str]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        imports = set(re.findall(r"`([^`]+)`", cells[1]))
        for unit in re.findall(r"`([^`]+)`", cells[0]):
            allowed[unit] = imports
    return allowed


def _modules() -> dict[str, Path]:
    out = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return out


def _edges(modules: dict[str, Path]) -> list[tuple[str, str, list[str]]]:
    """(importer, imported module or package, names imported from it), for every import
    inside the package; ``from package import module`` counts as importing the module."""
    edges = []
    for name, file in modules.items():
        package = file.name == "__init__.py"
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                edges += [(name, a.name, []) for a in node.names if a.name in modules]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in modules:
                        edges.append((name, full, []))
                    elif base in modules:
                        edges.append((name, base, [alias.name]))
    return [(a, b, names) for a, b, names in edges if a != b]


def _unit(module: str, units: set[str]) -> str | None:
    matches = [
        u for u in units if module == f"bandexa_gym.{u}" or module.startswith(f"bandexa_gym.{u}.")
    ]
    return max(matches, key=len) if matches else None


def test_every_import_follows_the_layer_table_of_the_architecture_doc() -> None:
    allowed = _layer_table()
    modules = _modules()
    unplaced = sorted(m for m in modules if m != "bandexa_gym" and _unit(m, set(allowed)) is None)
    assert not unplaced, f"modules in no unit of the layer table: {unplaced}"
    wrong = []
    for importer, imported, _ in _edges(modules):
        if imported == "bandexa_gym":
            continue  # the package root: its version
        source, target = _unit(importer, set(allowed)), _unit(imported, set(allowed))
        if importer == "bandexa_gym" or source == target:
            continue
        if target not in allowed[source]:
            wrong.append(f"{importer} -> {imported} ({source} may not import {target})")
    assert not wrong, "\n".join(wrong)


def test_no_underscore_name_crosses_a_unit() -> None:
    allowed = _layer_table()
    crossing = [
        f"{importer} imports {name} from {imported}"
        for importer, imported, names in _edges(_modules())
        for name in names
        if name.startswith("_")
        and not name.startswith("__")
        and _unit(importer, set(allowed)) != _unit(imported, set(allowed))
    ]
    assert not crossing, "\n".join(crossing)


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(f.relative_to(REPO)): n
        for f in PACKAGE.rglob("*.py")
        if (n := len(f.read_text().splitlines())) > 500
    }
    assert not long, long


def test_the_table_catches_an_import_against_the_layers() -> None:
    allowed = _layer_table()
    assert "agents" not in allowed["heads"] and "heads" in allowed["exploration"]
    assert _unit("bandexa_gym.agents.core.protocol", set(allowed)) == "agents.core"
    assert _unit("bandexa_gym.agents.linear_ts", set(allowed)) == "agents"
