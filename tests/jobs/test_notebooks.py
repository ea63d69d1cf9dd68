"""Every example notebook in notebooks/ passes `mlnb test`, as CI runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import mlnb
from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.slow


def test_mlnb_test_passes_every_example_notebook(tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = subprocess.run(
        [sys.executable, "-m", "mlnb", "--store", str(store), "test", "--keep", "-n", "2",
         "notebooks"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == f"{len(NOTEBOOKS)} passed, 0 failed"
    with mlnb.Store(store) as st:
        table = st.search_runs()
        assert table["run_id"], "the notebooks tracked no runs"
        assert set(table["status"]) == {"finished"}
        # Issue 11 item 5: every job runs its notebook top to bottom, so every job run is
        # linear, with or without `%track end` (train.ipynb has none). Runs a notebook
        # starts itself inside one cell (the quickstart's baselines) execute no cell of
        # their own: no verdict.
        jobs = {
            name: verdict
            for name, verdict, job in zip(
                table["name"], table["linearity"], table["tags.mlnb.job"], strict=True
            )
            if job
        }
        assert set(jobs) >= {"sgd-epochs", "train"}, jobs
        assert set(jobs.values()) == {"linear"}, jobs
        assert set(table["linearity"]) <= {"linear", None}


def test_mlnb_test_reports_the_failing_cell(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mlnb", "--store", str(tmp_path / "s"), "test",
         str(REPO / "tests" / "notebooks" / "job_fail.ipynb")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout
    assert "cell 2 `x = 1 / divisor`: ZeroDivisionError: division by zero" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "0 passed, 1 failed"


GATE_LINE = re.compile(r"^gate (\S+) \(([0-9a-f]{8})\) vs (\S+) \(([0-9a-f]{8})\)$", re.MULTILINE)


def run_quickstart(store: Path, out: Path) -> str:
    """`make quickstart` into this store and folder, with the venv of the tests (never
    installing into it: its install stamp counts as up to date)."""
    stamp = f"{sys.prefix}/.installed-examples"
    proc = subprocess.run(
        ["make", "--no-print-directory", "-o", stamp, "quickstart", f"VENV={sys.prefix}",
         f"QS_STORE={store}", f"QS_OUT={out}"],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_make_quickstart_compares_its_own_sweeps_best_child_with_the_runner_up(
    tmp_path: Path,
) -> None:
    """Issue 11 item 17: `make quickstart` diffed and gated two baseline runs of the
    quickstart notebook instead of the sweep it had just run, mixed `LogisticRegression`
    and `logreg` in params.model, and on a second invocation compared runs with their own
    earlier copies ("Δ +0 ... PASS"). Each invocation now compares its own sweep's best
    child with its runner-up, and tells the same story."""
    store, out = tmp_path / "store", tmp_path / "out"
    outputs = [run_quickstart(store, out) for _ in range(2)]
    with mlnb.Store(store) as st:
        sweeps = st.search_runs("tags.mlnb.sweep = '1'", order_by="start_time")["run_id"]
        assert len(sweeps) == 2
        stories = []
        for text, sweep in zip(outputs, sweeps, strict=True):
            children = st.search_runs(
                f"parent_run_id = '{sweep}'", order_by="metrics.accuracy desc, metrics.f1 desc"
            )
            [(best, best_id, second, second_id)] = GATE_LINE.findall(text)
            assert (best_id, second_id) == tuple(r[:8] for r in children["run_id"][:2])
            assert (best, second) == tuple(children["name"][:2])
            assert f"a = {second} ({second_id})   b = {best} ({best_id})" in text  # the diff
            stories.append(text[text.index("== 3/4") :])
        assert set(st.search_runs()["params.model"]) - {None} == {"logreg", "forest", "sgd"}
    strip = re.compile(r"\b[0-9a-f]{8,32}\b|\d+\.\d s|\d+m \d+s")  # ids and durations
    assert strip.sub("…", stories[0]) == strip.sub("…", stories[1])
    report = (out / "report.html").read_text()
    assert "accuracy" in report and "job/cell_seconds" not in report
