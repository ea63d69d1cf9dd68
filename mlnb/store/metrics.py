"""Metric points in the store: the writer's batched inserts (with the latest value of each
series kept in ``latest_metrics``), and series read back whole or down-sampled for plots.
Functions over the database (``StoreFile``).

``insert_metrics`` is the metric writer's door and not a ``Store`` method: it takes
points already checked and keyed by the run's row id.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from mlnb.conventions import ERROR_MESSAGE_TAG, ERROR_NAME_TAG
from mlnb.errors import InvalidInputError, MlnbError, RunNotFoundError, StoreError
from mlnb.records import SampledHistory
from mlnb.store.database import StoreFile

MetricRow = tuple[int, str, int, float, float]  # run row id, key, step, value, timestamp

METRIC_ROWS_PER_STATEMENT = 6_000  # 30,000 bound values, under SQLite's 32,766 limit
DOWNSAMPLE_POINTS = 2_000  # what a plot reads of one series at most (downsampled_history)


def _metric_insert_sql(rows: int) -> str:
    """A multi-row upsert: one statement step per 6,000 points, so the GIL is released for
    the whole insert instead of once per row (the writer thread then runs in parallel with
    a logging loop instead of waiting for the GIL after every row)."""
    values = ",".join(["(?, ?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO metrics (run, key, step, value, timestamp) VALUES {values} "
        "ON CONFLICT (run, key, step) DO UPDATE SET value = excluded.value, "
        "timestamp = excluded.timestamp"
    )


METRIC_INSERT_FULL = _metric_insert_sql(METRIC_ROWS_PER_STATEMENT)
LATEST_REFRESH = (  # the highest step is the latest point: one index seek per series
    "INSERT INTO latest_metrics (run, key, step, value, timestamp) "
    "SELECT run, key, step, value, timestamp FROM metrics WHERE run = ? AND key = ? "
    "ORDER BY step DESC LIMIT 1 "
    "ON CONFLICT (run, key) DO UPDATE SET step = excluded.step, value = excluded.value, "
    "timestamp = excluded.timestamp"
)


def insert_metrics(db: StoreFile, rows: Sequence[MetricRow]) -> dict[int, MlnbError]:
    """Write already-validated metric points ``(run_rowid, key, step, value, time)`` in
    one transaction; replaying a batch is harmless (last value per step wins).

    Points the database refuses cost only their own run: the batch is then written run
    by run, and each run whose points are refused is marked ``failed`` with the reason
    in its ``mlnb.error.*`` tags. Returns ``{run_rowid: error}`` for those runs (a
    ``RunNotFoundError`` when the run no longer exists). A failure of the whole store
    (a full disk, a read-only store) raises ``StoreError`` with nothing written."""
    if not rows:
        return {}
    try:
        db.write(_metrics_tx(rows))
        return {}
    except _Refused:
        pass
    by_run: dict[int, list[MetricRow]] = {}
    for row in rows:
        by_run.setdefault(row[0], []).append(row)
    refused: dict[int, MlnbError] = {}
    for rowid, points in by_run.items():
        try:
            db.write(_metrics_tx(points))
        except _Refused as exc:
            refused[rowid] = _refuse_points(db, rowid, len(points), exc.reason)
    return refused


def _refuse_points(db: StoreFile, rowid: int, points: int, reason: str) -> MlnbError:
    """Mark a run whose points were refused ``failed``, saying why in its tags."""
    message = f"the database refused them ({reason})"

    def tx(conn: sqlite3.Connection) -> bool:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", [rowid]).fetchone() is None:
            return False
        conn.execute(
            "UPDATE runs SET status = 'failed', end_time = coalesce(end_time, ?) "
            "WHERE id = ? AND status IN ('queued', 'running', 'finished')",
            [time.time(), rowid],
        )
        lost = f"{points:,} metric points were not stored: {message}"
        conn.executemany(
            "INSERT OR REPLACE INTO tags (run, key, value) VALUES (?, ?, ?)",
            [(rowid, ERROR_NAME_TAG, "MetricPointsRefused"), (rowid, ERROR_MESSAGE_TAG, lost)],
        )
        return True

    if not db.write(tx):
        return RunNotFoundError(
            f"their run no longer exists in {db.location} (it was deleted and purged "
            "while a process logged to it); nothing was written"
        )
    return StoreError(f"{message}; the run is marked failed")


class _Refused(Exception):
    """Metric points the database will not take (raised inside a transaction, which is
    rolled back); other runs' points may still be stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _metrics_tx(rows: Sequence[MetricRow]) -> Callable[[sqlite3.Connection], None]:
    """The transaction that writes metric points and refreshes their latest values."""
    series = {(row[0], row[1]) for row in rows}
    size = METRIC_ROWS_PER_STATEMENT

    def tx(conn: sqlite3.Connection) -> None:
        try:
            for start in range(0, len(rows), size):
                chunk = rows[start : start + size]
                sql = METRIC_INSERT_FULL if len(chunk) == size else _metric_insert_sql(len(chunk))
                conn.execute(sql, list(itertools.chain.from_iterable(chunk)))
            conn.executemany(LATEST_REFRESH, series)
        except (sqlite3.IntegrityError, OverflowError, ValueError, TypeError) as exc:
            raise _Refused(f"{type(exc).__name__}: {exc}") from exc

    return tx


