"""Issue 10, items 6 and 13: what a bundle may bring into a store.

A bundle is checked whole before anything is written; a refusal writes nothing (no row, no
blob file); an existing run only gains what is identical or new; and every table that hangs
off a run travels, so a table added later cannot be forgotten.
"""

from __future__ import annotations

import copy
import math
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlnb.errors import InvalidInputError, ParamConflictError
from mlnb.store import Store
from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs
from mlnb.store.transfer import export_run, import_run
from tests.reliability.conftest import (
    artifact_files,
    integrity_ok,
    row_counts,
    run_linked_tables,
)
from tests.store.test_transfer import rich_run

Bundle = dict[str, Any]


def source_run(st: Store) -> str:
    run_id = st.create_run(name="src", experiment="exp", tags={"team": "a"})
    st.log_params(run_id, {"lr": 0.1, "depth": 3})
    rowid, _ = store_runs.run_rowid(st.file, run_id)
    store_metrics.insert_metrics(
        st.file, [(rowid, "loss", step, 1.0 / (step + 1), 100.0 + step) for step in range(10)]
    )
    st.log_artifact(run_id, b"model weights", name="model.bin")
    st.set_status(run_id, "finished")
    return run_id


def unrelated_run(st: Store) -> str:
    run_id = st.create_run(name="other", experiment="elsewhere", tags={"keep": "me"})
    st.log_params(run_id, {"lr": 0.5})
    rowid, _ = store_runs.run_rowid(st.file, run_id)
    store_metrics.insert_metrics(
        st.file, [(rowid, "loss", step, 0.5, 50.0 + step) for step in range(5)]
    )
    st.log_artifact(run_id, b"other content", name="other.bin")
    return run_id


def dump(st: Store) -> list[str]:
    """The whole database as SQL text: equal dumps mean nothing was written."""
    with sqlite3.connect(st.db_path) as conn:
        return list(conn.iterdump())


class Target:
    """The store a bundle is imported into, with an unrelated run whose rows must survive."""

    def __init__(self, st: Store) -> None:
        self.st = st
        self.other = unrelated_run(st)
        self.take()

    def take(self) -> None:
        self.rows = dump(self.st)
        self.files = artifact_files(self.st.artifacts_dir)
        self.other_counts = row_counts(self.st.db_path, self.other)

    def assert_untouched(self) -> None:
        assert integrity_ok(self.st.db_path)
        assert row_counts(self.st.db_path, self.other) == self.other_counts
        assert artifact_files(self.st.artifacts_dir) == self.files, (
            "a refused import left files in the store"
        )
        assert dump(self.st) == self.rows, "a refused import wrote rows"


@pytest.fixture
def a(tmp_path: Path) -> Any:
    with Store(tmp_path / "a") as st:
        yield st


@pytest.fixture
def b(tmp_path: Path) -> Any:
    with Store(tmp_path / "b") as st:
        yield Target(st)


def hostile(bundle: Bundle, change: Callable[[Bundle], None]) -> Bundle:
    out = copy.deepcopy(bundle)
    change(out)
    return out


def _set(
    where: Callable[[Bundle], dict[str, Any]], key: str, value: Any
) -> Callable[[Bundle], None]:
    def change(bundle: Bundle) -> None:
        where(bundle)[key] = value

    return change


def _drop(where: Callable[[Bundle], dict[str, Any]], key: str) -> Callable[[Bundle], None]:
    def change(bundle: Bundle) -> None:
        del where(bundle)[key]

    return change


def _run(bundle: Bundle) -> dict[str, Any]:
    return bundle["run"]


def _art(bundle: Bundle) -> dict[str, Any]:
    return bundle["artifacts"][0]


def _metric(bundle: Bundle) -> dict[str, Any]:
    return bundle["metrics"][0]


def _blobs(bundle: Bundle) -> dict[str, Any]:
    return bundle["blobs"]


def _first_blob(bundle: Bundle) -> str:
    return next(iter(bundle["blobs"]))


def _own_parent(bundle: Bundle) -> None:
    bundle["run"]["parent_run_id"] = bundle["run"]["run_id"]


def _blobless_row(bundle: Bundle) -> None:
    del bundle["blobs"][bundle["artifacts"][0]["hash"]]


def _str_blob(bundle: Bundle) -> None:
    bundle["blobs"][_first_blob(bundle)] = "model weights"


def _damaged_blob(bundle: Bundle) -> None:
    bundle["blobs"][_first_blob(bundle)] = b"other bytes"


