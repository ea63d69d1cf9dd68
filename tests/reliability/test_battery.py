"""Issue 16 item 5: the reliability battery — real processes against real store files,
killed at random moments, with the figures printed (points expected / stored, kills,
integrity results) so a CI log shows what was proven.

Every test here is ``slow`` (``make test`` runs them; ``-m "not slow"`` skips them). The
repetition counts are sized for 2 shared cores and printed with the figures. The random
moments come from a seeded generator whose seed is printed, so a failure can be replayed
(``MLNB_BATTERY_SEED``).
"""

from __future__ import annotations

import functools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import mlnb
from mlnb.store import Store, migrations
from tests.reliability.conftest import integrity_ok

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("MLNB_BATTERY_SEED", str(int(time.time()))))
WRITERS, POINTS, ROUNDS = 8, 5_000, 2  # per synchronous mode
KILLS = 50
OPEN_ROUNDS, OPENERS, MIGRATION_KILLS = 10, 8, 10
MOVE_KILLS = 6  # per move: export, import, sync

Say = Callable[[str], None]
_procs: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _reap_processes() -> Iterator[None]:
    yield
    while _procs:
        proc = _procs.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture
def say(capsys: pytest.CaptureFixture[str]) -> Iterator[Say]:
    """Print a figure to the terminal even when pytest captures output."""

    def say(line: str) -> None:
        with capsys.disabled():
            print(f"\n[battery] {line}", end="", flush=True)

    yield say


def spawn(code: str, store_dir: Path | None = None, **env: str) -> subprocess.Popen[str]:
    extra = {"MLNB_STORE": str(store_dir)} if store_dir is not None else {}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **extra, **env},
    )
    _procs.append(proc)
    return proc


def one(db: Path, sql: str, args: tuple[object, ...] = ()) -> object:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchone()[0]


# -- 8 writers and a reader, synchronous NORMAL and FULL -----------------------------------

WRITER = """
    import mlnb, sys
    with mlnb.start_run("w", experiment="c", capture=False):
        for i in range(%d):
            mlnb.log_metric("loss", 1.0 / (i + 1))
    print("done")
"""
READER = """
    import sqlite3, time
    # 20 Hz: count the points; a count never goes down, and never passes the total
    conn = None
    counts, end = [], time.monotonic() + 120
    while time.monotonic() < end:
        try:
            conn = conn or sqlite3.connect("%s")
            n = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
            done = conn.execute("SELECT count(*) FROM runs WHERE status = 'finished'").fetchone()[0]
        except sqlite3.OperationalError:
            time.sleep(0.05)
            continue
        counts.append(n)
        if done == %d:
            break
        time.sleep(0.05)
    assert counts == sorted(counts), "a reader saw the point count go down"
    print("reads", len(counts), "last", counts[-1] if counts else 0)
"""


@pytest.mark.parametrize("mode", ["NORMAL", "FULL"])
def test_battery_eight_writers_and_a_reader_store_every_point_exactly_once(
    tmp_path: Path, mode: str, say: Say
) -> None:
    """Issue 16 item 5: 8 writer processes × 5,000 points and a reader at 20 Hz, with
    ``synchronous`` NORMAL and FULL, repeated: every point stored exactly once."""
    for round_ in range(ROUNDS):
        store_dir = tmp_path / f"{mode}-{round_}"
        Store(store_dir).close()
        db = store_dir / "mlnb.db"
        start = time.perf_counter()
        procs = [spawn(WRITER % POINTS, store_dir, MLNB_SYNCHRONOUS=mode) for _ in range(WRITERS)]
        procs.append(spawn(READER % (db, WRITERS), store_dir))
        outs = [p.communicate(timeout=240) for p in procs]
        for proc, (_out, err) in zip(procs, outs, strict=True):
            assert proc.returncode == 0, err
            assert "locked" not in err, err
        stored = one(db, "SELECT count(*) FROM metrics")
        distinct = one(db, "SELECT count(*) FROM (SELECT DISTINCT run, key, step FROM metrics)")
        per_run = {
            r[0] for r in sqlite3.connect(db).execute("SELECT count(*) FROM metrics GROUP BY run")
        }
        ok = integrity_ok(db)
        say(
            f"writers synchronous={mode} round {round_ + 1}/{ROUNDS}: points expected "
            f"{WRITERS * POINTS:,}, stored {stored:,} (distinct {distinct:,}), "
            f"{outs[-1][0].strip()}, integrity {'ok' if ok else 'FAILED'}, "
            f"{time.perf_counter() - start:.1f} s"
        )
        assert stored == distinct == WRITERS * POINTS and per_run == {POINTS}
        assert one(db, "SELECT count(*) FROM runs WHERE status = 'finished'") == WRITERS
        assert ok


