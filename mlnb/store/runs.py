"""The rows of runs: creating them, naming and resolving them, moving them between
statuses, and their params and tags. Functions over the database (``StoreFile``); the
``Store`` methods of the same names are the public doors to them.

The writer's own calls (``run_rowid``, ``heartbeat``) are here and not on ``Store``:
users never need them.
"""

from __future__ import annotations

import getpass
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from mlnb.errors import (
    AmbiguousRunIdError,
    InvalidInputError,
    ParamConflictError,
    RunNotFoundError,
    RunStateError,
)
from mlnb.records import TERMINAL_STATUSES, random_run_name
from mlnb.store import inputs as validation
from mlnb.store.database import StoreFile
from mlnb.store.liveness import HOST

DEFAULT_EXPERIMENT = "Default"

# One param into a running (or queued) run, unless its key is there already. The two
# statuses a run can be logged to are spelled out: `status NOT IN (<terminal ones>)` made
# SQLite build a temporary table per call (+2 µs, 15% of the call).
_INSERT_PARAM = (
    "INSERT INTO params (run, key, value, type, value_num) SELECT id, ?, ?, ?, ? FROM runs "
    "WHERE run_id = ? AND (status = 'running' OR status = 'queued') ON CONFLICT DO NOTHING"
)
# the same, found by the run's integer key (cheaper than the run_id index); run_id is still
# compared, so a key reused after the run was deleted can never take the param
_INSERT_PARAM_BY_ROWID = (
    "INSERT INTO params (run, key, value, type, value_num) SELECT id, ?, ?, ?, ? FROM runs "
    "WHERE id = ? AND run_id = ? AND (status = 'running' OR status = 'queued') "
    "ON CONFLICT DO NOTHING"
)


def current_user() -> str | None:
    """The login name of this process's user, when the system knows it."""
    try:
        return getpass.getuser()
    except Exception:
        return None


def create_run(
    db: StoreFile,
    *,
    experiment: str | None = None,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    source: str | None = None,
    status: str = "running",
    run_id: str | None = None,
    start_time: float | None = None,
) -> str:
    """Create a run row (and its experiment if new); returns the run id."""
    experiment = validation.check_key(experiment or DEFAULT_EXPERIMENT, "experiment name")
    tag_rows = [
        (validation.check_key(k, "tag key"), validation.tag_value(k, v))
        for k, v in (tags or {}).items()
    ]
    run_id = run_id or uuid.uuid4().hex
    name = validation.check_text(name, "run name") if name else random_run_name()
    if source is not None:  # a path may hold bytes that are not UTF-8: keep them readable
        source = os.fsencode(source).decode("utf-8", "replace")
    now = time.time() if start_time is None else start_time
    if parent_run_id is not None:
        parent_run_id = resolve_run_id(db, parent_run_id)
    user = current_user()

    def tx(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO experiments (name, created_at) VALUES (?, ?)",
            [experiment, now],
        )
        (exp_id,) = conn.execute(
            "SELECT id FROM experiments WHERE name = ?", [experiment]
        ).fetchone()
        conn.execute(
            "INSERT OR IGNORE INTO runs (run_id, experiment_id, name, status, "
            "parent_run_id, start_time, heartbeat, host, pid, user, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [run_id, exp_id, name, status, parent_run_id, now, now, HOST, os.getpid(), user,
             source],
        )  # fmt: skip
        (rowid,) = conn.execute("SELECT id FROM runs WHERE run_id = ?", [run_id]).fetchone()
        conn.executemany(
            "INSERT OR REPLACE INTO tags (run, key, value) VALUES (?, ?, ?)",
            [(rowid, k, v) for k, v in tag_rows],
        )

    db.write(tx)
    return run_id


def set_experiment(db: StoreFile, run_id: str, experiment: str) -> None:
    """Move a run into ``experiment`` (created if new)."""
    experiment = validation.check_key(experiment, "experiment name")

    def tx(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO experiments (name, created_at) VALUES (?, ?)",
            [experiment, time.time()],
        )
        conn.execute(
            "UPDATE runs SET experiment_id = (SELECT id FROM experiments WHERE name = ?) "
            "WHERE run_id = ?",
            [experiment, run_id],
        )

    db.write(tx)


def run_rowid(db: StoreFile, run_id: str) -> tuple[int, str]:
    """The integer key and status of a run (exact id): what the metric writer keys
    points by."""
    row = db.read(
        lambda c: c.execute("SELECT id, status FROM runs WHERE run_id = ?", [run_id]).fetchone()
    )
    if row is None:
        raise RunNotFoundError(f"no run with id {run_id!r} in {db.location}")
    rowid, status = row
    return rowid, status


