"""Real processes against one store: concurrency, kills, signals, exit, crash detection."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlnb.store import Store
from tests.conftest import run_python

pytestmark = pytest.mark.slow


_procs: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _reap_processes() -> Iterator[None]:
    yield
    while _procs:
        proc = _procs.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _spawn(code: str, store_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLNB_STORE": str(store_dir)},
    )
    _procs.append(proc)
    return proc


# Eight writers and a reader: tests/reliability/test_battery.py (NORMAL and FULL, repeated).


def test_sigkill_mid_logging_keeps_the_store_intact_and_flushed_points(tmp_path: Path) -> None:
    store_dir = tmp_path / "s"
    code = """
        import mlnb, sys
        run = mlnb.start_run("victim")
        print(run.run_id, flush=True)
        i = 0
        while True:
            mlnb.log_metric("x", float(i))
            i += 1
            if i % 2000 == 0:
                mlnb.flush()
                print("flushed", i, flush=True)
    """
    proc = _spawn(code, store_dir)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    flushed = 0
    while flushed < 20_000:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        flushed = int(line.split()[1])
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    conn = sqlite3.connect(store_dir / "mlnb.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    points = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
    assert points >= flushed
    steps = [r[0] for r in conn.execute("SELECT step FROM metrics ORDER BY step")]
    assert steps == list(range(points))  # no holes: every flushed point is there
    with Store(store_dir) as st:  # the next read notices the dead process
        assert st.get_run(run_id).status == "crashed"


def test_sigterm_flushes_and_marks_the_run_killed(tmp_path: Path) -> None:
    store_dir = tmp_path / "s"
    code = """
        import mlnb, time
        run = mlnb.start_run("term")
        for i in range(1000):
            mlnb.log_metric("x", i)
        print(run.run_id, flush=True)
        time.sleep(60)
    """
    proc = _spawn(code, store_dir)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    assert proc.returncode == -signal.SIGTERM
    with Store(store_dir) as st:
        rec = st.get_run(run_id)
        assert rec.status == "killed"
        assert rec.metric_steps == {"x": 999}


@pytest.mark.parametrize(
    ("tail", "status"),
    [("pass", "finished"), ("raise SystemExit(0)", "finished"), ("1/0", "failed")],
)
def test_script_exit_ends_the_run_and_flushes(tmp_path: Path, tail: str, status: str) -> None:
    code = "import mlnb\nrun = mlnb.start_run('s')\nprint(run.run_id)\n"
    code += "for i in range(500): mlnb.log_metric('m', i)\n" + tail + "\n"
    proc = run_python(code, env={"MLNB_STORE": str(tmp_path / "s")}, check=False)
    with Store(tmp_path / "s") as st:
        rec = st.get_run(proc.stdout.split()[0])
    assert rec.status == status
    assert rec.metric_steps == {"m": 499}


def test_a_paused_process_is_not_called_dead(tmp_path: Path) -> None:
    store_dir = tmp_path / "s"
    code = """
        import mlnb, time
        run = mlnb.start_run("paused")
        print(run.run_id, flush=True)
        time.sleep(60)
    """
    proc = _spawn(code, store_dir)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGSTOP)
    try:
        with Store(store_dir) as st:
            assert st.reap_crashed(force=True) == []
            assert st.get_run(run_id).status == "running"
    finally:
        proc.send_signal(signal.SIGCONT)


def test_a_dead_run_on_another_host_is_reaped_by_heartbeat(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as st:
        run_id = st.create_run(name="remote")
        st.file.write(
            lambda c: c.execute(
                "UPDATE runs SET host = 'elsewhere', heartbeat = ? WHERE run_id = ?",
                [time.time() - 3600, run_id],
            )
        )
        fresh = st.create_run(name="remote-alive")
        st.file.write(
            lambda c: c.execute("UPDATE runs SET host = 'elsewhere' WHERE run_id = ?", [fresh])
        )
        assert st.reap_crashed(force=True) == [run_id]
        assert st.get_run(fresh).status == "running"


def test_forked_children_log_to_the_parents_run(tmp_path: Path) -> None:
    code = """
        import multiprocessing as mp, mlnb

        def work(i):
            for step in range(100):
                mlnb.log_metric(f"child{i}", step, step=step)

        with mlnb.start_run("parent") as run:
            mlnb.log_metric("before", 1.0)
            ctx = mp.get_context("fork")
            procs = [ctx.Process(target=work, args=(i,)) for i in range(3)]
            for p in procs: p.start()
            for p in procs: p.join()
            assert all(p.exitcode == 0 for p in procs)
        print(run.run_id)
    """
    proc = run_python(textwrap.dedent(code), env={"MLNB_STORE": str(tmp_path / "s")})
    with Store(tmp_path / "s") as st:
        rec = st.get_run(proc.stdout.split()[-1])
    assert rec.status == "finished"
    assert rec.metric_steps == {"before": 0, "child0": 99, "child1": 99, "child2": 99}