def test_battery_synchronous_setting_is_applied_and_checked(tmp_path: Path) -> None:
    """Issue 16 item 5: ``$MLNB_SYNCHRONOUS`` picks FULL; a wrong value is refused."""
    code = (
        "import mlnb; s = mlnb.Store(%r); print(s.db.execute('PRAGMA synchronous').fetchone()[0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code % str(tmp_path / "s")],
        capture_output=True, text=True, env={**os.environ, "MLNB_SYNCHRONOUS": "full"},
        check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "2"  # FULL
    os.environ["MLNB_SYNCHRONOUS"] = "sometimes"
    try:
        with pytest.raises(mlnb.MlnbError, match="MLNB_SYNCHRONOUS must be NORMAL or FULL"):
            Store(tmp_path / "t")
    finally:
        del os.environ["MLNB_SYNCHRONOUS"]


# -- a writer SIGKILLed at random moments ---------------------------------------------------

VICTIM = """
    import sys
    import mlnb
    from mlnb.store import metrics, runs
    run = mlnb.start_run("victim", capture=False)
    st = mlnb.get_store()
    rowid, _ = runs.run_rowid(st.file, run.run_id)
    print(run.run_id, flush=True)
    i = b = 0
    while True:
        for _ in range(300):
            mlnb.log_metric("x", float(i))
            i += 1
        mlnb.flush()
        sys.stdout.write(f"acked {i}\\n")  # one write: a kill cannot split the line
        sys.stdout.flush()
        # a batch of 1,000 points in one transaction: on disk whole or not at all
        metrics.insert_metrics(st.file, [(rowid, "batch", b + k, 1.0, 0.0) for k in range(1000)])
        b += 1000
        sys.stdout.write(f"batched {b}\\n")
        sys.stdout.flush()
"""
FINISHER = """
    import mlnb
    with mlnb.start_run("finisher", capture=False) as run:
        for i in range(2000):
            mlnb.log_metric("x", float(i))
    print(run.run_id, flush=True)
"""


def _acked(out: str, word: str) -> int:
    """The highest count the victim acknowledged as ``word N``. Only whole lines count: the
    kill can land while a line is being written (a line without its newline was never
    acknowledged)."""
    whole = out[: out.rfind("\n") + 1]
    counts = [line.split() for line in whole.splitlines() if line.startswith(word + " ")]
    return max((int(c[1]) for c in counts if len(c) == 2 and c[1].isdigit()), default=0)


def test_acked_counts_only_whole_lines() -> None:
    """Pins the flake that failed CI at stop 18: a victim killed between the writes of
    ``print("acked", i)`` (unbuffered output) left a bare ``acked`` line, and parsing it
    raised IndexError instead of ignoring an acknowledgement that was never completed."""
    assert _acked("run\nacked 300\nbatched 1000\nacked", "acked") == 300
    assert _acked("run\nacked 300\nacked 6", "acked") == 300
    assert _acked("run\nacked 300\nacked 600\n", "acked") == 600
    assert _acked("run\nbatched 1000\nbatched", "batched") == 1000
    assert _acked("", "acked") == 0


def test_battery_writers_sigkilled_at_random_moments_lose_no_acknowledged_point(
    tmp_path: Path, say: Say
) -> None:
    """Issue 16 item 5: a writer SIGKILLed at random moments, 50 times: integrity ok, no
    partial batch, every acknowledged flush present; each killed run is ``crashed`` at the
    next read (its lock is free) and no finished run is ever marked crashed."""
    rng = random.Random(SEED)
    store_dir = tmp_path / "s"
    Store(store_dir).close()
    db = store_dir / "mlnb.db"
    finished: list[str] = []
    acked_total = stored_total = 0
    worst_detect = 0.0
    start = time.perf_counter()
    for kill in range(KILLS):
        victim = spawn(VICTIM, store_dir)
        finisher = spawn(FINISHER, store_dir) if kill % 5 == 0 else None
        assert victim.stdout is not None
        run_id = victim.stdout.readline().strip()
        assert run_id, victim.stderr.read() if victim.stderr else ""
        time.sleep(rng.uniform(0.0, 0.6))
        victim.send_signal(signal.SIGKILL)
        out, _err = victim.communicate(timeout=30)
        killed_at = time.monotonic()
        acked, batched = _acked(out, "acked"), _acked(out, "batched")
        with Store(store_dir) as st:
            status = st.get_run(run_id).status  # a read reaps runs whose process is gone
            detect = time.monotonic() - killed_at
        x = one(db, "SELECT count(*) FROM metrics m JOIN runs r ON r.id = m.run "
                    "WHERE r.run_id = ? AND key = 'x'", (run_id,))  # fmt: skip
        top = one(db, "SELECT coalesce(max(step) + 1, 0) FROM metrics m JOIN runs r "
                      "ON r.id = m.run WHERE r.run_id = ? AND key = 'x'", (run_id,))  # fmt: skip
        batch = one(db, "SELECT count(*) FROM metrics m JOIN runs r ON r.id = m.run "
                        "WHERE r.run_id = ? AND key = 'batch'", (run_id,))  # fmt: skip
        assert isinstance(x, int) and isinstance(batch, int)
        assert x >= acked and x == top, f"kill {kill}: acked {acked}, stored {x}, top {top}"
        assert batch % 1000 == 0 and batch >= batched, f"kill {kill}: partial batch {batch}"
        assert status == "crashed", f"kill {kill}: {status}"
        worst_detect = max(worst_detect, detect)
        acked_total += acked
        stored_total += x
        if finisher is not None:
            out, err = finisher.communicate(timeout=60)
            assert finisher.returncode == 0, err
            finished.append(out.strip())
    ok = integrity_ok(db)
    with Store(store_dir) as st:
        st.reap_crashed(force=True)
        statuses = {run_id: st.get_run(run_id).status for run_id in finished}
    say(
        f"SIGKILL x{KILLS} (seed {SEED}): acknowledged points {acked_total:,}, stored "
        f"{stored_total:,}; partial batches 0; crashed detected within {worst_detect:.2f} s "
        f"of the kill; finished runs still finished {list(statuses.values()).count('finished')}"
        f"/{len(finished)}; integrity {'ok' if ok else 'FAILED'}; "
        f"{time.perf_counter() - start:.1f} s"
    )
    assert ok and set(statuses.values()) == {"finished"}


# -- many processes upgrading an older store; a kill mid-migration -------------------------


def _old_store(path: Path) -> None:
    """A store with the schema one migration back, holding one run."""
    from sqlite_utils import Database

    path.mkdir(parents=True)
    db = Database(path / "mlnb.db")
    migrations.migrations().apply(db, stop_before=migrations.known_names()[-1])
    db.execute("INSERT INTO experiments (name, created_at) VALUES ('old', 0)")
    db.execute(
        "INSERT INTO runs (run_id, experiment_id, name, status, start_time) "
        "VALUES (lower(hex(randomblob(16))), 1, 'from-before', 'finished', 0)"
    )
    db.close()


def _schema_state(db: Path) -> str:
    """``old`` or ``new``: the migrations recorded and the tables present agree; else the
    mix, described."""
    names = migrations.known_names()
    with sqlite3.connect(db) as conn:
        applied = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY name",
                [migrations.MIGRATION_SET],
            )
        ]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    newest = _last_migration_tables() <= tables  # what the last migration creates
    if applied == names[:-1] and not newest:
        return "old"
    if applied == names and newest:
        return "new"
    return f"MIX: applied {applied[-1:]} with the last migration's tables {newest}"


