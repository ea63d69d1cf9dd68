"""The ``checks`` table: verdicts recorded on runs (gates, ``--check``, validations,
reproductions), written as one batch each. Functions over the database (``StoreFile``)."""

from __future__ import annotations

import json
import math
import sqlite3
import time
import uuid
from collections.abc import Sequence
from typing import NamedTuple

from mlnb.errors import InvalidInputError
from mlnb.records import CheckRecord
from mlnb.store.database import StoreFile
from mlnb.store.provenance import json_or_none
from mlnb.store.runs import writable_run

# Kinds of rows in the checks table; checked here, not by an SQL CHECK, so that a new kind
# (a reproduction verdict, say) needs no table rebuild.
CHECK_KINDS = ("check", "gate", "validation", "reproduce")


class CheckRow(NamedTuple):
    """A row of ``checks`` as read back (the columns of ``CHECK_COLUMNS``)."""

    kind: str
    name: str
    passed: int
    value: float | None
    threshold: float | None
    comparator: str | None
    direction: str | None
    baseline_run_id: str | None
    baseline_value: float | None
    message: str | None
    details: str | None
    batch: str
    created_at: float


CHECK_COLUMNS = ", ".join(CheckRow._fields)


def log_checks(db: StoreFile, run_id: str, checks: Sequence[CheckRecord]) -> str:
    """Record verdicts on a run (finished or not), all or nothing, as one batch; returns
    the batch id (given on the records, else new)."""
    batch = check_batch(checks)
    db.write(lambda conn: insert_checks(db, conn, run_id, checks, batch))
    return batch


def check_batch(checks: Sequence[CheckRecord]) -> str:
    """Check the records (kinds, directions) before any transaction; returns their batch
    id (given on the records, else new)."""
    for chk in checks:
        if chk.kind not in CHECK_KINDS:
            raise InvalidInputError(f"check kind must be one of {CHECK_KINDS}: {chk.kind!r}")
        if chk.direction not in (None, "higher", "lower"):
            raise InvalidInputError(f"direction must be 'higher' or 'lower': {chk.direction!r}")
    return next((c.batch for c in checks if c.batch), "") or uuid.uuid4().hex


def insert_checks(
    db: StoreFile,
    conn: sqlite3.Connection,
    run_id: str,
    checks: Sequence[CheckRecord],
    batch: str,
) -> None:
    """Inside a write: insert checked records (:func:`check_batch`) as one batch, so that
    a verdict and what it decided (an alias move) are one transaction."""
    now = time.time()

    def finite(x: float | None) -> float | None:
        return None if x is None or math.isnan(x) else float(x)

    rowid = writable_run(db, conn, run_id, check_state=False)
    conn.executemany(
        f"INSERT INTO checks (run, {CHECK_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (rowid, c.kind, c.name, int(c.passed), finite(c.value),
             finite(c.threshold), c.comparator, c.direction, c.baseline_run_id,
             finite(c.baseline_value), c.message,
             json.dumps(c.details, sort_keys=True) if c.details else None, batch,
             c.created_at or now)
            for c in checks
        ],
    )  # fmt: skip


def read_checks(conn: sqlite3.Connection, run_id: str, kind: str | None) -> list[CheckRecord]:
    """Inside a read: a run's checks (optionally of one ``kind``), oldest first."""
    sql = (
        f"SELECT {CHECK_COLUMNS} FROM checks WHERE run = (SELECT id FROM runs WHERE run_id = ?)"
        + (" AND kind = ?" if kind else "")
        + " ORDER BY created_at, id"
    )
    out = []
    for row in map(CheckRow._make, conn.execute(sql, [run_id, kind] if kind else [run_id])):
        fields = row._asdict()
        fields["passed"] = bool(row.passed)
        fields["details"] = json_or_none(row.details) or {}
        out.append(CheckRecord(**fields))
    return out


def get_checks(db: StoreFile, run_id: str, *, kind: str | None = None) -> list[CheckRecord]:
    """A run's recorded checks (exact id), oldest first."""
    return db.read(lambda c: read_checks(c, run_id, kind))
