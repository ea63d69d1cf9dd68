"""Move runs between stores: :func:`export_run` packs everything one run holds into a
plain bundle (a dict of JSON-able values plus the artifacts' bytes), :func:`import_run`
writes a bundle into another store.

Why: a Dask worker may not see the user's store file, so it runs the notebook into a
temporary store of its own and ships the finished run back as a bundle (docs/jobs.md).
The same two functions merge any store into another: run ids are globally unique.

What a bundle holds, table by table (mlnb/migrations.py): the ``runs`` row (with its
experiment's name), ``params``, ``metrics`` (every step with its timestamp),
``latest_metrics``, ``tags``, ``artifacts`` and their contents (the executed notebook, the
git diff…), ``git_states``, the run's ``environments`` row, ``run_datasets`` links with
their ``datasets`` rows, and ``cells`` (lineage). Not the ``file_hashes`` cache: it
belongs to a machine's files, not to a run.

Importing is idempotent and merges: rows are upserted by their keys (a run by ``run_id``,
a metric point by key and step, a tag by key…), so importing the same bundle twice
changes nothing and rows the target has that the bundle lacks are kept. The run's own
attributes (status, times, host…) come from the bundle; a param with a different value
in the target is refused (:class:`~mlnb.errors.ParamConflictError`), nothing written.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from mlnb import hashing, migrations
from mlnb.errors import InvalidInputError, ParamConflictError, RunNotFoundError
from mlnb.store import Store

__all__ = ["BUNDLE_FORMAT", "export_run", "import_run"]

BUNDLE_FORMAT = 1

_RUN_COLUMNS = (
    "run_id", "name", "status", "parent_run_id", "start_time", "end_time", "heartbeat",
    "host", "pid", "user", "source", "deleted_at", "environment_hash", "notebook",
    "linearity", "linearity_detail",
)  # fmt: skip
# child tables keyed on runs.id: (table, columns besides `run`, primary key besides `run`)
_CHILD_TABLES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("params", ("key", "value", "type", "value_num"), ("key",)),
    ("metrics", ("key", "step", "value", "timestamp"), ("key", "step")),
    ("latest_metrics", ("key", "step", "value", "timestamp"), ("key",)),
    ("tags", ("key", "value"), ("key",)),
    ("artifacts", ("path", "hash", "size", "kind", "created_at"), ("path",)),
    ("git_states", ("root", "commit_sha", "branch", "remote", "dirty", "diff_hash",
                    "diff_bytes", "diff_truncated", "untracked", "untracked_count"), ()),
    ("run_datasets", ("name", "role", "hash", "logged_at"), ("name", "role")),
    ("cells", ("seq", "execution_count", "source_hash", "source", "started", "ended",
               "error"), ("seq",)),
)  # fmt: skip
_ENV_COLUMNS = ("hash", "python", "platform", "packages", "data", "created_at")
_DATASET_COLUMNS = ("hash", "kind", "rows", "columns", "size_bytes", "schema", "profile",
                    "sampled", "details", "created_at")  # fmt: skip


def _rows(c: sqlite3.Connection, sql: str, args: list[Any], cols: tuple[str, ...]) -> list[Any]:
    return [dict(zip(cols, row, strict=True)) for row in c.execute(sql, args)]


def export_run(store: Store, ref: str) -> dict[str, Any]:
    """Everything the run ``ref`` (id, unique prefix or name) holds in ``store``, as a
    bundle for :func:`import_run`: a dict of plain values; ``bundle["blobs"]`` maps each
    artifact's hash to its bytes."""
    run_id = store.resolve_run_id(ref)

    def read(c: sqlite3.Connection) -> dict[str, Any]:
        cols = ", ".join(f"r.{col}" for col in _RUN_COLUMNS)
        row = c.execute(
            f"SELECT r.id, e.name, {cols} FROM runs r JOIN experiments e "
            "ON e.id = r.experiment_id WHERE r.run_id = ?",
            [run_id],
        ).fetchone()
        rid = row[0]
        bundle: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "schema": store.file.applied_migrations(c),
            "experiment": row[1],
            "run": dict(zip(_RUN_COLUMNS, row[2:], strict=True)),
        }
        for table, columns, _ in _CHILD_TABLES:
            bundle[table] = _rows(
                c, f"SELECT {', '.join(columns)} FROM {table} WHERE run = ?", [rid], columns
            )
        bundle["environments"] = _rows(
            c,
            f"SELECT {', '.join(_ENV_COLUMNS)} FROM environments WHERE hash = ?",
            [bundle["run"]["environment_hash"]],
            _ENV_COLUMNS,
        )
        bundle["datasets"] = _rows(
            c,
            f"SELECT {', '.join(f'd.{x}' for x in _DATASET_COLUMNS)} FROM datasets d "
            "WHERE d.hash IN (SELECT hash FROM run_datasets WHERE run = ?)",
            [rid],
            _DATASET_COLUMNS,
        )
        return bundle

    bundle = store.read(read)
    blobs: dict[str, bytes] = {}
    for art in bundle["artifacts"]:
        digest = art["hash"]
        if digest not in blobs:
            path = store.artifact_file(digest)
            if not path.is_file():
                raise RunNotFoundError(
                    f"artifact {art['path']!r} of run {run_id[:8]} is missing from "
                    f"{store.artifacts_dir} (content {digest[:12]}); run `mlnb gc` elsewhere?"
                )
            blobs[digest] = path.read_bytes()
    bundle["blobs"] = blobs
    return bundle


