# One obvious entry point for each job. `make quickstart` and `make test` are the two
# commands in README.md; `.ci/run` calls `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: default quickstart test lint format bench clean compile chromium

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

# Bytecode for the editable sources, as a regular install would have (imports are timed).
compile: | $(PY)
	@$(PY) -m compileall -q mlnb

quickstart: $(VENV)/.installed-examples compile
	MLNB_STORE=$(CURDIR)/.mlnb MLNB_NOTEBOOK=$(CURDIR)/notebooks/quickstart.ipynb \
		$(VENV)/bin/jupyter execute --output=/tmp/mlnb-quickstart.ipynb notebooks/quickstart.ipynb
	@echo; echo "== runs of the quickstart experiment, best first =="
	@$(VENV)/bin/mlnb --store .mlnb runs -e quickstart -o 'metrics.accuracy desc' -n 12 -c name,status,linearity,params.model,params.C,params.max_depth,metrics.accuracy,metrics.f1,duration
	@echo; echo "== the best run =="
	@$(VENV)/bin/mlnb --store .mlnb show -e quickstart -o 'metrics.accuracy desc'

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check mlnb tests benchmarks
	$(VENV)/bin/ruff format --check mlnb tests benchmarks
	$(VENV)/bin/mypy

format: $(VENV)/.installed-test
	$(VENV)/bin/ruff format mlnb tests benchmarks
	$(VENV)/bin/ruff check --fix mlnb tests benchmarks

# The browser tests drive Debian's Chromium with Python Playwright (no `playwright install`
# here: it cannot download browsers). Non-interactive; `apt-get update` only when needed.
chromium:
	@test -x /usr/bin/chromium || { \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends chromium </dev/null \
		|| { apt-get update -q </dev/null && \
		     apt-get install -y -q --no-install-recommends chromium </dev/null; }; }

test: lint compile chromium
	$(PY) -m pytest

bench: $(VENV)/.installed-test
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist
