"""CI workflows that run notebooks with mlnb: ``mlnb ci init github``. See docs/ci.md, which
holds the exact text :func:`github_workflow` writes with its defaults (a test keeps them the
same).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from mlnb.errors import InvalidInputError
from mlnb.gates import parse_metric

__all__ = ["DEFAULT_PATH", "github_workflow", "write_github_workflow"]

DEFAULT_PATH = ".github/workflows/mlnb.yml"
DEFAULT_NOTEBOOK = "notebooks/train.ipynb"
DEFAULT_METRICS = ("accuracy>=0.8",)
DEFAULT_VS = "latest"

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

      - name: Gate against the <<vs_text>>
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


def _check_expression(key: str, op: str, number: float) -> str:
    shown = key if re.fullmatch(r"[A-Za-z0-9_/-]+", key) else "`" + key.replace("`", "``") + "`"
    return f"metrics.{shown} {'=' if op == '==' else op} {number:g}"


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
    parsed = [parse_metric(m) for m in metrics]  # bad expressions fail here, not in CI
    nb = Path(notebook)
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
        "vs_text": vs_text,
    }
    return re.sub(r"<<(\w+)>>", lambda m: values[m[1]], _TEMPLATE)


def write_github_workflow(
    path: str | os.PathLike[str] = DEFAULT_PATH,
    *,
    notebook: str = DEFAULT_NOTEBOOK,
    metrics: Sequence[str] = DEFAULT_METRICS,
    vs: str = DEFAULT_VS,
    force: bool = False,
) -> Path:
    """Write :func:`github_workflow` to ``path`` (folders created); an existing file is
    kept unless ``force``. Returns the path."""
    text = github_workflow(notebook=notebook, metrics=metrics, vs=vs)
    target = Path(path)
    if target.exists() and not force:
        raise InvalidInputError(f"{target} exists; use --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target
