"""The store on real SQLite files: location, set-up, refusal of bad files, artifacts, gc."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import sys
from pathlib import Path

import pytest

import mlnb
from mlnb.errors import (
    AmbiguousRunIdError,
    RunNotFoundError,
    StoreCorruptError,
    StoreVersionError,
)
from mlnb.store import Store, find_store_dir, migrations
from tests.conftest import REPO, run_python


def test_store_is_created_on_first_use_in_the_working_directory(tmp_path: Path) -> None:
    with mlnb.start_run("first"):
        mlnb.log_param("a", 1)
    assert (Path.cwd() / ".mlnb" / "mlnb.db").is_file()


def test_store_found_by_walking_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store(tmp_path / ".mlnb").close()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_store_dir() == tmp_path / ".mlnb"


def test_store_env_variable_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLNB_STORE", str(tmp_path / "elsewhere"))
    assert find_store_dir() == tmp_path / "elsewhere"


def test_store_uses_wal_and_foreign_keys(store: Store) -> None:
    conn = store.file.conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000


def test_store_tables_are_plain_and_readable_by_any_sqlite_tool(store: Store) -> None:
    with mlnb.start_run("r", store=store) as run:
        run.log_param("lr", 0.1)
        run.log_metric("acc", 0.5)
    conn = sqlite3.connect(store.db_path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"experiments", "runs", "params", "metrics", "latest_metrics", "tags",
            "artifacts"} <= tables  # fmt: skip
    assert conn.execute("SELECT run_id, key, value FROM metric_history").fetchall() == [
        (run.run_id, "acc", 0.5)
    ]


def test_memory_store_works_without_files() -> None:
    with Store(memory=True) as st, mlnb.start_run("m", store=st) as run:
        run.log_metric("x", 1.0)
        run.log_artifact(b"data", "d.bin")
        assert st.get_run(run.run_id).artifacts[0].size == 4


def test_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "bad" / "mlnb.db"
    db.parent.mkdir()
    content = b"this is not a database" * 100
    db.write_bytes(content)
    with pytest.raises(StoreCorruptError, match="left untouched"):
        Store(tmp_path / "bad")
    assert db.read_bytes() == content
    assert sorted(p.name for p in db.parent.iterdir()) == ["mlnb.db"]


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreCorruptError, match="not an mlnb store"):
        Store(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_newer_schema_is_refused_with_upgrade_hint(tmp_path: Path) -> None:
    Store(tmp_path / "s").close()
    conn = sqlite3.connect(tmp_path / "s" / "mlnb.db")
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
        [migrations.MIGRATION_SET, "m999_from_the_future", "2030-01-01"],
    )
    conn.commit()
    conn.close()
    with pytest.raises(StoreVersionError, match="newer mlnb.*pip install -U mlnb"):
        Store(tmp_path / "s")


def test_older_store_is_upgraded_on_open_and_keeps_its_data(tmp_path: Path) -> None:
    from sqlite_utils import Database

    names = migrations.known_names()
    (tmp_path / "s").mkdir()
    db = Database(tmp_path / "s" / "mlnb.db")
    migrations.migrations().apply(db, stop_before=names[-1])  # the schema one version back
    db.execute("INSERT INTO experiments (name, created_at) VALUES ('old', 0)")
    db.execute(
        "INSERT INTO runs (run_id, experiment_id, name, status, start_time) "
        "VALUES ('a' || hex(randomblob(15)), 1, 'from-before', 'finished', 0)"
    )
    db.close()
    with Store(tmp_path / "s") as st:
        assert st.schema_version() == names[-1]
        assert st.search_runs(include_deleted=True)["name"] == ["from-before"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_read_only_store_directory_gives_a_clear_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(ro, 0o555)
    code = (
        "import os, sys\n"
        "import mlnb, mlnb.store.core, mlnb.store.database, mlnb.store.artifacts, "
        "mlnb.store.liveness\n"
        "from mlnb.errors import StoreReadOnlyError\n"
        "if os.geteuid() == 0:  # root ignores permissions: act as nobody\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        f"try:\n    mlnb.Store({str(ro / 'store')!r})\n"
        "except StoreReadOnlyError as exc:\n    print('REFUSED', exc)\n"
    )
    env = {"PYTHONPATH": str(REPO)}
    proc = run_python(code, env=env)
    assert proc.stdout.startswith("REFUSED"), proc.stdout + proc.stderr
    assert "MLNB_STORE" in proc.stdout
    assert list(ro.iterdir()) == []


def _open_fresh(path: str, barrier: multiprocessing.synchronize.Barrier) -> str:
    barrier.wait()
    try:
        with Store(path) as st:
            st.create_run(name=f"p{os.getpid()}")
        return "ok"
    except Exception as exc:  # reported to the parent, which asserts
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.slow
def test_eight_processes_open_a_fresh_store_at_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(8)
    with ctx.Pool(8) as pool:
        results = pool.starmap(_open_fresh, [(str(tmp_path / "fresh"), barrier)] * 8)
    assert results == ["ok"] * 8
    with Store(tmp_path / "fresh") as st:
        assert st.info()["counts"]["runs"] == 8
        applied = st.file.read(st.file.applied_migrations)
        assert applied == migrations.known_names()


def test_run_id_prefix_and_name_resolve(store: Store) -> None:
    a = store.create_run(name="alpha", run_id="abc123" + "0" * 26)
    store.create_run(name="beta", run_id="abd456" + "0" * 26)
    assert store.resolve_run_id("abc") == a
    assert store.resolve_run_id("ABC1") == a
    assert store.resolve_run_id("alpha") == a
    with pytest.raises(AmbiguousRunIdError, match="matches several runs"):
        store.resolve_run_id("ab")
    with pytest.raises(RunNotFoundError, match="no run matches 'zzz'"):
        store.resolve_run_id("zzz")


def test_artifacts_are_content_addressed_and_stored_once(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3_000_000))
    with mlnb.start_run("a", store=store) as a:
        a.log_artifact(src)
    with mlnb.start_run("b", store=store) as b:
        b.log_artifact(src, "copy.bin")
    rec_a, rec_b = store.get_run(a.run_id), store.get_run(b.run_id)
    assert rec_a.artifacts[0].hash == rec_b.artifacts[0].hash
    assert rec_a.artifacts[0].hash == hashlib.sha256(src.read_bytes()).hexdigest()
    files = [p for p in store.artifacts_dir.rglob("*") if p.is_file()]
    assert len(files) == 1
    assert Path(rec_b.artifact_path("copy.bin")).read_bytes() == src.read_bytes()


def test_artifact_folder_is_logged_recursively(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    with mlnb.start_run("f", store=store) as run:
        run.log_artifact(folder)
    assert [a.path for a in store.get_run(run.run_id).artifacts] == ["out/a.txt", "out/sub/b.txt"]


def test_gc_removes_only_unreferenced_old_files(store: Store) -> None:
    with mlnb.start_run("keep", store=store) as keep:
        keep.log_artifact(b"kept", "k.txt")
    with mlnb.start_run("drop", store=store) as drop:
        drop.log_artifact(b"dropped", "d.txt")
    store.delete_run(drop.run_id)
    old = 1_000_000_000
    for path in store.artifacts_dir.rglob("*"):
        if path.is_file():
            os.utime(path, (old, old))
    assert store.gc(dry_run=True)["files_removed"] == 0  # the deleted run still refers to it
    result = store.gc(purge_deleted=True)
    assert result == {"runs_purged": 1, "files_removed": 1, "bytes_freed": 7}
    assert Path(store.get_run(keep.run_id).artifact_path("k.txt")).read_bytes() == b"kept"
    with pytest.raises(RunNotFoundError):
        store.get_run(drop.run_id)


def test_delete_and_restore_hide_and_show_a_run(store: Store) -> None:
    run_id = store.create_run(name="x")
    store.delete_run(run_id[:6])
    assert store.search_runs()["run_id"] == []
    assert store.search_runs(include_deleted=True)["run_id"] == [run_id]
    assert store.get_run(run_id).deleted
    store.restore_run(run_id)
    assert store.search_runs()["run_id"] == [run_id]


def test_info_reports_counts_and_schema(store: Store) -> None:
    with mlnb.start_run("i", store=store) as run:
        run.log_metrics({"a": 1, "b": 2})
    info = store.info()
    assert info["schema_version"] == migrations.known_names()[-1]
    assert info["counts"]["runs"] == 1
    assert info["counts"]["metrics"] == 2
    assert info["database_bytes"] > 0


def test_closing_a_store_while_another_thread_writes_is_safe(tmp_path: Path) -> None:
    """Regression: close() closed the connection another thread was in a transaction on,
    which crashed the interpreter (the environment capture thread hit it in the tests)."""
    code = f"""