def max_steps(db: StoreFile, run_id: str) -> dict[str, int]:
    """The highest step logged so far for each metric key of a run."""
    return dict(
        db.read(
            lambda c: c.execute(
                "SELECT key, step FROM latest_metrics WHERE run = "
                "(SELECT id FROM runs WHERE run_id = ?)",
                [run_id],
            ).fetchall()
        )
    )


def history(db: StoreFile, run_id: str, key: str) -> list[tuple[int, float, float]]:
    """Every point of one metric of one run (exact id): ``(step, value, timestamp)``."""
    rows = db.read(
        lambda c: c.execute(
            "SELECT step, value, timestamp FROM metrics WHERE run = "
            "(SELECT id FROM runs WHERE run_id = ?) AND key = ? ORDER BY step",
            [run_id, key],
        ).fetchall()
    )
    return [(s, math.nan if v is None else v, t) for s, v, t in rows]


def downsampled_history(
    db: StoreFile,
    run_id: str,
    key: str,
    *,
    max_points: int = DOWNSAMPLE_POINTS,
    before: float | None = None,
) -> SampledHistory:
    """At most ``max_points`` points of one series, chosen in SQL (see
    ``Store.downsampled_history``), and how many points the series has."""
    if type(max_points) is not int or max_points < 4:
        raise InvalidInputError(f"max_points must be an integer >= 4, got {max_points!r}")
    where = "FROM metrics WHERE run = ? AND key = ?" + (
        " AND timestamp < ?" if before is not None else ""
    )

    def fetch(c: sqlite3.Connection) -> tuple[list[Any], int]:
        row = c.execute("SELECT id FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:  # purged since it was resolved
            raise RunNotFoundError(f"no run with id {run_id!r} in {db.location}")
        args: list[Any] = [row[0], key] + ([before] if before is not None else [])
        head = c.execute(
            f"SELECT step, value, timestamp {where} ORDER BY step LIMIT ?",
            [*args, max_points + 1],
        ).fetchall()
        if len(head) <= max_points:
            return head, len(head)
        last = c.execute(
            f"SELECT step, value, timestamp {where} ORDER BY step DESC LIMIT 1", args
        ).fetchone()
        in_bucket = f"{where} AND step BETWEEN ? AND ?"
        low_sql = f"SELECT step, value, timestamp, min(value), count(*) {in_bucket}"
        high_sql = f"SELECT step, value, timestamp, max(value) {in_bucket}"
        first_step, last_step = head[0][0], last[0]
        width = -(-(last_step - first_step + 1) // ((max_points - 2) // 2))  # ceiling
        picked = {first_step: head[0], last_step: last}
        count = 0
        for start in range(first_step, last_step + 1, width):
            bounds = [start, min(start + width - 1, last_step)]
            step, v, ts, _, n = c.execute(low_sql, [*args, *bounds]).fetchone()
            if not n:
                continue
            count += n
            picked[step] = (step, v, ts)
            if n > 1:  # the bare columns come from the row holding the min / max
                step, v, ts, _ = c.execute(high_sql, [*args, *bounds]).fetchone()
                picked[step] = (step, v, ts)
        return [picked[s] for s in sorted(picked)], count

    rows, count = db.read(fetch)
    points = [(s, math.nan if v is None else v, t) for s, v, t in rows]
    return SampledHistory(points, count)