@functools.cache
def _last_migration_tables() -> frozenset[str]:
    """The tables the newest migration creates, found by applying the migrations to two
    throwaway databases (so a new migration needs no edit here)."""
    from sqlite_utils import Database

    def tables(stop_before: str | None) -> set[str]:
        db = Database(memory=True)
        migrations.migrations().apply(db, stop_before=stop_before)
        return set(db.table_names())

    created = tables(None) - tables(migrations.known_names()[-1])
    assert created, "the newest migration creates no table: tell old from new another way"
    return frozenset(created)


OPENER = """
    import mlnb
    print("ready", flush=True)
    st = mlnb.Store(%r)
    st.create_run(name="opener", experiment="old")
    print(st.schema_version())
"""


def test_battery_processes_upgrading_an_old_store_at_once_and_a_kill_mid_migration(
    tmp_path: Path, say: Say
) -> None:
    """Issue 16 item 5: 8 processes open an older-schema store at once, 10 times; and a
    process killed while it migrates: the schema is old or new, never a mix."""
    start = time.perf_counter()
    for round_ in range(OPEN_ROUNDS):
        path = tmp_path / f"open{round_}"
        _old_store(path)
        procs = [spawn(OPENER % str(path)) for _ in range(OPENERS)]
        outs = [p.communicate(timeout=120) for p in procs]
        for proc, (out, err) in zip(procs, outs, strict=True):
            assert proc.returncode == 0, err
            assert out.split() == ["ready", migrations.known_names()[-1]]
        assert _schema_state(path / "mlnb.db") == "new"
        assert one(path / "mlnb.db", "SELECT count(*) FROM runs") == OPENERS + 1
        assert integrity_ok(path / "mlnb.db")
    opened = time.perf_counter() - start
    rng = random.Random(SEED)
    seen: dict[str, int] = {"old": 0, "new": 0}
    for kill in range(MIGRATION_KILLS):
        path = tmp_path / f"kill{kill}"
        _old_store(path)
        # sqlite-utils (and pandas) imported before "ready": the open goes straight into
        # the upgrade, so the kill lands before, inside or after its transaction
        proc = spawn("import sqlite_utils.migrations\n" + textwrap.dedent(OPENER % str(path)))
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.15))  # the open takes ~0.06-0.11 s
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        state = _schema_state(path / "mlnb.db")
        assert state in seen, f"kill {kill}: {state}"
        seen[state] += 1
        assert integrity_ok(path / "mlnb.db")
        with Store(path) as st:  # the next open finishes the upgrade
            assert st.schema_version() == migrations.known_names()[-1]
            assert "from-before" in st.search_runs(include_deleted=True)["name"]
    say(
        f"upgrade: {OPENERS} processes x {OPEN_ROUNDS} rounds on an older store, all new "
        f"schema, integrity ok ({opened:.1f} s); kill mid-open x{MIGRATION_KILLS} (seed "
        f"{SEED}): left old {seen['old']}, new {seen['new']}, mixed 0; each upgraded at "
        "the next open"
    )


