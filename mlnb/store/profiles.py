"""The stored profiles of a run's datasets, read without the rest of the run: what a drift
check or a schema taken from a run (``RUN:NAME``) needs, in one small query."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlnb.store.core import Store

__all__ = ["StoredProfile", "dataset_profiles"]


@dataclass(frozen=True)
class StoredProfile:
    """One dataset of a run: its name, role, fingerprint and profile (None when the
    dataset was logged without one, e.g. a file or ``profile=False``)."""

    run_id: str
    run_name: str | None
    name: str
    role: str
    hash: str
    rows: int | None
    profile: dict[str, Any] | None


def dataset_profiles(store: Store, ref: str) -> list[StoredProfile]:
    """The datasets run ``ref`` (id, name or id prefix) logged, by role then name."""
    run_id = store.resolve_run_id(ref)

    def read(c: sqlite3.Connection) -> list[StoredProfile]:
        rows = c.execute(
            "SELECT r.name, l.name, l.role, d.hash, d.rows, d.profile FROM runs r "
            "JOIN run_datasets l ON l.run = r.id JOIN datasets d ON d.hash = l.hash "
            "WHERE r.run_id = ? ORDER BY l.role, l.name",
            [run_id],
        ).fetchall()
        return [
            StoredProfile(run_id, row[0], row[1], row[2], row[3], row[4],
                          None if row[5] is None else json.loads(row[5]))
            for row in rows
        ]  # fmt: skip

    return store.file.read(read)
