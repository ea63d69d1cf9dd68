"""The registry's rows that travel with runs (bundle files, sync): the model versions whose
run moves, their registered models, and the alias history of those models.

A version is identified by its model's name and its number; importing one the store has
with other values (another run, another file) is a conflict, as two people who each
registered ``churn`` version 1 in their own store have two different version 1s. An
alias's history is append-only and its current target is its newest event, so a bundle
may only extend it: the store's events of an alias must be the first events of the
bundle's (then the rest are appended, in order), or the bundle's the first of the
store's (nothing to add). Histories that both went on differently are a conflict: no
event is inserted out of order, so the current target never moves back silently.

The version's file itself is an artifact of its run, so it travels with the run's rows.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from typing import Any

from mlnb.errors import BundleError
from mlnb.store import hashing
from mlnb.store.core import Store

__all__ = ["check_models", "export_models", "import_models"]

MODEL = ("name", "description", "created_at")
VERSION = (
    "model", "version", "run_id", "artifact_path", "artifact_hash", "size", "format",
    "flavor", "signature", "description", "user", "created_at",
)  # fmt: skip
EVENT = (
    "model", "alias", "version", "previous_version", "user", "host", "reason",
    "check_batch", "created_at",
)  # fmt: skip
_EVENT_SQL = (
    "SELECT m.name, e.alias, e.version, e.previous_version, e.user, e.host, e.reason, "
    "e.check_batch, e.created_at FROM alias_events e JOIN registered_models m "
    "ON m.id = e.model"
)


def export_models(store: Store, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The registry rows that travel with the runs ``run_ids``: their model versions, those
    versions' models, and the alias events of those models that point at a carried
    version or remove an alias (``version`` NULL)."""
    wanted = set(run_ids)

    def read(c: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
        rows = c.execute(
            "SELECT m.name, v.version, v.run_id, v.artifact_path, v.artifact_hash, v.size, "
            "v.format, v.flavor, v.signature, v.description, v.user, v.created_at "
            "FROM model_versions v JOIN registered_models m ON m.id = v.model "
            "WHERE v.run_id IS NOT NULL ORDER BY m.name, v.version"
        ).fetchall()
        versions = [dict(zip(VERSION, row, strict=True)) for row in rows if row[2] in wanted]
        names = sorted({v["model"] for v in versions})
        carried = {(v["model"], v["version"]) for v in versions}
        models, events = [], []
        for name in names:
            row = c.execute(
                "SELECT name, description, created_at FROM registered_models WHERE name = ?",
                [name],
            ).fetchone()
            models.append(dict(zip(MODEL, row, strict=True)))
            for event in c.execute(_EVENT_SQL + " WHERE m.name = ? ORDER BY e.id", [name]):
                if event[2] is None or (name, event[2]) in carried:
                    events.append(dict(zip(EVENT, event, strict=True)))
        return {"models": models, "versions": versions, "alias_events": events}

    return store.file.read(read)


def _refuse(message: str) -> BundleError:
    return BundleError(f"{message}; nothing was imported")


_TYPES: dict[str, type[Any]] = {
    "version": int,
    "previous_version": int,
    "size": int,
    "created_at": float,
}
_NOT_NULL = {
    MODEL: {"name", "created_at"},
    VERSION: {"model", "version", "run_id", "artifact_path", "artifact_hash", "size", "format",
              "created_at"},
    EVENT: {"model", "alias", "created_at"},
}  # fmt: skip


def _typed(where: str, row: Any, columns: tuple[str, ...]) -> tuple[Any, ...]:
    """One row checked: a dict of exactly ``columns``, each value of its type (or None
    where the column allows it)."""
    if not isinstance(row, dict) or row.keys() != set(columns):
        raise _refuse(f"{where} must have exactly the fields {', '.join(columns)}")
    out: list[Any] = []
    for col in columns:
        value, kind = row[col], _TYPES.get(col, str)
        if value is None and col not in _NOT_NULL[columns]:
            out.append(None)
            continue
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind or (kind is float and not math.isfinite(value)):
            raise _refuse(f"{where}.{col} must be {kind.__name__}, got {value!r:.80}")
        if kind is int and not 0 <= value < 2**63:
            raise _refuse(f"{where}.{col} is out of range")
        if kind is str and len(value) > 2**20:
            raise _refuse(f"{where}.{col} is longer than {2**20} characters")
        out.append(value)
    return tuple(out)


def check_models(data: Any, run_ids: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
    """The registry part of a bundle checked in memory (types, hashes, versions of carried
    runs, events of carried models); returns its rows as tuples."""
    if not isinstance(data, dict) or data.keys() != {"models", "versions", "alias_events"}:
        raise _refuse("models.json must hold models, versions and alias_events")
    for part in data.values():
        if not isinstance(part, list):
            raise _refuse("models.json: models, versions and alias_events must be lists")
    models = [_typed(f"models[{i}]", r, MODEL) for i, r in enumerate(data["models"])]
    versions = [_typed(f"versions[{i}]", r, VERSION) for i, r in enumerate(data["versions"])]
    events = [_typed(f"alias_events[{i}]", r, EVENT) for i, r in enumerate(data["alias_events"])]
    names = {m[0] for m in models}
    if len(names) != len(models):
        raise _refuse("models.json lists a model twice")
    runs = set(run_ids)
    for i, v in enumerate(versions):
        if v[0] not in names:
            raise _refuse(f"versions[{i}] is of model {v[0]!r:.80}, which models.json lacks")
        if v[2] not in runs:
            raise _refuse(f"versions[{i}] comes from run {v[2]!r:.40}, which the bundle lacks")
        if not hashing.is_digest(v[4]):
            raise _refuse(f"versions[{i}].artifact_hash is not a SHA-256 hex digest")
    if len({(v[0], v[1]) for v in versions}) != len(versions):
        raise _refuse("models.json lists a model version twice")
    for i, e in enumerate(events):
        if e[0] not in names:
            raise _refuse(f"alias_events[{i}] is of model {e[0]!r:.80}, which models.json lacks")
    return {"models": models, "versions": versions, "alias_events": events}


def _plan(c: sqlite3.Connection, rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, Any]:
    """Inside a read or write: what importing ``rows`` adds (refuses a conflict)."""
    new_models = [
        m for m in rows["models"]
        if c.execute("SELECT 1 FROM registered_models WHERE name = ?", [m[0]]).fetchone() is None
    ]  # fmt: skip
    new_versions = []
    for v in rows["versions"]:
        old = c.execute(
            "SELECT v.run_id, v.artifact_path, v.artifact_hash, v.size, v.format "
            "FROM model_versions v JOIN registered_models m ON m.id = v.model "
            "WHERE m.name = ? AND v.version = ?",
            v[:2],
        ).fetchone()
        if old is None:
            new_versions.append(v)
        elif tuple(old) != (v[2], v[3], v[4], v[5], v[6]):
            raise _refuse(
                f"model {v[0]!r} version {v[1]} is run {old[0][:8]}'s {old[1]} (content "
                f"{old[2][:12]}) here but run {v[2][:8]}'s {v[3]} (content {v[4][:12]}) in "
                "the bundle: each store numbered its own versions"
            )
    by_alias: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for e in rows["alias_events"]:
        by_alias.setdefault((e[0], e[1]), []).append(e)
    new_events = []
    for (name, alias), theirs in by_alias.items():
        ours = c.execute(
            _EVENT_SQL + " WHERE m.name = ? AND e.alias = ? ORDER BY e.id", [name, alias]
        ).fetchall()
        ours = [tuple(e) for e in ours]
        if ours[: len(theirs)] == theirs[: len(ours)]:
            new_events += theirs[len(ours) :]
        else:
            raise _refuse(
                f"alias {alias!r} of model {name!r}: the bundle's history does not continue "
                "the one here (each side moved it, or the bundle carries only the runs of "
                "some versions it pointed at: export the runs of all of them)"
            )
    return {"models": new_models, "versions": new_versions, "alias_events": new_events}


def import_models(
    store: Store, rows: dict[str, list[tuple[Any, ...]]], *, dry_run: bool = False
) -> int:
    """Add what the store lacks of checked registry rows (:func:`check_models`) in one
    transaction, after the runs they come from; returns how many rows it adds. A conflict
    raises :class:`BundleError` with nothing written."""
    if dry_run:
        plan = store.file.read(lambda c: _plan(c, rows))
        return sum(map(len, plan.values()))

    def tx(c: sqlite3.Connection) -> int:
        plan = _plan(c, rows)
        model = "(SELECT id FROM registered_models WHERE name = ?)"
        c.executemany(
            "INSERT INTO registered_models (name, description, created_at) VALUES (?, ?, ?)",
            plan["models"],
        )
        c.executemany(
            f"INSERT INTO model_versions ({', '.join(VERSION)}) "
            f"VALUES ({model}, {', '.join('?' * (len(VERSION) - 1))})",
            plan["versions"],
        )
        c.executemany(
            f"INSERT INTO alias_events ({', '.join(EVENT)}) "
            f"VALUES ({model}, {', '.join('?' * (len(EVENT) - 1))})",
            plan["alias_events"],
        )
        return sum(map(len, plan.values()))

    return int(store.file.write(tx))
