"""Moving a run between two real stores: everything arrives, and twice changes nothing.
Hostile and conflicting bundles are in tests/reliability/test_bundles.py."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from mlnb.capture.fingerprints import Fingerprint
from mlnb.errors import InvalidInputError, ParamConflictError
from mlnb.records import CheckRecord
from mlnb.store import Store
from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs
from mlnb.store.transfer import export_run, import_run
from tests.reliability.conftest import run_linked_tables


def tables(st: Store) -> list[str]:
    """The run's row, every table that refers to runs (read from the schema, so a new one is
    compared too), and the shared rows a run reaches."""
    assert st.db_path is not None
    return ["runs", *run_linked_tables(st.db_path), "datasets", "environments", "experiments"]


def rich_run(st: Store, tmp_path: Path) -> str:
    """A run with something in every table a run can reach."""
    parent = st.create_run(name="parent", experiment="exp")
    run_id = st.create_run(name="rich", experiment="exp", parent_run_id=parent, source="nb.py",
                           tags={"team": "a"})  # fmt: skip
    st.log_params(run_id, {"lr": 0.1, "depth": 3, "model": "rf", "layers": [64, 32], "x": None})
    rowid, _ = store_runs.run_rowid(st.file, run_id)
    store_metrics.insert_metrics(
        st.file,
        [(rowid, "loss", step, 1.0 / (step + 1), 1000.0 + step) for step in range(50)]
        + [(rowid, "weird", 0, math.nan, 5.0), (rowid, "weird", 1, math.inf, 6.0)],
    )
    (tmp_path / "model.bin").write_bytes(b"\x00weights" * 100)
    st.log_artifact(run_id, tmp_path / "model.bin")
    st.log_artifact(run_id, b'{"cells": []}', name="job/nb.ipynb", kind="notebook")
    st.save_environment(run_id, {"python": {"version": "3.11"}, "packages": {"a": "1"}}, "envh")
    git = {"root": "/r", "commit": "abc", "branch": "main", "dirty": True,
           "diff": b"--- a\n+++ b\n", "diff_bytes": 12, "untracked": ["u.txt"]}  # fmt: skip
    st.save_git(run_id, git)
    schema = [{"name": "a", "dtype": "int64"}]
    fp = Fingerprint(hash="xxh3:1234", kind="dataframe", rows=10, columns=2, schema=schema,
                     details={"shape": [10, 2]})  # fmt: skip
    st.log_dataset(run_id, fp, name="train", role="input", profile={"a": {"mean": 1.5}})
    st.record_cell(run_id, execution_count=1, source="x = 1", started=1.0, ended=2.0, error=None)
    st.record_cell(run_id, execution_count=2, source="1/0", started=3.0, ended=4.0,
                   error="ZeroDivisionError")  # fmt: skip
    st.set_notebook(run_id, notebook="/nb.ipynb", linearity="linear", detail={"reasons": []})
    st.set_status(run_id, "finished")
    gate = CheckRecord(kind="gate", name="acc", passed=True, value=0.9, threshold=0.8,
                       comparator=">=", details={"n": 1})  # fmt: skip
    st.log_checks(run_id, [gate])
    return run_id


def dump(st: Store, run_id: str) -> dict[str, list[tuple]]:
    """Every row that belongs to the run, table by table, without the store-local ids."""
    out = {}
    with sqlite3.connect(st.db_path) as conn:
        rid = conn.execute("SELECT id FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]
        for table in tables(st):
            if table in ("runs",):
                rows = conn.execute(
                    "SELECT r.run_id, e.name, r.name, status, parent_run_id, start_time, "
                    "end_time, heartbeat, host, pid, user, source, deleted_at, "
                    "environment_hash, notebook, linearity, linearity_detail FROM runs r "
                    "JOIN experiments e ON e.id = r.experiment_id WHERE r.id = ?",
                    [rid],
                ).fetchall()
            elif table == "datasets":
                rows = conn.execute("SELECT * FROM datasets ORDER BY hash").fetchall()
            elif table == "environments":
                rows = conn.execute("SELECT * FROM environments ORDER BY hash").fetchall()
            elif table == "experiments":
                rows = conn.execute("SELECT name FROM experiments ORDER BY name").fetchall()
            else:  # without the store-local ids (runs.id, a rowid `id`)
                cols = [c[1] for c in conn.execute(f"PRAGMA table_info({table})")
                        if c[1] != "run" and not (c[1] == "id" and c[5])]  # fmt: skip
                rows = conn.execute(
                    f"SELECT {', '.join(cols)} FROM {table} WHERE run = ?", [rid]
                ).fetchall()
            out[table] = sorted(rows, key=repr)
    return out


def counts(st: Store) -> dict[str, int]:
    with sqlite3.connect(st.db_path) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables(st)}


def test_a_rich_run_round_trips_between_stores_and_twice_adds_nothing(tmp_path: Path) -> None:
    with Store(tmp_path / "a") as a, Store(tmp_path / "b") as b:
        run_id = rich_run(a, tmp_path)
        b.create_run(name="other", experiment="elsewhere")  # the target is not empty
        bundle = export_run(a, run_id[:8])
        assert import_run(b, bundle) == run_id
        once = counts(b)
        assert import_run(b, export_run(a, run_id)) == run_id
        assert counts(b) == once
        # parent_run_id travels (the parent itself is another run: not moved)
        assert dump(b, run_id) | {"datasets": [], "environments": [], "experiments": []} == (
            dump(a, run_id) | {"datasets": [], "environments": [], "experiments": []}
        )
        assert dump(b, run_id)["datasets"] == dump(a, run_id)["datasets"]
        assert dump(b, run_id)["environments"] == dump(a, run_id)["environments"]
        rec = b.get_run(run_id)
        assert rec.status == "finished" and rec.experiment == "exp"
        assert rec.params["layers"] == [64, 32] and rec.params["x"] is None
        assert math.isnan(rec.metrics["weird"]) is False and rec.metrics["weird"] == math.inf
        assert b.history(run_id, "loss")[7] == (7, 1.0 / 8, 1007.0)
        assert math.isnan(b.history(run_id, "weird")[0][1])
        assert Path(rec.artifact_path("model.bin")).read_bytes() == b"\x00weights" * 100
        assert rec.git is not None and rec.git["diff_hash"] is not None
        assert b.artifact_file(rec.git["diff_hash"]).read_bytes() == b"--- a\n+++ b\n"
        assert [d.name for d in rec.datasets] == ["train"] and rec.datasets[0].profile
        assert [c["error"] for c in b.cells(run_id)] == [None, "ZeroDivisionError"]


def test_importing_into_a_queued_run_keeps_its_parent_and_merges(tmp_path: Path) -> None:
    with Store(tmp_path / "a") as a, Store(tmp_path / "b") as b:
        parent = b.create_run(name="sweep")
        queued = b.create_run(name="child", parent_run_id=parent, status="queued")
        b.log_params(queued, {"lr": 0.1})
        b.set_tags(queued, {"mlnb.sweep.index": 0})
        a.create_run(run_id=queued, name="child", status="running")  # the worker's copy
        a.log_params(queued, {"lr": 0.1, "epochs": 3})
        a.set_status(queued, "finished")
        import_run(b, export_run(a, queued))
        rec = b.get_run(queued)
        assert rec.parent_run_id == parent and rec.status == "finished"
        assert rec.params == {"epochs": 3, "lr": 0.1}
        assert rec.tags["mlnb.sweep.index"] == "0"


def test_a_conflicting_param_imports_nothing(tmp_path: Path) -> None:
    with Store(tmp_path / "a") as a, Store(tmp_path / "b") as b:
        run_id = a.create_run(name="r")
        a.log_params(run_id, {"lr": 0.5})
        b.create_run(run_id=run_id, name="r", status="queued")
        b.log_params(run_id, {"lr": 0.1})
        with pytest.raises(ParamConflictError, match="lr"):
            import_run(b, export_run(a, run_id))
        assert b.get_run(run_id).status == "queued"


def test_a_damaged_or_foreign_bundle_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "a") as a, Store(tmp_path / "b") as b:
        run_id = a.create_run(name="r")
        a.log_artifact(run_id, b"data", name="f.txt")
        bundle = export_run(a, run_id)
        digest = next(iter(bundle["blobs"]))
        with pytest.raises(InvalidInputError, match="damaged"):
            import_run(b, {**bundle, "blobs": {digest: b"other"}})
        with pytest.raises(InvalidInputError, match="newer mlnb"):
            import_run(b, {**bundle, "schema": [*bundle["schema"], "m999_future"]})
        with pytest.raises(InvalidInputError, match="bundle"):
            import_run(b, {"format": 99})
        assert counts(b)["runs"] == 0


def test_every_declared_rule_and_blob_column_names_a_real_column(tmp_path: Path) -> None:
    """A renamed column must not silently lose its format check in mlnb.store.transfer."""
    from mlnb.store import transfer

    with Store(tmp_path / "s") as st:
        layout = st.file.read(transfer._layout)
    columns = {
        f"{t.name}.{col}" for t in (layout.run, *layout.linked, *layout.shared) for col in t.columns
    }
    assert set(transfer._RULES) | set(transfer.BLOB_REFS) <= columns
