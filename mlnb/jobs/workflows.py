"""CI workflows that run notebooks with mlnb: ``mlnb ci init github``. See docs/ci.md, which
holds the exact text :func:`github_workflow` writes with its defaults (a test keeps them the
same).

Every value a user gives (the notebook, the metrics, the baseline) is checked before it is
written into the YAML — one line of printable text, no GitHub ``${{ }}`` expression — and
then quoted for where it goes: ``shlex.quote`` in the shell lines of a ``run: |`` block,
:func:`mlnb.formatting.yaml_quote` in a YAML scalar. So a value cannot end its block, add a
step, or be expanded by Actions before the shell sees it.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlnb.checks.gates import parse_metric
from mlnb.errors import InvalidInputError
from mlnb.formatting import yaml_quote
from mlnb.store.inputs import MAX_KEY_LENGTH

__all__ = [
    "DEFAULT_PATH",
    "RETRAIN_PATH",
    "github_retrain_workflow",
    "github_workflow",
    "write_github_workflow",
]

DEFAULT_PATH = ".github/workflows/mlnb.yml"
DEFAULT_NOTEBOOK = "notebooks/train.ipynb"
DEFAULT_METRICS = ("accuracy>=0.8",)
DEFAULT_VS = "latest"
RETRAIN_PATH = ".github/workflows/mlnb-retrain.yml"
RETRAIN_NOTEBOOK = "notebooks/ct_train.ipynb"
RETRAIN_MODEL = "churn"
RETRAIN_DATA = ("train=data/train.csv",)
RETRAIN_GATE = ("auc>=+0.0",)

_TEMPLATE = """\
# Notebooks in CI with mlnb, written by `mlnb ci init github` (see mlnb's docs/ci.md).
name: mlnb

on:
  push:
    branches: [main]
  pull_request:

env:
  MLNB_STORE: ${{ github.workspace }}/.mlnb
  RUN_NAME: ci-${{ github.run_id }}-${{ github.run_attempt }}

jobs:
  notebooks:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4

      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
          cache: pip

      - name: Install
        run: |
          python -m pip install --upgrade pip
          if [ -f requirements.txt ]; then pip install -r requirements.txt; fi
          pip install mlnb ipykernel

      # Earlier runs are the baselines of the gate: keep the store from run to run.
      - name: Restore the mlnb store
        uses: actions/cache@v4
        with:
          path: .mlnb
          key: mlnb-store-${{ github.ref_name }}-${{ github.run_id }}-${{ github.run_attempt }}
          restore-keys: |
            mlnb-store-${{ github.ref_name }}-
            mlnb-store-${{ github.event.repository.default_branch }}-

      - name: Notebooks run as tests
        run: mlnb test <<tests>>

      - name: Train
        id: train
        run: |
          mlnb run <<notebook>> <<output>> --name "$RUN_NAME" --experiment ci<<checks>>

      - name: <<gate_step>>
        run: |
          mlnb gate "$RUN_NAME"<<gate_metrics>> --vs <<vs>>

      - name: Report (job summary, Markdown and HTML)
        if: always() && steps.train.outcome != 'skipped'
        run: |
          mlnb report "$RUN_NAME" --vs <<vs>> --format md -o mlnb-report/report.md
          mlnb report "$RUN_NAME" --vs <<vs>> --format html -o mlnb-report/report.html

      - name: Upload the report and the executed notebook
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: mlnb-report
          path: |
            mlnb-report/
            outputs/
          if-no-files-found: ignore
"""


_RETRAIN_TEMPLATE = """\
# Continuous training with mlnb, written by `mlnb ci init github --retrain` (see mlnb's
# docs/continuous-training.md): every night, retrain when the data drifted, gate the new
# model against the champion and promote it.
name: mlnb retrain

on:
  schedule:
    - cron: "17 3 * * *"
  workflow_dispatch:

# one retrain of a model at a time (mlnb retrain also holds a lock in the store)
concurrency:
  group: mlnb-retrain-<<model_group>>
  cancel-in-progress: false

env:
  MLNB_STORE: ${{ github.workspace }}/.mlnb

jobs:
  retrain:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4

      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
          cache: pip

      - name: Install
        run: |
          python -m pip install --upgrade pip
          if [ -f requirements.txt ]; then pip install -r requirements.txt; fi
          pip install "mlnb[models]" ipykernel

      # The registry (champion, history) lives in the store: keep it from run to run.
      - name: Restore the mlnb store
        uses: actions/cache@v4
        with:
          path: .mlnb
          key: mlnb-store-${{ github.ref_name }}-${{ github.run_id }}-${{ github.run_attempt }}
          restore-keys: |
            mlnb-store-${{ github.ref_name }}-
            mlnb-store-${{ github.event.repository.default_branch }}-

      # Exit 0 with "no change" when the data did not drift; 1 when training or the gate failed.
      - name: Retrain when the data drifted
        run: |
          mlnb retrain <<notebook>> --model <<model>><<data>> \\
            --when <<when>><<gate>> --promote champion

      - name: Lineage and history of the champion
        if: always()
        run: |
          mlnb model lineage <<model>>@champion || true
          mlnb model history <<model>> --alias champion || true
