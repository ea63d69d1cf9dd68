"""Reads for a paged runs table served over HTTP (the Jupyter server extension): how many
runs a filter and scope match, one page of runs with only the columns asked for, and the
latest point of each metric of one run. ``Store.run_ids`` pages the ids (keyset); these
read what a page shows of them, each in one read transaction.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlnb.errors import InvalidInputError
from mlnb.records import CheckRecord, check_verdicts

if TYPE_CHECKING:
    from mlnb.store.core import Store
    from mlnb.store.query import RunScope

__all__ = ["BASE_FIELDS", "count_runs", "latest_metric_points", "page_rows", "split_columns"]

# What every row of the runs table carries, whatever columns were asked for.
BASE_FIELDS = (
    "run_id",
    "name",
    "experiment",
    "status",
    "start_time",
    "end_time",
    "parent_run_id",
    "notebook",
    "linearity",
)
_BASE_SQL = (
    "r.run_id, r.name, e.name, r.status, r.start_time, r.end_time, r.parent_run_id, "
    "r.notebook, r.linearity"
)
_KINDS = {"params": "params", "metrics": "latest_metrics", "tags": "tags"}


def split_columns(columns: Sequence[str]) -> dict[str, list[str]]:
    """``["params.lr", "metrics.acc"]`` → ``{"params": ["lr"], "metrics": ["acc"],
    "tags": []}``; a column of another kind raises ``InvalidInputError``."""
    keys: dict[str, list[str]] = {kind: [] for kind in _KINDS}
    for column in columns:
        kind, dot, key = column.partition(".")
        if not dot or kind not in keys or not key:
            raise InvalidInputError(
                f"unknown column {column!r}: columns are params.NAME, metrics.NAME or tags.NAME"
            )
        if key not in keys[kind]:
            keys[kind].append(key)
    return keys


def count_runs(
    store: Store,
    filter: str | None = None,
    *,
    scope: RunScope | None = None,
    now: float | None = None,
) -> int:
    """How many runs in ``scope`` (default: every run not deleted) match ``filter`` (the
    query language of docs/query.md): the total a paged table shows."""
    from mlnb.store.query import RunScope, compile_filter

    where, args = compile_filter(filter, now=time.time() if now is None else now)
    scope_sql, scope_args = (scope or RunScope()).where()
    sql = (
        "SELECT count(*) FROM runs r JOIN experiments e ON e.id = r.experiment_id "
        f"WHERE ({where}) AND {scope_sql}"
    )
    return int(store.file.read(lambda c: c.execute(sql, [*args, *scope_args]).fetchone()[0]))


def page_rows(
    store: Store, run_ids: Sequence[str], *, columns: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The runs ``run_ids`` in that order (ids the store lacks are left out), each a dict of
    ``BASE_FIELDS`` plus ``params``, ``metrics`` and ``tags`` dicts holding only the keys
    ``columns`` names (``params.lr``...; params as their stored text, metrics their latest
    value, NaN for a stored NaN), and ``checks``: the verdict of each family of the run's
    newest checks (``{"drift": "FAIL (3 of 12)"}``, for the panel's badges). One read
    transaction; a query per kind asked for."""
    keys = split_columns(columns)
    ids = json.dumps(list(run_ids))

    def fetch(c: sqlite3.Connection) -> list[dict[str, Any]]:
        rows: dict[int, dict[str, Any]] = {}
        order: list[int] = []
        for row in c.execute(
            f"SELECT r.id, {_BASE_SQL} FROM json_each(?) j JOIN runs r ON r.run_id = j.value "
            "JOIN experiments e ON e.id = r.experiment_id ORDER BY j.key",
            [ids],
        ):
            rows[row[0]] = {
                **dict(zip(BASE_FIELDS, row[1:], strict=True)),
                "params": {},
                "metrics": {},
                "tags": {},
            }
            order.append(row[0])
        for kind, table in _KINDS.items():
            if not keys[kind] or not rows:
                continue
            for rid, key, value in c.execute(
                f"SELECT x.run, x.key, x.value FROM {table} x "
                "WHERE x.run IN (SELECT value FROM json_each(?)) "
                "AND x.key IN (SELECT value FROM json_each(?))",
                [json.dumps(order), json.dumps(keys[kind])],
            ):
                if kind == "metrics" and value is None:
                    value = math.nan
                rows[rid][kind][key] = value
        checks: dict[int, list[CheckRecord]] = {}
        for rid, kind, passed, batch, family in c.execute(
            "SELECT run, kind, passed, batch, json_extract(details, '$.check') FROM checks "
            "WHERE run IN (SELECT value FROM json_each(?)) ORDER BY created_at, id",
            [json.dumps(order)],
        ):
            details = {"check": family} if family else {}
            checks.setdefault(rid, []).append(
                CheckRecord(kind=kind, name="", passed=bool(passed), batch=batch, details=details)
            )
        for rid in order:
            rows[rid]["checks"] = check_verdicts(checks.get(rid, []))
        return [rows[rid] for rid in order]

    return store.file.read(fetch)


def latest_metric_points(store: Store, run_id: str) -> dict[str, dict[str, Any]]:
    """The latest point of each metric of the run with exactly this id:
    ``{key: {"value", "step", "timestamp"}}`` (NaN for a stored NaN)."""
    rows = store.file.read(
        lambda c: c.execute(
            "SELECT key, value, step, timestamp FROM latest_metrics WHERE run = "
            "(SELECT id FROM runs WHERE run_id = ?) ORDER BY key",
            [run_id],
        ).fetchall()
    )
    return {
        key: {"value": math.nan if v is None else v, "step": step, "timestamp": ts}
        for key, v, step, ts in rows
    }
