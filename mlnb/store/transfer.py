"""Move runs between stores: :func:`export_run` packs everything one run holds into a
plain bundle (a dict of JSON-able values plus the artifacts' bytes), :func:`import_run`
writes a bundle into another store.

Why: a Dask worker may not see the user's store file, so it runs the notebook into a
temporary store of its own and ships the finished run back as a bundle (docs/jobs.md).
The same two functions merge any store into another: run ids are globally unique.

What a bundle holds is read from the schema (mlnb/store/migrations.py), not listed here, so a
table added later travels without anyone remembering it: the ``runs`` row (every column
but the store-local ``id``; the experiment by name), then, for every table with a ``run``
column that refers to ``runs`` (``PRAGMA foreign_key_list``), the run's rows without their
store-local columns (``run``, a rowid ``id``); the rows of other tables those refer to by
foreign key (``environments``, ``datasets``); and the artifacts' bytes in ``blobs``, by
hash. ``latest_metrics`` is not carried: it is recomputed from the points. The
``file_hashes`` cache refers to no run (it belongs to a machine's files).

Importing trusts nothing. The whole bundle is checked first, with no database write and no
file: the envelope (format, schema names), every row against the table's columns (SQL type,
NOT NULL, 64-bit integers, UTF-8 text) and the formats and bounds declared in ``_RULES``
(run ids, SHA-256 hashes, artifact names, steps, sizes, JSON text), then across rows (one
row per key, blobs that hash to their name and that rows refer to, sizes equal to the
blob's, no run its own parent). Then, in one transaction, the bundle is compared with what
the store holds; only after that are the blobs written and the rows inserted. An existing
run only gains: a row with the key of one the store has must be identical (a metric point
by key and step, a tag by key, a param by key…), other rows are added; its attributes must
match the bundle's, except for a ``queued`` run, a placeholder that the bundle completes
(a sweep's child). A deletion is never undone nor added. Any difference is refused
(:class:`~mlnb.errors.BundleError`, :class:`~mlnb.errors.ParamConflictError` for a param)
naming it, and nothing is written. Importing the same bundle again changes nothing.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, NoReturn

from mlnb.errors import BundleError, InvalidInputError, ParamConflictError, RunNotFoundError
from mlnb.records import STATUSES
from mlnb.store import hashing, migrations
from mlnb.store import inputs as validation
from mlnb.store.checks import CHECK_KINDS
from mlnb.store.core import Store
from mlnb.store.metrics import LATEST_REFRESH

__all__ = [
    "BUNDLE_FORMAT",
    "blank_bundle",
    "check_import",
    "export_rows",
    "export_run",
    "import_run",
]

BUNDLE_FORMAT = 2  # 2: tables read from the schema (checks travel), latest_metrics derived
RUN_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex, as create_run makes them
MAX_TEXT = 64 * 2**20  # characters in one text value
INT64 = (-(2**63), 2**63 - 1)
DERIVED = ("latest_metrics",)  # recomputed from the metrics on import, never carried
BLOB_REFS = ("artifacts.hash", "git_states.diff_hash")  # columns that name a blob
_ENVELOPE = ("format", "schema", "experiment", "run", "blobs")
_SQL_TYPES = ("INTEGER", "REAL", "TEXT")


def _refuse(message: str) -> NoReturn:
    raise BundleError(f"{message}; nothing was imported")


# -- the layout, read from the schema -------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """What a bundle carries of one table: ``columns`` with their SQL type and NOT NULL,
    and the ``key`` that identifies a row (within the run for run-linked tables); ``None``
    when the table has no natural key (a rowid ``id``), so the whole row is the key."""

    name: str
    columns: tuple[str, ...]
    types: tuple[tuple[str, bool], ...]
    key: tuple[str, ...] | None


@dataclass(frozen=True)
class _Layout:
    run: _Table  # runs, without id and experiment_id
    linked: tuple[_Table, ...]  # tables with a `run` column referring to runs (not DERIVED)
    shared: tuple[_Table, ...]  # tables those refer to by foreign key (environments…)
    refs: tuple[tuple[str, str, str], ...]  # (table.column, shared table, its column)

    def table(self, name: str) -> _Table:
        return next(t for t in (self.run, *self.linked, *self.shared) if t.name == name)


def _table(c: sqlite3.Connection, name: str, skip: Iterable[str] = ()) -> _Table:
    info = list(c.execute(f"PRAGMA table_info({name})"))  # cid, name, type, notnull, dflt, pk
    pk = [row for row in sorted(info, key=lambda r: r[5]) if row[5]]
    rowid = len(pk) == 1 and pk[0][1] != "run" and pk[0][2] == "INTEGER"  # an alias of rowid
    drop = {"run", *skip} | ({pk[0][1]} if rowid else set())
    cols = [row for row in info if row[1] not in drop]
    for row in cols:
        if row[2] not in _SQL_TYPES:  # a migration used a type this module cannot check
            raise BundleError(
                f"column {name}.{row[1]} has type {row[2]!r}; update mlnb.store.transfer"
            )
    key = None if rowid else tuple(row[1] for row in pk if row[1] != "run")
    return _Table(name, tuple(r[1] for r in cols), tuple((r[2], bool(r[3])) for r in cols), key)


def _layout(c: sqlite3.Connection) -> _Layout:
    names = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    fks = {name: list(c.execute(f"PRAGMA foreign_key_list({name})")) for name in names}
    linked = sorted(
        name
        for name in names
        if name not in DERIVED and any(fk[2] == "runs" and fk[3] == "run" for fk in fks[name])
    )
    refs = sorted(
        (f"{source}.{fk[3]}", fk[2], fk[4])
        for source in ("runs", *linked)
        for fk in fks[source]
        if fk[2] not in ("runs", "experiments")
    )
    return _Layout(
        run=_table(c, "runs", skip=("id", "experiment_id")),
        linked=tuple(_table(c, name) for name in linked),
        shared=tuple(_table(c, name) for name in sorted({ref[1] for ref in refs})),
        refs=tuple(refs),
    )


# -- export ---------------------------------------------------------------------------------


def _select(c: sqlite3.Connection, table: _Table, where: str, args: list[Any]) -> list[Any]:
    sql = f"SELECT {', '.join(table.columns)} FROM {table.name} WHERE {where}"
    return [dict(zip(table.columns, row, strict=True)) for row in c.execute(sql, args)]


def _of_run(ref: str) -> str:
    """SQL for the non-NULL values of ``table.column`` in one run's rows (bound: runs.id)."""
    table, col = ref.split(".")
    owner = "id" if table == "runs" else "run"
    return f"SELECT {col} FROM {table} WHERE {owner} = ? AND {col} IS NOT NULL"