"""


def github_retrain_workflow(
    *,
    notebook: str = RETRAIN_NOTEBOOK,
    model: str = RETRAIN_MODEL,
    data: Sequence[str] = RETRAIN_DATA,
    when: str = "drift",
    gate: Sequence[str] = RETRAIN_GATE,
) -> str:
    """The text of a scheduled GitHub Actions workflow that runs ``mlnb retrain`` every
    night (and by hand): retrain ``model`` with ``notebook`` when ``data`` drifted (or
    changed: ``when``), gate the new version against the champion and promote it."""
    from mlnb.registry.models import check_name

    check_name(_one_line("--model", model))
    if when not in ("data-changed", "drift", "always"):
        raise InvalidInputError(f"--when must be data-changed, drift or always, got {when!r}")
    pairs = [_one_line("--data", d) for d in data]
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name.isidentifier() or not path:
            raise InvalidInputError(f"--data {pair!r}: expected NAME=PATH")
    if when != "always" and not pairs:
        raise InvalidInputError(f"--when {when} compares data: give --data NAME=PATH")
    gates = [_one_line("--gate", g) for g in gate]
    if gates:
        from mlnb.jobs.promote import promotion_thresholds

        promotion_thresholds(gates)  # a bad gate fails here, not in CI
    values = {
        "notebook": shlex.quote(Path(_one_line("--notebook", notebook)).as_posix()),
        "model": shlex.quote(model),
        "model_group": model,
        "data": "".join(f" --data {shlex.quote(p)}" for p in pairs),
        "when": when,
        "gate": "".join(f" --gate {shlex.quote(g)}" for g in gates),
    }
    return re.sub(r"<<(\w+)>>", lambda m: values[m[1]], _RETRAIN_TEMPLATE)


def _check_expression(key: str, op: str, number: float) -> str:
    shown = key if re.fullmatch(r"[A-Za-z0-9_/-]+", key) else "`" + key.replace("`", "``") + "`"
    return f"metrics.{shown} {'=' if op == '==' else op} {number:g}"


def _one_line(what: str, value: str) -> str:
    """``value`` if it can be written into the workflow as it is meant: non-empty, one line of
    printable characters (YAML 1.1 also breaks lines at NEL, LS and PS), and no ``${{``,
    which GitHub Actions would expand before the shell runs; else InvalidInputError."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{what} must be a non-empty string, got {value!r}")
    bad = next((ch for ch in value if not ch.isprintable()), None)
    if bad is not None:
        raise InvalidInputError(
            f"{what} {value!r} contains a line break or control character ({bad!r}); "
            "the workflow takes one line of printable text"
        )
    if "${{" in value:
        raise InvalidInputError(
            f"{what} {value!r} contains a GitHub expression ('${{{{'), which Actions would "
            "expand before the shell runs; write the value itself"
        )
    return value


def _run_reference(vs: str) -> str:
    """The gate's baseline: ``latest``, ``best``, or a run id, id prefix or name (one
    printable line of at most 250 characters, as names are)."""
    _one_line("--vs", vs)
    if len(vs) > MAX_KEY_LENGTH:
        raise InvalidInputError(
            f"--vs {vs[:40]!r}... is {len(vs)} characters long; a run reference is 'latest', "
            f"'best', a run id or a name of at most {MAX_KEY_LENGTH} characters"
        )
    return vs


def github_workflow(
    *,
    notebook: str = DEFAULT_NOTEBOOK,
    metrics: Sequence[str] = DEFAULT_METRICS,
    vs: str = DEFAULT_VS,
) -> str:
    """The text of a GitHub Actions workflow that installs the project, runs the notebooks
    as tests (``mlnb test``), runs ``notebook`` as a tracked job with ``--check`` for each
    metric threshold, gates it (``mlnb gate ... --vs``), writes a report to the job
    summary and uploads the report and the executed notebook."""
    if not metrics:
        raise InvalidInputError("give at least one metric to gate, e.g. 'accuracy>=0.8'")
    vs = _run_reference(vs)
    nb = Path(_one_line("--notebook", notebook))
    metrics = [_one_line("metric", m) for m in metrics]
    parsed = [parse_metric(m) for m in metrics]  # bad expressions fail here, not in CI
    tests = nb.parent.as_posix() + "/" if nb.parent != Path(".") else "."
    checks = "".join(
        f" \\\n            --check {shlex.quote(_check_expression(k, op, n))}"
        for k, op, n in parsed
        if op is not None and n is not None
    )
    gate_metrics = "".join(f" --metric {shlex.quote(m)}" for m in metrics)
    vs_text = {"latest": "latest earlier run", "best": "best earlier run"}.get(vs, f"run {vs}")
    values = {
        "tests": shlex.quote(tests),
        "notebook": shlex.quote(nb.as_posix()),
        "output": shlex.quote(f"outputs/{nb.name}"),
        "checks": checks,
        "gate_metrics": gate_metrics,
        "vs": shlex.quote(vs),
        "gate_step": yaml_quote(f"Gate against the {vs_text}"),
    }
    return re.sub(r"<<(\w+)>>", lambda m: values[m[1]], _TEMPLATE)


def write_github_workflow(
    path: str | os.PathLike[str] = DEFAULT_PATH,
    *,
    notebook: str = DEFAULT_NOTEBOOK,
    metrics: Sequence[str] = DEFAULT_METRICS,
    vs: str = DEFAULT_VS,
    force: bool = False,
    retrain: dict[str, Any] | None = None,
) -> Path:
    """Write :func:`github_workflow` (or, with ``retrain``, :func:`github_retrain_workflow`
    with those options) to ``path`` (folders created); an existing file is kept unless
    ``force``. Returns the path."""
    if retrain is not None:
        text = github_retrain_workflow(**retrain)
    else:
        text = github_workflow(notebook=notebook, metrics=metrics, vs=vs)
    target = Path(path)
    if target.exists() and not force:
        raise InvalidInputError(f"{target} exists; use --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target
