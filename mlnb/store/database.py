"""The SQLite file behind a store: one connection per thread (one shared connection for
an in-memory store), transactions retried whole when the database is busy, and the schema
checked and migrated on open.

Safe with many processes at once: WAL, ``synchronous=NORMAL``, a 10 s busy timeout, every
write transaction ``BEGIN IMMEDIATE`` and retried with backoff while the database is busy.
Migrations run under the same lock, so many processes may open a fresh store at once. A
file that is not an mlnb store, or one from a newer mlnb, is refused before anything in it
changes (not even its journal mode).

The standard library's ``sqlite3`` does all of this; sqlite-utils is imported only to apply
migrations (importing it pulls in pandas, ~0.6 s), so opening an existing store is cheap.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mlnb.conventions import ENV_SYNCHRONOUS
from mlnb.errors import (
    InvalidInputError,
    MlnbWarning,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreReadOnlyError,
    StoreVersionError,
)
from mlnb.store import migrations

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
WRITE_DEADLINE_S = 120.0
NETWORK_FS = {"nfs", "nfs4", "cifs", "smbfs", "smb3", "fuse.sshfs", "9p", "afs", "lustre"}


def synchronous() -> str:
    """SQLite's ``synchronous`` setting for new connections: ``NORMAL`` (a power cut may
    lose the last transactions, never corrupt the file), or ``FULL`` with
    ``$MLNB_SYNCHRONOUS=FULL`` (every commit survives a power cut; commits cost an fsync)."""
    value = os.environ.get(ENV_SYNCHRONOUS, "NORMAL").strip().upper() or "NORMAL"
    if value not in ("NORMAL", "FULL"):
        raise StoreError(f"${ENV_SYNCHRONOUS} must be NORMAL or FULL, not {value!r:.40}")
    return value


def _is_busy(exc: sqlite3.Error) -> bool:
    msg = str(exc)
    return "locked" in msg or "busy" in msg


class StoreFile:
    """Connections and transactions on one mlnb database (``db_path=None``: in memory)."""

    def __init__(self, db_path: Path | None, root: Path) -> None:
        self.db_path = db_path
        self.root = root
        self.closed = False
        self._pid = os.getpid()
        _FILES.add(self)  # a forked child drops the connections it inherited (_after_fork)
        self._local = threading.local()
        self._conns: list[tuple[sqlite3.Connection, threading.RLock]] = []
        self._conns_lock = threading.Lock()
        self._mem_lock: threading.RLock | contextlib.nullcontext[None]
        self.read_only = ""  # why the store cannot be written ("" when it can)
        self._read_uri: str | None = None  # how a read-only store's file is opened
        if db_path is None:
            self._mem_lock = threading.RLock()
        else:
            self._mem_lock = contextlib.nullcontext()
            self._make_dirs()
            self.read_only = self._why_read_only()
            _warn_if_network_fs(self.root)
            self._preflight()
        self.ensure_schema()

    @property
    def location(self) -> str:
        """The database file's path (or ``:memory:``), for messages."""
        return ":memory:" if self.db_path is None else str(self.db_path)

    def _make_dirs(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise StoreError(f"cannot create the store folder {self.root}: {exc}") from None
            raise StoreReadOnlyError(
                f"cannot create the store folder {self.root}: {exc.strerror}; set MLNB_STORE "
                "(or --store) to a writable folder"
            ) from None
        if self.db_path is not None and self.db_path.exists() and not self.db_path.is_file():
            raise StoreCorruptError(f"{self.db_path} is not a file")

    def _why_read_only(self) -> str:
        """Why this process cannot write the store (a read-only filesystem, permissions),
        or "" when it can. A read-only store is read as it is; writes are refused."""
        assert self.db_path is not None
        exists = self.db_path.exists() and self.db_path.stat().st_size > 0
        if os.access(self.root, os.W_OK) and (not exists or os.access(self.db_path, os.W_OK)):
            return ""
        try:
            on_ro_fs = bool(os.statvfs(self.root).f_flag & os.ST_RDONLY)
        except OSError:
            on_ro_fs = False
        why = "a read-only file system" if on_ro_fs else "no permission to write it"
        if not exists:
            raise StoreReadOnlyError(
                f"there is no store in {self.root} yet and it cannot be created there ({why}); "
                "set MLNB_STORE (or --store) to a writable folder"
            )
        return why

    def check_writable(self) -> None:
        """Raise ``StoreReadOnlyError`` (with what to do) if this store cannot be written."""
        if self.read_only:
            raise StoreReadOnlyError(
                f"the store in {self.root} is read-only ({self.read_only}): reading it works, "
                "writing does not. Set MLNB_STORE (or --store) to a writable folder, or copy "
                "the store to one"
            )

    def _read_only_uri(self) -> str:
        """The URI a read-only store is opened with: ``mode=ro``, or ``immutable=1`` when
        SQLite cannot open it so (a WAL store whose ``-shm`` file is absent and cannot be
        created; nobody can be writing it then)."""
        assert self.db_path is not None
        if self._read_uri is None:
            uri = f"{self.db_path.absolute().as_uri()}?mode=ro"
            try:
                probe = sqlite3.connect(uri, uri=True)
                try:
                    probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
                finally:
                    probe.close()
            except sqlite3.OperationalError:
                uri += "&immutable=1"
            self._read_uri = uri
        return self._read_uri

    def _preflight(self) -> None:
        """Refuse a file that is not an mlnb store, or is from a newer mlnb, before
        changing anything in it (not even its journal mode)."""
        assert self.db_path is not None
        if not self.db_path.exists() or self.db_path.stat().st_size == 0:
            return
        uri = self._read_only_uri() if self.read_only else None
        try:
            conn = sqlite3.connect(uri or f"{self.db_path.absolute().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            applied = self.applied_migrations(conn)
            if applied is None:
                tables = [
                    r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                ]
                if tables:
                    raise StoreCorruptError(
                        f"{self.db_path} is an SQLite database but not an mlnb store (it has "
                        f"tables {', '.join(sorted(tables)[:5])}); it was left untouched"
                    )
            else:
                self._refuse_newer(applied, migrations.known_names())
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None
        finally:
            conn.close()

    def _new_conn(self) -> sqlite3.Connection:
        sync = synchronous()  # a bad $MLNB_SYNCHRONOUS is refused before any connection
        target = ":memory:" if self.db_path is None else str(self.db_path)
        if self.read_only:
            target = self._read_only_uri()
        try:
            conn = sqlite3.connect(
                target,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
                uri=bool(self.read_only),
            )
        except sqlite3.OperationalError as exc:
            raise self._translate(exc) from None
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if self.db_path is not None and not self.read_only:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if mode != "wal":
                    self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute(f"PRAGMA synchronous = {sync}")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._translate(exc) from None
        return conn

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use, reopened after fork)."""
        return self._conn_and_lock()[0]

    def _conn_and_lock(self) -> tuple[sqlite3.Connection, threading.RLock]:
        if self.closed:
            raise StoreError("this store has been closed")
        if self.db_path is None:  # one shared connection for the in-memory database
            with self._conns_lock:
                if not self._conns:
                    self._conns.append((self._new_conn(), threading.RLock()))
                return self._conns[0]
        pair: tuple[sqlite3.Connection, threading.RLock] | None = getattr(self._local, "pair", None)
        if pair is None:
            pair = (self._new_conn(), threading.RLock())
            self._local.pair = pair
            with self._conns_lock:
                self._conns.append(pair)
        return pair

    @contextlib.contextmanager
    def _session(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, held so that ``close()`` from another thread waits
        for the transaction instead of closing the connection under it (which crashes)."""
        with self._mem_lock:
            conn, lock = self._conn_and_lock()
            with lock:
                if self.closed:
                    raise StoreError("this store has been closed")
                yield conn

    def _after_fork(self) -> None:
        # Connections inherited from the parent must not be used (or closed) in the child.
        self._pid = os.getpid()
        self._local = threading.local()
        self._conns = []
        self._conns_lock = threading.Lock()

    def close(self) -> None:
        """Close every connection opened here (idempotent); waits for transactions other
        threads have in flight."""
        if self.closed:
            return
        self.closed = True
        if self._pid != os.getpid():
            return
        with self._conns_lock:
            pairs, self._conns = list(self._conns), []
        for conn, lock in pairs:
            with lock, contextlib.suppress(sqlite3.Error):
                conn.close()

    # -- transactions -----------------------------------------------------------------

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        msg = str(exc)
        where = self.db_path or "the in-memory store"
        if "not a database" in msg or "malformed" in msg or "file is encrypted" in msg:
            return StoreCorruptError(
                f"{where} is not a readable mlnb store ({msg}); it was left untouched. Move "
                "it aside or set MLNB_STORE to another folder"
            )
        if "readonly" in msg or "read-only" in msg or "unable to open" in msg:
            return StoreReadOnlyError(
                f"cannot write the store at {where} ({msg}); check the permissions of "
                f"{self.root} or set MLNB_STORE to a writable folder"
            )
        if "disk is full" in msg:
            return StoreFullError(
                f"the disk holding the store at {where} is full ({msg}); nothing of this write "
                "was stored. Free some space there (or move the store to a larger disk)"
            )
        if _is_busy(exc):
            return StoreError(
                f"the store at {where} stayed locked for {WRITE_DEADLINE_S:.0f} s ({msg})"
            )
        return StoreError(f"store error at {where}: {msg}")

    def _retry_busy(self, fn: Callable[[], T]) -> T:
        delay = 0.005
        deadline = time.monotonic() + WRITE_DEADLINE_S
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.5)

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction; on a busy database the
        whole transaction is retried, so ``fn`` must only touch the database."""

        self.check_writable()

        def attempt() -> T:
            with self._session() as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

        return self._write_retried(attempt)

    def write_statement(self, sql: str, parameters: Sequence[Any]) -> int:
        """Run one writing statement as its own transaction (SQLite takes the write lock
        when the statement starts, as ``BEGIN IMMEDIATE`` does) and return how many rows
        it changed; retried while busy. Two round trips cheaper than :meth:`write`, for
        the hot single-row writes (``log_param``)."""

        # this thread's connection, when it has one
        pair: tuple[sqlite3.Connection, threading.RLock] | None = self._local.__dict__.get("pair")
        if pair is None or self.read_only:
            return self._write_statement_retried(sql, parameters)
        conn, lock = pair
        try:  # the first try outside the retry loop: most writes are not contended
            with lock:  # as in _session, without its generator on this hot path
                if self.closed:
                    raise StoreError("this store has been closed")
                return conn.execute(sql, parameters).rowcount
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise self._translate(exc) from None
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"store integrity error: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None
        except UnicodeEncodeError as exc:
            raise _not_text(exc) from None
        return self._write_statement_retried(sql, parameters)

    def _write_statement_retried(self, sql: str, parameters: Sequence[Any]) -> int:
        """:meth:`write_statement` the general way: opens the connection, checks the store
        is open and writable, and retries while busy."""
        if self.db_path is None:  # the shared in-memory connection: the usual way
            return self.write(lambda conn: conn.execute(sql, parameters).rowcount)
        self.check_writable()

        def attempt() -> int:
            conn, lock = self._conn_and_lock()
            with lock:
                if self.closed:
                    raise StoreError("this store has been closed")
                return conn.execute(sql, parameters).rowcount

        return self._write_retried(attempt)

    def _write_retried(self, attempt: Callable[[], T]) -> T:
        try:
            return self._retry_busy(attempt)
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"store integrity error: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None
        except UnicodeEncodeError as exc:
            raise _not_text(exc) from None

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one read transaction (a consistent snapshot)."""

        def attempt() -> T:
            with self._session() as conn:
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")

        try:
            return self._retry_busy(attempt)
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None
        except UnicodeEncodeError as exc:
            raise _not_text(exc) from None

    # -- schema -----------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Apply pending migrations (under the write lock); refuse a newer schema."""
        applied = self.read(self.applied_migrations)
        known = migrations.known_names()
        if applied is not None:
            self._refuse_newer(applied, known)
            if len(applied) == len(known):
                return
        else:
            tables = self.read(
                lambda c: [
                    r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")
                ]
            )
            if tables:
                raise StoreCorruptError(
                    f"{self.db_path} is an SQLite database but not an mlnb store (it has "
                    f"tables {', '.join(sorted(tables)[:5])}); it was left untouched"
                )
        if self.read_only:
            pending = [name for name in known if name not in (applied or [])]
            raise StoreReadOnlyError(
                f"the store in {self.root} needs upgrading to this mlnb's schema "
                f"({', '.join(pending)}) but is read-only ({self.read_only}); open it once "
                "where it can be written, or use the mlnb that wrote it"
            )
        from sqlite_utils import Database

        def apply(conn: sqlite3.Connection) -> None:
            now_applied = self.applied_migrations(conn)
            if now_applied is not None:
                self._refuse_newer(now_applied, known)
            migrations.migrations().apply(Database(conn, execute_plugins=False))

        # A migration may rebuild a table others refer to (SQLite's 12-step ALTER, keeping
        # every id): foreign keys must be off, and that pragma only acts outside a transaction.
        conn = self.conn()
        conn.execute("PRAGMA foreign_keys = OFF")
        try:
            self.write(apply)
        finally:
            conn.execute("PRAGMA foreign_keys = ON")

    @staticmethod
    def applied_migrations(conn: sqlite3.Connection) -> list[str] | None:
        """Names of the migrations applied to the database (None: not an mlnb store yet)."""
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='_sqlite_migrations'"
        ).fetchone()
        if not exists:
            return None
        return [
            r[0]
            for r in conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY id",
                [migrations.MIGRATION_SET],
            )
        ]

    def _refuse_newer(self, applied: list[str], known: list[str]) -> None:
        unknown = [name for name in applied if name not in known]
        if unknown:
            raise StoreVersionError(
                f"the store at {self.db_path} was written by a newer mlnb (schema "
                f"{applied[-1]!r}, this mlnb knows up to {known[-1]!r}); upgrade with "
                "`pip install -U mlnb`"
            )

    def schema_version(self) -> str:
        """Name of the newest migration applied to this store."""
        applied = self.read(self.applied_migrations) or ["(none)"]
        return applied[-1]


