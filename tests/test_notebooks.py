"""The teaching notebooks execute top to bottom (at a reduced HORIZON) and ship with outputs.

They are committed executed at their own HORIZON, plots included, so that they render where the
repository is browsed and in the documentation site (which does not execute them).

The kernel is this interpreter: a throw-away kernelspec whose argv starts with
``sys.executable``, so the test does not depend on which ``python3`` kernel Jupyter would
find on the machine (on a fresh clone, ``make test`` has just created ``.venv``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "examples" / "notebooks"
KERNEL = "bandexa-test-python"

# notebook -> (reduced horizon, text its outputs must contain)
CASES = {
    "01_thompson_sampling_blr.ipynb": (150, ["posterior mean after 1000", "uniform:"]),
    "02_neural_linear_mnist.ipynb": (
        120,
        ["120 rounds in", "encoder training bursts", "after 50 rounds: mean predictive sd"],
    ),
}
# notebook -> text the committed outputs (at the notebook's own HORIZON) must contain
COMMITTED = {
    "01_thompson_sampling_blr.ipynb": ["LinearTS: cumulative regret 7.5 over 2000 rounds"],
    "02_neural_linear_mnist.ipynb": [
        "2000 rounds in",
        "after 50 rounds: mean predictive sd",
        "after 500 rounds: mean predictive sd",
        "after 2000 rounds: mean predictive sd",
    ],
}
MAX_BYTES = 1_000_000


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kernels")
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bandexa-gym tests",
        "language": "python",
    }
    (root / KERNEL).mkdir()
    (root / KERNEL / "kernel.json").write_text(json.dumps(spec))
    return root


def _outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out["text"])
            if "image/png" in out.get("data", {}):
                images += 1
    return "".join(text), images


@pytest.mark.parametrize("name", list(CASES))
def test_notebook_executes(name: str, kernel_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    horizon, expected = CASES[name]
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "HORIZON = " in params[0].source
    params[0].source = f"HORIZON = {horizon}\nSEED = 0"

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits the environment
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    km = KernelManager(
        kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    )
    client = NotebookClient(
        nb, km=km, timeout=180, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    text, images = _outputs(nb)
    for snippet in expected:
        assert snippet in text, f"{name}: output lacks {snippet!r}"
    assert images >= 2, f"{name}: expected plots, got {images}"


@pytest.mark.parametrize("name", list(CASES))
def test_notebook_is_committed_executed_with_its_plots(name: str) -> None:
    path = NOTEBOOKS / name
    assert path.stat().st_size < MAX_BYTES, f"{name}: {path.stat().st_size} bytes"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    # Executed top to bottom in one fresh kernel, and without errors.
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", f"{name}: committed with an error"
            assert out.get("name") != "stderr", f"{name}: committed with stderr {out['text']!r}"
    text, images = _outputs(nb)
    assert images >= 2, f"{name}: expected committed plots, got {images}"
    for snippet in COMMITTED[name]:
        assert snippet in text, f"{name}: committed outputs lack {snippet!r}"


def test_notebook_two_shows_the_posterior_shrinking() -> None:
    """Notebook 02's committed run: the predictive sd on the probe digits falls stage by stage."""
    nb = nbformat.read(NOTEBOOKS / "02_neural_linear_mnist.ipynb", as_version=4)
    text, _ = _outputs(nb)
    sds = [
        float(line.split("mean predictive sd ")[1].split(",")[0])
        for line in text.splitlines()
        if "mean predictive sd" in line
    ]
    assert len(sds) == 3 and sds[0] > sds[1] > sds[2], sds
