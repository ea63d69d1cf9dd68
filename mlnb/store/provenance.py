"""What a run recorded beyond params and metrics, in the store: its environment (stored
once per content hash), git state, datasets (by fingerprint), notebook lineage (executed
cells, linearity verdict), and the file-fingerprint cache. Functions over the database
(``StoreFile``); ``Store`` has a thin method for each.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlnb.errors import InvalidInputError
from mlnb.records import DatasetRef, GitState, RunRecord
from mlnb.store import hashing
from mlnb.store import inputs as validation
from mlnb.store.database import StoreFile
from mlnb.store.runs import writable_run

if TYPE_CHECKING:
    from mlnb.capture.fingerprints import Fingerprint


def read_provenance(c: sqlite3.Connection, rid: int, rec: RunRecord) -> None:
    """Inside a read: fill ``rec``'s environment, git state and datasets."""
    env = c.execute(
        "SELECT e.hash, e.data FROM runs r JOIN environments e ON e.hash = r.environment_hash "
        "WHERE r.id = ?",
        [rid],
    ).fetchone()
    if env is not None:
        rec.environment_hash, rec.environment = env[0], json.loads(env[1])
    git = c.execute(
        "SELECT root, commit_sha, branch, remote, dirty, diff_hash, diff_bytes, "
        "diff_truncated, untracked, untracked_count FROM git_states WHERE run = ?",
        [rid],
    ).fetchone()
    if git is not None:
        root, commit, branch, remote, dirty, diff_hash, diff_bytes, cut, untracked, n = git
        rec.git = GitState(
            root=root, commit=commit, branch=branch, remote=remote, dirty=bool(dirty),
            diff_hash=diff_hash, diff_bytes=diff_bytes, diff_truncated=bool(cut),
            untracked=json.loads(untracked or "[]"), untracked_count=n,
        )  # fmt: skip
    rec.datasets = [
        DatasetRef(
            name=row[0],
            role=row[1],
            hash=row[2],
            kind=row[3],
            rows=row[4],
            columns=row[5],
            size_bytes=row[6],
            schema=json_or_none(row[7]),
            sampled=bool(row[8]),
            details=json_or_none(row[9]) or {},
            profile=json_or_none(row[10]),
        )
        for row in c.execute(
            "SELECT l.name, l.role, d.hash, d.kind, d.rows, d.columns, d.size_bytes, "
            "d.schema, d.sampled, d.details, d.profile FROM run_datasets l "
            "JOIN datasets d ON d.hash = l.hash WHERE l.run = ? ORDER BY l.role, l.name",
            [rid],
        )
    ]


# -- notebook lineage -------------------------------------------------------------------


def record_cell(
    db: StoreFile,
    run_id: str,
    *,
    execution_count: int | None,
    source: str,
    started: float,
    ended: float | None,
    error: str | None,
) -> None:
    """Append one executed cell to the run's lineage (the next ``seq``)."""
    record_cells(
        db,
        run_id,
        [
            {"execution_count": execution_count, "source": source, "started": started,
             "ended": ended, "error": error}
        ],
    )  # fmt: skip


def record_cells(db: StoreFile, run_id: str, cells: Sequence[Mapping[str, Any]]) -> None:
    """Append executed cells (dicts with ``execution_count``, ``source``, ``started``,
    ``ended``, ``error``) to the run's lineage, in order, in one transaction."""
    rows = [
        (c["execution_count"], hashing.hash_bytes(c["source"].encode()), c["source"],
         c["started"], c["ended"], c["error"])
        for c in cells
    ]  # fmt: skip

    def tx(conn: sqlite3.Connection) -> None:
        rowid = writable_run(db, conn, run_id, check_state=False)
        (last,) = conn.execute(
            "SELECT coalesce(max(seq), -1) FROM cells WHERE run = ?", [rowid]
        ).fetchone()
        conn.executemany(
            "INSERT INTO cells (run, seq, execution_count, source_hash, source, started, "
            "ended, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(rowid, last + 1 + i, *row) for i, row in enumerate(rows)],
        )

    if rows:
        db.write(tx)


def cells(db: StoreFile, run_id: str) -> list[dict[str, Any]]:
    """The run's executed cells in execution order."""
    keys = ("seq", "execution_count", "source_hash", "source", "started", "ended", "error")
    rows = db.read(
        lambda c: c.execute(
            f"SELECT {', '.join(keys)} FROM cells WHERE run = "
            "(SELECT id FROM runs WHERE run_id = ?) ORDER BY seq",
            [run_id],
        ).fetchall()
    )
    return [dict(zip(keys, row, strict=True)) for row in rows]