def resolve_run_id(db: StoreFile, ref: str) -> str:
    """The full id of the run that ``ref`` names: an id, a unique run name, or a unique
    id prefix, in that order (a run named ``a`` is not shadowed by another run whose id
    happens to begin with ``a``, as git prefers a ref over an abbreviated hash)."""
    if not isinstance(ref, str) or not ref.strip():
        raise RunNotFoundError(f"a run id must be a non-empty string, got {ref!r}")
    ref = ref.strip()
    prefix = ref.lower()

    def lookup(c: sqlite3.Connection) -> list[str]:
        exact = c.execute("SELECT run_id FROM runs WHERE run_id = ?", [ref]).fetchone()
        if exact is not None:
            return [exact[0]]
        ids = [r[0] for r in c.execute("SELECT run_id FROM runs WHERE name = ?", [ref])]
        if ids:
            return ids
        hi = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return [
            r[0]
            for r in c.execute(
                "SELECT run_id FROM runs WHERE run_id >= ? AND run_id < ? LIMIT 6",
                [prefix, hi],
            )
        ]

    ids = db.read(lookup)
    if len(ids) == 1:
        return ids[0]
    if not ids:
        raise RunNotFoundError(f"no run matches {ref!r} (by id prefix or name) in {db.location}")
    shown = ", ".join(i[:12] for i in ids[:5])
    hint = (
        "use one of their ids"
        if len(ids[0]) > len(ref) and not ids[0].startswith(prefix)
        else "give more characters of the id"
    )
    raise AmbiguousRunIdError(
        f"{ref!r} matches several runs ({shown}{', ...' if len(ids) > 5 else ''}); {hint}"
    )


