"""The magics in real Jupyter kernels (nbclient), on real notebooks in tests/notebooks/."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from mlnb.store import Store
from tests.conftest import REPO

NOTEBOOKS = REPO / "tests" / "notebooks"
pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The kernel inherits MLNB_STORE (a fresh store) from the test process."""
    monkeypatch.setenv("MLNB_STORE", str(tmp_path / "store"))
    yield tmp_path


def notebook(
    name: str, where: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, nbformat.NotebookNode]:
    path = where / name
    shutil.copy(NOTEBOOKS / name, path)
    monkeypatch.setenv("MLNB_NOTEBOOK", str(path))
    return path, nbformat.read(path, as_version=4)


def client(nb: nbformat.NotebookNode, where: Path) -> NotebookClient:
    return NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(where)}}
    )


def only_run(store_dir: Path) -> object:
    with Store(store_dir) as st:
        (run_id,) = st.search_runs(experiment="kernels")["run_id"]
        return st.get_run(run_id), st.cells(run_id)


def test_linear_notebook_records_lineage_and_kernel_shutdown_finishes_the_run(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, nb = notebook("linear.ipynb", env, monkeypatch)
    client(nb, env).execute()  # no %track end: the kernel's shutdown ends the run
    rec, cells = only_run(env / "store")
    assert rec.status == "finished"
    assert rec.linearity == "linear", rec.linearity_detail
    assert rec.notebook == str(path)
    assert rec.params == {"lr": 0.05, "epochs": 3}
    assert rec.metrics == {"loss": pytest.approx(1 / 3), "acc": 0.9}
    assert [c["execution_count"] for c in cells] == [2, 3, 4, 5]
    assert {"notebook/linear.ipynb", "notebook/executed.py"} <= {a.path for a in rec.artifacts}


def test_out_of_order_execution_is_named(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, nb = notebook("out_of_order.ipynb", env, monkeypatch)
    c = client(nb, env)
    with c.setup_kernel():
        for index in (0, 1, 3, 2, 3, 4):  # `b = a + 1` fails first, then a, then b again
            cell = nb.cells[index]
            # the first `b = a + 1` raises NameError, as in a scrambled session
            with contextlib.suppress(Exception):
                c.execute_cell(cell, index)
    rec, cells = only_run(env / "store")
    assert rec.linearity == "out-of-order"
    assert rec.linearity_detail and rec.linearity_detail["reasons"]
    assert [c["error"] for c in cells].count("NameError") == 1


def test_a_killed_kernel_leaves_a_crashed_run_with_its_flushed_metrics(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, nb = notebook("killed.ipynb", env, monkeypatch)
    with pytest.raises(DeadKernelError):
        client(nb, env).execute()
    rec, _ = only_run(env / "store")
    assert rec.status == "crashed"
    assert rec.metric_steps == {"x": 99}


def test_sklearn_autolog_in_a_kernel(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, nb = notebook("autolog.ipynb", env, monkeypatch)
    client(nb, env).execute()
    with Store(env / "store") as st:
        table = st.search_runs()
        names = dict(zip(table["name"], table["run_id"], strict=True))
        assert "LogisticRegression" in names
        child = st.get_run(names["LogisticRegression"])
        assert child.parent_run_id is not None
        assert child.params["max_iter"] == 500
        assert "training_score" in child.metrics
        assert "model.pkl" in {a.path for a in child.artifacts}


def test_interrupting_the_kernel_does_not_end_the_run(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, nb = notebook("interrupted.ipynb", env, monkeypatch)
    c = client(nb, env)
    c.allow_errors = True
    c.execute()
    rec, cells = only_run(env / "store")
    assert [c["error"] for c in cells] == [None, "KeyboardInterrupt", None]
    assert rec.metrics == {"after_interrupt": 1.0}  # logged after the interrupt
    assert rec.status == "finished"  # ended by the kernel's shutdown, not by the interrupt
