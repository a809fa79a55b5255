"""The README's Python blocks run, in order, as one script."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_python_blocks_run_top_to_bottom(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 6
    script = tmp_path / "readme.py"
    script.write_text("\n".join(blocks))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,  # relative paths the README writes (runs/...) land here
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # "Measuring" prints the regret it talks about: the learned representation ahead on
    # Retrieval, where a linear model of [x; a] cannot personalise.
    printed = [line for line in out.stdout.splitlines() if line.startswith("{'uniform'")]
    assert len(printed) == 1, out.stdout
    regret = ast.literal_eval(printed[0])
    assert regret["neural_linear_ts"] < regret["linear_ts"] < regret["uniform"], regret
