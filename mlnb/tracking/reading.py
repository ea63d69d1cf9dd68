"""Reading runs back: ``runs()`` as a pandas DataFrame, ``get_run()`` as a record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlnb.records import RunRecord
from mlnb.store import Store, notices
from mlnb.tracking import fluent as tracking
from mlnb.tracking.fluent import StoreLike

if TYPE_CHECKING:
    import pandas as pd


def _store(store: StoreLike | None) -> Store:
    """The store to read (never created by a read: ``StoreNotFoundError`` says where it
    looked), with what this process logged flushed to it."""
    st = tracking.resolve_store(store, create=False)
    tracking.flush(st)  # what this process logged is visible to what it reads
    return st


def runs(
    filter: str | None = None,
    *,
    experiment: str | Sequence[str] | None = None,
    order_by: str | None = None,
    max_results: int | None = None,
    include_deleted: bool = False,
    store: StoreLike | None = None,
) -> pd.DataFrame:
    """Runs as a DataFrame, one row per run: ``run_id, name, experiment, status,
    start_time, end_time, duration`` (seconds), ``parent_run_id``, then ``params.*``,
    ``metrics.*`` (latest value) and ``tags.*``.

    ``filter`` takes the query language of docs/query.md (MLflow's syntax plus ``or``,
    parentheses, ``is null``...); ``order_by`` e.g. ``"metrics.acc desc"`` (default: newest
    first). A params/metrics/tags key in either that no run in scope has is answered with
    an ``MlnbWarning`` naming the closest keys (a typo would otherwise read as "no runs");
    an unknown experiment raises ``ExperimentNotFoundError`` listing the experiments.
    """
    import pandas as pd

    st = _store(store)
    table = st.search_runs(
        filter,
        experiment=experiment,
        order_by=order_by,
        max_results=max_results,
        include_deleted=include_deleted,
    )
    notices.warn(
        notices.key_notices(
            st,
            filter=filter,
            order_by=order_by,
            experiments=experiment,
            include_deleted=include_deleted,
        )
    )
    frame = pd.DataFrame(table)
    for col in ("start_time", "end_time"):
        frame[col] = pd.to_datetime(frame[col], unit="s", utc=True)
    return frame


def get_run(run_id: str, *, store: StoreLike | None = None) -> RunRecord:
    """One run by id, unique id prefix or unique name: params, metrics, tags, artifacts,
    and ``.history(key)``."""
    return _store(store).get_run(run_id)


def delete_run(run_id: str, *, store: StoreLike | None = None) -> str:
    """Hide a run from listings (``restore_run`` brings it back); returns its full id."""
    return _store(store).delete_run(run_id)


def restore_run(run_id: str, *, store: StoreLike | None = None) -> str:
    """Bring back a deleted run; returns its full id."""
    return _store(store).restore_run(run_id)
