"""Temporary artifact files of a killed writer go at the next open of the store.

Issue 10 item 5: after SIGKILLs during ``log_artifact`` up to 330 MB of
``artifacts/.tmp-*`` stayed until a ``gc`` an hour later.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from mlnb.store import Store, liveness
from tests.conftest import REPO
from tests.reliability.conftest import integrity_ok, make_bystander, row_counts

WRITER = """
import sys
import mlnb
store = mlnb.Store(sys.argv[1])
run = mlnb.start_run("writer", store=store, capture=False)
print("ready", flush=True)
store.log_artifact(run.run_id, sys.argv[2], name="streamed.bin")  # a FIFO: blocks mid-copy
run.end()
print("done", flush=True)
"""


def _temporaries(where: Path) -> list[Path]:
    return sorted((where / "artifacts").glob(".tmp-*"))


def _start_writer(where: Path, fifo: Path) -> tuple[subprocess.Popen[str], BinaryIO, Path]:
    """A process blocked in log_artifact with 1 MiB copied into its temporary file."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(where), str(fifo)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    feed = open(fifo, "wb")  # noqa: SIM115 (kept open: the writer stays mid-copy until closed)
    feed.write(b"\1" * (1 << 20))
    feed.flush()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        mine = [p for p in _temporaries(where) if p.name.startswith(f".tmp-{proc.pid}-")]
        if mine and mine[0].stat().st_size == 1 << 20:
            return proc, feed, mine[0]
        time.sleep(0.01)
    raise AssertionError(f"no temporary file of {proc.pid}: {_temporaries(where)}")


@pytest.mark.slow
def test_temporaries_of_killed_writers_are_removed_at_the_next_open(tmp_path: Path) -> None:
    """Issue 10 item 5: a temporary artifact file names its writer (pid and start time);
    the next open of the store removes those of dead writers at once, keeps a live
    writer's, and a reused pid (same pid, other start time) does not keep one alive."""
    where = tmp_path / "store"
    with Store(where) as st:
        bystander = make_bystander(st)
    db = where / "mlnb.db"
    before = row_counts(db, bystander)
    os.mkfifo(tmp_path / "killed.fifo")
    os.mkfifo(tmp_path / "alive.fifo")
    killed, killed_feed, killed_tmp = _start_writer(where, tmp_path / "killed.fifo")
    alive, alive_feed, alive_tmp = _start_writer(where, tmp_path / "alive.fifo")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        # a file named for this very pid but another start time: a reused pid
        token = alive_tmp.name.split("-")[2]
        reused = where / "artifacts" / f".tmp-{os.getpid()}-{int(token) + 1}-{liveness.HOST_TAG}-x"
        reused.write_bytes(b"left by an earlier process that had this pid")
        assert killed_tmp.exists() and reused.exists()

        with Store(where) as st:  # the next open
            assert _temporaries(where) == [alive_tmp]
            assert st.gc()["files_removed"] == 0  # nothing else to remove; the live one stays

        alive_feed.close()
        assert alive.stdout is not None and alive.stdout.readline().strip() == "done"
        assert alive.wait(timeout=30) == 0
    finally:
        for proc, feed in ((killed, killed_feed), (alive, alive_feed)):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            feed.close()
    assert _temporaries(where) == []
    with Store(where) as st:
        (stored,) = [a for r in st.search_runs()["run_id"] for a in st.get_run(r).artifacts
                     if a.path == "streamed.bin"]  # fmt: skip
        assert stored.size == 1 << 20
    assert integrity_ok(db)
    assert row_counts(db, bystander) == before
