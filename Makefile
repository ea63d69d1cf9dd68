# One obvious entry point for each job. `make quickstart` and `make test` are the two
# commands in README.md; `.ci/run` calls `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: default quickstart test lint format bench clean compile chromium smoke labextension

default: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# An editable install builds the JupyterLab extension (Node, `jlpm`: the build hook of
# pyproject.toml) and copies it into the venv's JupyterLab; for tests and development
# `jupyter-builder develop` (what `jupyter labextension develop` became) links it instead,
# so `make labextension` rebuilds are what JupyterLab loads.
$(VENV)/.installed-examples: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[examples]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	$(VENV)/bin/jupyter-builder develop --overwrite . >/dev/null
	touch $@ $(VENV)/.installed-examples

# Rebuild the JupyterLab extension when its sources change (docs/jupyterlab.md).
LABEXT_SRC := $(wildcard labextension/src/*.ts labextension/style/*) \
	labextension/package.json labextension/yarn.lock labextension/tsconfig.json
mlnb/labextension/package.json: $(LABEXT_SRC) | $(VENV)/.installed-test
	cd labextension && PATH="$(abspath $(VENV))/bin:$$PATH" jlpm install --immutable \
		&& PATH="$(abspath $(VENV))/bin:$$PATH" jlpm build:prod
	touch $@
labextension: mlnb/labextension/package.json

# Bytecode for the editable sources, as a regular install would have (imports are timed).
compile: | $(PY)
	@$(PY) -m compileall -q mlnb

# The quickstart as a user would run it: the quickstart notebook headless, a sweep of the
# training notebook on two workers, then that sweep's best child against its runner-up:
# listed, diffed, gated and reported. Each invocation compares the sweep it has just run
# (the newest of the quickstart experiment), so every invocation tells the same story.
# QS_STORE and QS_OUT choose the store and the output folder.
QS_STORE ?= .mlnb
QS_OUT ?= quickstart-out
MLNB := $(VENV)/bin/mlnb --store $(QS_STORE)
QS_COLUMNS := name,status,params.model,params.seed,metrics.accuracy,metrics.f1,metrics.roc_auc,duration
QS_ORDER := metrics.accuracy desc, metrics.f1 desc
quickstart: $(VENV)/.installed-examples compile
	@echo "== 1/4  notebooks/quickstart.ipynb, headless: one job run (mlnb run) =="
	$(MLNB) run notebooks/quickstart.ipynb $(QS_OUT)/quickstart.ipynb
	@echo; echo "== 2/4  a sweep of notebooks/train.ipynb: 3 models x 2 seeds, 2 at a time =="
	$(MLNB) sweep notebooks/train.ipynb -g model=logreg,forest,sgd -g seed=0,1 -j 2 \
		--experiment quickstart --name models --sort "$(QS_ORDER)"
	@set -e; \
	sweep=$$($(MLNB) runs -e quickstart -f "tags.mlnb.sweep = '1'" -n 1 -c run_id \
		--format csv | tail -n 1); \
	children="parent_run_id = '$$sweep'"; \
	echo; echo "== 3/4  that sweep's children, best first (accuracy, then f1); the runner-up (a) against the best (b) =="; \
	$(MLNB) runs -f "$$children" -o "$(QS_ORDER)" -c $(QS_COLUMNS); \
	ids=$$($(MLNB) runs -f "$$children" -o "$(QS_ORDER)" -c run_id --format csv -n 2 \
		| tail -n 2); \
	best=$$(echo "$$ids" | head -n 1); second=$$(echo "$$ids" | tail -n 1); \
	echo; $(MLNB) diff $$second $$best; \
	echo; echo "== 4/4  a CI gate and a report: the best against the runner-up =="; \
	$(MLNB) gate $$best -m "accuracy>=0.9" --vs $$second; \
	$(MLNB) report $$best --vs $$second --format html -o $(QS_OUT)/report.html; \
	echo; echo "Report: $(QS_OUT)/report.html  ·  every run: $(MLNB) runs  ·  in JupyterLab:" \
		"import mlnb; mlnb.compare()  (docs/compare.md)"

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check mlnb tests benchmarks .ci
	$(VENV)/bin/ruff format --check mlnb tests benchmarks .ci
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(VENV)/.installed-test
	$(VENV)/bin/ruff format mlnb tests benchmarks .ci
	$(VENV)/bin/ruff check --fix mlnb tests benchmarks .ci

# The browser tests drive Debian's Chromium with Python Playwright (no `playwright install`
# here: it cannot download browsers). Non-interactive; `apt-get update` only when needed.
chromium:
	@test -x /usr/bin/chromium || { \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends chromium </dev/null \
		|| { apt-get update -q </dev/null && \
		     apt-get install -y -q --no-install-recommends chromium </dev/null; }; }

# A plain install works: the package from this tree, not editable and without extras, in a
# fresh venv (a temporary folder, removed after), runs .ci/smoke.py through the public
# surface. Users do not install our test extras; pip's cache keeps it quick.
smoke:
	@set -e; unset PYTHONPATH; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "== smoke: pip install . (no extras) into a fresh venv in $$tmp =="; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q --no-compile .; \
	cd "$$tmp" && "$$tmp/venv/bin/python" "$(CURDIR)/.ci/smoke.py"

# The plain-install lane runs first, so pytest's summary is the last line CI reads.
test: lint compile chromium labextension
	$(MAKE) smoke
	$(PY) -m pytest

bench: $(VENV)/.installed-test
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist
