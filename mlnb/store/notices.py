"""Typos get an answer, not silence: a filter, sort or column key that no run in scope has.

``metrics.acuracy > 0.9`` is a valid filter that matches nothing, and ``-c metrics.acuracy``
a valid, empty column; both looked like "no runs". :func:`key_notices` finds the params,
metrics and tags keys that a filter, an order_by and a list of columns name but that no run
in scope has (scope: the experiments, the run ids, deleted runs or not — not the filter's
result), and offers the closest keys that do exist::

    no run has metric 'acuracy'; did you mean 'accuracy'?

Each adapter shows the notices its own way: the CLI on stderr, ``mlnb.runs`` and
``compare`` (without a widget) as :class:`~mlnb.errors.MlnbWarning`, the compare widget
under its filter box. A key that exists costs one index seek; the keys of the scope are
read only when one is missing, and nothing is said when the scope holds no run at all.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from mlnb.errors import MlnbWarning
from mlnb.store import Store
from mlnb.store.query import KEYED_PREFIXES, RunScope, referenced_keys

__all__ = ["KeyNotice", "column_key", "key_notices", "warn"]

_TABLES = {"params": "params", "metrics": "latest_metrics", "tags": "tags"}
_SINGULAR = {"params": "param", "metrics": "metric", "tags": "tag"}
MAX_LISTED = 8  # keys named when none is close


@dataclasses.dataclass(frozen=True)
class KeyNotice:
    """``kind`` (``params``, ``metrics`` or ``tags``) ``key`` is on no run in scope;
    ``suggestions`` are the closest keys that are (another kind's as ``kind.key``), and
    ``known`` the first few keys of that kind when none is close."""

    kind: str
    key: str
    suggestions: tuple[str, ...] = ()
    known: tuple[str, ...] = ()
    more: int = 0  # keys of that kind beyond ``known``

    def __str__(self) -> str:
        text = f"no run has {_SINGULAR[self.kind]} {self.key!r}"
        if self.suggestions:
            return text + "; did you mean " + " or ".join(map(repr, self.suggestions)) + "?"
        if not self.known:
            return text + f" (no run has any {_SINGULAR[self.kind]})"
        listed = ", ".join(self.known) + (f" and {self.more} more" if self.more else "")
        return text + f" ({self.kind}: {listed})"


def column_key(column: str) -> tuple[str, str] | None:
    """``("metrics", "acc")`` for the column ``metrics.acc``; None for attributes."""
    prefix, dot, key = column.partition(".")
    return (prefix, key) if dot and key and prefix in KEYED_PREFIXES else None


def key_notices(
    store: Store,
    *,
    filter: str | None = None,
    order_by: str | Sequence[str] | None = None,
    columns: Iterable[str] = (),
    experiments: str | Sequence[str] | None = None,
    run_ids: Sequence[str] | None = None,
    include_deleted: bool = False,
) -> list[KeyNotice]:
    """A notice per params/metrics/tags key named by ``filter``, ``order_by`` or
    ``columns`` that no run in scope has. Call it after the query ran (it parses again and
    raises QuerySyntaxError as the query would)."""
    keys = referenced_keys(filter, order_by)
    keys += [k for k in map(column_key, columns) if k is not None and k not in keys]
    if not keys:
        return []
    scope, args = RunScope(experiments, run_ids, include_deleted).where()
    join = "JOIN runs r ON r.id = x.run JOIN experiments e ON e.id = r.experiment_id"

    def missing(c: Any) -> list[tuple[str, str]]:
        if not c.execute(
            f"SELECT 1 FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE {scope} "
            "LIMIT 1",
            args,
        ).fetchone():
            return []  # no run in scope: "no runs" says it all
        return [
            (kind, key)
            for kind, key in keys
            if not c.execute(
                f"SELECT 1 FROM {_TABLES[kind]} x {join} WHERE x.key = ? AND {scope} LIMIT 1",
                [key, *args],
            ).fetchone()
        ]

    absent = store.file.read(missing)
    if not absent:
        return []

    def existing(c: Any) -> dict[str, list[str]]:
        return {
            kind: [
                row[0]
                for row in c.execute(
                    f"SELECT DISTINCT x.key FROM {table} x {join} WHERE {scope} ORDER BY x.key",
                    args,
                )
            ]
            for kind, table in _TABLES.items()
        }

    present = store.file.read(existing)
    return [_notice(kind, key, present) for kind, key in absent]


def _notice(kind: str, key: str, present: dict[str, list[str]]) -> KeyNotice:
    own = present[kind]
    close = difflib.get_close_matches(key, own, n=3, cutoff=0.6)
    others = [f"{other}.{key}" for other in KEYED_PREFIXES if key in present[other]]
    suggestions = tuple(close + others)
    if suggestions:
        return KeyNotice(kind, key, suggestions)
    return KeyNotice(kind, key, known=tuple(own[:MAX_LISTED]), more=max(0, len(own) - MAX_LISTED))


def warn(notices: Iterable[KeyNotice], *, stacklevel: int = 2) -> None:
    """Each notice as an :class:`~mlnb.errors.MlnbWarning` (API callers: ``mlnb.runs``)."""
    for notice in notices:
        warnings.warn(str(notice), MlnbWarning, stacklevel=stacklevel + 1)