def _check_bundle(bundle: Any) -> None:
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        got = bundle.get("format") if isinstance(bundle, dict) else type(bundle).__name__
        raise InvalidInputError(f"not an mlnb run bundle of format {BUNDLE_FORMAT} (got {got!r})")
    known = migrations.known_names()
    newer = [name for name in bundle.get("schema") or [] if name not in known]
    if newer:
        raise InvalidInputError(
            f"the bundle comes from a newer mlnb (schema {newer[-1]!r}); upgrade mlnb here"
        )
    for digest, data in bundle.get("blobs", {}).items():
        if hashing.hash_bytes(data) != digest:
            raise InvalidInputError(f"artifact content {digest[:12]} of the bundle is damaged")


def import_run(store: Store, bundle: dict[str, Any]) -> str:
    """Write a bundle made by :func:`export_run` into ``store`` (one transaction, after
    the artifacts' contents are in place); returns the run id. Idempotent: importing the
    same bundle again changes nothing."""
    _check_bundle(bundle)
    run = bundle["run"]
    run_id = run["run_id"]
    for digest, data in bundle.get("blobs", {}).items():
        if not store.artifact_file(digest).is_file():
            store.contents.put(data)  # content-addressed: the same bytes land once

    def tx(c: sqlite3.Connection) -> None:
        c.execute(
            "INSERT OR IGNORE INTO experiments (name, created_at) VALUES (?, ?)",
            [bundle["experiment"], run["start_time"]],
        )
        exp_id = c.execute(
            "SELECT id FROM experiments WHERE name = ?", [bundle["experiment"]]
        ).fetchone()[0]
        for env in bundle["environments"]:
            c.execute(
                f"INSERT OR IGNORE INTO environments ({', '.join(_ENV_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_ENV_COLUMNS))})",
                [env[k] for k in _ENV_COLUMNS],
            )
        cols = ("experiment_id", *_RUN_COLUMNS)
        updates = ", ".join(
            f"{col} = coalesce(excluded.{col}, runs.{col})" if col == "parent_run_id"
            else f"{col} = excluded.{col}"
            for col in cols if col != "run_id"
        )  # fmt: skip
        c.execute(
            f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT (run_id) DO UPDATE SET {updates}",
            [exp_id, *(run[k] for k in _RUN_COLUMNS)],
        )
        rid = c.execute("SELECT id FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]
        for p in bundle["params"]:
            old = c.execute(
                "SELECT value, type FROM params WHERE run = ? AND key = ?", [rid, p["key"]]
            ).fetchone()
            if old is not None and tuple(old) != (p["value"], p["type"]):
                raise ParamConflictError(
                    f"param {p['key']!r} of run {run_id[:8]} is {old[0]} ({old[1]}) in "
                    f"{store.location} but {p['value']} ({p['type']}) in the bundle; "
                    "params are immutable, nothing was imported"
                )
        for d in bundle["datasets"]:
            c.execute(
                f"INSERT INTO datasets ({', '.join(_DATASET_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_DATASET_COLUMNS))}) ON CONFLICT (hash) DO "
                "UPDATE SET profile = coalesce(datasets.profile, excluded.profile)",
                [d[k] for k in _DATASET_COLUMNS],
            )
        for table, columns, key in _CHILD_TABLES:
            rows = bundle[table]
            if not rows:
                continue
            names = ("run", *columns)
            conflict = ", ".join(("run", *key))
            sets = ", ".join(f"{col} = excluded.{col}" for col in columns if col not in key)
            action = f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
            c.executemany(
                f"INSERT INTO {table} ({', '.join(names)}) "
                f"VALUES ({', '.join('?' * len(names))}) ON CONFLICT ({conflict}) {action}",
                [[rid, *(row[col] for col in columns)] for row in rows],
            )

    store.write(tx)
    return str(run_id)