def _extra_blob(bundle: Bundle) -> None:
    import hashlib

    bundle["blobs"][hashlib.sha256(b"stowaway").hexdigest()] = b"stowaway"


def _surrogate_tag(bundle: Bundle) -> None:
    bundle["tags"].append({"key": "evil", "value": "\ud800"})


def _unknown_field(bundle: Bundle) -> None:
    bundle["params"][0]["evil"] = 1


def _bad_param_text(bundle: Bundle) -> None:
    bundle["params"][0].update(type="int", value="abc", value_num=None)


def _duplicate_point(bundle: Bundle) -> None:
    bundle["metrics"].append({**bundle["metrics"][0], "value": 42.0})


def _drop_table(bundle: Bundle) -> None:
    del bundle["params"]


HOSTILE: dict[str, tuple[Callable[[Bundle], None], str]] = {
    "hash that walks out of the store": (_set(_art, "hash", "../../../../etc/passwd"), "hash"),
    "run id with a path in it": (_set(_run, "run_id", "../../x"), "run_id"),
    "artifact path with ..": (_set(_art, "path", "../../evil.txt"), "path"),
    "absolute artifact path": (_set(_art, "path", "/etc/evil"), "path"),
    "negative size": (_set(_art, "size", -1), "size"),
    "absurd size": (_set(_art, "size", 10**30), "size"),
    "size that is not the blob's": (_set(_art, "size", 3), "size"),
    "row whose hash has no blob": (_blobless_row, "blob"),
    "a run that is its own parent": (_own_parent, "parent"),
    "metric value that is a string": (_set(_metric, "value", "0.5"), "value"),
    "step that is a bool": (_set(_metric, "step", True), "step"),
    "negative step": (_set(_metric, "step", -1), "step"),
    "NaN timestamp": (_set(_metric, "timestamp", math.nan), "timestamp"),
    "missing run field": (_drop(_run, "status"), "status"),
    "missing table": (_drop_table, "params"),
    "missing experiment": (_drop(lambda b: b, "experiment"), "experiment"),
    "unknown status": (_set(_run, "status", "pwned"), "status"),
    "str blob": (_str_blob, "blob"),
    "damaged blob": (_damaged_blob, "damaged"),
    "blob no row refers to": (_extra_blob, "blob"),
    "lone surrogate in a tag": (_surrogate_tag, "tags"),
    "unknown field in a row": (_unknown_field, "evil"),
    "param text that is not its type": (_bad_param_text, "param"),
    "two values for one step": (_duplicate_point, "metrics"),
    "blob hash that is not a digest": (
        lambda b: _blobs(b).update({"../x": b""}),
        "blob",
    ),
    "future format": (_set(lambda b: b, "format", 99), "format"),
    "rows that are not a list": (_set(lambda b: b, "tags", {"a": "b"}), "tags"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_import_run_refuses_a_hostile_bundle_and_writes_nothing(
    a: Store, b: Target, case: str
) -> None:
    """Issue 10 item 6: import_run trusted its input (hash ../../../../etc/passwd, run_id
    ../../x, .. in paths, absurd sizes, blob-less rows, own parent, string metric values,
    KeyError on a missing key, TypeError on a str blob)."""
    change, field = HOSTILE[case]
    bundle = hostile(export_run(a, source_run(a)), change)
    with pytest.raises(InvalidInputError, match=field):
        import_run(b.st, bundle)
    b.assert_untouched()


def test_import_run_refuses_what_is_not_a_bundle(b: Target) -> None:
    """Issue 10 item 6: a bundle of the wrong shape is refused by name, not by a KeyError."""
    for junk in (None, [], "bundle", {"format": 1}, {}):
        with pytest.raises(InvalidInputError, match="bundle"):
            import_run(b.st, junk)
    b.assert_untouched()


def test_import_run_refuses_to_resurrect_a_deleted_run(a: Store, b: Target) -> None:
    """Issue 10 item 6: a bundle of a run deleted in the target silently un-deleted it."""
    run_id = source_run(a)
    bundle = export_run(a, run_id)
    import_run(b.st, bundle)
    b.st.delete_run(run_id)
    b.take()
    with pytest.raises(InvalidInputError, match="deleted"):
        import_run(b.st, bundle)
    b.assert_untouched()
    assert b.st.get_run(run_id).deleted


def test_import_run_refuses_another_value_at_an_existing_step(a: Store, b: Target) -> None:
    """Issue 10 item 6: a bundle replaced the metric values of an existing run (and added
    its tags on the way)."""
    run_id = source_run(a)
    import_run(b.st, export_run(a, run_id))
    b.take()

    def change(bundle: Bundle) -> None:
        next(m for m in bundle["metrics"] if m["step"] == 3)["value"] = 99.0
        bundle["tags"].append({"key": "new", "value": "tag"})

    with pytest.raises(InvalidInputError, match=r"loss.*step 3|step 3.*loss"):
        import_run(b.st, hostile(export_run(a, run_id), change))
    b.assert_untouched()
    assert b.st.history(run_id, "loss")[3][1] == 0.25


def test_import_run_refuses_a_changed_tag_or_attribute(a: Store, b: Target) -> None:
    """Issue 10 item 6: a tag's value and a finished run's attributes are not replaced."""
    run_id = source_run(a)
    bundle = export_run(a, run_id)
    import_run(b.st, bundle)
    b.take()
    changed_tag = hostile(bundle, lambda x: x["tags"][0].update(value="b"))
    with pytest.raises(InvalidInputError, match="team"):
        import_run(b.st, changed_tag)
    with pytest.raises(InvalidInputError, match="status"):
        import_run(b.st, hostile(bundle, _set(_run, "status", "failed")))
    with pytest.raises(InvalidInputError, match="experiment"):
        import_run(b.st, hostile(bundle, _set(lambda x: x, "experiment", "moved")))
    b.assert_untouched()


def test_import_run_refuses_a_param_conflict_without_leaving_blobs(a: Store, b: Target) -> None:
    """Issue 10 item 6: a param conflict found after the blobs were written left them in
    the store."""
    run_id = source_run(a)
    b.st.create_run(run_id=run_id, name="src", experiment="exp", status="queued")
    b.st.log_params(run_id, {"lr": 0.2})
    b.take()
    with pytest.raises(ParamConflictError, match="lr"):
        import_run(b.st, export_run(a, run_id))
    b.assert_untouched()


def test_import_run_adds_only_new_points_and_tags_and_twice_is_a_no_op(a: Store, b: Target) -> None:
    """Issue 10 item 6: what an existing run may gain is strictly additive."""
    run_id = source_run(a)
    import_run(b.st, export_run(a, run_id))
    rowid, _ = store_runs.run_rowid(a.file, run_id)
    store_metrics.insert_metrics(
        a.file, [(rowid, "loss", step, 0.01, 200.0 + step) for step in (10, 11)]
    )
    a.set_tags(run_id, {"reviewed": "yes"}, check_state=False)
    a.log_artifact(run_id, b"a report", name="report.md", check_state=False)
    bundle = export_run(a, run_id)
    import_run(b.st, bundle)
    rec = b.st.get_run(run_id)
    assert rec.metric_steps["loss"] == 11 and rec.metrics["loss"] == 0.01
    assert rec.tags == {"team": "a", "reviewed": "yes"}
    assert Path(rec.artifact_path("report.md")).read_bytes() == b"a report"
    assert len(b.st.history(run_id, "loss")) == 12
    b.take()
    import_run(b.st, bundle)
    b.assert_untouched()


def rows_of(db: Path, table: str, run_id: str) -> list[tuple[Any, ...]]:
    """A run's rows in one table, without the store-local ids (``run``, a rowid ``id``)."""
    with sqlite3.connect(db) as conn:
        cols = [
            c[1]
            for c in conn.execute(f"PRAGMA table_info({table})")
            if c[1] != "run" and not (c[1] == "id" and c[5])
        ]
        sql = (
            f"SELECT {', '.join(cols)} FROM {table} "
            "WHERE run = (SELECT id FROM runs WHERE run_id = ?)"
        )
        return sorted(conn.execute(sql, [run_id]).fetchall(), key=repr)


def test_every_run_linked_table_travels(a: Store, b: Target, tmp_path: Path) -> None:
    """Issue 10 item 13: moving a run lost its checks (migration 004), because transfer.py
    and its test each kept a list of tables. The tables here are read from the schema, so a
    table added later fails this test until it travels."""
    run_id = rich_run(a, tmp_path)
    tables = run_linked_tables(a.db_path)
    assert "checks" in tables
    empty = [t for t in tables if not rows_of(a.db_path, t, run_id)]
    assert not empty, f"extend tests/test_transfer.rich_run to fill {empty}"
    import_run(b.st, export_run(a, run_id))
    for table in tables:
        assert rows_of(b.st.db_path, table, run_id) == rows_of(a.db_path, table, run_id), table
    assert integrity_ok(b.st.db_path)
    assert row_counts(b.st.db_path, b.other) == b.other_counts
