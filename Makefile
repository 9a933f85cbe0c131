# Quick start: `make demo` and `make test`. Both create .venv and install ventralkit into it
# (editable, so source edits need no reinstall); the install is redone only when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast bench gpu-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ventralkit demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# On a CUDA machine: the CUDA tests, then train/feature/data-pipeline ratios appended to benchmarks/RESULTS.md
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_suite.py --device cuda

clean:
	rm -rf $(VENV) demo_runs .pytest_cache
