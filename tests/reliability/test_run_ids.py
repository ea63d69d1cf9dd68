"""A run deleted and purged while it logs cannot hand its data to another run.

Issue 10 item 2: ``mlnb delete X`` + ``mlnb gc --purge-deleted`` on a run still running
succeeded; the next run created in another process reused X's SQLite rowid, and X's
process, still logging, wrote its metrics into that new run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mlnb.store import Store, migrations
from mlnb.store import runs as store_runs
from tests.conftest import REPO
from tests.reliability.conftest import integrity_ok, make_bystander, row_counts

WRITER = """
import json, sys
import mlnb
mlnb.set_store(mlnb.Store(sys.argv[1]))
run = mlnb.start_run("doomed")
for step in range(3):
    run.log_metric("loss", 1.0 / (step + 1))
mlnb.flush()
print(run.run_id, flush=True)
sys.stdin.readline()  # meanwhile the run is deleted, purged, and another run is created
said = {}
for step in range(3, 8):
    run.log_metric("loss", 1.0 / (step + 1))
try:
    mlnb.flush()
    said["flush"] = "ok"
except Exception as exc:
    said["flush"] = f"{type(exc).__name__}: {exc}"
run.log_metric("loss", 0.0)
try:
    run.end()
    said["end"] = "ok"
except Exception as exc:
    said["end"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(said), flush=True)
"""


def _mlnb(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlnb", "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.slow
def test_purged_run_id_is_never_reused_and_its_writer_gets_run_not_found(tmp_path: Path) -> None:
    """Issue 10 item 2: purging refuses a run whose process is alive unless ``--force``;
    after a forced purge the run's internal id is not given to the next run, and the
    still-running writer gets ``RunNotFoundError`` at its next flush and at its end,
    writing nothing anywhere (two real processes)."""
    where = tmp_path / "store"
    db = where / "mlnb.db"
    with Store(where) as st:
        bystander = make_bystander(st)
    before = row_counts(db, bystander)
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(where)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as writer:
        assert writer.stdout is not None and writer.stdin is not None
        run_id = writer.stdout.readline().strip()
        assert run_id, writer.stderr.read() if writer.stderr else ""
        with sqlite3.connect(db) as conn:
            (old_rowid,) = conn.execute("SELECT id FROM runs WHERE run_id = ?", [run_id]).fetchone()

        assert _mlnb(where, "delete", run_id).returncode == 0
        refused = _mlnb(where, "gc", "--purge-deleted")
        assert refused.returncode == 1
        assert run_id[:8] in refused.stderr and "--force" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        with sqlite3.connect(db) as conn:  # nothing was purged
            assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 2

        forced = _mlnb(where, "gc", "--purge-deleted", "--force")
        assert forced.returncode == 0, forced.stderr
        with Store(where) as st:  # this process creates the next run
            newcomer = st.create_run(name="newcomer")
            new_rowid, _ = store_runs.run_rowid(st.file, newcomer)
        assert new_rowid > old_rowid

        said, _ = writer.communicate("go\n", timeout=120)
    result = json.loads(said.strip().splitlines()[-1])
    assert result["flush"].startswith("RunNotFoundError"), result
    assert run_id[:8] in result["flush"] and "purged" in result["flush"]
    assert result["end"].startswith("RunNotFoundError"), result
    assert row_counts(db, newcomer) == dict.fromkeys(before, 0)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM metrics").fetchone()[0] == before["metrics"]
        assert conn.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone() == (
            0,
        )
    assert integrity_ok(db)
    assert row_counts(db, bystander) == before


def test_an_upgraded_store_does_not_reuse_the_highest_purged_id(tmp_path: Path) -> None:
    """Issue 10 item 2: a store created before run ids were AUTOINCREMENT is rebuilt on
    open (migration m005) keeping every run's id and rows; from then on purging the
    newest run does not free its id for the next one."""
    from sqlite_utils import Database

    where = tmp_path / "old"
    where.mkdir()
    db = where / "mlnb.db"
    old = Database(db)
    migrations.migrations().apply(old, stop_before="m005_run_ids_never_reused")
    old.execute("INSERT INTO experiments (name, created_at) VALUES ('e', 0)")
    for rowid, name in ((1, "kept"), (2, "newest")):
        old.execute(
            "INSERT INTO runs (id, run_id, experiment_id, name, status, start_time) "
            "VALUES (?, ?, 1, ?, 'finished', 0)",
            [rowid, f"{rowid:032x}", name],
        )
    old.execute("INSERT INTO params VALUES (1, 'lr', '0.1', 'float', 0.1)")
    old.execute("INSERT INTO metrics VALUES (1, 'loss', 0, 0.5, 0)")
    old.execute("INSERT INTO latest_metrics VALUES (1, 'loss', 0, 0.5, 0)")
    old.execute("INSERT INTO tags VALUES (1, 'team', 'x')")
    old.conn.commit()
    old.close()
    kept = f"{1:032x}"
    before = row_counts(db, kept)
    with Store(where) as st:
        assert st.schema_version() == migrations.known_names()[-1]
        assert store_runs.run_rowid(st.file, kept)[0] == 1
        assert st.get_run(kept).params == {"lr": 0.1}
        st.delete_run(f"{2:032x}")
        assert st.gc(purge_deleted=True)["runs_purged"] == 1
        later_rowid, _ = store_runs.run_rowid(st.file, st.create_run(name="later"))
    assert later_rowid == 3
    assert integrity_ok(db)
    assert row_counts(db, kept) == before
    assert {table: n for table, n in before.items() if n} == {
        "params": 1,
        "metrics": 1,
        "latest_metrics": 1,
        "tags": 1,
    }
