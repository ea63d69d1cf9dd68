"""The prediction log of ``mlnb serve`` and the ground truth that arrives later. Functions
over the database (``StoreFile``); ``mlnb.serving`` writes through them from its writer
thread, never from a request.

A logged request is one row of ``predictions``: the model and version that answered, the
input columns and rows (JSON), the outputs (JSON), the latency. ``served_inputs`` reads
the inputs back as plain rows (one per input row) for whoever turns them into a frame
(drift of served inputs); ``feedback`` is keyed by the request id the service returned.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from mlnb.store.database import StoreFile


class Prediction(NamedTuple):
    """One served request as the log keeps it (what the writer inserts)."""

    request_id: str
    model: str
    version: int
    alias: str | None
    columns: Sequence[str]
    inputs: Sequence[Sequence[Any]]  # rows, in the order of ``columns``
    outputs: Sequence[Any]
    latency_ms: float
    created_at: float


def _json(value: Any) -> str:
    """JSON text with NaN/±inf as null (SQLite and JSON readers take it everywhere)."""
    return json.dumps(_finite(value), separators=(",", ":"), default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def insert_predictions(db: StoreFile, batch: Sequence[Prediction]) -> int:
    """Write a batch of logged requests in one transaction; a request id already logged is
    left as it is (a retried batch changes nothing). Returns the rows inserted."""
    rows = [
        (p.request_id, p.model, p.version, p.alias, _json(list(p.columns)), _json(p.inputs),
         _json(p.outputs), len(p.inputs), p.latency_ms, p.created_at)
        for p in batch
    ]  # fmt: skip
    if not rows:
        return 0

    def tx(conn: sqlite3.Connection) -> int:
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO predictions (request_id, model, version, alias, columns, "
            "inputs, outputs, rows, latency_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return conn.total_changes - before

    return db.write(tx)


def insert_feedback(db: StoreFile, request_id: str, label: Any, *, at: float | None = None) -> None:
    """Record the ground truth of a served request (appended: a later label for the same
    request supersedes an earlier one where the log is read)."""
    now = time.time() if at is None else at
    db.write_statement(
        "INSERT INTO prediction_feedback (request_id, label, created_at) VALUES (?, ?, ?)",
        [request_id, _json(label), now],
    )


def served_inputs(
    db: StoreFile,
    model: str,
    *,
    version: int | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """The logged inputs of ``model`` (one version or all), newest requests first up to
    ``limit`` requests, as ``(columns, rows)``: each row a dict of the input columns plus
    ``_request_id``, ``_version``, ``_at`` (Unix time) and ``_prediction`` (that row's
    output). ``pandas.DataFrame(rows)`` is the frame of served inputs."""
    sql = "SELECT request_id, version, columns, inputs, outputs, created_at FROM predictions"
    sql += " WHERE model = ?"
    args: list[Any] = [model]
    if version is not None:
        sql += " AND version = ?"
        args.append(version)
    if since is not None:
        sql += " AND created_at >= ?"
        args.append(since)
    if until is not None:
        sql += " AND created_at < ?"
        args.append(until)
    sql += " ORDER BY created_at DESC, id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    found = db.read(lambda c: c.execute(sql, args).fetchall())
    columns: list[str] = []
    rows: list[dict[str, Any]] = []
    for request_id, number, cols_text, inputs_text, outputs_text, at in found:
        cols = json.loads(cols_text)
        for c in cols:
            if c not in columns:
                columns.append(c)
        outputs = json.loads(outputs_text)
        for i, values in enumerate(json.loads(inputs_text)):
            row = dict(zip(cols, values, strict=False))
            row.update(_request_id=request_id, _version=number, _at=at,
                       _prediction=outputs[i] if i < len(outputs) else None)  # fmt: skip
            rows.append(row)
    return columns, rows


class ServedRows(NamedTuple):
    """Served input rows as a table: ``rows`` in the order of ``columns`` (None where a
    request lacked a column), and per row the version that answered and its prediction."""

    columns: list[str]
    rows: list[list[Any]]
    versions: list[int]
    predictions: list[Any]


def served_rows(
    db: StoreFile,
    model: str,
    *,
    since: float | None = None,
    max_rows: int | None = None,
) -> ServedRows:
    """The newest logged input rows of ``model`` (every version), since ``since``, at
    most ``max_rows``: what ``mlnb monitor`` compares. Requests are read newest first, a
    chunk at a time (each chunk's JSON decoded in one call; after the first, a chunk is
    sized by the rows still missing), and the read stops once ``max_rows`` rows are in
    hand."""
    sql = "SELECT version, columns, inputs, outputs FROM predictions WHERE model = ?"
    args: list[Any] = [model]
    if since is not None:
        sql += " AND created_at >= ?"
        args.append(since)
    sql += " ORDER BY created_at DESC, id DESC"
    out = ServedRows([], [], [], [])
    at: dict[str, int] = {}
    header: dict[str, list[str]] = {}  # a request's columns text, decoded once

    def take(number: int, cols: list[str], inputs: list[Any], outputs: list[Any]) -> None:
        for c in cols:
            if c not in at:
                at[c] = len(out.columns)
                out.columns.append(c)
        if max_rows is not None:
            inputs = inputs[: max_rows - len(out.rows)]
        if cols == out.columns:
            out.rows.extend(inputs)
        else:
            for values in inputs:
                row: list[Any] = [None] * len(out.columns)
                for c, v in zip(cols, values, strict=False):
                    row[at[c]] = v
                out.rows.append(row)
        out.versions.extend([number] * len(inputs))
        out.predictions.extend(outputs[i] if i < len(outputs) else None
                               for i in range(len(inputs)))  # fmt: skip

    def read(conn: sqlite3.Connection) -> None:
        cursor = conn.execute(sql, args)
        size, seen = FIRST_CHUNK, 0
        while chunk := cursor.fetchmany(size):
            seen += len(chunk)
            decoded = json.loads("[" + ",".join(f"{i},{o}" for _, _, i, o in chunk) + "]")
            for k, (number, cols_text, _, _) in enumerate(chunk):
                cols = header.get(cols_text)
                if cols is None:
                    cols = header[cols_text] = json.loads(cols_text)
                inputs, outputs = decoded[2 * k], decoded[2 * k + 1]
                if len(inputs) == 1 == len(outputs) and cols == out.columns:  # the usual
                    out.rows.append(inputs[0])
                    out.versions.append(number)
                    out.predictions.append(outputs[0])
                else:
                    take(number, cols, inputs, outputs)
                if max_rows is not None and len(out.rows) >= max_rows:
                    return
            if max_rows is not None:  # just enough requests for the rows still missing
                per_request = max(len(out.rows) / seen, 1.0)
                size = min(CHUNK, int((max_rows - len(out.rows)) / per_request) + 1)

    db.read(read)
    width = len(out.columns)
    for row in out.rows:  # a row read before a later request added columns
        if len(row) < width:
            row.extend([None] * (width - len(row)))
    return out


CHUNK = 2000  # at most this many requests decoded at once by served_rows
FIRST_CHUNK = 200


def predictions_with_feedback(
    db: StoreFile,
    model: str,
    *,
    since: float | None = None,
    limit: int | None = None,
    labelled_only: bool = False,
) -> list[dict[str, Any]]:
    """Logged requests of ``model`` with the newest label each got (None: none yet),
    newest first: ``request_id``, ``version``, ``outputs``, ``label``, ``latency_ms``,
    ``at``. ``labelled_only``: only requests with a label (read from the feedback side,
    so a large log with little feedback costs little)."""
    if labelled_only:
        sql = (
            "SELECT p.request_id, p.version, p.outputs, p.latency_ms, p.created_at, f.label "
            "FROM prediction_feedback f JOIN predictions p ON p.request_id = f.request_id "
            "WHERE p.model = ? AND f.id = (SELECT max(g.id) FROM prediction_feedback g "
            "WHERE g.request_id = f.request_id)"
        )
    else:
        sql = (
            "SELECT p.request_id, p.version, p.outputs, p.latency_ms, p.created_at, "
            "(SELECT f.label FROM prediction_feedback f WHERE f.request_id = p.request_id "
            "ORDER BY f.id DESC LIMIT 1) FROM predictions p WHERE p.model = ?"
        )
    args: list[Any] = [model]
    if since is not None:
        sql += " AND p.created_at >= ?"
        args.append(since)
    sql += " ORDER BY p.created_at DESC, p.id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    found = db.read(lambda c: c.execute(sql, args).fetchall())
    return [
        {"request_id": r, "version": v, "outputs": json.loads(o), "latency_ms": ms, "at": at,
         "label": None if label is None else json.loads(label)}
        for r, v, o, ms, at, label in found
    ]  # fmt: skip


def count_predictions(db: StoreFile, model: str | None = None) -> int:
    """How many requests the log holds (of one model, or of all)."""
    if model is None:
        return int(db.read(lambda c: c.execute("SELECT count(*) FROM predictions").fetchone()[0]))
    return int(
        db.read(
            lambda c: c.execute(
                "SELECT count(*) FROM predictions WHERE model = ?", [model]
            ).fetchone()[0]
        )
    )
