"""Copy what one store lacks from another (``mlnb sync SRC DST``): runs new to DST, and
rows (points, tags, checks…) that DST's copy of a run lacks; with ``both``, DST to SRC too.

Each run moves as a bundle (:mod:`mlnb.store.transfer`): checked whole, compared with
what the destination holds, written in one transaction. So a sync never overwrites: a run
whose two copies conflict (a tag, a status, a point at the same step with another value)
is reported as DIVERGED with what differs, and left alone on both sides; a kill leaves
each run whole or absent, and running the sync again finishes it.

Model versions of the runs synced travel too, with their models and alias history, under
the rules of :mod:`mlnb.store.bundlemodels` (a conflict is reported, never overwritten).

Why it is fast: the runs are first compared by a summary read in one query per store (the
run's row, and per run-linked table its row count and a sum over its values and
timestamps for the long tables: metrics, checks, cells; the small tables' rows whole); only
runs whose summaries differ are exported and compared row by row. Two copies with equal
summaries are taken as equal (a conflicting metric value, check or cell whose counts and
sums come out equal is not looked for).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlnb.errors import BundleError
from mlnb.store.bundlemodels import check_models, export_models, import_models
from mlnb.store.core import Store
from mlnb.store.query import RunScope
from mlnb.store.transfer import check_import, export_run, import_run

__all__ = ["SyncMove", "SyncResult", "sync_stores"]

# Per run-linked table, what its summary adds to the count of its rows: sums over the values
# of the long, append-only ones; the other tables (tags, params, artifacts, datasets, git)
# are small, and their rows are compared whole (``_WHOLE``).
_SUMS: dict[str, str] = {
    "metrics": "total(step) + total(timestamp) + total(coalesce(value, 0))",
    "checks": "total(created_at) + total(coalesce(value, 0))",
    "cells": "total(seq) + total(started) + total(coalesce(ended, 0))",
}


def _whole(c: sqlite3.Connection, table: str) -> str:
    cols = [
        r[1]
        for r in c.execute(f"PRAGMA table_info({table})")
        if r[1] != "run" and not (r[1] == "id" and r[5])
    ]
    row = " || ',' || ".join(f"quote({col})" for col in cols)
    return (
        f"(SELECT count(*) || ':' || coalesce(group_concat(x, char(30)), '') FROM "
        f"(SELECT {row} AS x FROM {table} WHERE run = r.id ORDER BY x))"
    )


@dataclass(frozen=True)
class SyncMove:
    """One run's move: ``kind`` is ``new`` (absent from the destination), ``update`` (the
    destination lacks some of its rows) or ``diverged`` (refused: ``reason`` says what
    differs); ``rows`` counts the rows and attributes it adds."""

    run_id: str
    source: str
    target: str
    kind: str
    rows: int = 0
    reason: str = ""


@dataclass
class SyncResult:
    """What a sync moved (or, with ``dry_run``, would move) and how many runs were
    already the same on both sides."""

    moves: list[SyncMove] = field(default_factory=list)
    same: int = 0
    model_rows: int = 0  # registered models, versions and alias events copied
    models_diverged: list[str] = field(default_factory=list)  # what differs, per conflict
    dry_run: bool = False

    @property
    def diverged(self) -> list[SyncMove]:
        """The runs refused: changed on both sides."""
        return [move for move in self.moves if move.kind == "diverged"]


def _summaries(run_ids: list[str] | None) -> Callable[[sqlite3.Connection], dict[str, Any]]:
    """A read of each run's summary (``None``: every run of the store)."""

    def read(c: sqlite3.Connection) -> dict[str, Any]:
        names = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        linked = sorted(
            name
            for name in names
            if name != "latest_metrics"
            and any(fk[2] == "runs" for fk in c.execute(f"PRAGMA foreign_key_list({name})"))
        )
        cols = [r[1] for r in c.execute("PRAGMA table_info(runs)") if r[1] != "id"]
        parts = [
            f"(SELECT count(*) || ':' || {_SUMS[t]} FROM {t} WHERE run = r.id)"
            if t in _SUMS
            else _whole(c, t)
            for t in linked
        ]
        sql = f"SELECT r.run_id, {', '.join(f'r.{col}' for col in cols)}, {', '.join(parts)} "
        sql += "FROM runs r"
        out: dict[str, Any] = {}
        if run_ids is None:
            rows = c.execute(sql).fetchall()
        else:
            rows = []
            for start in range(0, len(run_ids), 500):
                part = run_ids[start : start + 500]
                where = f" WHERE r.run_id IN ({', '.join('?' * len(part))})"
                rows += c.execute(sql + where, part).fetchall()
        for row in rows:
            out[row[0]] = row[1:]
        return out

    return read


def _models(
    src: Store, dst: Store, run_ids: list[str], *, dry_run: bool, result: SyncResult
) -> None:
    """The registry rows of the runs that are now on both sides (bundlemodels' rules)."""
    rows = check_models(export_models(src, run_ids), run_ids)
    try:
        result.model_rows += import_models(dst, rows, dry_run=dry_run)
    except BundleError as exc:
        result.models_diverged.append(str(exc).removesuffix("; nothing was imported"))


def _one_way(
    src: Store, dst: Store, run_ids: list[str], *, dry_run: bool, result: SyncResult
) -> None:
    here = src.file.read(_summaries(run_ids))
    there = dst.file.read(_summaries(run_ids))
    for run_id in run_ids:
        if run_id not in here:
            continue
        if run_id in there and here[run_id] == there[run_id]:
            result.same += 1
            continue
        bundle = export_run(src, run_id)
        try:
            rows = check_import(dst, bundle)
            if rows and not dry_run:
                import_run(dst, bundle)
        except BundleError as exc:  # ParamConflictError is one too
            reason = str(exc).removesuffix("; nothing was imported")
            result.moves.append(SyncMove(run_id, src.location, dst.location, "diverged", 0, reason))
            continue
        if not rows:  # the destination holds all of it (and more): nothing moves this way
            result.same += 1
            continue
        kind = "update" if run_id in there else "new"
        result.moves.append(SyncMove(run_id, src.location, dst.location, kind, rows))
    diverged = {move.run_id for move in result.diverged}
    _models(src, dst, [r for r in run_ids if r not in diverged], dry_run=dry_run, result=result)


def sync_stores(
    src: Store,
    dst: Store,
    filter: str | None = None,
    *,
    both: bool = False,
    dry_run: bool = False,
) -> SyncResult:
    """Copy into ``dst`` the runs of ``src`` matching ``filter`` (deleted runs included)
    and the rows it lacks of runs it has; ``both``: also ``dst`` into ``src``. A run
    changed on both sides in a way that conflicts is reported, never overwritten."""
    result = SyncResult(dry_run=dry_run)
    scope = RunScope(include_deleted=True)
    _one_way(src, dst, src.run_ids(filter, scope=scope), dry_run=dry_run, result=result)
    if both:
        seen = {move.run_id for move in result.diverged}
        back = [run_id for run_id in dst.run_ids(filter, scope=scope) if run_id not in seen]
        _one_way(dst, src, back, dry_run=dry_run, result=result)
    return result