import threading, time
from mlnb.store import Store
from mlnb.errors import StoreError
st = Store({str(tmp_path / "s")!r})
run_id = st.create_run(name="x")
errors = []
def writer():
    try:
        for i in range(1_000_000):
            st.set_tags(run_id, {{"k": str(i)}})
    except StoreError as exc:
        errors.append(str(exc))
thread = threading.Thread(target=writer)
thread.start()
time.sleep(0.3)
st.close()
thread.join(10)
print(thread.is_alive(), errors)
"""
    proc = run_python(code)
    assert proc.stdout.strip() == "False ['this store has been closed']"


def test_resolve_run_id_prefers_a_run_named_so_over_an_id_prefix(store: Store) -> None:
    """Flaky test_compare found it: a run named 'a' was shadowed whenever another run's id
    began with 'a' (a quarter of the time for two random ids), so `mlnb diff a b` could
    compare b with itself. A full id wins, then an exact name (as git prefers a ref over
    an abbreviated hash), then a unique id prefix."""
    named = store.create_run(name="a", run_id="f" * 32)
    other = store.create_run(name="other", run_id="a" + "0" * 31)
    assert store.resolve_run_id("a") == named
    assert store.resolve_run_id("a0") == other
    assert store.resolve_run_id(other) == other
    assert store.resolve_run_id("f" * 32) == named
    store.create_run(name="a", run_id="b" * 32)
    with pytest.raises(AmbiguousRunIdError, match="several runs"):
        store.resolve_run_id("a")
