"""``Store``: the one SQLite file (plus a folder of content-addressed artifacts) that every
part of mlnb writes to and reads from, with typed reads and writes of runs.

Connections, transactions and migrations live in ``mlnb.store.database`` (every write is one
``BEGIN IMMEDIATE`` transaction, retried whole while the database is busy); this module
decides what is written. Writes are idempotent (a retried or replayed batch changes
nothing), inputs are checked before a transaction begins, and a batch is all or nothing.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import getpass
import itertools
import json
import math
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mlnb.conventions import ENV_STORE, ERROR_MESSAGE_TAG, ERROR_NAME_TAG
from mlnb.errors import (
    AmbiguousRunIdError,
    ExperimentNotFoundError,
    InvalidInputError,
    MlnbError,
    ParamConflictError,
    RunNotFoundError,
    RunStateError,
    StoreError,
    StoreFullError,
    StoreNotFoundError,
)
from mlnb.records import (
    TERMINAL_STATUSES,
    Artifact,
    CheckRecord,
    RunRecord,
    SampledHistory,
    random_run_name,
)
from mlnb.store import inputs as validation
from mlnb.store.artifacts import ContentStore, folder_files
from mlnb.store.database import StoreFile
from mlnb.store.liveness import HOST, STALE_AFTER_S, run_lock_held
from mlnb.store.provenance import ProvenanceStore, json_or_none

if TYPE_CHECKING:
    import pandas as pd
    from sqlite_utils import Database

    from mlnb.store.query import OrderTerm, RunScope


T = TypeVar("T")

STORE_DIRNAME = ".mlnb"
DB_FILENAME = "mlnb.db"
DEFAULT_EXPERIMENT = "Default"
# Kinds of rows in the checks table; checked here, not by an SQL CHECK, so that a new kind
# (a reproduction verdict, say) needs no table rebuild.
CHECK_KINDS = ("check", "gate", "validation", "reproduce")
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
RUN_COLUMNS = (
    "r.id, r.run_id, r.name, e.name, r.status, r.start_time, r.end_time, r.parent_run_id, "
    "r.host, r.pid, r.user, r.source, r.deleted_at, r.notebook, r.linearity, "
    "r.linearity_detail"
)  # search_runs relies on the first eight being id + BASE_COLUMNS


FIRST_RUN = "the first run (mlnb run, mlnb.start_run, %track start) creates one"


def find_store_dir(start: str | os.PathLike[str] | None = None) -> Path:
    """Where the store lives: ``$MLNB_STORE``, else the nearest ``.mlnb/`` walking up from
    ``start`` (the working directory), else a new ``.mlnb/`` in ``start``."""
    env = os.environ.get(ENV_STORE)
    if env:
        return Path(env).expanduser().absolute()
    here = Path(start or os.getcwd()).absolute()
    for folder in (here, *here.parents):
        candidate = folder / STORE_DIRNAME
        if (candidate / DB_FILENAME).exists():
            return candidate
    return here / STORE_DIRNAME


def store_not_found(db_path: Path, *, discovered: bool) -> StoreNotFoundError:
    """The error of a read that found no store: where it looked, and what creates one."""
    if not discovered:
        where = " ($MLNB_STORE)" if os.environ.get(ENV_STORE) else ""
        return StoreNotFoundError(f"no mlnb store at {db_path}{where}; {FIRST_RUN} there")
    here = db_path.parent.parent
    return StoreNotFoundError(
        f"no mlnb store found: $MLNB_STORE is not set, and neither {here} nor a folder above "
        f"it has {STORE_DIRNAME}/{DB_FILENAME}; {FIRST_RUN} in {here / STORE_DIRNAME} (or set "
        "MLNB_STORE to a store's folder)"
    )


class Store(ProvenanceStore):
    """An mlnb store: ``Store()`` finds or creates the project's store, ``Store(path)`` opens
    the store folder (or ``.db`` file) at ``path``, ``Store(memory=True)`` is a throwaway
    in-memory store. Usable as a context manager; ``store.db`` is a sqlite-utils Database
    for anything this API does not cover.

    ``create=False`` is for readers: where there is no store yet, it raises
    ``StoreNotFoundError`` (saying where it looked) instead of creating one."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        memory: bool = False,
        create: bool = True,
    ):
        self.memory = memory
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._last_reap = 0.0
        self._db: Database | None = None
        self.db_path: Path | None
        if memory:
            if path is not None:
                raise StoreError("pass either a path or memory=True, not both")
            self._tmpdir = tempfile.TemporaryDirectory(prefix="mlnb-memory-")
            self.root = Path(self._tmpdir.name)
            self.db_path = None
        else:
            target = Path(path).expanduser() if path is not None else find_store_dir()
            if target.suffix == ".db" and not target.is_dir():
                self.root, self.db_path = target.parent, target
            else:
                self.root, self.db_path = target, target / DB_FILENAME
            if not create and not self.db_path.is_file():
                raise store_not_found(
                    self.db_path, discovered=path is None and not os.environ.get(ENV_STORE)
                )
        self.artifacts_dir = self.root / "artifacts"
        self.contents = ContentStore(self.artifacts_dir)
        self.locks_dir = self.root / "locks"
        try:
            self.file = StoreFile(self.db_path, self.root)
        except BaseException:
            if self._tmpdir is not None:
                self._tmpdir.cleanup()
            raise
        if self.db_path is not None and not self.file.read_only:
            with contextlib.suppress(OSError):  # tidying must not stop the store opening
                self.contents.remove_dead_temporaries()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<mlnb.Store {self.location}>"

    @property
    def location(self) -> str:
        """The database file's path (or ``:memory:``), for messages."""
        return self.file.location

    @property
    def closed(self) -> bool:
        return self.file.closed

    def close(self) -> None:
        """Close every connection this store opened (idempotent)."""
        self.file.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction; on a busy database the
        whole transaction is retried, so ``fn`` must only touch the database."""
        return self.file.write(fn)

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one read transaction (a consistent snapshot)."""
        return self.file.read(fn)

    def schema_version(self) -> str:
        """Name of the newest migration applied to this store."""
        return self.file.schema_version()

    @property
    def db(self) -> Database:
        """A sqlite-utils ``Database`` on this store, for power users (same file)."""
        from sqlite_utils import Database

        if self._db is None:
            self._db = Database(self.file.conn(), execute_plugins=False)
        return self._db

    # -- runs -------------------------------------------------------------------------

    def create_run(
        self,
        *,
        experiment: str | None = None,
        name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        source: str | None = None,
        status: str = "running",
        run_id: str | None = None,
        start_time: float | None = None,
    ) -> str:
        """Create a run row (and its experiment if new); returns the run id."""
        experiment = validation.check_key(experiment or DEFAULT_EXPERIMENT, "experiment name")
        tag_rows = [
            (validation.check_key(k, "tag key"), validation.tag_value(k, v))
            for k, v in (tags or {}).items()
        ]
        run_id = run_id or uuid.uuid4().hex
        name = validation.check_text(name, "run name") if name else random_run_name()
        if source is not None:  # a path may hold bytes that are not UTF-8: keep them readable
            source = os.fsencode(source).decode("utf-8", "replace")
        now = time.time() if start_time is None else start_time
        if parent_run_id is not None:
            parent_run_id = self.resolve_run_id(parent_run_id)
        user = _current_user()

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO experiments (name, created_at) VALUES (?, ?)",
                [experiment, now],
            )
            exp_id = conn.execute(
                "SELECT id FROM experiments WHERE name = ?", [experiment]
            ).fetchone()[0]
            conn.execute(
                "INSERT OR IGNORE INTO runs (run_id, experiment_id, name, status, "
                "parent_run_id, start_time, heartbeat, host, pid, user, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, exp_id, name, status, parent_run_id, now, now, HOST, os.getpid(), user,
                 source],
            )  # fmt: skip
            rowid = conn.execute("SELECT id FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]
            conn.executemany(
                "INSERT OR REPLACE INTO tags (run, key, value) VALUES (?, ?, ?)",
                [(rowid, k, v) for k, v in tag_rows],
            )

        self.write(tx)
        return run_id

    def set_experiment(self, run_id: str, experiment: str) -> None:
        """Move a run into ``experiment`` (created if new)."""
        experiment = validation.check_key(experiment, "experiment name")

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO experiments (name, created_at) VALUES (?, ?)",
                [experiment, time.time()],
            )
            conn.execute(
                "UPDATE runs SET experiment_id = (SELECT id FROM experiments WHERE name = ?) "
                "WHERE run_id = ?",
                [experiment, run_id],
            )

        self.write(tx)

    def run_rowid(self, run_id: str) -> tuple[int, str]:
        """The integer key and status of a run (exact id)."""
        row = self.read(
            lambda c: c.execute("SELECT id, status FROM runs WHERE run_id = ?", [run_id]).fetchone()
        )
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.location}")
        return row[0], row[1]

    def resolve_run_id(self, ref: str) -> str:
        """The full id of the run that ``ref`` names: an id, a unique run name, or a unique
        id prefix, in that order (a run named ``a`` is not shadowed by another run whose id
        happens to begin with ``a``, as git prefers a ref over an abbreviated hash)."""
        if not isinstance(ref, str) or not ref.strip():
            raise RunNotFoundError(f"a run id must be a non-empty string, got {ref!r}")
        ref = ref.strip()
        prefix = ref.lower()

        def lookup(c: sqlite3.Connection) -> list[str]:
            exact = c.execute("SELECT run_id FROM runs WHERE run_id = ?", [ref]).fetchone()
            if exact is not None:
                return [exact[0]]
            ids = [r[0] for r in c.execute("SELECT run_id FROM runs WHERE name = ?", [ref])]
            if ids:
                return ids
            hi = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            return [
                r[0]
                for r in c.execute(
                    "SELECT run_id FROM runs WHERE run_id >= ? AND run_id < ? LIMIT 6",
                    [prefix, hi],
                )
            ]

        ids = self.read(lookup)
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise RunNotFoundError(
                f"no run matches {ref!r} (by id prefix or name) in {self.location}"
            )
        shown = ", ".join(i[:12] for i in ids[:5])
        hint = (
            "use one of their ids"
            if len(ids[0]) > len(ref) and not ids[0].startswith(prefix)
            else "give more characters of the id"
        )
        raise AmbiguousRunIdError(
            f"{ref!r} matches several runs ({shown}{', ...' if len(ids) > 5 else ''}); {hint}"
        )

    def set_status(
        self,
        run_id: str,
        status: str,
        *,
        end_time: float | None = None,
        only_from: Sequence[str] = ("queued", "running", "crashed"),
    ) -> bool:
        """Move a run to ``status`` if it is currently in one of ``only_from`` (a
        compare-and-set, so racing writers agree); returns whether it changed."""
        if status not in ("queued", "running", *TERMINAL_STATUSES):
            raise InvalidInputError(f"unknown status {status!r}")
        if status in TERMINAL_STATUSES and end_time is None:
            end_time = time.time()
        marks = ",".join("?" * len(only_from))
        return self.write(
            lambda c: (
                c.execute(
                    "UPDATE runs SET status = ?, end_time = ? "
                    f"WHERE run_id = ? AND status IN ({marks})",
                    [status, end_time, run_id, *only_from],
                ).rowcount
                > 0
            )
        )

    def heartbeat(self, run_ids: Iterable[str]) -> None:
        """Record that the runs' process is alive."""
        ids = list(run_ids)
        if ids:
            now = time.time()
            self.write(
                lambda c: c.executemany(
                    "UPDATE runs SET heartbeat = ? WHERE run_id = ? AND status = 'running'",
                    [(now, i) for i in ids],
                )
            )

    def _writable_run(
        self, conn: sqlite3.Connection, run_id: str, *, check_state: bool = True
    ) -> int:
        row = conn.execute("SELECT id, status FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.location}")
        if check_state and row[1] in TERMINAL_STATUSES:
            raise RunStateError(
                f"run {run_id[:8]} is {row[1]}; it cannot be logged to. Start a new run, or "
                "resume this one with start_run(run_id=...)"
            )
        return int(row[0])

    # -- params, tags, metrics ------------------------------------------------------------

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log params all-or-nothing. Logging a key again with the same value is a no-op;
        with a different value it is a ``ParamConflictError`` naming both values."""
        if len(params) == 1:
            # The common case, one new key of a running run, is one INSERT that is its own
            # transaction (~1.5x cheaper than the checks below). When it inserts nothing
            # (the run is missing or ended, or the key exists) the transaction below says why.
            ((key, value),) = params.items()
            text, type_, number = validation.encode_param(
                validation.check_key(key, "param key"), value
            )
            if self.file.write_statement(_INSERT_PARAM, (key, text, type_, number, run_id)):
                return
            rows = {key: (text, type_, number)}
        else:
            rows = {}
            for key, value in params.items():
                validation.check_key(key, "param key")
                rows[key] = validation.encode_param(key, value)

        def tx(conn: sqlite3.Connection) -> None:
            rowid = self._writable_run(conn, run_id)
            keys = list(rows)
            for chunk in _chunks(keys, 500):
                marks = ",".join("?" * len(chunk))
                for key, value, type_ in conn.execute(
                    f"SELECT key, value, type FROM params WHERE run = ? AND key IN ({marks})",
                    [rowid, *chunk],
                ):
                    new_value, new_type, _ = rows[key]
                    if (value, type_) != (new_value, new_type):
                        raise ParamConflictError(
                            f"param {key!r} of run {run_id[:8]} is already {value} ({type_}); "
                            f"it cannot be changed to {new_value} ({new_type}). Params are "
                            "immutable: log a new key or start a new run"
                        )
            conn.executemany(
                "INSERT OR IGNORE INTO params (run, key, value, type, value_num) "
                "VALUES (?, ?, ?, ?, ?)",
                [(rowid, k, *v) for k, v in rows.items()],
            )

        self.write(tx)

    def set_tags(self, run_id: str, tags: Mapping[str, Any], *, check_state: bool = True) -> None:
        """Set tags (mutable, last write wins) all-or-nothing. ``check_state=False`` lets
        tools annotate a finished run (gate results); users' runs refuse it once ended."""
        rows = [
            (validation.check_key(k, "tag key"), validation.tag_value(k, v))
            for k, v in tags.items()
        ]

        def tx(conn: sqlite3.Connection) -> None:
            rowid = self._writable_run(conn, run_id, check_state=check_state)
            conn.executemany(
                "INSERT OR REPLACE INTO tags (run, key, value) VALUES (?, ?, ?)",
                [(rowid, k, v) for k, v in rows],
            )

        self.write(tx)

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove a tag from a run."""
        self.write(
            lambda c: c.execute(
                "DELETE FROM tags WHERE key = ? AND run = (SELECT id FROM runs WHERE run_id = ?)",
                [key, run_id],
            )
        )

    def insert_metrics(
        self, rows: Sequence[tuple[int, str, int, float, float]]
    ) -> dict[int, MlnbError]:
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
            self.write(_metrics_tx(rows))
            return {}
        except _Refused:
            pass
        by_run: dict[int, list[tuple[int, str, int, float, float]]] = {}
        for row in rows:
            by_run.setdefault(row[0], []).append(row)
        refused: dict[int, MlnbError] = {}
        for rowid, points in by_run.items():
            try:
                self.write(_metrics_tx(points))
            except _Refused as exc:
                refused[rowid] = self._refuse_points(rowid, len(points), exc.reason)
        return refused

    def _refuse_points(self, rowid: int, points: int, reason: str) -> MlnbError:
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

        if not self.write(tx):
            return RunNotFoundError(
                f"their run no longer exists in {self.location} (it was deleted and purged "
                "while a process logged to it); nothing was written"
            )
        return StoreError(f"{message}; the run is marked failed")

    def max_steps(self, run_id: str) -> dict[str, int]:
        """The highest step logged so far for each metric key of a run."""
        return dict(
            self.read(
                lambda c: c.execute(
                    "SELECT key, step FROM latest_metrics WHERE run = "
                    "(SELECT id FROM runs WHERE run_id = ?)",
                    [run_id],
                ).fetchall()
            )
        )

    def history(self, run_id: str, key: str) -> list[tuple[int, float, float]]:
        """Every point of one metric of one run: ``(step, value, timestamp)`` by step."""
        run_id = self.resolve_run_id(run_id)
        rows = self.read(
            lambda c: c.execute(
                "SELECT step, value, timestamp FROM metrics WHERE run = "
                "(SELECT id FROM runs WHERE run_id = ?) AND key = ? ORDER BY step",
                [run_id, key],
            ).fetchall()
        )
        return [(s, math.nan if v is None else v, t) for s, v, t in rows]

    def downsampled_history(
        self,
        run_id: str,
        key: str,
        *,
        max_points: int = DOWNSAMPLE_POINTS,
        before: float | None = None,
    ) -> SampledHistory:
        """One metric of one run as a plot needs it: at most ``max_points`` points
        ``(step, value, timestamp)`` by step, chosen in SQL, and how many the series has.

        Up to ``max_points`` points, that is every point. Beyond, the steps from the first
        to the last are cut into ``(max_points - 2) // 2`` equal buckets and each bucket
        gives its lowest and its highest point (real rows, with their step and time), plus
        the first and the last point: spikes survive, the best value is there whichever
        way is better, and the line ends where the series ends. Each bucket is two
        aggregates (``min``, ``max``, whose bare columns come from the row holding the
        extreme) over a range of the primary key, so the series is read twice in SQLite
        and never into Python (10 M points: ~1.8 s on an idle core, ~2.5 s on a busy one).
        ``before`` keeps only points logged before that Unix time (a live plot gets the
        later ones from the writer). NaN is read back as NaN. Reports, the compare view
        and live plots read series here."""
        if type(max_points) is not int or max_points < 4:
            raise InvalidInputError(f"max_points must be an integer >= 4, got {max_points!r}")
        run_id = self.resolve_run_id(run_id)
        where = "FROM metrics WHERE run = ? AND key = ?" + (
            " AND timestamp < ?" if before is not None else ""
        )

        def fetch(c: sqlite3.Connection) -> tuple[list[Any], int]:
            row = c.execute("SELECT id FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if row is None:  # purged since it was resolved
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.location}")
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

        rows, count = self.read(fetch)
        points = [(s, math.nan if v is None else v, t) for s, v, t in rows]
        return SampledHistory(points, count)

    def history_frame(self, run_id: str, key: str) -> pd.DataFrame:
        """One metric's series as a DataFrame with columns step, value, timestamp."""
        import pandas as pd

        frame = pd.DataFrame(self.history(run_id, key), columns=["step", "value", "timestamp"])
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s", utc=True)
        return frame

    # -- artifacts --------------------------------------------------------------------

    def artifact_file(self, digest: str) -> Path:
        """Where the content with this hash lives."""
        return self.contents.path(digest)

    def log_artifact(
        self,
        run_id: str,
        source: str | os.PathLike[str] | bytes,
        *,
        name: str | None = None,
        kind: str = "file",
        check_state: bool = True,
    ) -> list[Artifact]:
        """Copy a file, a folder (recursively) or bytes into the store and attach it to
        the run under ``name`` (default: the file's name): a relative path that cannot
        climb out (``validation.artifact_name``). A folder's symbolic links are followed
        only to files inside it (``artifacts.folder_files``)."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            if name is None:
                raise InvalidInputError("log_artifact of bytes needs an artifact name (name=...)")
            items: list[tuple[str, str | os.PathLike[str] | bytes]] = [
                (validation.artifact_name(name), source)
            ]
        else:
            path = Path(source)
            if not path.exists():
                raise InvalidInputError(f"cannot log artifact: no such file or folder {path}")
            if path.is_dir():
                base = validation.artifact_name(path.resolve().name if name is None else name)
                items = [
                    (validation.artifact_name(f"{base}/{rel}"), file)
                    for rel, file in folder_files(path)
                ]
            else:
                items = [(validation.artifact_name(path.name if name is None else name), path)]
        self.read(lambda c: self._writable_run(c, run_id, check_state=check_state))
        self.file.check_writable()  # the files are written before the transaction
        try:
            stored = [(art_name, *self.contents.put(src)) for art_name, src in items]
        except PermissionError as exc:
            raise InvalidInputError(f"cannot read {exc.filename}: permission denied") from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StoreFullError(
                    f"the disk holding {self.artifacts_dir} is full; artifact {items[0][0]!r} "
                    "was not stored. Free some space there (or move the store to a larger disk)"
                ) from None
            raise
        now = time.time()
        arts = [Artifact(n, d, s, kind, now) for n, d, s in stored]

        def tx(conn: sqlite3.Connection) -> None:
            rowid = self._writable_run(conn, run_id, check_state=check_state)
            conn.executemany(
                "INSERT OR REPLACE INTO artifacts (run, path, hash, size, kind, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(rowid, a.path, a.hash, a.size, a.kind, a.created_at) for a in arts],
            )

        self.write(tx)
        return arts

    # -- checks (gates, --check, validations) -----------------------------------------

    def log_checks(self, run_id: str, checks: Sequence[CheckRecord]) -> str:
        """Record verdicts on a run (finished or not) in the ``checks`` table, all or
        nothing, as one batch; returns the batch id (given on the records, else new)."""
        for chk in checks:
            if chk.kind not in CHECK_KINDS:
                raise InvalidInputError(f"check kind must be one of {CHECK_KINDS}: {chk.kind!r}")
            if chk.direction not in (None, "higher", "lower"):
                raise InvalidInputError(f"direction must be 'higher' or 'lower': {chk.direction!r}")
        batch = next((c.batch for c in checks if c.batch), "") or uuid.uuid4().hex
        now = time.time()

        def finite(x: float | None) -> float | None:
            return None if x is None or math.isnan(x) else float(x)

        def tx(conn: sqlite3.Connection) -> None:
            rowid = self._writable_run(conn, run_id, check_state=False)
            conn.executemany(
                "INSERT INTO checks (run, kind, name, passed, value, threshold, comparator, "
                "direction, baseline_run_id, baseline_value, message, details, batch, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (rowid, c.kind, c.name, int(c.passed), finite(c.value),
                     finite(c.threshold), c.comparator, c.direction, c.baseline_run_id,
                     finite(c.baseline_value), c.message,
                     json.dumps(c.details, sort_keys=True) if c.details else None, batch,
                     c.created_at or now)
                    for c in checks
                ],
            )  # fmt: skip

        self.write(tx)
        return batch

    def get_checks(self, ref: str, *, kind: str | None = None) -> list[CheckRecord]:
        """A run's recorded checks, oldest first (optionally only one ``kind``)."""
        run_id = self.resolve_run_id(ref)
        return self.read(lambda c: _read_checks(c, run_id, kind))

    # -- reading runs -----------------------------------------------------------------

    def reap_crashed(self, *, force: bool = False) -> list[str]:
        """Mark runs whose process died as ``crashed``: on this host, a run whose lock file
        is not held; elsewhere, one whose heartbeat is older than 5 minutes. Cheap; called
        by every read at most once a second."""
        now = time.time()
        if self.db_path is None or self.file.read_only:  # a read-only store is shown as is
            return []
        if not force and now - self._last_reap < 1.0:
            return []
        self._last_reap = now
        running = self.read(
            lambda c: c.execute(
                "SELECT run_id, host, heartbeat FROM runs WHERE status = 'running'"
            ).fetchall()
        )
        dead = [
            run_id for run_id, host, beat in running if not self._alive(run_id, host, beat, now)
        ]
        return [
            run_id for run_id in dead if self.set_status(run_id, "crashed", only_from=("running",))
        ]

    def _alive(self, run_id: str, host: str | None, heartbeat: float | None, now: float) -> bool:
        """Whether a running run's process is alive: on this host, its lock file is held;
        elsewhere, its heartbeat is recent."""
        if host == HOST:
            return run_lock_held(self.locks_dir, run_id)
        return heartbeat is not None and now - heartbeat <= STALE_AFTER_S

    def get_run(self, ref: str) -> RunRecord:
        """Everything about one run (by id, unique id prefix, or unique name)."""
        self.reap_crashed()
        run_id = self.resolve_run_id(ref)

        def fetch(c: sqlite3.Connection) -> RunRecord:
            row = c.execute(
                f"SELECT {RUN_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id "
                "WHERE r.run_id = ?",
                [run_id],
            ).fetchone()
            rec = _record(row)
            rid = row[0]
            rec.params = {
                k: validation.decode_param(v, t)
                for k, v, t in c.execute(
                    "SELECT key, value, type FROM params WHERE run = ? ORDER BY key", [rid]
                )
            }
            for k, step, v in c.execute(
                "SELECT key, step, value FROM latest_metrics WHERE run = ? ORDER BY key", [rid]
            ):
                rec.metrics[k] = math.nan if v is None else v
                rec.metric_steps[k] = step
            rec.tags = dict(
                c.execute("SELECT key, value FROM tags WHERE run = ? ORDER BY key", [rid])
            )
            rec.artifacts = [
                Artifact(*a)
                for a in c.execute(
                    "SELECT path, hash, size, kind, created_at FROM artifacts WHERE run = ? "
                    "ORDER BY path",
                    [rid],
                )
            ]
            self._read_provenance(c, rid, rec)
            rec.checks = _read_checks(c, run_id, None)
            return rec

        rec = self.read(fetch)
        rec._store = self
        return rec

    def search_runs(
        self,
        filter: str | None = None,
        *,
        experiment: str | Sequence[str] | None = None,
        order_by: str | None = None,
        max_results: int | None = None,
        include_deleted: bool = False,
        now: float | None = None,
    ) -> dict[str, list[Any]]:
        """Runs as a wide table, column by column (``{column: values}``): run attributes,
        then ``params.*`` (typed), ``metrics.*`` (latest value) and ``tags.*``; a run
        without a key has None there. ``mlnb.runs()`` wraps it in pandas."""
        from mlnb.store.query import RunScope, compile_filter, compile_order_by

        now = time.time() if now is None else now
        where, args = compile_filter(filter, now=now)
        order, order_args = compile_order_by(order_by, now=now)
        names = [experiment] if isinstance(experiment, str) else experiment
        if names is not None:
            self.check_experiments(names)
        scope, scope_args = RunScope(names, None, include_deleted).where()
        if max_results is not None and (not isinstance(max_results, int) or max_results < 0):
            raise InvalidInputError(f"max_results must be a non-negative int: {max_results!r}")
        sql = (
            f"SELECT {RUN_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id "
            f"WHERE ({where}) AND {scope} ORDER BY {order}, r.id DESC LIMIT ?"
        )
        args = [*args, *scope_args, *order_args, -1 if max_results is None else max_results]
        self.reap_crashed()

        def fetch(c: sqlite3.Connection) -> dict[str, list[Any]]:
            runs = c.execute(sql, args).fetchall()
            n = len(runs)
            ids = json.dumps([r[0] for r in runs])
            pos = {r[0]: i for i, r in enumerate(runs)}
            table: dict[str, list[Any]] = {
                name: [r[i] for r in runs] for i, name in enumerate(BASE_COLUMNS, start=1)
            }
            table["duration"] = [(r[6] if r[6] is not None else now) - r[5] for r in runs]
            table["notebook"] = [r[13] for r in runs]
            table["linearity"] = [r[14] for r in runs]
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

        return self.read(fetch)

    def check_experiments(self, names: Iterable[str]) -> None:
        """Raise ``ExperimentNotFoundError`` listing the experiments there are if one of
        ``names`` is not among them (a typo would otherwise read as "no runs")."""
        known = self.read(
            lambda c: [r[0] for r in c.execute("SELECT name FROM experiments ORDER BY name")]
        )
        missing = [name for name in names if name not in known]
        if not missing:
            return
        close = difflib.get_close_matches(missing[0], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        listed = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
        raise ExperimentNotFoundError(
            f"no experiment named {missing[0]!r} in {self.location}{hint} "
            + (f"The experiments are: {listed}" if known else "The store has no experiments yet")
        )

    def delete_run(self, ref: str) -> str:
        """Hide a run from every listing (reversible with ``restore_run``)."""
        run_id = self.resolve_run_id(ref)
        self.write(
            lambda c: c.execute(
                "UPDATE runs SET deleted_at = coalesce(deleted_at, ?) WHERE run_id = ?",
                [time.time(), run_id],
            )
        )
        return run_id

    def restore_run(self, ref: str) -> str:
        """Bring back a deleted run."""
        run_id = self.resolve_run_id(ref)
        self.write(
            lambda c: c.execute("UPDATE runs SET deleted_at = NULL WHERE run_id = ?", [run_id])
        )
        return run_id

    # -- jobs: queued runs, resuming, renaming -----------------------------------------

    def run_status(self, run_id: str) -> str | None:
        """The status of the run with exactly this id; None when the store has no such run."""
        row = self.read(
            lambda c: c.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchone()
        )
        return None if row is None else str(row[0])

    def claim_queued_run(self, run_id: str, *, source: str | None) -> bool:
        """Move a ``queued`` run (a sweep's child) to ``running`` in this process: its
        clock starts now, and host, pid, user and ``source`` become this process's. A
        compare-and-set: of two workers claiming one run, exactly one gets True."""
        now = time.time()
        user = _current_user()
        return self.write(
            lambda c: (
                c.execute(
                    "UPDATE runs SET status = 'running', start_time = ?, heartbeat = ?, "
                    "end_time = NULL, host = ?, pid = ?, user = coalesce(?, user), source = ? "
                    "WHERE run_id = ? AND status = 'queued'",
                    [now, now, HOST, os.getpid(), user, source, run_id],
                ).rowcount
                > 0
            )
        )

    def resume_run(self, run_id: str, *, name: str | None = None) -> None:
        """Mark an existing run ``running`` again, without an end time
        (``start_run(run_id=...)``; a job's kernel attaching to the job's run); ``name``,
        when given, renames it."""
        if name is not None:
            name = validation.check_text(name, "run name")
        self.write(
            lambda c: c.execute(
                "UPDATE runs SET status = 'running', end_time = NULL, "
                "name = coalesce(?, name) WHERE run_id = ?",
                [name, run_id],
            )
        )

    def rename_run(self, run_id: str, name: str) -> None:
        """Give a run another name (whatever its status)."""
        name = validation.check_text(name, "run name")
        self.write(lambda c: c.execute("UPDATE runs SET name = ? WHERE run_id = ?", [name, run_id]))

    def set_source(self, run_id: str, source: str | None, *, notebook: str | None = None) -> None:
        """Record where a run came from: ``source`` (the script or notebook a job ran a
        copy of), and ``notebook``, when given, as its notebook path if it records one."""
        self.write(
            lambda c: c.execute(
                "UPDATE runs SET source = ?, notebook = CASE WHEN notebook IS NULL OR ? IS NULL "
                "THEN notebook ELSE ? END WHERE run_id = ?",
                [source, notebook, notebook, run_id],
            )
        )

    def child_status_counts(self, parent_run_id: str) -> dict[str, int]:
        """How many children of a run (a sweep's) are in each status."""
        rows = self.read(
            lambda c: c.execute(
                "SELECT status, count(*) FROM runs WHERE parent_run_id = ? GROUP BY status",
                [parent_run_id],
            ).fetchall()
        )
        return {str(status): int(n) for status, n in rows}

    # -- the runs table: ids by filter, order and scope, a page at a time ----------------

    def run_ids(
        self,
        filter: str | None = None,
        *,
        order_by: str | Sequence[str] | None = None,
        scope: RunScope | None = None,
        after: str | None = None,
        limit: int | None = None,
        now: float | None = None,
    ) -> list[str]:
        """The ids of the runs in ``scope`` (default: every run not deleted) that match
        ``filter``, in ``order_by`` order (the query language of docs/query.md; default:
        newest first; ties: newest row first). The one runs-table query: the compare view,
        sweeps and the server page with it.

        Paging is by keyset: ``after`` is the last run id of the previous page and the
        page holds the next ``limit`` runs in that order, so a page costs the same however
        deep it is and runs written meanwhile neither repeat nor skip a row. A cursor run
        that no longer exists raises ``RunNotFoundError``."""
        from mlnb.store.query import RunScope, compile_filter, compile_order_keys

        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidInputError(f"limit must be a non-negative int: {limit!r}")
        now = time.time() if now is None else now
        where, args = compile_filter(filter, now=now)
        terms = compile_order_keys(order_by, now=now)
        scope_sql, scope_args = (scope or RunScope()).where()
        base = "FROM runs r JOIN experiments e ON e.id = r.experiment_id"
        order = ", ".join(f"{e} {'DESC' if d else 'ASC'} NULLS LAST" for e, _, d in terms)
        order_args = [p for _, params, _ in terms for p in params]

        def fetch(c: sqlite3.Connection) -> list[str]:
            conds, cond_args = [f"({where})", scope_sql], [*args, *scope_args]
            if after is not None:
                keys = ", ".join(e for e, _, _ in terms)
                cursor = c.execute(
                    f"SELECT {keys}, r.id {base} WHERE r.run_id = ?", [*order_args, after]
                ).fetchone()
                if cursor is None:
                    raise RunNotFoundError(
                        f"cannot page after run {after!r}: {self.location} has no run with "
                        "that id (purged meanwhile?); start again from the first page"
                    )
                sql, keyset_args = _after_row(terms, cursor)
                conds.append(sql)
                cond_args += keyset_args
            sql = f"SELECT r.run_id {base} WHERE {' AND '.join(conds)} ORDER BY {order}, r.id DESC"
            if limit is None:  # no LIMIT at all: `LIMIT -1` made SQLite's sort ~10x slower
                return [r[0] for r in c.execute(sql, [*cond_args, *order_args])]
            return [r[0] for r in c.execute(sql + " LIMIT ?", [*cond_args, *order_args, limit])]

        return self.read(fetch)

    def run_keys(self, run_ids: Sequence[str] | None = None) -> dict[str, list[str]]:
        """The params, metrics and tags keys that the runs ``run_ids`` have, sorted, by kind
        (``{"params": [...], "metrics": [...], "tags": [...]}``: the runs table's columns).
        ``None``: every key of the store, read by walking each table's key index (one seek
        per distinct key instead of a scan)."""
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

        return self.read(fetch)

    # -- maintenance ------------------------------------------------------------------

    def gc(
        self, *, purge_deleted: bool = False, dry_run: bool = False, force: bool = False
    ) -> dict[str, int]:
        """Remove artifact files no run refers to (and, with ``purge_deleted``, deleted runs
        with all their data). Files younger than an hour are kept: a writer may be about to
        refer to them.

        Purging refuses (``RunStateError``, nothing purged) a deleted run whose process is
        still alive, unless ``force``: that process then gets ``RunNotFoundError`` at its
        next flush or end, and its run's id is never given to another run."""
        purged = 0
        if purge_deleted:

            def purge(conn: sqlite3.Connection) -> int:
                now = time.time()
                live = [
                    (run_id, host, pid)
                    for run_id, host, pid, beat in conn.execute(
                        "SELECT run_id, host, pid, heartbeat FROM runs "
                        "WHERE deleted_at IS NOT NULL AND status = 'running'"
                    )
                    if self._alive(run_id, host, beat, now)
                ]
                if live and not force:
                    shown = ", ".join(f"{r[:8]} (process {p} on {h})" for r, h, p in live[:5])
                    raise RunStateError(
                        f"{len(live)} deleted runs are still running: {shown}; nothing was "
                        "purged. Let them end (or stop them) and purge again, or purge them "
                        "anyway with --force (force=True): their processes then get "
                        "RunNotFoundError at their next flush"
                    )
                if dry_run:
                    sql = "SELECT count(*) FROM runs WHERE deleted_at IS NOT NULL"
                    return int(conn.execute(sql).fetchone()[0])
                return conn.execute("DELETE FROM runs WHERE deleted_at IS NOT NULL").rowcount

            purged = self.read(purge) if dry_run else self.write(purge)
        used = {
            r[0]
            for r in self.read(
                lambda c: c.execute("SELECT DISTINCT hash FROM artifacts").fetchall()
            )
        }
        removed, freed = self.contents.sweep(used, dry_run=dry_run)
        dead, dead_bytes = self.contents.remove_dead_temporaries(dry_run=dry_run)
        return {
            "runs_purged": purged,
            "files_removed": removed + dead,
            "bytes_freed": freed + dead_bytes,
        }

    def info(self) -> dict[str, Any]:
        """Path, schema version, row counts and sizes."""

        def counts(c: sqlite3.Connection) -> dict[str, int]:
            out = {}
            for table in (
                "experiments",
                "runs",
                "params",
                "metrics",
                "tags",
                "artifacts",
                "checks",
            ):
                out[table] = c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            out["deleted_runs"] = c.execute(
                "SELECT count(*) FROM runs WHERE deleted_at IS NOT NULL"
            ).fetchone()[0]
            return out

        db_bytes = 0
        if self.db_path is not None:
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.db_path) + suffix)
                if p.exists():
                    db_bytes += p.stat().st_size
        art_bytes = self.contents.total_bytes()
        return {
            "path": str(self.db_path) if self.db_path else ":memory:",
            "root": str(self.root),
            "schema_version": self.schema_version(),
            "counts": self.read(counts),
            "database_bytes": db_bytes,
            "artifact_bytes": art_bytes,
        }


