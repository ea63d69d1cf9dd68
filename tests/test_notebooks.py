"""Every example notebook in notebooks/ passes `mlnb test`, as CI runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mlnb

REPO = Path(__file__).resolve().parent.parent
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
    assert "FAIL" in proc.stdout and "cell 2: ZeroDivisionError" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "0 passed, 1 failed"
