"""Reading runs back: one run whole (``read_run``), runs as a wide table
(``search_runs``), the one runs-table query with keyset paging (``run_ids``) and the keys
runs have (``run_keys``). Functions over the database (``StoreFile``); rows are read by
name (``RunRow``), never by position.
"""

from __future__ import annotations

import difflib
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from mlnb.errors import ExperimentNotFoundError, InvalidInputError, RunNotFoundError
from mlnb.records import Artifact, RunRecord
from mlnb.store import inputs as validation
from mlnb.store.checks import read_checks
from mlnb.store.database import StoreFile
from mlnb.store.provenance import json_or_none, read_provenance

if TYPE_CHECKING:
    from mlnb.store.query import OrderTerm, RunScope


class RunRow(NamedTuple):
    """A row of ``runs`` joined with its experiment's name (the columns of RUN_COLUMNS)."""

    id: int
    run_id: str
    name: str
    experiment: str
    status: str
    start_time: float
    end_time: float | None
    parent_run_id: str | None
    host: str | None
    pid: int | None
    user: str | None
    source: str | None
    deleted_at: float | None
    notebook: str | None
    linearity: str | None
    linearity_detail: str | None

    def record(self) -> RunRecord:
        """The run's attributes as a ``RunRecord`` (params, metrics, … still empty)."""
        return RunRecord(
            run_id=self.run_id,
            name=self.name,
            experiment=self.experiment,
            status=self.status,
            start_time=self.start_time,
            end_time=self.end_time,
            parent_run_id=self.parent_run_id,
            host=self.host,
            pid=self.pid,
            user=self.user,
            source=self.source,
            deleted=self.deleted_at is not None,
            notebook=self.notebook,
            linearity=self.linearity,
            linearity_detail=json_or_none(self.linearity_detail),
        )


RUN_COLUMNS = ", ".join(
    "e.name" if f == "experiment" else f"r.{f}" for f in RunRow._fields
)  # fmt: skip
RUNS_FROM = "FROM runs r JOIN experiments e ON e.id = r.experiment_id"
# The first columns of search_runs' table, in this order (then duration, notebook,
# linearity, then params.*, metrics.* and tags.*)
BASE_COLUMNS = (
    "run_id",
    "name",
    "experiment",
    "status",
    "start_time",
    "end_time",
    "parent_run_id",
)  # fmt: skip
# A param's value as SQLite can give it; bools, None and JSON come back marked for Python.
PARAM_VALUE_SQL = (
    "CASE type WHEN 'float' THEN value_num WHEN 'int' THEN CAST(value AS INTEGER) "
    "WHEN 'str' THEN CASE WHEN substr(value, 1, 1) = char(1) "
    "THEN char(1) || type || char(1) || value ELSE value END "
    "ELSE char(1) || type || char(1) || value END"
)
# Distinct keys by walking the (key, ...) index: one seek per key instead of a scan
DISTINCT_KEYS = (
    "WITH RECURSIVE k(key) AS (SELECT min(key) FROM {table} UNION ALL "
    "SELECT (SELECT min(key) FROM {table} WHERE key > k.key) FROM k WHERE k.key IS NOT NULL) "
    "SELECT key FROM k"
)


def read_run(db: StoreFile, run_id: str) -> RunRecord:
    """Everything about one run (exact id), read in one snapshot."""

    def fetch(c: sqlite3.Connection) -> RunRecord:
        found = c.execute(f"SELECT {RUN_COLUMNS} {RUNS_FROM} WHERE r.run_id = ?", [run_id])
        row = found.fetchone()
        if row is None:  # purged since it was resolved
            raise RunNotFoundError(f"no run with id {run_id!r} in {db.location}")
        run = RunRow._make(row)
        rec = run.record()
        rec.params = {
            k: validation.decode_param(v, t)
            for k, v, t in c.execute(
                "SELECT key, value, type FROM params WHERE run = ? ORDER BY key", [run.id]
            )
        }
        for k, step, v in c.execute(
            "SELECT key, step, value FROM latest_metrics WHERE run = ? ORDER BY key", [run.id]
        ):
            rec.metrics[k] = math.nan if v is None else v
            rec.metric_steps[k] = step
        rec.tags = dict(
            c.execute("SELECT key, value FROM tags WHERE run = ? ORDER BY key", [run.id])
        )
        rec.artifacts = [
            Artifact(*a)
            for a in c.execute(
                "SELECT path, hash, size, kind, created_at FROM artifacts WHERE run = ? "
                "ORDER BY path",
                [run.id],
            )
        ]
        read_provenance(c, run.id, rec)
        rec.checks = read_checks(c, run_id, None)
        return rec

    return db.read(fetch)