def set_notebook(
    db: StoreFile,
    run_id: str,
    *,
    notebook: str | None = None,
    linearity: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Record the run's notebook path and/or its linearity verdict."""
    detail_json = None if detail is None else json.dumps(detail, default=str)
    db.write(
        lambda c: c.execute(
            "UPDATE runs SET notebook = coalesce(?, notebook), linearity = "
            "coalesce(?, linearity), linearity_detail = coalesce(?, linearity_detail) "
            "WHERE run_id = ?",
            [notebook, linearity, detail_json, run_id],
        )
    )


# -- provenance: environment, git, datasets -------------------------------------------


def save_environment(db: StoreFile, run_id: str, env: Mapping[str, Any], digest: str) -> None:
    """Record the run's environment; identical environments are stored once."""
    data = json.dumps(env, sort_keys=True, default=str)
    python = str(env.get("python", {}).get("version", "")) or None
    platform = str(env.get("os", {}).get("platform", "")) or None
    packages = len(env.get("packages", {}) or {})

    def tx(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO environments (hash, python, platform, packages, data, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [digest, python, platform, packages, data, time.time()],
        )
        conn.execute("UPDATE runs SET environment_hash = ? WHERE run_id = ?", [digest, run_id])

    db.write(tx)


def save_git(db: StoreFile, run_id: str, git: Mapping[str, Any], diff_hash: str | None) -> None:
    """Record the run's git state (its diff, if any, already stored as ``diff_hash``)."""
    untracked = list(git.get("untracked") or [])

    def tx(conn: sqlite3.Connection) -> None:
        rowid = writable_run(db, conn, run_id, check_state=False)
        conn.execute(
            "INSERT OR REPLACE INTO git_states (run, root, commit_sha, branch, remote, "
            "dirty, diff_hash, diff_bytes, diff_truncated, untracked, untracked_count) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [rowid, git.get("root"), git.get("commit"), git.get("branch"),
             git.get("remote"), bool(git.get("dirty")), diff_hash, git.get("diff_bytes"),
             bool(git.get("diff_truncated")), json.dumps(untracked),
             git.get("untracked_count", len(untracked))],
        )  # fmt: skip

    db.write(tx)


def log_dataset(
    db: StoreFile,
    run_id: str,
    fingerprint: Fingerprint,
    *,
    name: str,
    role: str,
    profile: Mapping[str, Any] | None = None,
) -> None:
    """Link a dataset (stored once per fingerprint) to the run by name and role."""
    validation.check_key(name, "dataset name")
    if role not in ("input", "output"):
        raise InvalidInputError(f"dataset role must be 'input' or 'output', got {role!r}")
    fp = fingerprint
    schema = None if fp.schema is None else json.dumps(fp.schema, default=str)
    details = json.dumps(fp.details or {}, sort_keys=True, default=str)
    prof = None if profile is None else json.dumps(profile, default=str)

    def tx(conn: sqlite3.Connection) -> None:
        rowid = writable_run(db, conn, run_id)
        conn.execute(
            "INSERT INTO datasets (hash, kind, rows, columns, size_bytes, schema, profile, "
            "sampled, details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (hash) DO UPDATE SET profile = coalesce(datasets.profile, "
            "excluded.profile)",
            [fp.hash, fp.kind, fp.rows, fp.columns, fp.size_bytes, schema, prof,
             fp.sampled, details, time.time()],
        )  # fmt: skip
        conn.execute(
            "INSERT OR REPLACE INTO run_datasets (run, name, role, hash, logged_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [rowid, name, role, fp.hash, time.time()],
        )

    db.write(tx)


def json_or_none(text: str | None) -> Any:
    """Parsed JSON text, or None for NULL."""
    return None if text is None else json.loads(text)


class StoreFileHashCache:
    """File fingerprints remembered in the store, so re-hashing an unchanged file (same
    path, size, mtime and inode) is free."""

    def __init__(self, db: StoreFile) -> None:
        self.db = db

    def get(self, key: tuple[str, int, int, int]) -> str | None:
        row = self.db.read(
            lambda c: c.execute(
                "SELECT hash FROM file_hashes WHERE path = ? AND size = ? AND mtime_ns = ? "
                "AND inode = ?",
                list(key),
            ).fetchone()
        )
        return None if row is None else str(row[0])

    def put(self, key: tuple[str, int, int, int], digest: str) -> None:
        self.db.write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, inode, hash) "
                "VALUES (?, ?, ?, ?, ?)",
                [*key, digest],
            )
        )