# -- every queued point stored, whatever ends the process -----------------------------------

ENDING = """
    import mlnb, os, signal, sys, time
    run = mlnb.start_run("ending", capture=False)
    print(run.run_id, flush=True)
    for i in range(20000):
        mlnb.log_metric("m", float(i))
    print("queued", flush=True)
    how = %r
    if how == "exception":
        raise RuntimeError("boom")
    if how == "keyboard":
        raise KeyboardInterrupt
    if how == "sigterm":
        time.sleep(60)
    sys.exit(0)
"""


@pytest.mark.parametrize(
    ("how", "status"),
    [("exit", "finished"), ("exception", "failed"), ("keyboard", "killed"), ("sigterm", "killed")],
)
def test_battery_every_queued_point_is_stored_whatever_ends_the_process(
    tmp_path: Path, how: str, status: str, say: Say
) -> None:
    """Issue 16 item 5: exit, an uncaught exception, KeyboardInterrupt and SIGTERM each
    store every queued point (20,000, more than one batch) and leave the right status.
    Found here: a script stopped by an uncaught KeyboardInterrupt (Ctrl-C) ended its run
    ``failed``; it is ``killed``, as inside ``with start_run()``. (A dead kernel and a
    cell timeout: tests/jobs/test_runner.py.)"""
    store_dir = tmp_path / "s"
    proc = spawn(ENDING % how, store_dir)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == "queued"
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    with Store(store_dir) as st:
        rec = st.get_run(run_id)
        stored = len(st.history(run_id, "m"))
    say(f"end by {how}: points queued 20,000, stored {stored:,}, status {rec.status}")
    assert stored == 20_000 and rec.status == status


# -- export, import and sync killed at random points ----------------------------------------