def blank_bundle(store: Store, run_id: str, experiment: str) -> dict[str, Any]:
    """A bundle of a run that holds nothing yet, in the layout ``store``'s schema has: every
    column of the run row None but ``run_id``, every table empty. Callers fill it from
    elsewhere (an MLflow run, mlnb.interop) and :func:`import_run` checks it whole."""
    layout = store.file.read(_layout)
    bundle: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "schema": migrations.known_names(),
        "experiment": experiment,
        "run": {**dict.fromkeys(layout.run.columns), "run_id": run_id},
        "blobs": {},
    }
    for table in (*layout.linked, *layout.shared):
        bundle[table.name] = []
    return bundle


def export_run(store: Store, ref: str) -> dict[str, Any]:
    """Everything the run ``ref`` (id, unique prefix or name) holds in ``store``, as a
    bundle for :func:`import_run`: a dict of plain values; ``bundle["blobs"]`` maps each
    artifact's hash to its bytes."""
    bundle, hashes = export_rows(store, ref)
    bundle["blobs"] = {digest: blob_file(store, digest).read_bytes() for digest in hashes}
    return bundle


def blob_file(store: Store, digest: str) -> Path:
    """The file of an artifact's content that an exported run refers to; refuses one that
    is missing (collected by ``mlnb gc`` elsewhere) rather than export a run without it."""
    path = store.artifact_file(digest)  # refuses a hash that is not a digest
    if not path.is_file():
        raise RunNotFoundError(
            f"artifact content {digest[:12]} is missing from {store.artifacts_dir}; "
            "was `mlnb gc` run elsewhere on this store?"
        )
    return path


