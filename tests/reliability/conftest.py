"""Shared checks for the reliability battery: every test asserts its outcome *and* that the
store is intact — ``PRAGMA integrity_check`` is ok and unrelated runs kept their rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def integrity_ok(db_path: str | Path) -> bool:
    """``PRAGMA integrity_check`` of the store's database file says ``ok``."""
    with sqlite3.connect(db_path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def run_linked_tables(db_path: str | Path) -> list[str]:
    """Every table with a ``run`` column that refers to ``runs``, read from the schema (so a
    table added by a later migration is counted without anyone listing it)."""
    with sqlite3.connect(db_path) as conn:
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
    with sqlite3.connect(db_path) as conn:
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
