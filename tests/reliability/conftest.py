"""Shared checks for the reliability battery: every test asserts its outcome *and* that the
store is intact — ``PRAGMA integrity_check`` is ok and unrelated runs kept their rows."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlnb.store import Store
from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs


def integrity_ok(db_path: str | Path) -> bool:
    """``PRAGMA integrity_check`` of the store's database file says ``ok``."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn:  # closed: a test may remount
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def run_linked_tables(db_path: str | Path) -> list[str]:
    """Every table with a ``run`` column that refers to ``runs``, read from the schema (so a
    table added by a later migration is counted without anyone listing it)."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return sorted(
            name
            for name in names
            if any(
                fk[2] == "runs" and fk[3] == "run"
                for fk in conn.execute(f"PRAGMA foreign_key_list({name})")
            )
        )


def row_counts(db_path: str | Path, run_id: str) -> dict[str, int]:
    """Rows each run-linked table holds for one run (compare before and after a fault)."""
    tables = run_linked_tables(db_path)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        (rid,) = conn.execute("SELECT id FROM runs WHERE run_id = ?", [run_id]).fetchone()
        return {
            table: conn.execute(f"SELECT count(*) FROM {table} WHERE run = ?", [rid]).fetchone()[0]
            for table in tables
        }


def artifact_files(root: str | Path) -> set[str]:
    """Every file under a store's artifacts folder, temporary ones included (a refused
    write must not add one)."""
    folder = Path(root)
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def make_bystander(store: Store) -> str:
    """A finished run with rows in every counted table: the unrelated run a test compares
    with ``row_counts`` before and after its fault."""
    run_id = store.create_run(name="bystander", experiment="bystanders")
    store.log_params(run_id, {"lr": 0.1, "model": "forest"})
    store.set_tags(run_id, {"team": "reliability"})
    rowid, _ = store_runs.run_rowid(store.file, run_id)
    store_metrics.insert_metrics(
        store.file, [(rowid, "loss", step, 1.0 / (step + 1), 0.0) for step in range(5)]
    )
    store.log_artifact(run_id, b"bystander bytes", name="notes.txt")
    store.set_status(run_id, "finished")
    return run_id


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` for the block (root only: the test is
    skipped otherwise), unmounted at the end even if the test failed."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    done = subprocess.run(mount, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)
