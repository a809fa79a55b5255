"""The teaching notebooks execute top to bottom (at a reduced HORIZON) and ship without outputs.

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
    "02_neural_linear_mnist.ipynb": (120, ["120 rounds in", "encoder training bursts"]),
}


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
def test_notebook_is_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
