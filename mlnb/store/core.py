"""``Store``: the one SQLite file (plus a folder of content-addressed artifacts) that every
part of mlnb writes to and reads from, with typed reads and writes of runs.

The class is the public door; the SQL lives in modules of functions over the database,
one per kind of row: ``runs`` (runs, params, tags), ``metrics``, ``listing`` (reading runs
back, the runs-table query), ``checks``, ``provenance`` (environment, git, datasets,
cells) and ``upkeep`` (crashed runs, garbage collection, info). Connections, transactions
and migrations live in ``mlnb.store.database`` (every write is one ``BEGIN IMMEDIATE``
transaction, retried whole while the database is busy). Writes are idempotent (a retried
or replayed batch changes nothing), inputs are checked before a transaction begins, and a
batch is all or nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlnb.conventions import ENV_STORE
from mlnb.errors import InvalidInputError, StoreError, StoreFullError, StoreNotFoundError
from mlnb.records import Artifact, CheckRecord, RunRecord, SampledHistory
from mlnb.store import checks as checks_table
from mlnb.store import inputs as validation
from mlnb.store import listing, metrics, provenance, runs, upkeep
from mlnb.store.artifacts import ContentStore, folder_files
from mlnb.store.database import StoreFile
from mlnb.store.metrics import DOWNSAMPLE_POINTS

if TYPE_CHECKING:
    import pandas as pd
    from sqlite_utils import Database

    from mlnb.capture.fingerprints import Fingerprint
    from mlnb.store.query import RunScope

STORE_DIRNAME = ".mlnb"
DB_FILENAME = "mlnb.db"

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


class Store:
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
        return runs.create_run(
            self.file, experiment=experiment, name=name, tags=tags,
            parent_run_id=parent_run_id, source=source, status=status, run_id=run_id,
            start_time=start_time,
        )  # fmt: skip

    def set_experiment(self, run_id: str, experiment: str) -> None:
        """Move a run into ``experiment`` (created if new)."""
        runs.set_experiment(self.file, run_id, experiment)

    def resolve_run_id(self, ref: str) -> str:
        """The full id of the run that ``ref`` names: an id, a unique run name, or a unique
        id prefix, in that order (a run named ``a`` is not shadowed by another run whose id
        happens to begin with ``a``, as git prefers a ref over an abbreviated hash)."""
        return runs.resolve_run_id(self.file, ref)

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
        return runs.set_status(self.file, run_id, status, end_time=end_time, only_from=only_from)

    def run_status(self, run_id: str) -> str | None:
        """The status of the run with exactly this id; None when the store has no such run."""
        return runs.run_status(self.file, run_id)

    def claim_queued_run(self, run_id: str, *, source: str | None) -> bool:
        """Move a ``queued`` run (a sweep's child) to ``running`` in this process: its
        clock starts now, and host, pid, user and ``source`` become this process's. A
        compare-and-set: of two workers claiming one run, exactly one gets True."""
        return runs.claim_queued_run(self.file, run_id, source=source)

    def resume_run(self, run_id: str, *, name: str | None = None) -> None:
        """Mark an existing run ``running`` again, without an end time
        (``start_run(run_id=...)``; a job's kernel attaching to the job's run); ``name``,
        when given, renames it."""
        runs.resume_run(self.file, run_id, name=name)

    def rename_run(self, run_id: str, name: str) -> None:
        """Give a run another name (whatever its status)."""
        runs.rename_run(self.file, run_id, name)

    def set_source(self, run_id: str, source: str | None, *, notebook: str | None = None) -> None:
        """Record where a run came from: ``source`` (the script or notebook a job ran a
        copy of), and ``notebook``, when given, as its notebook path if it records one."""
        runs.set_source(self.file, run_id, source, notebook=notebook)

    def child_status_counts(self, parent_run_id: str) -> dict[str, int]:
        """How many children of a run (a sweep's) are in each status."""
        return runs.child_status_counts(self.file, parent_run_id)

    def delete_run(self, ref: str) -> str:
        """Hide a run from every listing (reversible with ``restore_run``)."""
        run_id = self.resolve_run_id(ref)
        runs.set_deleted(self.file, run_id, True)
        return run_id

    def restore_run(self, ref: str) -> str:
        """Bring back a deleted run."""
        run_id = self.resolve_run_id(ref)
        runs.set_deleted(self.file, run_id, False)
        return run_id

    # -- params, tags, metrics ------------------------------------------------------------

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log params all-or-nothing. Logging a key again with the same value is a no-op;
        with a different value it is a ``ParamConflictError`` naming both values."""
        runs.log_params(self.file, run_id, params)

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        """Log one param (the same value again is a no-op; another value is a
        ``ParamConflictError``). On disk when it returns."""
        runs.log_param(self.file, run_id, key, value)

    def set_tags(self, run_id: str, tags: Mapping[str, Any], *, check_state: bool = True) -> None:
        """Set tags (mutable, last write wins) all-or-nothing. ``check_state=False`` lets
        tools annotate a finished run (gate results); users' runs refuse it once ended."""
        runs.set_tags(self.file, run_id, tags, check_state=check_state)

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove a tag from a run."""
        runs.delete_tag(self.file, run_id, key)

    def max_steps(self, run_id: str) -> dict[str, int]:
        """The highest step logged so far for each metric key of a run."""
        return metrics.max_steps(self.file, run_id)

    def history(self, run_id: str, key: str) -> list[tuple[int, float, float]]:
        """Every point of one metric of one run: ``(step, value, timestamp)`` by step."""
        return metrics.history(self.file, self.resolve_run_id(run_id), key)

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
        return metrics.downsampled_history(
            self.file, self.resolve_run_id(run_id), key, max_points=max_points, before=before
        )

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
        self.file.read(lambda c: runs.writable_run(self.file, c, run_id, check_state=check_state))
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
            rowid = runs.writable_run(self.file, conn, run_id, check_state=check_state)
            conn.executemany(
                "INSERT OR REPLACE INTO artifacts (run, path, hash, size, kind, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(rowid, a.path, a.hash, a.size, a.kind, a.created_at) for a in arts],
            )

        self.file.write(tx)
        return arts

    # -- checks (gates, --check, validations) -----------------------------------------

    def log_checks(self, run_id: str, checks: Sequence[CheckRecord]) -> str:
        """Record verdicts on a run (finished or not) in the ``checks`` table, all or
        nothing, as one batch; returns the batch id (given on the records, else new)."""
        return checks_table.log_checks(self.file, run_id, checks)

    def get_checks(self, ref: str, *, kind: str | None = None) -> list[CheckRecord]:
        """A run's recorded checks, oldest first (optionally only one ``kind``)."""
        return checks_table.get_checks(self.file, self.resolve_run_id(ref), kind=kind)

    # -- lineage and provenance -----------------------------------------------------------

    def record_cell(
        self,
        run_id: str,
        *,
        execution_count: int | None,
        source: str,
        started: float,
        ended: float | None,
        error: str | None,
    ) -> None:
        """Append one executed cell to the run's lineage (the next ``seq``)."""
        cell = {"execution_count": execution_count, "source": source, "started": started,
                "ended": ended, "error": error}  # fmt: skip
        provenance.record_cells(self.file, run_id, [cell])

    def record_cells(self, run_id: str, cells: Sequence[Mapping[str, Any]]) -> None:
        """Append executed cells (dicts with ``execution_count``, ``source``, ``started``,
        ``ended``, ``error``) to the run's lineage, in order, in one transaction."""
        provenance.record_cells(self.file, run_id, cells)

    def cells(self, run_id: str) -> list[dict[str, Any]]:
        """The run's executed cells in execution order."""
        return provenance.cells(self.file, run_id)

    def set_notebook(
        self,
        run_id: str,
        *,
        notebook: str | None = None,
        linearity: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Record the run's notebook path and/or its linearity verdict."""
        provenance.set_notebook(
            self.file, run_id, notebook=notebook, linearity=linearity, detail=detail
        )

    def save_environment(self, run_id: str, env: Mapping[str, Any], digest: str) -> None:
        """Record the run's environment; identical environments are stored once."""
        provenance.save_environment(self.file, run_id, env, digest)

    def save_git(self, run_id: str, git: Mapping[str, Any]) -> None:
        """Record the run's git state; the uncommitted diff becomes an artifact."""
        diff = git.get("diff") or b""
        diff_hash = None
        if diff:
            (art,) = self.log_artifact(
                run_id, diff if isinstance(diff, bytes) else str(diff).encode(),
                name="mlnb/git.diff", kind="git-diff", check_state=False,
            )  # fmt: skip
            diff_hash = art.hash
        provenance.save_git(self.file, run_id, git, diff_hash)

    def log_dataset(
        self,
        run_id: str,
        fingerprint: Fingerprint,
        *,
        name: str,
        role: str,
        profile: Mapping[str, Any] | None = None,
    ) -> None:
        """Link a dataset (stored once per fingerprint) to the run by name and role."""
        provenance.log_dataset(self.file, run_id, fingerprint, name=name, role=role,
                               profile=profile)  # fmt: skip

    def file_hash_cache(self) -> provenance.StoreFileHashCache:
        """A cache of file fingerprints keyed on (path, size, mtime_ns, inode)."""
        return provenance.StoreFileHashCache(self.file)

    # -- reading runs -----------------------------------------------------------------

    def reap_crashed(self, *, force: bool = False) -> list[str]:
        """Mark runs whose process died as ``crashed``: on this host, a run whose lock file
        is not held; elsewhere, one whose heartbeat is older than 5 minutes. Cheap; called
        by every read at most once a second."""
        if self.db_path is None or self.file.read_only:  # a read-only store is shown as is
            return []
        now = time.time()
        if not force and now - self._last_reap < 1.0:
            return []
        self._last_reap = now
        return upkeep.reap_crashed(self.file, self.locks_dir)

    def get_run(self, ref: str) -> RunRecord:
        """Everything about one run (by id, unique id prefix, or unique name)."""
        self.reap_crashed()
        rec = listing.read_run(self.file, self.resolve_run_id(ref))
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
        self.reap_crashed()
        return listing.search_runs(
            self.file, filter, experiment=experiment, order_by=order_by,
            max_results=max_results, include_deleted=include_deleted, now=now,
        )  # fmt: skip

    def check_experiments(self, names: Sequence[str]) -> None:
        """Raise ``ExperimentNotFoundError`` listing the experiments there are if one of
        ``names`` is not among them (a typo would otherwise read as "no runs")."""
        listing.check_experiments(self.file, names)

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
        return listing.run_ids(
            self.file, filter, order_by=order_by, scope=scope, after=after, limit=limit, now=now
        )

    def run_keys(self, run_ids: Sequence[str] | None = None) -> dict[str, list[str]]:
        """The params, metrics and tags keys that the runs ``run_ids`` have, sorted, by kind
        (``{"params": [...], "metrics": [...], "tags": [...]}``: the runs table's columns).
        ``None``: every key of the store, read by walking each table's key index (one seek
        per distinct key instead of a scan)."""
        return listing.run_keys(self.file, run_ids)

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
            purged = upkeep.purge_deleted(self.file, self.locks_dir, dry_run=dry_run, force=force)
        files, freed = upkeep.collect_files(self.file, self.contents, dry_run=dry_run)
        return {"runs_purged": purged, "files_removed": files, "bytes_freed": freed}

    def info(self) -> dict[str, Any]:
        """Path, schema version, row counts and sizes."""
        return upkeep.info(self.file, self.contents, self.root)
