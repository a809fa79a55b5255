# Every target sets itself up: `make test` and `make bench` work on a fresh clone.
# CI installs the peer libraries (extra [peers]) and sb3-contrib and TorchRL (extra [rl]) too:
# their tests must run there.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The shared data folder, where there is one; elsewhere the envs read the per-user cache that
# `bandexa-data fetch NAME` (or download=True) fills.
ifneq ($(wildcard ../shared/data),)
export BANDEXA_DATA ?= $(abspath ../shared/data)
endif

.PHONY: test bench lint docs venv clean

venv: $(STAMP)

# (Re)create the venv when it is missing or broken, and reinstall when pyproject.toml changes.
$(STAMP): pyproject.toml
	@$(PY) -c "import sys" 2>/dev/null || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q -e ".[dev,peers,rl]"
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# The default benchmark at 3 seeds (about 40 s on 2 cores): a results folder with the runs,
# summary.csv (95% bootstrap intervals over seeds), regret.png and report.md.
BENCH_OUT ?= bench-out
bench: $(STAMP)
	$(VENV)/bin/bandexa-bench --num-seeds 3 --horizon 5000 --workers 2 --out $(BENCH_OUT) --overwrite --plot
	$(VENV)/bin/bandexa-bench report $(BENCH_OUT)

# The documentation site (Sphinx, furo, MyST-NB; extra [docs]) in docs/_build/html. Strict:
# warnings are errors. The notebooks are rendered with the outputs they are committed with.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[docs]"
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) -m sphinx -b html -W --keep-going -q docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info docs/_build docs/notebooks