def export_rows(store: Store, ref: str) -> tuple[dict[str, Any], list[str]]:
    """The bundle of run ``ref`` without its ``blobs``, and the hashes of the artifact
    contents it refers to (a bundle file copies those files in chunks, never whole)."""
    run_id = store.resolve_run_id(ref)

    def read(c: sqlite3.Connection) -> tuple[dict[str, Any], list[str]]:
        layout = _layout(c)
        cols = ", ".join(f"r.{col}" for col in layout.run.columns)
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
            "run": dict(zip(layout.run.columns, row[2:], strict=True)),
        }
        for table in layout.linked:
            bundle[table.name] = _select(c, table, "run = ?", [rid])
        for table in layout.shared:
            sources = [source for source, target, _ in layout.refs if target == table.name]
            where = (
                f"{_ref_column(layout, table.name)} IN ({' UNION '.join(map(_of_run, sources))})"
            )
            bundle[table.name] = _select(c, table, where, [rid] * len(sources))
        hashes = c.execute(" UNION ".join(map(_of_run, BLOB_REFS)), [rid] * len(BLOB_REFS))
        return bundle, sorted(r[0] for r in hashes)

    return store.file.read(read)


def _ref_column(layout: _Layout, shared: str) -> str:
    """The column of a shared table that other rows refer to (its key)."""
    return next(col for _, table, col in layout.refs if table == shared)


# -- checking a bundle (pure: no database, no file) ----------------------------------------


def _is_key(where: str, value: Any) -> None:
    try:
        validation.check_key(value, where)
    except InvalidInputError as exc:
        _refuse(str(exc))


def _is_run_id(where: str, value: Any) -> None:
    if not RUN_ID.fullmatch(value):
        _refuse(f"{where} {value[:80]!r} is not a run id (32 lowercase hex digits)")


def _is_digest(where: str, value: Any) -> None:
    if not hashing.is_digest(value):
        _refuse(f"{where} {value[:80]!r} is not a SHA-256 hex digest")


def _is_artifact_name(where: str, value: Any) -> None:
    try:
        normal = validation.artifact_name(value)
    except InvalidInputError as exc:
        _refuse(f"{where}: {exc}")
    if normal != value:
        _refuse(f"{where} {value!r} is not spelled as mlnb stores it ({normal!r})")


def _is_step(where: str, value: Any) -> None:
    if not 0 <= value <= validation.MAX_STEP:
        _refuse(f"{where} must be between 0 and 2**63-1, got {value}")


def _is_size(where: str, value: Any) -> None:
    if value < 0:
        _refuse(f"{where} must not be negative, got {value}")


def _is_time(where: str, value: Any) -> None:
    if not math.isfinite(value):
        _refuse(f"{where} must be a finite time, got {value}")


def _is_json(where: str, value: Any) -> None:
    try:
        json.loads(value)
    except ValueError:
        _refuse(f"{where} is not JSON text")


def _is_tag_value(where: str, value: Any) -> None:
    if len(value) > validation.MAX_TAG_LENGTH:
        _refuse(f"{where} is longer than {validation.MAX_TAG_LENGTH} characters")


def _one_of(*allowed: Any) -> Callable[[str, Any], None]:
    def check(where: str, value: Any) -> None:
        if value not in allowed:
            _refuse(f"{where} must be one of {', '.join(map(repr, allowed))}; got {value!r:.80}")

    return check