def _source(path: Path, runs: int = 24, points: int = 3_000) -> dict[str, int]:
    """A store of ``runs`` runs, each with ``points`` points, a tag and an artifact; returns
    each run's row count over its tables."""
    from mlnb.store import metrics as store_metrics
    from mlnb.store import runs as store_runs

    counts = {}
    with Store(path) as st:
        for i in range(runs):
            run_id = st.create_run(name=f"r{i}", experiment="move", tags={"i": str(i)})
            rowid, _ = store_runs.run_rowid(st.file, run_id)
            store_metrics.insert_metrics(
                st.file, [(rowid, "loss", s, 1.0 / (s + 1), float(s)) for s in range(points)]
            )
            st.log_artifact(run_id, os.urandom(64 * 1024), name="weights.bin")
            st.set_status(run_id, "finished")
            counts[run_id] = points + 1 + 1  # points, the tag, the artifact
    return counts


def _whole_or_absent(db: Path, expected: dict[str, int]) -> tuple[int, int]:
    """(whole, absent) runs in ``db``; fails on a run that is there in part."""
    whole = absent = 0
    with sqlite3.connect(db) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
            return 0, len(expected)  # killed while the store was being created: empty
        for run_id, rows in expected.items():
            got = conn.execute(
                "SELECT (SELECT count(*) FROM metrics WHERE run = r.id) + "
                "(SELECT count(*) FROM tags WHERE run = r.id) + "
                "(SELECT count(*) FROM artifacts WHERE run = r.id) FROM runs r "
                "WHERE r.run_id = ?",
                [run_id],
            ).fetchone()
            if got is None:
                absent += 1
            else:
                assert got[0] == rows, f"run {run_id[:8]} is there in part: {got[0]}/{rows} rows"
                whole += 1
    return whole, absent


def _cli(*args: str) -> str:
    return f"import sys; from mlnb.cli.app import main; main({list(args)!r})"


def test_battery_export_import_and_sync_killed_at_random_points_move_each_run_whole(
    tmp_path: Path, say: Say
) -> None:
    """Issue 16 item 5: an export, an import and a sync each SIGKILLed at random points:
    the bundle file is whole or absent, and the destination holds each run whole or not at
    all; the next import or sync finishes the move."""
    rng = random.Random(SEED)
    src = tmp_path / "src"
    expected = _source(src)
    bundle = tmp_path / "runs.mlnb"
    report = []
    for label, args, check in (
        ("export", ("--store", str(src), "export", "-o", str(bundle)), None),
        ("import", ("--store", str(tmp_path / "imp"), "import", str(bundle)), "imp"),
        ("sync", ("sync", str(src), str(tmp_path / "syn")), "syn"),
    ):
        if label == "import" and not bundle.exists():
            mlnb.export_runs(bundle, store=src)
        partial = whole_seen = 0
        start = time.perf_counter()
        for _ in range(MOVE_KILLS):
            proc = spawn(_cli(*args))
            time.sleep(rng.uniform(0.2, 2.5))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            if check is None:
                if bundle.exists():  # whole: it imports cleanly into a fresh store
                    with Store(tmp_path / f"probe{whole_seen}") as probe:
                        assert len(mlnb.import_runs(bundle, store=probe).added) == len(expected)
                    whole_seen += 1
                    bundle.unlink()
                continue
            db = tmp_path / check / "mlnb.db"
            if db.exists():
                assert integrity_ok(db)
                whole, _absent = _whole_or_absent(db, expected)
                partial += 0 < whole < len(expected)
        if check is None:  # a later export removes what killed ones left beside the file
            mlnb.export_runs(bundle, store=src)
            assert [p.name for p in tmp_path.glob(".runs.mlnb*")] == []
            outcome = f"bundle whole {whole_seen}, absent {MOVE_KILLS - whole_seen}, partial 0"
        else:  # run to the end: the move completes
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            done = subprocess.run(
                [sys.executable, "-c", _cli(*args)], capture_output=True, text=True, env=env
            )
            assert done.returncode == 0, done.stderr
            assert _whole_or_absent(tmp_path / check / "mlnb.db", expected) == (len(expected), 0)
            outcome = (
                f"each run whole or absent after every kill ({partial} kills left some runs "
                "in), whole after the next run"
            )
        report.append(f"{label} x{MOVE_KILLS}: {outcome} ({time.perf_counter() - start:.1f} s)")
    runs = f"{len(expected)} runs x 3,000 points + a 64 KiB artifact each"
    say(f"moves killed at random (seed {SEED}, {runs}): " + "; ".join(report))
