"""The stored profiles of a run's datasets, read without the rest of the run: what a drift
check or a schema taken from a run (``RUN:NAME``) needs, in one small query.

Parsing a profile's JSON is most of the cost of a drift check between two stored profiles
(~1 ms each for 50 columns), so parsed profiles are kept per store file and dataset hash
(:data:`CACHE_SIZE` of them, least recently used out). That is safe because a dataset's
profile is written once: ``log_dataset`` never replaces a stored profile (it only fills
one in where there was none, and an absent profile is not cached)."""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlnb.store.core import Store

__all__ = ["CACHE_SIZE", "StoredProfile", "dataset_profiles"]

CACHE_SIZE = 64
_cache: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()


@dataclass(frozen=True)
class StoredProfile:
    """One dataset of a run: its name, role, fingerprint and profile (None when the
    dataset was logged without one, e.g. a file or ``profile=False``). The profile is
    shared with later reads: do not change it."""

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
    where = str(store.db_path) if store.db_path is not None else None

    def read(c: sqlite3.Connection) -> list[StoredProfile]:
        rows = c.execute(
            "SELECT r.name, l.name, l.role, d.hash, d.rows FROM runs r "
            "JOIN run_datasets l ON l.run = r.id JOIN datasets d ON d.hash = l.hash "
            "WHERE r.run_id = ? ORDER BY l.role, l.name",
            [run_id],
        ).fetchall()
        out = []
        for run_name, name, role, digest, n in rows:
            key = (where, digest) if where else None  # an in-memory store is not cached
            prof = _cache.get(key) if key else None
            if key and prof is not None:
                _cache.move_to_end(key)
            else:
                text = c.execute(
                    "SELECT profile FROM datasets WHERE hash = ?", [digest]
                ).fetchone()[0]
                prof = None if text is None else json.loads(text)
                if key and prof is not None:
                    _cache[key] = prof
                    while len(_cache) > CACHE_SIZE:
                        _cache.popitem(last=False)
            out.append(StoredProfile(run_id, run_name, name, role, digest, n, prof))
        return out

    return store.file.read(read)
