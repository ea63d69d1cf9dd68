"""The store methods that replaced SQL in jobs, tracking and the compare view (issue 12
item 2): the one runs-table query (filter, order, scope, keyset paging), the run keys of
the table's columns, and the writes of jobs (claim a queued run, resume, rename, source,
children's statuses). All on a real SQLite file."""

from __future__ import annotations

import threading

import pytest

import mlnb
from mlnb.errors import InvalidInputError, QuerySyntaxError, RunNotFoundError
from mlnb.store.liveness import acquire_run_lock, release_run_lock
from mlnb.store.query import RunScope


def _runs(store: mlnb.Store) -> list[str]:
    """Twenty runs in two experiments: accuracies with ties and gaps, a text param."""
    ids = []
    for i in range(20):
        with mlnb.start_run(
            f"r{i:02d}", experiment="a" if i % 3 else "b", store=store, capture=False
        ) as run:
            if i % 4:  # every fourth run has no accuracy: sorted last either way
                run.log_metric("acc", (i * 7) % 5 / 10)
            run.log_params({"opt": "adam" if i % 2 else "sgd", "lr": i / 100})
            ids.append(run.run_id)
    mlnb.flush(store)
    return ids


def _pages(store: mlnb.Store, size: int, **query: object) -> list[str]:
    seen: list[str] = []
    while True:
        page = store.run_ids(after=seen[-1] if seen else None, limit=size, **query)  # type: ignore[arg-type]
        assert len(page) <= size
        if not page:
            return seen
        seen += page


@pytest.mark.parametrize(
    "order_by",
    [
        None,
        "metrics.acc desc",
        "metrics.acc",
        "params.opt, metrics.acc desc",
        "params.lr desc",
        "name",
        "status, duration desc",
    ],
)
def test_run_ids_pages_by_keyset_in_the_full_order(store: mlnb.Store, order_by: str | None) -> None:
    """Issue 12 item 2: page after page (``after`` = the last id of the previous page)
    gives exactly the full ordered list, ties and missing values included, and the full
    list is the order ``search_runs`` gives."""
    _runs(store)
    full = store.run_ids(order_by=order_by)
    assert len(full) == 20
    assert full == store.search_runs(order_by=order_by)["run_id"]
    for size in (1, 3, 7, 20):
        assert _pages(store, size, order_by=order_by) == full


def test_run_ids_filters_and_scopes(store: mlnb.Store) -> None:
    """Filter and scope (experiments, chosen ids, deleted runs) combine, as the compare
    view and the server use them; ``limit`` caps a page."""
    ids = _runs(store)
    in_b = store.run_ids(scope=RunScope(experiments="b"))
    assert sorted(in_b) == sorted(ids[i] for i in range(20) if i % 3 == 0)
    adam = store.run_ids("params.opt = 'adam'", scope=RunScope(experiments=["a", "b"]))
    assert sorted(adam) == sorted(ids[i] for i in range(20) if i % 2)
    store.delete_run(ids[1])
    assert ids[1] not in store.run_ids()
    assert ids[1] in store.run_ids(scope=RunScope(include_deleted=True))
    chosen = store.run_ids(scope=RunScope(run_ids=[ids[1], ids[2]], include_deleted=True))
    assert sorted(chosen) == sorted([ids[1], ids[2]])
    assert store.run_ids(order_by="name", limit=2) == [ids[0], ids[2]]
    with pytest.raises(QuerySyntaxError):
        store.run_ids("metrics.acc >")
    with pytest.raises(InvalidInputError, match="limit"):
        store.run_ids(limit=-1)


def test_run_ids_scoped_to_notebooks(store: mlnb.Store) -> None:
    """Issue 13: the lab panel's "this notebook" is a scope on the recorded notebook path;
    with a filter, ``store.pages.count_runs`` counts the same runs ``run_ids`` pages."""
    from mlnb.store import pages

    ids = _runs(store)
    store.set_notebook(ids[3], notebook="/work/a.ipynb")
    store.set_notebook(ids[4], notebook="/work/b.ipynb")
    scope = RunScope(notebooks=["/work/a.ipynb", "/work/b.ipynb"])
    assert sorted(store.run_ids(scope=scope)) == sorted([ids[3], ids[4]])
    assert store.run_ids(scope=RunScope(notebooks=[])) == []
    assert pages.count_runs(store, scope=scope) == 2
    assert pages.count_runs(store, "params.opt = 'adam'", scope=scope) == len(
        store.run_ids("params.opt = 'adam'", scope=scope)
    )


