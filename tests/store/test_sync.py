"""Issue 16 item 2: ``mlnb sync SRC DST [FILTER]`` copies what DST lacks, never overwrites.

A run changed on both sides so that the copies conflict is reported as DIVERGED with what
differs and left alone; ``--both`` copies each way; ``--dry-run`` lists and moves nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner

import mlnb
from mlnb.cli.app import cli
from mlnb.store import Store
from tests.reliability.conftest import integrity_ok
from tests.reliability.test_bundles import dump, source_run
from tests.store.conftest import add_points


def test_sync_copies_new_runs_and_missing_points_and_again_moves_nothing(
    a: Store, b: Store
) -> None:
    """Issue 16 item 2: new runs and the points DST's copy lacks are copied; a second sync is
    a no-op."""
    first = source_run(a)
    result = mlnb.sync(a, b)
    assert [(m.run_id, m.kind) for m in result.moves] == [(first, "new")]
    add_points(a, first, range(10, 13))
    second = source_run(a)
    result = mlnb.sync(a, b)
    assert sorted((m.run_id, m.kind) for m in result.moves) == sorted(
        [(first, "update"), (second, "new")]
    )
    assert len(b.history(first, "loss")) == 13
    before = dump(b)
    again = mlnb.sync(a, b)
    assert again.moves == [] and again.same == 2 and dump(b) == before


def test_sync_reports_a_run_changed_on_both_sides_as_diverged(a: Store, b: Store) -> None:
    """Issue 16 item 2: a run changed on both sides is DIVERGED with what differs, and
    neither side is overwritten; other runs still move."""
    run_id = source_run(a)
    mlnb.sync(a, b)
    a.set_tags(run_id, {"verdict": "good"}, check_state=False)
    b.set_tags(run_id, {"verdict": "bad"}, check_state=False)
    other = source_run(a)
    result = mlnb.sync(a, b, both=True)
    (diverged,) = result.diverged
    assert diverged.run_id == run_id and "verdict" in diverged.reason
    assert "'bad'" in diverged.reason and "'good'" in diverged.reason
    assert b.get_run(run_id).tags["verdict"] == "bad"
    assert a.get_run(run_id).tags["verdict"] == "good"
    assert b.get_run(other).status == "finished"
    assert integrity_ok(a.db_path) and integrity_ok(b.db_path)


def test_sync_both_merges_points_each_side_lacks(a: Store, b: Store) -> None:
    """Issue 16 item 2: ``both``: points added on each side (no conflict) end on both."""
    run_id = source_run(a)
    mlnb.sync(a, b)
    add_points(a, run_id, range(10, 12))
    add_points(b, run_id, range(12, 15))
    only_b = source_run(b)
    result = mlnb.sync(a, b, both=True)
    assert not result.diverged
    assert len(a.history(run_id, "loss")) == len(b.history(run_id, "loss")) == 15
    assert a.get_run(only_b).run_id == only_b


def test_sync_dry_run_and_filter(a: Store, b: Store) -> None:
    """Issue 16 item 2: ``--dry-run`` lists what would move and moves nothing; a filter
    limits the runs."""
    kept = source_run(a)
    skipped = a.create_run(name="skip", experiment="exp")
    a.log_params(skipped, {"lr": 0.9})
    before = dump(b)
    result = mlnb.sync(a, b, "params.lr = 0.1", dry_run=True)
    assert [(m.run_id, m.kind) for m in result.moves] == [(kept, "new")]
    assert dump(b) == before
    mlnb.sync(a, b, "params.lr = 0.1")
    assert [r for r in b.run_ids()] == [kept]


def test_sync_cli_prints_diverged_and_exits_1(a: Store, b: Store, tmp_path: Path) -> None:
    """Issue 16 item 2: the command names each move and a DIVERGED run (exit 1); a missing
    DST is created."""
    run_id = source_run(a)
    fresh = tmp_path / "fresh"
    done = CliRunner().invoke(cli, ["sync", str(a.root), str(fresh)])
    assert done.exit_code == 0 and f"new      {run_id}" in done.output
    mlnb.sync(a, b)
    b.set_tags(run_id, {"team": "b"}, check_state=False)
    done = CliRunner().invoke(cli, ["sync", str(a.root), str(b.root), "--dry-run"])
    assert done.exit_code == 1
    assert f"DIVERGED {run_id}" in done.output and "team" in done.output


def test_sync_of_1000_runs_with_10_new_takes_under_10_seconds(a: Store, b: Store) -> None:
    """Issue 16 item 2: 1,000 runs of which 10 are new sync in < 10 s (summaries first)."""
    ids = []
    for i in range(1000):
        run_id = a.create_run(name=f"r{i}", experiment="exp")
        add_points(a, run_id, range(20))
        ids.append(run_id)
    mlnb.sync(a, b)
    for i in range(10):
        add_points(a, a.create_run(name=f"n{i}", experiment="exp"), range(20))
    start = time.perf_counter()
    result = mlnb.sync(a, b)
    took = time.perf_counter() - start
    print(f"sync of 1010 runs, 10 new: {took:.2f} s")
    assert len(result.moves) == 10 and result.same == 1000
    assert took < 10


def test_sync_dry_run_into_a_missing_store_creates_nothing(a: Store, tmp_path: Path) -> None:
    """Issue 16 item 2: a dry run into a store not yet there lists every run, creates nothing."""
    run_id = source_run(a)
    result = mlnb.sync(a, tmp_path / "new", dry_run=True)
    assert [(m.run_id, m.kind) for m in result.moves] == [(run_id, "new")]
    assert not (tmp_path / "new").exists()


def test_sync_carries_model_versions_and_reports_an_alias_moved_on_both_sides(
    a: Store, b: Store, tmp_path: Path
) -> None:
    """Issue 16 item 2: model versions and alias history travel with their runs; an alias
    moved on both sides is reported, not overwritten."""
    from tests.store.test_bundlefile import registered

    _, v1 = registered(a, tmp_path, "one", b"w1")
    _, v2 = registered(a, tmp_path, "two", b"w2")
    mlnb.set_model_alias("churn", "champion", v1, store=a)
    assert mlnb.sync(a, b).model_rows == 4
    assert mlnb.get_model_version("churn@champion", store=b).version == v1
    mlnb.set_model_alias("churn", "champion", v2, store=a)
    mlnb.set_model_alias("churn", "challenger", v2, store=b)
    result = mlnb.sync(a, b, both=True)
    assert result.model_rows == 2  # each side's new event, each way
    assert mlnb.get_model_version("churn@champion", store=b).version == v2
    assert mlnb.get_model_version("churn@challenger", store=a).version == v2
    mlnb.set_model_alias("churn", "champion", v1, store=a)
    mlnb.delete_model_alias("churn", "champion", store=b)
    result = mlnb.sync(a, b)
    assert len(result.models_diverged) == 1 and "champion" in result.models_diverged[0]
    assert mlnb.get_model_version("churn", store=b).aliases == ("challenger",)
