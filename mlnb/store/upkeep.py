"""Keeping a store honest and tidy: runs whose process died are marked ``crashed``,
unreferenced artifact files and deleted runs are collected, and ``info`` says what a store
holds. Functions over the database (``StoreFile``) and the content folder."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from mlnb.errors import RunStateError
from mlnb.store.artifacts import ContentStore
from mlnb.store.database import StoreFile
from mlnb.store.liveness import HOST, STALE_AFTER_S, run_lock_held
from mlnb.store.models import model_hashes
from mlnb.store.runs import set_status

COUNTED_TABLES = ("experiments", "runs", "params", "metrics", "tags", "artifacts", "checks",
                  "registered_models", "model_versions", "predictions",
                  "prediction_feedback")  # fmt: skip


def alive(locks_dir: Path, run_id: str, host: str | None, heartbeat: float | None) -> bool:
    """Whether a running run's process is alive: on this host, its lock file is held;
    elsewhere, its heartbeat is recent."""
    if host == HOST:
        return run_lock_held(locks_dir, run_id)
    return heartbeat is not None and time.time() - heartbeat <= STALE_AFTER_S


def reap_crashed(db: StoreFile, locks_dir: Path) -> list[str]:
    """Mark runs whose process died as ``crashed``; returns their ids."""
    running = db.read(
        lambda c: c.execute(
            "SELECT run_id, host, heartbeat FROM runs WHERE status = 'running'"
        ).fetchall()
    )
    dead = [run_id for run_id, host, beat in running if not alive(locks_dir, run_id, host, beat)]
    return [run_id for run_id in dead if set_status(db, run_id, "crashed", only_from=("running",))]


def purge_deleted(db: StoreFile, locks_dir: Path, *, dry_run: bool, force: bool) -> int:
    """Remove deleted runs with all their rows (or count them, ``dry_run``); refuses
    while a deleted run's process is alive, unless ``force``."""

    def purge(conn: sqlite3.Connection) -> int:
        live = [
            (run_id, host, pid)
            for run_id, host, pid, beat in conn.execute(
                "SELECT run_id, host, pid, heartbeat FROM runs "
                "WHERE deleted_at IS NOT NULL AND status = 'running'"
            )
            if alive(locks_dir, run_id, host, beat)
        ]
        if live and not force:
            shown = ", ".join(f"{r[:8]} (process {p} on {h})" for r, h, p in live[:5])
            raise RunStateError(
                f"{len(live)} deleted runs are still running: {shown}; nothing was "
                "purged. Let them end (or stop them) and purge again, or purge them "
                "anyway with --force (force=True): their processes then get "
                "RunNotFoundError at their next flush"
            )
        if dry_run:
            sql = "SELECT count(*) FROM runs WHERE deleted_at IS NOT NULL"
            return int(conn.execute(sql).fetchone()[0])
        return conn.execute("DELETE FROM runs WHERE deleted_at IS NOT NULL").rowcount

    return db.read(purge) if dry_run else db.write(purge)


def collect_files(db: StoreFile, contents: ContentStore, *, dry_run: bool) -> tuple[int, int]:
    """Remove artifact files no run and no registered model version refers to, and dead
    writers' temporary files; returns how many files and bytes (would) go."""

    def referenced(c: sqlite3.Connection) -> set[str]:
        files = {r[0] for r in c.execute("SELECT DISTINCT hash FROM artifacts")}
        return files | model_hashes(c)

    used = db.read(referenced)
    removed, freed = contents.sweep(used, dry_run=dry_run)
    dead, dead_bytes = contents.remove_dead_temporaries(dry_run=dry_run)
    return removed + dead, freed + dead_bytes


def row_counts(db: StoreFile) -> dict[str, int]:
    """Rows per table, and how many runs are deleted."""

    def counts(c: sqlite3.Connection) -> dict[str, int]:
        out = {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED_TABLES}
        out["deleted_runs"] = c.execute(
            "SELECT count(*) FROM runs WHERE deleted_at IS NOT NULL"
        ).fetchone()[0]
        return out

    return db.read(counts)


def info(db: StoreFile, contents: ContentStore, root: Path) -> dict[str, Any]:
    """Path, schema version, row counts and sizes."""
    db_bytes = 0
    if db.db_path is not None:
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(db.db_path) + suffix)
            if p.exists():
                db_bytes += p.stat().st_size
    return {
        "path": str(db.db_path) if db.db_path else ":memory:",
        "root": str(root),
        "schema_version": db.schema_version(),
        "counts": row_counts(db),
        "database_bytes": db_bytes,
        "artifact_bytes": contents.total_bytes(),
    }