def check_experiments(db: StoreFile, names: Iterable[str]) -> None:
    """Raise ``ExperimentNotFoundError`` listing the experiments there are if one of
    ``names`` is not among them (a typo would otherwise read as "no runs")."""
    known = db.read(
        lambda c: [r[0] for r in c.execute("SELECT name FROM experiments ORDER BY name")]
    )
    missing = [name for name in names if name not in known]
    if not missing:
        return
    close = difflib.get_close_matches(missing[0], known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    listed = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
    raise ExperimentNotFoundError(
        f"no experiment named {missing[0]!r} in {db.location}{hint} "
        + (f"The experiments are: {listed}" if known else "The store has no experiments yet")
    )


def search_runs(
    db: StoreFile,
    filter: str | None = None,
    *,
    experiment: str | Sequence[str] | None = None,
    order_by: str | None = None,
    max_results: int | None = None,
    include_deleted: bool = False,
    now: float | None = None,
) -> dict[str, list[Any]]:
    """Runs as a wide table, column by column (see ``Store.search_runs``)."""
    from mlnb.store.query import RunScope, compile_filter, compile_order_by

    now = time.time() if now is None else now
    where, args = compile_filter(filter, now=now)
    order, order_args = compile_order_by(order_by, now=now)
    names = [experiment] if isinstance(experiment, str) else experiment
    if names is not None:
        check_experiments(db, names)
    scope, scope_args = RunScope(names, None, include_deleted).where()
    if max_results is not None and (not isinstance(max_results, int) or max_results < 0):
        raise InvalidInputError(f"max_results must be a non-negative int: {max_results!r}")
    sql = (
        f"SELECT {RUN_COLUMNS} {RUNS_FROM} WHERE ({where}) AND {scope} "
        f"ORDER BY {order}, r.id DESC LIMIT ?"
    )
    args = [*args, *scope_args, *order_args, -1 if max_results is None else max_results]

    def fetch(c: sqlite3.Connection) -> dict[str, list[Any]]:
        runs = [RunRow._make(r) for r in c.execute(sql, args)]
        n = len(runs)
        ids = json.dumps([r.id for r in runs])
        pos = {r.id: i for i, r in enumerate(runs)}
        table: dict[str, list[Any]] = {
            name: [getattr(r, name) for r in runs] for name in BASE_COLUMNS
        }
        table["duration"] = [
            (r.end_time if r.end_time is not None else now) - r.start_time for r in runs
        ]
        table["notebook"] = [r.notebook for r in runs]
        table["linearity"] = [r.linearity for r in runs]
        extra: dict[str, list[Any]] = {}
        in_ids = "run IN (SELECT value FROM json_each(?))"
        # One pass per table, column-wise; SQLite converts the common param types so
        # Python only decodes bools, None and JSON (marked with a \x01 prefix).
        for prefix, query in (
            ("params.", f"SELECT run, key, {PARAM_VALUE_SQL} FROM params WHERE {in_ids}"),
            ("metrics.", f"SELECT run, key, value FROM latest_metrics WHERE {in_ids}"),
            ("tags.", f"SELECT run, key, value FROM tags WHERE {in_ids}"),
        ):
            nan_for_null = prefix == "metrics."
            for run, key, value in c.execute(query, [ids]):
                col = extra.get(prefix + key)
                if col is None:
                    col = extra[prefix + key] = [None] * n
                col[pos[run]] = math.nan if value is None and nan_for_null else value
        for name, col in extra.items():
            if name.startswith("params."):
                for i, value in enumerate(col):
                    if type(value) is str and value[:1] == "\x01":
                        type_, _, text = value[1:].partition("\x01")
                        col[i] = validation.decode_param(text, type_)
        for name in sorted(extra, key=_column_order):
            table[name] = extra[name]
        return table

    return db.read(fetch)


def run_ids(
    db: StoreFile,
    filter: str | None = None,
    *,
    order_by: str | Sequence[str] | None = None,
    scope: RunScope | None = None,
    after: str | None = None,
    limit: int | None = None,
    now: float | None = None,
) -> list[str]:
    """The ids of a page of runs by filter, order and scope (see ``Store.run_ids``)."""
    from mlnb.store.query import RunScope, compile_filter, compile_order_keys

    if limit is not None and (type(limit) is not int or limit < 0):
        raise InvalidInputError(f"limit must be a non-negative int: {limit!r}")
    now = time.time() if now is None else now
    where, args = compile_filter(filter, now=now)
    terms = compile_order_keys(order_by, now=now)
    scope_sql, scope_args = (scope or RunScope()).where()
    order = ", ".join(f"{e} {'DESC' if d else 'ASC'} NULLS LAST" for e, _, d in terms)
    order_args = [p for _, params, _ in terms for p in params]

    def fetch(c: sqlite3.Connection) -> list[str]:
        conds, cond_args = [f"({where})", scope_sql], [*args, *scope_args]
        if after is not None:
            keys = ", ".join(e for e, _, _ in terms)
            cursor = c.execute(
                f"SELECT {keys}, r.id {RUNS_FROM} WHERE r.run_id = ?", [*order_args, after]
            ).fetchone()
            if cursor is None:
                raise RunNotFoundError(
                    f"cannot page after run {after!r}: {db.location} has no run with "
                    "that id (purged meanwhile?); start again from the first page"
                )
            sql, keyset_args = _after_row(terms, cursor)
            conds.append(sql)
            cond_args += keyset_args
        sql = f"SELECT r.run_id {RUNS_FROM} WHERE {' AND '.join(conds)} ORDER BY {order}, r.id DESC"
        if limit is None:  # no LIMIT at all: `LIMIT -1` made SQLite's sort ~10x slower
            return [r[0] for r in c.execute(sql, [*cond_args, *order_args])]
        return [r[0] for r in c.execute(sql + " LIMIT ?", [*cond_args, *order_args, limit])]

    return db.read(fetch)


def run_keys(db: StoreFile, run_ids: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The params, metrics and tags keys of the runs ``run_ids`` (None: of every run)."""
    ids = None if run_ids is None else json.dumps(list(run_ids))

    def fetch(c: sqlite3.Connection) -> dict[str, list[str]]:
        out = {}
        for kind, table in (("params", "params"), ("metrics", "latest_metrics"),
                            ("tags", "tags")):  # fmt: skip
            if ids is None:
                rows = c.execute(DISTINCT_KEYS.format(table=table)).fetchall()
            else:
                rows = c.execute(
                    f"SELECT DISTINCT x.key FROM json_each(?) j JOIN runs r ON r.run_id = "
                    f"j.value JOIN {table} x ON x.run = r.id ORDER BY x.key",
                    [ids],
                ).fetchall()
            out[kind] = [r[0] for r in rows if r[0] is not None]
        return out

    return db.read(fetch)


def _after_row(terms: Sequence[OrderTerm], cursor: Sequence[Any]) -> tuple[str, list[Any]]:
    """The keyset condition "after the cursor row" for ``ORDER BY <terms> NULLS LAST, r.id
    DESC``: equal on the first terms and after it on the next one, for some term (or the
    row id last). Nothing sorts after a missing value but rows missing it too."""
    ors: list[str] = []
    args: list[Any] = []
    equal: list[str] = []
    equal_args: list[Any] = []
    for (expr, params, descending), value in zip(terms, cursor[: len(terms)], strict=True):
        if value is not None:
            op = "<" if descending else ">"
            ors.append("(" + " AND ".join([*equal, f"({expr} {op} ? OR {expr} IS NULL)"]) + ")")
            args += [*equal_args, *params, value, *params]
        equal.append(f"{expr} IS ?")
        equal_args += [*params, value]
    ors.append("(" + " AND ".join([*equal, "r.id < ?"]) + ")")
    args += [*equal_args, cursor[len(terms)]]
    return "(" + " OR ".join(ors) + ")", args


def _column_order(col: str) -> tuple[int, str]:
    group = {"params": 0, "metrics": 1, "tags": 2}[col.split(".", 1)[0]]
    return group, col
