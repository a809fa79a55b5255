"""The package's modules depend downward only: no import cycles."""

from __future__ import annotations

import ast
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
