"""Sphinx configuration of the bandexa-gym documentation site (``make docs``).

The pages are the Markdown files of ``docs/`` (MyST), the API reference comes from the
docstrings of the public import paths (autodoc + napoleon: Google sections, reStructuredText
roles), and the notebooks of ``examples/notebooks/`` are rendered with the outputs they ship
with (MyST-NB, never executed here). ``make docs`` builds with ``-W``: warnings are errors.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

# The notebooks live in examples/notebooks/ (where users run them); Sphinx reads sources only
# from docs/, so each build copies them into docs/notebooks/ (git-ignored).
_NOTEBOOKS = DOCS / "notebooks"
_NOTEBOOKS.mkdir(exist_ok=True)
for _nb in sorted((ROOT / "examples" / "notebooks").glob("*.ipynb")):
    _dst = _NOTEBOOKS / _nb.name
    if not _dst.exists() or _dst.read_bytes() != _nb.read_bytes():
        shutil.copyfile(_nb, _dst)

project = "bandexa-gym"
author = "bandexa-gym developers"
copyright = "bandexa-gym developers"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "references/*.ipynb", "**/.ipynb_checkpoints"]
root_doc = "index"

html_theme = "furo"
html_title = "bandexa-gym"

# Markdown: anchors for links like performance.md#benchmark, and $...$ maths.
myst_heading_anchors = 4
myst_enable_extensions = ["dollarmath", "colon_fence"]

# Notebooks are committed with their outputs (tests/test_notebooks.py checks that): render them.
nb_execution_mode = "off"

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# Parts of a docstring from elsewhere (gymnasium.Env.step's) are not ours to fix: show only ours.
autodoc_inherit_docstrings = False


def _markdown_to_rst(lines: list[str]) -> None:
    """Rewrite the Markdown the env docstrings use (as Gymnasium's do) into reStructuredText.

    ``## Heading`` becomes a rubric and a fenced block (```` ```python ````) a code block; the
    rest of a docstring is reStructuredText already.
    """
    out: list[str] = []
    fence: str | None = None
    for line in lines:
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if fence is None and stripped.startswith("```"):
            fence = indent
            out += [f"{indent}.. code-block:: {stripped[3:].strip() or 'text'}", ""]
        elif fence is not None and stripped == "```":
            fence = None
            out.append("")
        elif fence is not None:
            out.append(f"{fence}   {line[len(fence) :]}" if line.strip() else "")
        elif stripped.startswith("## "):
            out += [f"{indent}.. rubric:: {stripped[3:]}", ""]
        else:
            out.append(line)
    lines[:] = out


def _process_docstring(app, what, name, obj, options, lines) -> None:  # noqa: ANN001
    _markdown_to_rst(lines)


def setup(app):  # noqa: ANN001, ANN201
    # Before napoleon (priority 500) reads the Google sections.
    app.connect("autodoc-process-docstring", _process_docstring, priority=100)
