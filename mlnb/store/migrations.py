"""The whole schema of the store, as sqlite-utils ``Migrations``.

This is the only place the schema changes. Each change is a new function appended below;
never edit one that has shipped. ``docs/store-schema.md`` documents every table and column
and must be updated with each migration.

Conventions: times are Unix seconds (REAL); child tables refer to ``runs.id`` (a compact
integer) while ``runs.run_id`` is the globally unique id users see; a metric value of NULL
means NaN (SQLite stores NaN as NULL), ±inf are stored as REAL infinities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

MIGRATION_SET = "mlnb"


def _m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE experiments (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL UNIQUE,
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            name TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('queued', 'running', 'finished', 'failed', 'killed', 'crashed')),
            parent_run_id TEXT,
            start_time REAL NOT NULL,
            end_time REAL,
            heartbeat REAL,
            host TEXT,
            pid INTEGER,
            user TEXT,
            source TEXT,
            deleted_at REAL
        );
        CREATE INDEX runs_status ON runs(status);
        CREATE INDEX runs_experiment_start ON runs(experiment_id, start_time);
        CREATE INDEX runs_parent ON runs(parent_run_id);
        CREATE TABLE params (
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            type TEXT NOT NULL,
            value_num REAL,
            PRIMARY KEY (run, key)
        ) WITHOUT ROWID;
        CREATE INDEX params_key_num ON params(key, value_num);
        CREATE TABLE metrics (
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            step INTEGER NOT NULL,
            value REAL,
            timestamp REAL NOT NULL,
            PRIMARY KEY (run, key, step)
        ) WITHOUT ROWID;
        CREATE TABLE latest_metrics (
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            step INTEGER NOT NULL,
            value REAL,
            timestamp REAL NOT NULL,
            PRIMARY KEY (run, key)
        ) WITHOUT ROWID;
        CREATE INDEX latest_metrics_key_value ON latest_metrics(key, value);
        CREATE TABLE tags (
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (run, key)
        ) WITHOUT ROWID;
        CREATE TABLE artifacts (
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            hash TEXT NOT NULL,
            size INTEGER NOT NULL,
            kind TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (run, path)
        ) WITHOUT ROWID;
        CREATE INDEX artifacts_hash ON artifacts(hash);
        CREATE VIEW metric_history AS
            SELECT runs.run_id, metrics.key, metrics.step, metrics.value, metrics.timestamp
            FROM metrics JOIN runs ON runs.id = metrics.run;
        """
    )


def _m002_capture(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE environments (
            hash TEXT PRIMARY KEY,
            python TEXT,
            platform TEXT,
            packages INTEGER,
            data TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        ALTER TABLE runs ADD COLUMN environment_hash TEXT REFERENCES environments(hash);
        CREATE TABLE git_states (
            run INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
            root TEXT,
            commit_sha TEXT,
            branch TEXT,
            remote TEXT,
            dirty INTEGER NOT NULL,
            diff_hash TEXT,
            diff_bytes INTEGER,
            diff_truncated INTEGER,
            untracked TEXT,
            untracked_count INTEGER
        );
        CREATE TABLE datasets (
            hash TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            rows INTEGER,
            columns INTEGER,
            size_bytes INTEGER,
            schema TEXT,
            profile TEXT,
            sampled INTEGER NOT NULL DEFAULT 0,
            details TEXT,
            created_at REAL NOT NULL
        );
        CREATE TABLE run_datasets (
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('input', 'output')),
            hash TEXT NOT NULL REFERENCES datasets(hash),
            logged_at REAL NOT NULL,
            PRIMARY KEY (run, name, role)
        ) WITHOUT ROWID;
        CREATE INDEX run_datasets_hash ON run_datasets(hash);
        CREATE TABLE file_hashes (
            path TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            hash TEXT NOT NULL
        );
        """
    )


def _m003_lineage(db: Database) -> None:
    db.executescript(
        """
        ALTER TABLE runs ADD COLUMN notebook TEXT;
        ALTER TABLE runs ADD COLUMN linearity TEXT;
        ALTER TABLE runs ADD COLUMN linearity_detail TEXT;
        CREATE TABLE cells (
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            execution_count INTEGER,
            source_hash TEXT NOT NULL,
            source TEXT NOT NULL,
            started REAL NOT NULL,
            ended REAL,
            error TEXT,
            PRIMARY KEY (run, seq)
        ) WITHOUT ROWID;
        """
    )


def _m004_checks(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE checks (
            id INTEGER PRIMARY KEY,
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            passed INTEGER NOT NULL,
            value REAL,
            threshold REAL,
            comparator TEXT,
            direction TEXT CHECK (direction IN ('higher', 'lower')),
            baseline_run_id TEXT,
            baseline_value REAL,
            message TEXT,
            details TEXT,
            batch TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX checks_run ON checks(run, kind, created_at);
        """
    )