def writable_run(
    db: StoreFile, conn: sqlite3.Connection, run_id: str, *, check_state: bool = True
) -> int:
    """Inside a transaction: the row key of a run that may be written to (one that has
    not ended, unless ``check_state`` is off), else the error that says why not."""
    row = conn.execute("SELECT id, status FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise RunNotFoundError(f"no run with id {run_id!r} in {db.location}")
    rowid, status = row
    if check_state and status in TERMINAL_STATUSES:
        raise RunStateError(
            f"run {run_id[:8]} is {status}; it cannot be logged to. Start a new run, or "
            "resume this one with start_run(run_id=...)"
        )
    return int(rowid)


def set_status(
    db: StoreFile,
    run_id: str,
    status: str,
    *,
    end_time: float | None = None,
    only_from: Sequence[str] = ("queued", "running", "crashed"),
) -> bool:
    """Move a run to ``status`` if it is currently in one of ``only_from`` (a
    compare-and-set, so racing writers agree); returns whether it changed."""
    if status not in ("queued", "running", *TERMINAL_STATUSES):
        raise InvalidInputError(f"unknown status {status!r}")
    if status in TERMINAL_STATUSES and end_time is None:
        end_time = time.time()
    marks = ",".join("?" * len(only_from))
    return db.write(
        lambda c: (
            c.execute(
                "UPDATE runs SET status = ?, end_time = ? "
                f"WHERE run_id = ? AND status IN ({marks})",
                [status, end_time, run_id, *only_from],
            ).rowcount
            > 0
        )
    )


def heartbeat(db: StoreFile, run_ids: Iterable[str]) -> None:
    """Record that the runs' process is alive (the writer's beat, every few seconds)."""
    ids = list(run_ids)
    if ids:
        now = time.time()
        db.write(
            lambda c: c.executemany(
                "UPDATE runs SET heartbeat = ? WHERE run_id = ? AND status = 'running'",
                [(now, i) for i in ids],
            )
        )


def run_status(db: StoreFile, run_id: str) -> str | None:
    """The status of the run with exactly this id; None when there is no such run."""
    row = db.read(
        lambda c: c.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchone()
    )
    return None if row is None else str(row[0])


def claim_queued_run(db: StoreFile, run_id: str, *, source: str | None) -> bool:
    """Move a ``queued`` run to ``running`` in this process (a compare-and-set)."""
    now = time.time()
    user = current_user()
    return db.write(
        lambda c: (
            c.execute(
                "UPDATE runs SET status = 'running', start_time = ?, heartbeat = ?, "
                "end_time = NULL, host = ?, pid = ?, user = coalesce(?, user), source = ? "
                "WHERE run_id = ? AND status = 'queued'",
                [now, now, HOST, os.getpid(), user, source, run_id],
            ).rowcount
            > 0
        )
    )


def resume_run(db: StoreFile, run_id: str, *, name: str | None = None) -> None:
    """Mark an existing run ``running`` again, without an end time (renamed if ``name``)."""
    if name is not None:
        name = validation.check_text(name, "run name")
    db.write(
        lambda c: c.execute(
            "UPDATE runs SET status = 'running', end_time = NULL, "
            "name = coalesce(?, name) WHERE run_id = ?",
            [name, run_id],
        )
    )


def rename_run(db: StoreFile, run_id: str, name: str) -> None:
    """Give a run another name (whatever its status)."""
    name = validation.check_text(name, "run name")
    db.write(lambda c: c.execute("UPDATE runs SET name = ? WHERE run_id = ?", [name, run_id]))


def set_source(db: StoreFile, run_id: str, source: str | None, *, notebook: str | None) -> None:
    """Record the script or notebook a run came from (and its notebook path, if unset)."""
    db.write(
        lambda c: c.execute(
            "UPDATE runs SET source = ?, notebook = CASE WHEN notebook IS NULL OR ? IS NULL "
            "THEN notebook ELSE ? END WHERE run_id = ?",
            [source, notebook, notebook, run_id],
        )
    )


def child_status_counts(db: StoreFile, parent_run_id: str) -> dict[str, int]:
    """How many children of a run (a sweep's) are in each status."""
    rows = db.read(
        lambda c: c.execute(
            "SELECT status, count(*) FROM runs WHERE parent_run_id = ? GROUP BY status",
            [parent_run_id],
        ).fetchall()
    )
    return {str(status): int(n) for status, n in rows}


def set_deleted(db: StoreFile, run_id: str, deleted: bool) -> None:
    """Hide a run from every listing (keeping when it was first hidden), or bring it back."""
    db.write(
        lambda c: c.execute(
            "UPDATE runs SET deleted_at = CASE WHEN ? THEN coalesce(deleted_at, ?) END "
            "WHERE run_id = ?",
            [deleted, time.time(), run_id],
        )
    )


# -- params and tags --------------------------------------------------------------------


def log_param(
    db: StoreFile, run_id: str, key: str, value: Any, *, rowid: int | None = None
) -> None:
    """Log one param. The common case, a new key of a running run, is one INSERT that is
    its own transaction (~1.5x cheaper than the checks of ``log_params``); when it inserts
    nothing (the run is missing or ended, or the key exists) ``log_params`` says why.
    ``rowid``: the run's integer key when the caller knows it (:func:`run_rowid`)."""
    text, type_, number = validation.encode_param(validation.check_key(key, "param key"), value)
    if rowid is None:
        changed = db.write_statement(_INSERT_PARAM, (key, text, type_, number, run_id))
    else:
        changed = db.write_statement(
            _INSERT_PARAM_BY_ROWID, (key, text, type_, number, rowid, run_id)
        )
    if not changed:
        _write_params(db, run_id, {key: (text, type_, number)})


def log_params(db: StoreFile, run_id: str, params: Mapping[str, Any]) -> None:
    """Log params all-or-nothing; the same value again is a no-op, another value a
    ``ParamConflictError`` naming both."""
    if len(params) == 1:
        ((key, value),) = params.items()
        log_param(db, run_id, key, value)
        return
    rows: dict[str, tuple[str, str, float | None]] = {}
    for key, value in params.items():
        validation.check_key(key, "param key")
        rows[key] = validation.encode_param(key, value)
    _write_params(db, run_id, rows)


def _write_params(
    db: StoreFile, run_id: str, rows: dict[str, tuple[str, str, float | None]]
) -> None:
    """The checked write of params: refused whole when the run cannot be logged to or
    when a key already has another value."""

    def tx(conn: sqlite3.Connection) -> None:
        rowid = writable_run(db, conn, run_id)
        keys = list(rows)
        for chunk in _chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            for key, value, type_ in conn.execute(
                f"SELECT key, value, type FROM params WHERE run = ? AND key IN ({marks})",
                [rowid, *chunk],
            ):
                new_value, new_type, _ = rows[key]
                if (value, type_) != (new_value, new_type):
                    raise ParamConflictError(
                        f"param {key!r} of run {run_id[:8]} is already {value} ({type_}); "
                        f"it cannot be changed to {new_value} ({new_type}). Params are "
                        "immutable: log a new key or start a new run"
                    )
        conn.executemany(
            "INSERT OR IGNORE INTO params (run, key, value, type, value_num) "
            "VALUES (?, ?, ?, ?, ?)",
            [(rowid, k, *v) for k, v in rows.items()],
        )

    db.write(tx)


def set_tags(db: StoreFile, run_id: str, tags: Mapping[str, Any], *, check_state: bool) -> None:
    """Set tags (mutable, last write wins) all-or-nothing."""
    rows = [
        (validation.check_key(k, "tag key"), validation.tag_value(k, v)) for k, v in tags.items()
    ]

    def tx(conn: sqlite3.Connection) -> None:
        rowid = writable_run(db, conn, run_id, check_state=check_state)
        conn.executemany(
            "INSERT OR REPLACE INTO tags (run, key, value) VALUES (?, ?, ?)",
            [(rowid, k, v) for k, v in rows],
        )

    db.write(tx)


def delete_tag(db: StoreFile, run_id: str, key: str) -> None:
    """Remove a tag from a run."""
    db.write(
        lambda c: c.execute(
            "DELETE FROM tags WHERE key = ? AND run = (SELECT id FROM runs WHERE run_id = ?)",
            [key, run_id],
        )
    )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