# Formats and bounds beyond the SQL type, by "table.column" (checked on non-NULL values).
# A NOT NULL REAL is a time and must be finite; a nullable one may be ±inf (metric values).
_RULES: dict[str, Callable[[str, Any], None]] = {
    "runs.run_id": _is_run_id,
    "runs.status": _one_of(*STATUSES),
    "runs.parent_run_id": _is_run_id,
    "runs.end_time": _is_time,
    "runs.heartbeat": _is_time,
    "runs.deleted_at": _is_time,
    "runs.pid": _is_size,
    "runs.environment_hash": _is_key,
    "runs.linearity_detail": _is_json,
    "params.key": _is_key,
    "metrics.key": _is_key,
    "metrics.step": _is_step,
    "tags.key": _is_key,
    "tags.value": _is_tag_value,
    "artifacts.path": _is_artifact_name,
    "artifacts.hash": _is_digest,
    "artifacts.size": _is_size,
    "artifacts.kind": _is_key,
    "git_states.dirty": _one_of(0, 1),
    "git_states.diff_hash": _is_digest,
    "git_states.diff_bytes": _is_size,
    "git_states.untracked": _is_json,
    "git_states.untracked_count": _is_size,
    "run_datasets.name": _is_key,
    "run_datasets.role": _one_of("input", "output"),
    "run_datasets.hash": _is_key,
    "cells.seq": _is_size,
    "cells.ended": _is_time,
    "checks.kind": _one_of(*CHECK_KINDS),
    "checks.passed": _one_of(0, 1),
    "checks.direction": _one_of("higher", "lower"),
    "checks.baseline_run_id": _is_run_id,
    "checks.details": _is_json,
    "environments.hash": _is_key,
    "environments.data": _is_json,
    "datasets.hash": _is_key,
    "datasets.rows": _is_size,
    "datasets.columns": _is_size,
    "datasets.size_bytes": _is_size,
    "datasets.schema": _is_json,
    "datasets.profile": _is_json,
    "datasets.details": _is_json,
}