# Every StoreFile of the process: a forked child must not use (or close) the connections it
# inherited. The fork hook resets them once, in the child, instead of an os.getpid() per
# connection lookup (a system call: ~5 % of a log_param).
_FILES: weakref.WeakSet[StoreFile] = weakref.WeakSet()


def _forget_inherited_connections() -> None:
    for store_file in list(_FILES):
        store_file._after_fork()


os.register_at_fork(after_in_child=_forget_inherited_connections)


def _not_text(exc: UnicodeEncodeError) -> InvalidInputError:
    """A string bound to SQL that is not UTF-8 text (the checks in ``validation`` say so
    with the key's name; this catches any other, e.g. a run reference)."""
    text = str(exc.object)
    return InvalidInputError(
        f"{text[:40]!r} contains the lone surrogate {text[exc.start]!r} at position "
        f"{exc.start}, which is not text SQLite can store; remove it, or decode the bytes it "
        "came from with errors='replace'"
    )


def _warn_if_network_fs(path: Path) -> None:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    best, fstype = "", ""
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) > 2 and target.startswith(parts[1]) and len(parts[1]) > len(best):
            best, fstype = parts[1], parts[2]
    if fstype in NETWORK_FS:
        import warnings

        warnings.warn(
            f"the mlnb store {path} is on a network filesystem ({fstype}); SQLite's WAL mode "
            "needs shared memory and may corrupt or lock there. Set MLNB_STORE to a local "
            "folder",
            MlnbWarning,
            stacklevel=3,
        )
