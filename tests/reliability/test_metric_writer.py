"""The metric writer: one bad point never costs another run its points.

Issue 10 item 1: ``log_metric("x", 1.0, step=2**63-1)`` was accepted, the automatic next
step (2**63) was not checked, the writer's insert raised ``OverflowError``, the batch went
back to the front of the queue, and every later point of every run in the process was lost
while those runs still ended ``finished``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import mlnb
from mlnb.errors import InvalidInputError, StoreError
from mlnb.store import Store
from mlnb.tracking import fluent as tracking
from tests.reliability.conftest import integrity_ok, make_bystander, row_counts

BAD_CALLS: dict[str, Callable[[tracking.ActiveRun], None]] = {
    "value 10**400": lambda run: run.log_metric("x", 10**400),
    "log_metrics value 10**400": lambda run: run.log_metrics({"x": 1.0, "y": 10**400}),
    "step 2**63": lambda run: run.log_metric("x", 1.0, step=2**63),
    "automatic step after 2**63-1": lambda run: (
        run.log_metric("x", 1.0, step=2**63 - 1),
        run.log_metric("x", 2.0),
    ),
    "timestamp NaN": lambda run: run.log_metric("x", 1.0, timestamp=float("nan")),
    "timestamp text": lambda run: run.log_metric("x", 1.0, timestamp="now"),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_log_metric_refuses_what_sqlite_cannot_store_at_the_call(store: Store, case: str) -> None:
    """Issue 10 item 1: a value or step SQLite cannot store (10**400, a step past 2**63-1,
    also the automatic step after ``step=2**63-1``) is refused by the call with
    ``InvalidInputError``; it never reaches the queue, so the writer keeps storing every
    other point and both runs end ``finished``."""
    db = store.db_path
    assert db is not None
    bystander = make_bystander(store)
    before = row_counts(db, bystander)
    bad = mlnb.start_run("bad")
    good = mlnb.start_run("good", nested=True)
    with pytest.raises(InvalidInputError) as caught:
        BAD_CALLS[case](bad)
    message = str(caught.value)
    assert "'x'" in message or "'y'" in message, message  # names the metric
    good.log_metric("loss", 0.5)
    mlnb.flush()  # the writer is not poisoned
    good.log_metric("loss", 0.25)
    mlnb.end_run()  # good
    mlnb.end_run()  # bad
    assert [(s, v) for s, v, _ in store.history(good.run_id, "loss")] == [(0, 0.5), (1, 0.25)]
    assert store.get_run(good.run_id).status == "finished"
    assert store.get_run(bad.run_id).status == "finished"  # the caller saw the refusal
    assert "y" not in store.get_run(bad.run_id).metrics  # nothing of the bad batch
    assert integrity_ok(db)
    assert row_counts(db, bystander) == before


def test_metric_writer_stores_other_runs_when_the_database_refuses_one_runs_points(
    store: Store,
) -> None:
    """Issue 10 item 1: a batch the database still refuses (here a trigger a user added to
    the store) is split by run: only the offending run's points are refused, that run is
    marked ``failed`` with the reason in its ``mlnb.error.*`` tags and never ends
    ``finished``; the other run's points are stored and later flushes keep working."""
    db = store.db_path
    assert db is not None
    bystander = make_bystander(store)
    before = row_counts(db, bystander)
    store.file.write(
        lambda c: c.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON metrics WHEN NEW.key = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'poison is not allowed here'); END"
        )
    )
    victim = mlnb.start_run("victim")
    other = mlnb.start_run("other", nested=True)
    victim.log_metric("poison", 1.0)
    victim.log_metric("fine", 1.0)
    for step in range(100):
        other.log_metric("loss", 1.0 / (step + 1))
    with pytest.raises(StoreError, match=f"{victim.run_id[:8]}.*poison is not allowed"):
        mlnb.flush()
    assert [s for s, _, _ in store.history(other.run_id, "loss")] == list(range(100))
    rec = store.get_run(victim.run_id)
    assert rec.status == "failed"
    assert "poison is not allowed" in rec.tags["mlnb.error.message"]
    assert rec.metrics == {}
    other.log_metric("loss", 0.0)  # the writer is not poisoned: later points are stored
    mlnb.flush()
    assert store.get_run(other.run_id).metric_steps["loss"] == 100
    mlnb.end_run()  # other
    with pytest.raises(StoreError, match="2 metric points of run .* were not stored"):
        mlnb.end_run()  # victim: its end reports what was lost
    assert victim.status == "failed"
    assert store.get_run(victim.run_id).status == "failed"
    assert store.get_run(other.run_id).status == "finished"
    assert integrity_ok(db)
    assert row_counts(db, bystander) == before


def test_flush_reports_points_queued_for_a_closed_store_once(store: Store, tmp_path: Path) -> None:
    """Found with issue 10 item 1: points still queued for a store closed under them made
    every later ``mlnb.flush()`` in the process raise "this store has been closed", for
    every store. Now the loss is reported once and other stores flush as before."""
    db = store.db_path
    assert db is not None
    bystander = make_bystander(store)
    before = row_counts(db, bystander)
    other = Store(tmp_path / "other")
    run = mlnb.start_run("short-lived", store=other)
    run.log_metric("loss", 1.0)
    other.close()
    with pytest.raises(StoreError, match="1 metric points queued for .* were not stored"):
        mlnb.flush()
    mlnb.flush()  # said once; the closed store no longer poisons flush()
    with pytest.raises(StoreError, match="closed"):
        run.end()  # its status cannot be written either
    with mlnb.start_run("later") as later:
        later.log_metric("loss", 0.5)
    assert store.get_run(later.run_id).metrics == {"loss": 0.5}
    assert integrity_ok(db)
    assert row_counts(db, bystander) == before
