"""Sharing runs: ``export_runs`` writes runs into one bundle file, ``import_runs`` reads one
into a store, ``sync`` copies what one store lacks from another (docs/teams.md). Thin
functions over :mod:`mlnb.store.bundlefile` and :mod:`mlnb.store.sync` that pick their
stores by the rule of every ``store=`` and flush what this process logged first, so a
run being logged travels with every point logged so far."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mlnb.errors import StoreNotFoundError
from mlnb.store import Store
from mlnb.store.bundlefile import ImportResult, read_bundle, write_bundle
from mlnb.store.query import RunScope
from mlnb.store.sync import SyncResult, sync_stores
from mlnb.tracking import fluent as tracking
from mlnb.tracking.fluent import StoreLike

__all__ = ["export_runs", "import_runs", "sync"]


def export_runs(
    path: str | os.PathLike[str],
    runs: Sequence[str] | None = None,
    *,
    filter: str | None = None,
    include_deleted: bool = False,
    store: StoreLike | None = None,
) -> list[str]:
    """Write runs into the bundle file ``path`` (replaced only once complete): ``runs``
    (ids, prefixes or names) or the runs matching ``filter`` (docs/query.md; neither:
    every run). Returns the run ids written. The file holds their params, every metric
    point, tags, checks, artifacts (each content once), datasets, environments, git
    states and cell lineage; ``import_runs`` reads it."""
    st = tracking.resolve_store(store, create=False)
    tracking.flush(st)
    if runs is not None and filter is not None:
        from mlnb.errors import InvalidInputError

        raise InvalidInputError("give either runs or a filter to export, not both")
    if runs is None:
        runs = st.run_ids(filter, scope=RunScope(include_deleted=include_deleted))
    ids = [st.resolve_run_id(ref) for ref in runs]
    write_bundle(st, ids, Path(path))
    return ids


def import_runs(
    path: str | os.PathLike[str], *, dry_run: bool = False, store: StoreLike | None = None
) -> ImportResult:
    """Import the bundle file ``path`` (made by ``export_runs``): new runs are added, runs
    the store has gain only the rows they lack; importing twice changes nothing. Any
    conflict (a point at the same step with another value, a changed tag or status, a
    param) raises ``BundleError`` naming each run and what differs, with nothing
    written. ``dry_run``: check everything and say what would be imported."""
    st = tracking.resolve_store(store, create=True)
    tracking.flush(st)
    return read_bundle(st, Path(path), dry_run=dry_run)


def sync(
    src: StoreLike,
    dst: StoreLike,
    filter: str | None = None,
    *,
    both: bool = False,
    dry_run: bool = False,
) -> SyncResult:
    """Copy into store ``dst`` (created if missing) the runs of ``src`` matching ``filter``
    and the rows its copies lack; ``both``: ``dst`` into ``src`` too. Nothing is
    overwritten: a run changed on both sides in a way that conflicts is reported in
    ``result.diverged`` with what differs. ``dry_run``: report what would move."""
    source = tracking.resolve_store(src, create=False)
    tracking.flush(source)
    try:
        target = tracking.resolve_store(dst, create=not dry_run)
    except StoreNotFoundError:  # a dry run into a store not yet there: all of it would move
        with Store(memory=True) as empty:
            return sync_stores(source, empty, filter, both=both, dry_run=True)
    tracking.flush(target)
    return sync_stores(source, target, filter, both=both, dry_run=dry_run)