def test_run_ids_refuses_a_cursor_run_that_is_gone(store: mlnb.Store) -> None:
    """A page after a run purged meanwhile says so, instead of restarting silently."""
    ids = _runs(store)
    store.delete_run(ids[5])
    store.gc(purge_deleted=True)
    with pytest.raises(RunNotFoundError, match="first page"):
        store.run_ids(after=ids[5], limit=5)


def test_run_keys_of_some_runs_and_of_the_store(store: mlnb.Store) -> None:
    """The columns of the runs table: the keys the given runs have, or every key."""
    with mlnb.start_run(store=store, capture=False) as one:
        one.log_params({"lr": 0.1})
        one.set_tag("team", "x")
        one.log_metric("loss", 1.0)
    with mlnb.start_run(store=store, capture=False) as two:
        two.log_metric("acc", 0.5)
    mlnb.flush(store)
    assert store.run_keys([two.run_id]) == {"params": [], "metrics": ["acc"], "tags": []}
    assert store.run_keys() == {"params": ["lr"], "metrics": ["acc", "loss"], "tags": ["team"]}
    assert store.run_keys([]) == {"params": [], "metrics": [], "tags": []}


def test_claim_queued_run_lets_exactly_one_worker_take_it(store: mlnb.Store) -> None:
    """Of several workers claiming one queued run at once, exactly one gets it; a run
    that is not queued cannot be claimed."""
    run_id = store.create_run(status="queued", name="child")
    assert store.run_status(run_id) == "queued"
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait()
        results.append(store.claim_queued_run(run_id, source="/nb/train.ipynb"))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    lock = acquire_run_lock(store.locks_dir, run_id)  # as the runner holds it: alive
    rec = store.get_run(run_id)
    release_run_lock(store.locks_dir, run_id, lock)
    assert (rec.status, rec.source, rec.end_time) == ("running", "/nb/train.ipynb", None)
    assert store.run_status("0" * 32) is None


def test_resume_rename_and_source(store: mlnb.Store) -> None:
    """Resume clears the end and may rename; rename and set_source change only what
    they name (a notebook path only where the run records one)."""
    run_id = store.create_run(name="first")
    acquire_run_lock(store.locks_dir, run_id)  # alive while the test runs (not reaped)
    store.set_status(run_id, "finished")
    store.resume_run(run_id)
    rec = store.get_run(run_id)
    assert (rec.status, rec.end_time, rec.name) == ("running", None, "first")
    store.resume_run(run_id, name="second")
    store.rename_run(run_id, "third")
    assert store.get_run(run_id).name == "third"
    with pytest.raises(InvalidInputError, match="surrogate"):
        store.rename_run(run_id, "bad\ud800")
    store.set_source(run_id, "/orig/train.ipynb", notebook="/orig/train.ipynb")
    rec = store.get_run(run_id)
    assert (rec.source, rec.notebook) == ("/orig/train.ipynb", None)  # it records none
    store.set_notebook(run_id, notebook="/tmp/copy.ipynb")
    store.set_source(run_id, "/orig/train.ipynb", notebook="/orig/train.ipynb")
    assert store.get_run(run_id).notebook == "/orig/train.ipynb"
    store.set_source(run_id, "/other.py")
    assert store.get_run(run_id).notebook == "/orig/train.ipynb"


def test_child_status_counts(store: mlnb.Store) -> None:
    """A sweep's progress line: its children by status."""
    parent = store.create_run(name="sweep")
    children = [store.create_run(parent_run_id=parent, status="queued") for _ in range(4)]
    store.create_run(name="unrelated", status="queued")
    store.claim_queued_run(children[0], source=None)
    store.set_status(children[1], "finished")
    assert store.child_status_counts(parent) == {"queued": 2, "running": 1, "finished": 1}
    assert store.child_status_counts(children[0]) == {}
