# One obvious entry point for each job. `make quickstart` and `make test` are the two
# commands in README.md; `.ci/run` calls `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: default quickstart test lint format bench clean

default: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed-examples: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[examples]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed-examples

quickstart: $(VENV)/.installed-examples
	$(VENV)/bin/jupyter execute --output=/tmp/mlnb-quickstart.ipynb notebooks/quickstart.ipynb
	$(VENV)/bin/mlnb runs --experiment quickstart --columns name,status,params.model,params.C,params.max_depth,metrics.accuracy,duration
	$(VENV)/bin/mlnb runs --experiment quickstart --order-by 'metrics.accuracy desc' --limit 1 --format show

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check mlnb tests benchmarks
	$(VENV)/bin/ruff format --check mlnb tests benchmarks

format: $(VENV)/.installed-test
	$(VENV)/bin/ruff format mlnb tests benchmarks
	$(VENV)/bin/ruff check --fix mlnb tests benchmarks

test: lint
	$(PY) -m pytest

bench: $(VENV)/.installed-test
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist
