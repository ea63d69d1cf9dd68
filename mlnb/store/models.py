"""The model registry's rows: registered models, their versions (numbered per name) and
alias events (append-only). Functions over the database (``StoreFile``); ``mlnb.registry``
calls them.

The current target of an alias is its newest event, so moving an alias and recording who,
when and why are one insert in one ``BEGIN IMMEDIATE`` transaction, and "which version did
``champion`` point at on 3 March" is the newest event before that time. A move may carry
the verdict that allowed it (rows of ``checks``) and a compare-and-set on the alias's
current target (``expect``): both are part of the same transaction, so a promotion is
never recorded without its verdict, nor decided against a target that moved meanwhile.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Final

from mlnb.errors import AliasMovedError, ModelNotFoundError, RunNotFoundError
from mlnb.records import AliasEvent, CheckRecord, ModelVersion
from mlnb.store.checks import check_batch, insert_checks
from mlnb.store.database import StoreFile
from mlnb.store.provenance import json_or_none
from mlnb.store.runs import writable_run


class _Any:
    """``expect`` not given: move the alias whatever it points at."""


ANY: Final = _Any()

_VERSION_COLUMNS = (
    "m.name, v.version, v.run_id, v.artifact_path, v.artifact_hash, v.size, v.format, "
    "v.flavor, v.signature, v.description, v.user, v.created_at"
)
_EVENT_COLUMNS = (
    "m.name, e.alias, e.version, e.previous_version, e.user, e.host, e.reason, "
    "e.check_batch, e.created_at, e.id"
)


def _version(row: Sequence[Any], aliases: Sequence[str] = ()) -> ModelVersion:
    fields = list(row)
    fields[8] = json_or_none(fields[8])
    fields.append(tuple(sorted(aliases)))
    return ModelVersion(*fields)


def _event(row: Sequence[Any]) -> AliasEvent:
    return AliasEvent(*row)


def model_id(conn: sqlite3.Connection, name: str) -> int:
    """Inside a transaction: the row key of model ``name``, else ``ModelNotFoundError``
    naming the close names."""
    row = conn.execute("SELECT id FROM registered_models WHERE name = ?", [name]).fetchone()
    if row is None:
        names = [r[0] for r in conn.execute("SELECT name FROM registered_models ORDER BY name")]
        raise ModelNotFoundError(f"no registered model named {name!r}{_suggest(name, names)}")
    return int(row[0])


def _suggest(word: str, choices: Sequence[str], what: str = "models") -> str:
    import difflib

    if not choices:
        return " (the store has no registered models yet: mlnb.register_model creates one)"
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    if close:
        return f"; did you mean {' or '.join(repr(c) for c in close)}?"
    shown = ", ".join(choices[:10]) + (" …" if len(choices) > 10 else "")
    return f"; {what}: {shown}"


def current_aliases(conn: sqlite3.Connection, model: int) -> dict[str, int]:
    """Inside a read: each alias of a model and the version it points at now."""
    rows = conn.execute(
        "SELECT alias, version FROM alias_events e WHERE model = ? AND id = "
        "(SELECT max(id) FROM alias_events WHERE model = e.model AND alias = e.alias)",
        [model],
    )
    return {alias: int(version) for alias, version in rows if version is not None}


def _alias_target(conn: sqlite3.Connection, model: int, alias: str) -> int | None:
    row = conn.execute(
        "SELECT version FROM alias_events WHERE model = ? AND alias = ? ORDER BY id DESC LIMIT 1",
        [model, alias],
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def create_version(
    db: StoreFile,
    name: str,
    *,
    run_id: str,
    file_name: str,
    artifact_hash: str,
    size: int,
    format: str,
    flavor: str | None,
    signature: dict[str, Any] | None,
    description: str | None,
    user: str | None,
) -> ModelVersion:
    """Register a new version of ``name`` (the model is created on its first version):
    the next number, and the model file attached to its run as the artifact
    ``models/NAME/vN/FILE`` (kind ``model``), in one transaction. The file's bytes must
    already be in the content folder under ``artifact_hash``."""
    now = time.time()
    sig = None if signature is None else json.dumps(signature, sort_keys=True, default=str)

    def tx(conn: sqlite3.Connection) -> ModelVersion:
        rowid = writable_run(db, conn, run_id, check_state=False)
        conn.execute(
            "INSERT INTO registered_models (name, created_at) VALUES (?, ?) "
            "ON CONFLICT (name) DO NOTHING",
            [name, now],
        )
        model = model_id(conn, name)
        (number,) = conn.execute(
            "SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE model = ?", [model]
        ).fetchone()
        path = f"models/{name}/v{number}/{file_name}"
        conn.execute(
            "INSERT INTO model_versions (model, version, run_id, artifact_path, artifact_hash, "
            "size, format, flavor, signature, description, user, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [model, number, run_id, path, artifact_hash, size, format, flavor, sig,
             description, user, now],
        )  # fmt: skip
        conn.execute(
            "INSERT OR REPLACE INTO artifacts (run, path, hash, size, kind, created_at) "
            "VALUES (?, ?, ?, ?, 'model', ?)",
            [rowid, path, artifact_hash, size, now],
        )
        return ModelVersion(name, int(number), run_id, path, artifact_hash, size, format, flavor,
                            signature, description, user, now)  # fmt: skip

    return db.write(tx)


def get_version(db: StoreFile, name: str, version: int | None = None) -> ModelVersion:
    """Version ``version`` of ``name`` (None: the newest), with its current aliases."""

    def read(c: sqlite3.Connection) -> ModelVersion:
        model = model_id(c, name)
        number = version
        if number is None:
            number = c.execute(
                "SELECT max(version) FROM model_versions WHERE model = ?", [model]
            ).fetchone()[0]
        row = c.execute(
            f"SELECT {_VERSION_COLUMNS} FROM model_versions v "
            "JOIN registered_models m ON m.id = v.model WHERE v.model = ? AND v.version = ?",
            [model, number],
        ).fetchone()
        if row is None:
            have = [r[0] for r in c.execute(
                "SELECT version FROM model_versions WHERE model = ? ORDER BY version", [model]
            )]  # fmt: skip
            span = f"versions 1 to {have[-1]}" if have else "no versions"
            raise ModelNotFoundError(f"model {name!r} has no version {version} (it has {span})")
        tags = [a for a, v in current_aliases(c, model).items() if v == row[1]]
        return _version(row, tags)

    return db.read(read)


def resolve_alias(db: StoreFile, name: str, alias: str, *, at: float | None = None) -> int:
    """The version ``name@alias`` points at (now, or at Unix time ``at``), else
    ``ModelNotFoundError`` naming the aliases there are."""

    def read(c: sqlite3.Connection) -> int:
        model = model_id(c, name)
        row = c.execute(
            "SELECT version FROM alias_events WHERE model = ? AND alias = ?"
            + (" AND created_at <= ?" if at is not None else "")
            + " ORDER BY id DESC LIMIT 1",
            [model, alias, at] if at is not None else [model, alias],
        ).fetchone()
        if row is not None and row[0] is not None:
            return int(row[0])
        if at is not None and row is None and _alias_target(c, model, alias) is not None:
            from mlnb.records import iso

            raise ModelNotFoundError(
                f"{name}@{alias} did not exist yet at {iso(at)}; `mlnb model history "
                f"{name}` shows when it was first set"
            )
        aliases = sorted(current_aliases(c, model))
        if row is not None:
            raise ModelNotFoundError(f"alias {alias!r} of {name!r} was removed")
        raise ModelNotFoundError(
            f"model {name!r} has no alias {alias!r}"
            + (_suggest(alias, aliases, "aliases") if aliases else " (it has no aliases yet)")
        )

    return db.read(read)


def list_models(db: StoreFile) -> list[dict[str, Any]]:
    """Every registered model: name, number of versions, newest version, aliases, times."""

    def read(c: sqlite3.Connection) -> list[dict[str, Any]]:
        out = []
        for model, name, created, n, newest, updated in c.execute(
            "SELECT m.id, m.name, m.created_at, count(v.version), max(v.version), "
            "max(v.created_at) FROM registered_models m "
            "LEFT JOIN model_versions v ON v.model = m.id GROUP BY m.id ORDER BY m.name"
        ):
            out.append({"name": name, "versions": n, "latest_version": newest,
                        "aliases": current_aliases(c, model), "created_at": created,
                        "updated_at": updated})  # fmt: skip
        return out

    return db.read(read)


def list_versions(db: StoreFile, name: str) -> list[ModelVersion]:
    """Every version of ``name``, newest first, with its current aliases."""

    def read(c: sqlite3.Connection) -> list[ModelVersion]:
        model = model_id(c, name)
        by_version: dict[int, list[str]] = {}
        for alias, version in current_aliases(c, model).items():
            by_version.setdefault(version, []).append(alias)
        rows = c.execute(
            f"SELECT {_VERSION_COLUMNS} FROM model_versions v JOIN registered_models m "
            "ON m.id = v.model WHERE v.model = ? ORDER BY v.version DESC",
            [model],
        )
        return [_version(row, by_version.get(row[1], ())) for row in rows]

    return db.read(read)


def versions_of_run(db: StoreFile, run_id: str) -> list[ModelVersion]:
    """The registered versions a run produced (``mlnb show``)."""

    def read(c: sqlite3.Connection) -> list[ModelVersion]:
        rows = c.execute(
            f"SELECT {_VERSION_COLUMNS}, v.model FROM model_versions v JOIN registered_models m "
            "ON m.id = v.model WHERE v.run_id = ? ORDER BY m.name, v.version",
            [run_id],
        ).fetchall()
        out = []
        for row in rows:
            tags = [a for a, v in current_aliases(c, row[-1]).items() if v == row[1]]
            out.append(_version(row[:-1], tags))
        return out

    return db.read(read)


def move_alias(
    db: StoreFile,
    name: str,
    alias: str,
    version: int | None,
    *,
    expect: int | _Any | None = ANY,
    reason: str | None,
    user: str | None,
    host: str | None,
    checks: tuple[str, Sequence[CheckRecord]] | None = None,
) -> AliasEvent:
    """Point ``name@alias`` at ``version`` (None: remove the alias) by appending an event
    (previous version, who, where, when, why). With ``expect``, only if the alias still
    points at ``expect`` (None: not set), else ``AliasMovedError`` and nothing changes.
    ``checks`` — ``(run_id, records)`` — are the verdict that allowed the move, written in
    the same transaction (their batch is on the event)."""
    batch = check_batch(checks[1]) if checks else None
    now = time.time()

    def tx(conn: sqlite3.Connection) -> AliasEvent:
        model = model_id(conn, name)
        if version is not None:
            found = conn.execute(
                "SELECT 1 FROM model_versions WHERE model = ? AND version = ?", [model, version]
            ).fetchone()
            if found is None:
                (top,) = conn.execute(
                    "SELECT max(version) FROM model_versions WHERE model = ?", [model]
                ).fetchone()
                raise ModelNotFoundError(
                    f"model {name!r} has no version {version} (it has versions 1 to {top})"
                )
        previous = _alias_target(conn, model, alias)
        if not isinstance(expect, _Any) and previous != expect:
            was = "unset" if expect is None else f"version {expect}"
            now_at = "unset" if previous is None else f"version {previous}"
            raise AliasMovedError(
                f"{name}@{alias} moved from {was} to {now_at} while this change was being "
                "decided; nothing changed. Run it again (a promotion gates against the new "
                "target)"
            )
        if checks:
            insert_checks(db, conn, checks[0], checks[1], batch or "")
        cur = conn.execute(
            "INSERT INTO alias_events (model, alias, version, previous_version, user, host, "
            "reason, check_batch, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [model, alias, version, previous, user, host, reason, batch, now],
        )
        return AliasEvent(name, alias, version, previous, user, host, reason, batch, now,
                          int(cur.lastrowid or 0))  # fmt: skip

    return db.write(tx)


def alias_history(
    db: StoreFile, name: str, *, alias: str | None = None, at: float | None = None
) -> list[AliasEvent]:
    """The events of ``name``'s aliases (or of one), oldest first; with ``at``, only those
    up to that Unix time."""

    def read(c: sqlite3.Connection) -> list[AliasEvent]:
        model = model_id(c, name)
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM alias_events e JOIN registered_models m "
            "ON m.id = e.model WHERE e.model = ?"
        )
        args: list[Any] = [model]
        if alias is not None:
            sql += " AND e.alias = ?"
            args.append(alias)
        if at is not None:
            sql += " AND e.created_at <= ?"
            args.append(at)
        return [_event(row) for row in c.execute(sql + " ORDER BY e.id", args)]

    return db.read(read)


def run_exists(db: StoreFile, run_id: str) -> bool:
    """Whether the store still holds the run (a version's run may have been purged)."""
    try:
        db.read(lambda c: writable_run(db, c, run_id, check_state=False))
    except RunNotFoundError:
        return False
    return True


def model_hashes(conn: sqlite3.Connection) -> set[str]:
    """Inside a read: the hashes of every registered model file (kept by garbage
    collection even when the version's run was purged)."""
    return {r[0] for r in conn.execute("SELECT DISTINCT artifact_hash FROM model_versions")}
