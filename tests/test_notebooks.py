"""Every example notebook in notebooks/ runs top to bottom in a real kernel."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import mlnb

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_example_notebook_executes(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLNB_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("MLNB_NOTEBOOK", str(path))  # what `mlnb run` will set
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    with mlnb.Store(os.environ["MLNB_STORE"]) as store:
        table = store.search_runs()
        assert table["run_id"], "the notebook tracked no runs"
        assert set(table["status"]) == {"finished"}
        # runs tracked with the magics judge their lineage; a top-to-bottom run is linear
        assert set(table["linearity"]) <= {"linear", None}