def _value(where: str, sqltype: str, notnull: bool, value: Any) -> Any:
    """One value checked against its column's SQL type; returns it as it will be stored (a
    REAL as a float, NaN in a nullable REAL as NULL, which is how SQLite stores NaN)."""
    if value is None:
        if notnull:
            _refuse(f"{where} must not be null")
        return None
    if sqltype == "INTEGER":
        if type(value) is not int:
            _refuse(f"{where} must be an integer, got {type(value).__name__}: {value!r:.80}")
        if not INT64[0] <= value <= INT64[1]:
            _refuse(f"{where} is out of the 64-bit integer range")
    elif sqltype == "REAL":
        if type(value) not in (int, float):
            _refuse(f"{where} must be a number, got {type(value).__name__}: {value!r:.80}")
        try:
            value = float(value)
        except OverflowError:
            _refuse(f"{where} is too large for a float")
        if math.isnan(value) and not notnull:
            return None
        if not math.isfinite(value) and notnull:
            _refuse(f"{where} must be a finite number, got {value}")
    else:
        if type(value) is not str:
            _refuse(f"{where} must be text, got {type(value).__name__}: {value!r:.80}")
        if len(value) > MAX_TEXT:
            _refuse(f"{where} is longer than {MAX_TEXT} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            _refuse(f"{where} is not valid Unicode text (a lone surrogate?)")
    return value


def _same_keys(where: str, got: dict[Any, Any], expected: Iterable[str]) -> None:
    """Refuse a dict whose keys are not exactly ``expected``, naming the first difference."""
    want = set(expected)
    if got.keys() != want:
        missing = sorted(want - got.keys())
        if missing:
            _refuse(f"{where} lacks {missing[0]!r}")
        _refuse(f"{where} has an unknown entry {sorted(map(str, got.keys() - want))[0]!r:.80}")


def _rows(table: _Table, rows: Any, label: str | None = None) -> list[tuple[Any, ...]]:
    """A table's list of row dicts checked (at most one row per key), as tuples in column
    order. Checked column by column, with C-speed screens (the types present, min and max,
    one encoding of all the text, each distinct value once against its rule), so 100,000
    metric points take a fraction of a second; a column that fails a screen is walked row
    by row with :func:`_value` to name the first bad value."""
    if not isinstance(rows, list):
        _refuse(f"{table.name} must be a list of rows, got {type(rows).__name__}")

    def where(i: int) -> str:
        return label or f"{table.name}[{i}]"

    try:  # dicts of the right size holding every column have exactly the columns
        if set(map(type, rows)) - {dict} or set(map(len, rows)) - {len(table.columns)}:
            raise KeyError
        columns = list(zip(*map(itemgetter(*table.columns), rows), strict=True))
    except KeyError:
        for i, row in enumerate(rows):
            if type(row) is not dict:
                _refuse(f"{where(i)} must be a dict, got {type(row).__name__}")
            _same_keys(where(i), row, table.columns)
        raise  # not reached: some row lacks a column or has one too many
    columns = columns or [()] * len(table.columns)
    for n, (col, (sqltype, notnull)) in enumerate(zip(table.columns, table.types, strict=True)):
        rule = _RULES.get(f"{table.name}.{col}")
        values = columns[n]
        if not _screen(values, sqltype, notnull):
            values = tuple(
                _value(f"{where(i)}.{col}", sqltype, notnull, v) for i, v in enumerate(values)
            )
            columns[n] = values
        if rule is not None:
            for v in set(values) - {None}:
                try:
                    rule(f"{table.name}.{col}", v)
                except BundleError:
                    rule(f"{where(values.index(v))}.{col}", v)  # again, naming the row
    out = list(zip(*columns, strict=True))
    if table.key == () and len(out) > 1:
        _refuse(f"{table.name} has {len(out)} rows; a run has at most one")
    if table.key:
        keys = list(map(_key_getter(table), out))
        if len(set(keys)) != len(keys):
            seen: set[tuple[Any, ...]] = set()
            for key in keys:
                if key in seen:
                    _refuse(f"{table.name} has two rows for {_describe(table, key)}")
                seen.add(key)
    return out


def _screen(values: tuple[Any, ...], sqltype: str, notnull: bool) -> bool:
    """Whether every value of a column is already as :func:`_value` would return it."""
    kinds = set(map(type, values))
    present = [v for v in values if v is not None] if type(None) in kinds else values
    if notnull and len(present) != len(values):
        return False
    kinds.discard(type(None))
    if not present:
        return True
    if sqltype == "INTEGER":
        return kinds == {int} and INT64[0] <= min(present) and max(present) <= INT64[1]
    if sqltype == "REAL":  # ints become floats, NaN becomes NULL, times are finite
        if kinds != {float}:
            return False
        return all(map(math.isfinite, present)) or (
            not notnull and not any(map(math.isnan, present))
        )
    if kinds != {str} or max(map(len, present)) > MAX_TEXT:
        return False
    try:
        "".join(present).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _key_getter(table: _Table) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A function from a row (a tuple in column order) to its key (a tuple)."""
    at = [table.columns.index(col) for col in table.key or ()]
    if len(at) > 1:
        return itemgetter(*at)
    return lambda row: tuple(row[i] for i in at)  # itemgetter gives no tuple for 0 or 1


def _describe(table: _Table, key: tuple[Any, ...]) -> str:
    if not table.key:
        return f"the run's {table.name} row"
    return " ".join(f"{col} {value!r:.80}" for col, value in zip(table.key, key, strict=True))


@dataclass
class _Plan:
    """A checked bundle, every value as it will be stored: rows as tuples in the column
    order of their ``_Table``."""

    experiment: str
    run: dict[str, Any]
    rows: dict[str, list[tuple[Any, ...]]]  # linked and shared tables
    blobs: dict[str, bytes]

    def values(self, layout: _Layout, ref: str) -> set[Any]:
        """Non-NULL values of ``table.column`` over the run's row or a table's rows."""
        name, col = ref.split(".")
        if name == "runs":
            return {self.run[col]} - {None}
        at = layout.table(name).columns.index(col)
        return {row[at] for row in self.rows[name]} - {None}


def _check_bundle(layout: _Layout, bundle: Any, held: Mapping[str, int] | None = None) -> _Plan:
    """The bundle checked whole, in memory; the first problem raises ``BundleError``.
    ``held``: contents the store already holds (hash -> size), which need no blob."""
    held = held or {}
    if not isinstance(bundle, dict):
        _refuse(f"not an mlnb run bundle (a {type(bundle).__name__}, not a dict)")
    if bundle.get("format") != BUNDLE_FORMAT:
        _refuse(
            f"not an mlnb run bundle of format {BUNDLE_FORMAT} (format "
            f"{bundle.get('format')!r:.40}); export the run again with this version of mlnb"
        )
    schema = bundle.get("schema")
    if not isinstance(schema, list) or not all(isinstance(name, str) for name in schema):
        _refuse("schema must be the list of migration names the bundle's store had")
    newer = [name for name in schema if name not in migrations.known_names()]
    if newer:
        _refuse(f"the bundle comes from a newer mlnb (schema {newer[-1]!r:.80}); upgrade mlnb here")
    tables = (*layout.linked, *layout.shared)
    _same_keys("the bundle", bundle, (*_ENVELOPE, *(table.name for table in tables)))
    experiment = _value("experiment", "TEXT", True, bundle["experiment"])
    _is_key("experiment", experiment)
    (run_row,) = _rows(layout.run, [bundle["run"]], label="run")
    run = dict(zip(layout.run.columns, run_row, strict=True))
    if run["parent_run_id"] == run["run_id"]:
        _refuse(f"run.parent_run_id: run {run['run_id'][:8]} cannot be its own parent")
    plan = _Plan(experiment, run, {t.name: _rows(t, bundle[t.name]) for t in tables}, {})
    plan.blobs = _check_blobs(bundle["blobs"])
    named = set().union(*(plan.values(layout, ref) for ref in BLOB_REFS))
    for digest in sorted(named - plan.blobs.keys() - held.keys()):
        _refuse(f"the bundle's rows refer to content {digest} but no blob carries it")
    for digest in sorted(plan.blobs.keys() - named):
        _refuse(f"blob {digest} of the bundle is referred to by no row")
    arts = layout.table("artifacts").columns
    for i, row in enumerate(plan.rows["artifacts"]):
        size, digest = row[arts.index("size")], row[arts.index("hash")]
        blob = plan.blobs.get(digest)
        length = len(blob) if blob is not None else held[digest]
        if size != length:
            _refuse(f"artifacts[{i}].size is {size} but its blob holds {length} bytes")
    for shared in layout.shared:
        wanted = set().union(
            *(plan.values(layout, ref) for ref, table, _ in layout.refs if table == shared.name)
        )
        carried = plan.values(layout, f"{shared.name}.{_ref_column(layout, shared.name)}")
        for value in sorted(wanted - carried):
            _refuse(f"the bundle refers to {shared.name} row {value!r:.80} but does not carry it")
        for value in sorted(carried - wanted):
            _refuse(f"{shared.name} row {value!r:.80} of the bundle is referred to by no row")
    for i, (key, text, type_, number) in enumerate(plan.rows["params"]):
        _check_param(f"params[{i}]", key, text, type_, number)
    return plan


def _check_blobs(blobs: Any) -> dict[str, bytes]:
    if not isinstance(blobs, dict):
        _refuse(f"blobs must be a dict of hash to bytes, got {type(blobs).__name__}")
    out = {}
    for digest, data in blobs.items():
        if not hashing.is_digest(digest):
            _refuse(f"blob name {digest!r:.80} is not a SHA-256 hex digest")
        if not isinstance(data, (bytes, bytearray)):
            _refuse(f"blob {digest} must be bytes, got {type(data).__name__}")
        if hashing.hash_bytes(bytes(data)) != digest:
            _refuse(f"blob {digest} is damaged: its bytes do not hash to its name")
        out[digest] = bytes(data)
    return out


def _check_param(where: str, key: str, text: str, type_: str, number: float | None) -> None:
    """A param row must read back as it was written (``value`` parses as ``type``, and
    ``value_num`` is what logging that value stores), or filters and get_run would fail."""
    try:
        again = validation.encode_param(key, validation.decode_param(text, type_))
    except (ValueError, InvalidInputError):
        again = None
    if again != (text, type_, number):
        _refuse(
            f"{where}: param {key!r} is {text!r:.80} of type {type_!r:.20} with value_num "
            f"{number!r}, which is not how mlnb stores such a param"
        )


# -- import ---------------------------------------------------------------------------------


def import_run(
    store: Store, bundle: dict[str, Any], *, held: Mapping[str, int] | None = None
) -> str:
    """Write a bundle made by :func:`export_run` into ``store``; returns the run id.

    The bundle is checked whole before anything is written, then compared with the run
    the store may already hold: rows with a known key must be identical, new rows are
    added, and the run's attributes change only if it is ``queued`` (a placeholder). Any
    problem raises :class:`BundleError` (:class:`ParamConflictError` for a param) naming
    it, with nothing written: no row, no artifact file. Importing the same bundle again
    changes nothing. ``held``: contents already in the store (hash -> size) that the
    bundle's ``blobs`` may leave out (a bundle file streams large ones in first)."""
    layout = store.file.read(_layout)
    plan = _check_bundle(layout, bundle, held)

    def tx(c: sqlite3.Connection) -> None:
        write, _ = _merge(c, layout, plan, store.location)  # reads only; refuses a conflict
        # The contents go in after every check and before the rows that refer to them, so
        # a refused import leaves no file and a committed row always has its file. A retry
        # of this transaction puts them again: content-addressed, so harmless.
        for digest, data in plan.blobs.items():
            if not store.artifact_file(digest).is_file():
                store.contents.put(data)
        write(c)

    store.file.write(tx)
    return str(plan.run["run_id"])


def check_import(
    store: Store, bundle: dict[str, Any], *, held: Mapping[str, int] | None = None
) -> int:
    """What :func:`import_run` of ``bundle`` would change in ``store``, with nothing
    written: the rows and run attributes it would add (0: importing is a no-op). Raises
    as :func:`import_run` would for a bundle that is malformed or conflicts."""
    layout = store.file.read(_layout)
    plan = _check_bundle(layout, bundle, held)
    return store.file.read(lambda c: _merge(c, layout, plan, store.location)[1])


def _merge(
    c: sqlite3.Connection, layout: _Layout, plan: _Plan, location: str
) -> tuple[Callable[[sqlite3.Connection], None], int]:
    """Compare the plan with the store (reads only; refuses a conflict) and return the
    writes it needs, with how many rows and attributes they add or change."""
    run_id = plan.run["run_id"]
    cols = layout.run.columns
    old = c.execute(
        f"SELECT r.id, e.name, {', '.join(f'r.{col}' for col in cols)} FROM runs r "
        "JOIN experiments e ON e.id = r.experiment_id WHERE r.run_id = ?",
        [run_id],
    ).fetchone()
    rid: int | None = None
    changes: dict[str, Any] = {}
    moved = False
    if old is not None:
        rid = int(old[0])
        changes, moved = _run_changes(dict(zip(cols, old[2:], strict=True)), old[1], plan)
    inserts = {
        table.name: _new_rows(c, table, rid, plan.rows[table.name], run_id, location)
        for table in layout.linked
    }
    experiment = "(SELECT id FROM experiments WHERE name = ?)"

    def write(c: sqlite3.Connection) -> None:
        for table in layout.shared:
            _upsert_shared(c, table, _ref_column(layout, table.name), plan.rows[table.name])
        if old is None or moved:
            c.execute(
                "INSERT OR IGNORE INTO experiments (name, created_at) VALUES (?, ?)",
                [plan.experiment, plan.run["start_time"]],
            )
        if old is None:
            c.execute(
                f"INSERT INTO runs (experiment_id, {', '.join(cols)}) "
                f"VALUES ({experiment}, {', '.join('?' * len(cols))})",
                [plan.experiment, *(plan.run[col] for col in cols)],
            )
            at = c.execute("SELECT id FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]
        else:
            at = rid
            sets, args = [f"{col} = ?" for col in changes], list(changes.values())
            if moved:
                sets.append(f"experiment_id = {experiment}")
                args.append(plan.experiment)
            if sets:
                c.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", [*args, at])
        for table in layout.linked:
            if inserts[table.name]:
                names = ("run", *table.columns)
                c.executemany(
                    f"INSERT INTO {table.name} ({', '.join(names)}) "
                    f"VALUES ({', '.join('?' * len(names))})",
                    [(at, *row) for row in inserts[table.name]],
                )
        key = layout.table("metrics").columns.index("key")
        series = sorted({row[key] for row in inserts["metrics"]})
        c.executemany(LATEST_REFRESH, [(at, name) for name in series])

    changed = sum(map(len, inserts.values())) + len(changes) + (old is None or moved)
    return write, changed


def _run_changes(
    here: dict[str, Any], here_experiment: str, plan: _Plan
) -> tuple[dict[str, Any], bool]:
    """The columns a bundle changes of a run the store already has, and whether it moves
    it to the bundle's experiment: nothing but a missing parent, unless the run is
    ``queued`` (a placeholder that the bundle completes, as a sweep's child is). A deletion
    is neither undone nor added. Any other difference is refused."""
    there, id8 = plan.run, plan.run["run_id"][:8]
    if here["deleted_at"] is not None and there["deleted_at"] is None:
        _refuse(
            f"run {id8} is deleted here but not in the bundle: importing would restore it "
            "(`mlnb restore` it first if that is what you want)"
        )
    if here["deleted_at"] is None and there["deleted_at"] is not None:
        _refuse(f"run {id8} is deleted in the bundle but not here (delete it here first)")
    placeholder = here["status"] == "queued"
    changes: dict[str, Any] = {}
    for col, value in there.items():
        if col in ("run_id", "deleted_at") or here[col] == value:
            continue
        if col == "parent_run_id" and here[col] is not None and value is not None:
            _refuse(f"run {id8} has parent {here[col]} here but {value} in the bundle")
        if col == "parent_run_id":
            if value is not None:  # a parent the store did not know: strictly additive
                changes[col] = value
        elif placeholder:
            changes[col] = value
        else:
            _refuse(
                f"run {id8} has {col} {here[col]!r:.80} here but {value!r:.80} in the bundle; "
                "only a queued run takes its attributes from a bundle"
            )
    moved = here_experiment != plan.experiment
    if moved and not placeholder:
        _refuse(
            f"run {id8} is in experiment {here_experiment!r} here but in "
            f"{plan.experiment!r} in the bundle; only a queued run takes its attributes "
            "from a bundle"
        )
    return changes, moved


def _new_rows(
    c: sqlite3.Connection,
    table: _Table,
    rid: int | None,
    rows: list[tuple[Any, ...]],
    run_id: str,
    location: str,
) -> list[tuple[Any, ...]]:
    """The bundle's rows of one run-linked table that the store lacks; a row whose key the
    store has with other values is refused."""
    if rid is None or not rows:
        return rows
    sql = f"SELECT {', '.join(table.columns)} FROM {table.name} WHERE run = ?"
    existing = c.execute(sql, [rid]).fetchall()
    if table.key is None:  # no natural key: the whole row is its identity
        have = set(existing)
        return [row for row in rows if row not in have]
    key_of = _key_getter(table)
    by_key = dict(zip(map(key_of, existing), existing, strict=True))
    new = []
    for row in rows:
        key = key_of(row)
        old = by_key.get(key)
        if old is None:
            new.append(row)
        elif old != row:
            col = next(i for i, (a, b) in enumerate(zip(old, row, strict=True)) if a != b)
            if table.name == "params":
                v, t = table.columns.index("value"), table.columns.index("type")
                raise ParamConflictError(
                    f"param {key[0]!r} of run {run_id[:8]} is {old[v]} ({old[t]}) in "
                    f"{location} but {row[v]} ({row[t]}) in the bundle; params are "
                    "immutable, nothing was imported"
                )
            _refuse(
                f"{table.name} {_describe(table, key)} of run {run_id[:8]} differs: "
                f"{table.columns[col]} is {old[col]!r:.80} in {location} but "
                f"{row[col]!r:.80} in the bundle"
            )
    return new


def _upsert_shared(
    c: sqlite3.Connection, table: _Table, key: str, rows: list[tuple[Any, ...]]
) -> None:
    """Rows runs share (an environment, a dataset), keyed by their content's hash: the
    store's copy stays, and a bundle only fills what it left empty (a profile computed
    later)."""
    fill = [col for col in table.columns if col != key]
    action = ", ".join(f"{col} = coalesce({table.name}.{col}, excluded.{col})" for col in fill)
    c.executemany(
        f"INSERT INTO {table.name} ({', '.join(table.columns)}) "
        f"VALUES ({', '.join('?' * len(table.columns))}) ON CONFLICT ({key}) "
        f"DO UPDATE SET {action}",
        rows,
    )
