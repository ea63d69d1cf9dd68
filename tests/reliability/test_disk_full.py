"""A full disk: ``log_metric`` gets an error within seconds, and nothing queued is lost.

Issue 10 item 3: with the store on a full filesystem and the metric queue over its bound,
``log_metric`` blocked forever: the backpressure wait ignored the writer's error.
"""

from __future__ import annotations

import errno
import sqlite3
import time
from pathlib import Path

import pytest

import mlnb
from mlnb.errors import StoreError, StoreFullError
from mlnb.store import Store
from mlnb.tracking import fluent as tracking
from mlnb.tracking import writer as metric_writer
from tests.reliability.conftest import integrity_ok, make_bystander, row_counts, small_tmpfs


def _fill(path: Path) -> None:
    """Write ``path`` until the filesystem it is on has no byte left."""
    with open(path, "wb", buffering=0) as fh:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_full_disk_refuses_log_metric_within_seconds_and_keeps_the_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10 item 3: on a full 2 MB tmpfs, once the queue is at its bound log_metric
    raises ``StoreError`` naming the full disk within seconds (it blocked forever); the
    queue stays bounded and every point it accepted is stored by a flush once there is
    space; ``end()`` reports what could not be stored and the run is not ``finished``."""
    # A queue (and batch) that 2 MB can hold once the filler is gone: the default bound,
    # 200,000 points plus a batch of 50,000, needs some 20 MB. The code path is the same.
    monkeypatch.setattr(metric_writer, "QUEUE_LIMIT", 5_000)
    monkeypatch.setattr(metric_writer, "BATCH_LIMIT", 2_000)
    with small_tmpfs(tmp_path / "small", "2m") as small:
        store = Store(small / "store")
        tracking.set_store(store)
        db = store.db_path
        assert db is not None
        bystander = make_bystander(store)
        before = row_counts(db, bystander)
        run = mlnb.start_run("victim", capture=False)
        run.log_metric("loss", 0.0)
        mlnb.flush()
        writer = tracking.writer_for(store)
        _fill(small / "filler")
        with pytest.raises(StoreFullError, match="artifact 'big.bin' was not stored"):
            run.log_artifact(b"x" * 100_000, name="big.bin")  # was a raw OSError
        assert not list((small / "store" / "artifacts").glob(".tmp-*"))

        accepted = 1
        started = time.monotonic()
        with pytest.raises(StoreFullError, match="disk holding the store .* is full") as caught:
            for step in range(1, 10 * metric_writer.QUEUE_LIMIT):
                run.log_metric("loss", float(step))
                accepted += 1
        took = time.monotonic() - started
        assert took < 20, f"log_metric took {took:.1f} s to give up"
        assert "queued" in str(caught.value)
        started = time.monotonic()
        with pytest.raises(StoreError, match="full"):  # still full: refused again, promptly
            for _ in range(metric_writer.BATCH_LIMIT + 1):  # (room for the batch in flight)
                run.log_metric("loss", -1.0)
                accepted += 1
        assert time.monotonic() - started < 20
        # bounded: the limit, plus at most the batch the writer had taken out to write
        assert len(writer.queue) <= metric_writer.QUEUE_LIMIT + metric_writer.BATCH_LIMIT

        with pytest.raises(StoreError, match="still queued") as ended:
            run.end()
        assert "refused 2 point(s)" in str(ended.value)
        assert run.status == "failed"

        (small / "filler").unlink()  # space returns: a flush stores every queued point
        mlnb.flush()
        assert len(writer.queue) == 0
        with sqlite3.connect(db) as conn:
            (stored,) = conn.execute(
                "SELECT count(*) FROM metrics JOIN runs ON runs.id = metrics.run "
                "WHERE runs.run_id = ?",
                [run.run_id],
            ).fetchone()
        assert stored == accepted
        assert store.get_run(run.run_id).status in ("failed", "crashed")
        assert integrity_ok(db)
        assert row_counts(db, bystander) == before
        tracking.set_store(None)
        store.close()