def _m005_run_ids_never_reused(db: Database) -> None:
    """``runs.id`` becomes AUTOINCREMENT, so the id of a purged run is never given to a
    new one (a process still logging to the purged run must not write into another).
    SQLite cannot alter a primary key in place: the table is rebuilt (the 12 steps of
    https://sqlite.org/lang_altertable.html; ``database`` turns foreign keys off around
    migrations, as step 1 asks), keeping every id, and its indexes and the view that
    reads it are made again. Ids purged before this migration are not known."""
    db.executescript(
        """
        DROP VIEW metric_history;
        CREATE TABLE runs_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL UNIQUE,
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            name TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('queued', 'running', 'finished', 'failed', 'killed', 'crashed')),
            parent_run_id TEXT,
            start_time REAL NOT NULL,
            end_time REAL,
            heartbeat REAL,
            host TEXT,
            pid INTEGER,
            user TEXT,
            source TEXT,
            deleted_at REAL,
            environment_hash TEXT REFERENCES environments(hash),
            notebook TEXT,
            linearity TEXT,
            linearity_detail TEXT
        );
        INSERT INTO runs_new (id, run_id, experiment_id, name, status, parent_run_id,
            start_time, end_time, heartbeat, host, pid, user, source, deleted_at,
            environment_hash, notebook, linearity, linearity_detail)
        SELECT id, run_id, experiment_id, name, status, parent_run_id, start_time, end_time,
            heartbeat, host, pid, user, source, deleted_at, environment_hash, notebook,
            linearity, linearity_detail
        FROM runs;
        DROP TABLE runs;
        ALTER TABLE runs_new RENAME TO runs;
        CREATE INDEX runs_status ON runs(status);
        CREATE INDEX runs_experiment_start ON runs(experiment_id, start_time);
        CREATE INDEX runs_parent ON runs(parent_run_id);
        CREATE VIEW metric_history AS
            SELECT runs.run_id, metrics.key, metrics.step, metrics.value, metrics.timestamp
            FROM metrics JOIN runs ON runs.id = metrics.run;
        """
    )


def _m006_model_registry(db: Database) -> None:
    """The model registry: registered models, their versions (numbered per name; a version
    refers to its run by the global ``run_id``, so it neither travels in a run's bundle nor
    disappears when the run is purged) and alias events, append-only: the current target
    of an alias is its newest event, so moving an alias and recording who, when and why
    are one insert."""
    db.executescript(
        """
        CREATE TABLE registered_models (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            description TEXT,
            created_at REAL NOT NULL
        );
        CREATE TABLE model_versions (
            model INTEGER NOT NULL REFERENCES registered_models(id),
            version INTEGER NOT NULL,
            run_id TEXT,
            artifact_path TEXT NOT NULL,
            artifact_hash TEXT NOT NULL,
            size INTEGER NOT NULL,
            format TEXT NOT NULL,
            flavor TEXT,
            signature TEXT,
            description TEXT,
            user TEXT,
            created_at REAL NOT NULL,
            PRIMARY KEY (model, version)
        ) WITHOUT ROWID;
        CREATE INDEX model_versions_run ON model_versions(run_id);
        CREATE INDEX model_versions_hash ON model_versions(artifact_hash);
        CREATE TABLE alias_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model INTEGER NOT NULL REFERENCES registered_models(id),
            alias TEXT NOT NULL,
            version INTEGER,
            previous_version INTEGER,
            user TEXT,
            host TEXT,
            reason TEXT,
            check_batch TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX alias_events_alias ON alias_events(model, alias, id);
        """
    )


def _m007_predictions(db: Database) -> None:
    """The prediction log of ``mlnb serve``: a sampled share of served requests (inputs,
    outputs, latency, the version that answered) and the ground truth that arrives later
    (feedback), both keyed by the request id the service returned. Not tied to runs: they
    do not travel in bundles."""
    db.executescript(
        """
        CREATE TABLE predictions (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL UNIQUE,
            model TEXT NOT NULL,
            version INTEGER NOT NULL,
            alias TEXT,
            columns TEXT NOT NULL,
            inputs TEXT NOT NULL,
            outputs TEXT NOT NULL,
            rows INTEGER NOT NULL,
            latency_ms REAL NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX predictions_model_time ON predictions(model, created_at);
        CREATE TABLE prediction_feedback (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL,
            label TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX prediction_feedback_request ON prediction_feedback(request_id, id);
        """
    )


_STEPS = [
    _m001_initial,
    _m002_capture,
    _m003_lineage,
    _m004_checks,
    _m005_run_ids_never_reused,
    _m006_model_registry,
    _m007_predictions,
]


def migrations() -> Migrations:
    """The ordered migration set; built lazily because sqlite-utils imports pandas."""
    from sqlite_utils.migrations import Migrations

    mig = Migrations(MIGRATION_SET)
    for step in _STEPS:
        mig(name=step.__name__.lstrip("_"))(step)
    return mig


def known_names() -> list[str]:
    """Names of every migration this version of mlnb knows, in order."""
    return [step.__name__.lstrip("_") for step in _STEPS]