BASE_COLUMNS = (
    "run_id",
    "name",
    "experiment",
    "status",
    "start_time",
    "end_time",
    "parent_run_id",
)  # fmt: skip  (then duration, notebook and linearity)
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


def _current_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


def _column_order(col: str) -> tuple[int, str]:
    group = {"params": 0, "metrics": 1, "tags": 2}[col.split(".", 1)[0]]
    return group, col


def _record(row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        run_id=row[1],
        name=row[2],
        experiment=row[3],
        status=row[4],
        start_time=row[5],
        end_time=row[6],
        parent_run_id=row[7],
        host=row[8],
        pid=row[9],
        user=row[10],
        source=row[11],
        deleted=row[12] is not None,
        notebook=row[13],
        linearity=row[14],
        linearity_detail=json_or_none(row[15]),
    )


CHECK_COLUMNS = (
    "kind, name, passed, value, threshold, comparator, direction, baseline_run_id, "
    "baseline_value, message, details, batch, created_at"
)


def _read_checks(conn: sqlite3.Connection, run_id: str, kind: str | None) -> list[CheckRecord]:
    sql = (
        f"SELECT {CHECK_COLUMNS} FROM checks WHERE run = (SELECT id FROM runs WHERE run_id = ?)"
        + (" AND kind = ?" if kind else "")
        + " ORDER BY created_at, id"
    )
    out = []
    for row in conn.execute(sql, [run_id, kind] if kind else [run_id]):
        out.append(
            CheckRecord(
                kind=row[0],
                name=row[1],
                passed=bool(row[2]),
                value=row[3],
                threshold=row[4],
                comparator=row[5],
                direction=row[6],
                baseline_run_id=row[7],
                baseline_value=row[8],
                message=row[9],
                details=json_or_none(row[10]) or {},
                batch=row[11],
                created_at=row[12],
            )
        )
    return out


class _Refused(Exception):
    """Metric points the database will not take (raised inside a transaction, which is
    rolled back); other runs' points may still be stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _metrics_tx(
    rows: Sequence[tuple[int, str, int, float, float]],
) -> Callable[[sqlite3.Connection], None]:
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


# One param into a running (or queued) run, unless its key is there already. The two
# statuses a run can be logged to are spelled out: `status NOT IN (<terminal ones>)` made
# SQLite build a temporary table per call (+2 µs, 15% of the call).
_INSERT_PARAM = (
    "INSERT INTO params (run, key, value, type, value_num) SELECT id, ?, ?, ?, ? FROM runs "
    "WHERE run_id = ? AND (status = 'running' OR status = 'queued') ON CONFLICT DO NOTHING"
)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
