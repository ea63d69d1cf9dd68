"""Comparing runs, without any widget: the logic under ``mlnb.compare``.

- :class:`RunsTable` filters (the query language), sorts and pages runs in SQL: a filter
  or sort is one query for the ordered run ids (~20 ms over 10,000 runs), and only the
  visible page is read in full, so the table stays quick however many runs there are.
  A filter that does not parse leaves the table as it was and sets ``error``; a filter
  key that no run in scope has sets ``notices`` ("no run has metric 'acuracy'; did you
  mean 'accuracy'?", from ``mlnb.store.notices``), which the widget shows under its filter box.
- :func:`diff_many` puts the params, metrics, tags, data fingerprints, environment
  packages and git state of several runs side by side: only differences unless ``all``,
  the best value of each metric marked, Δ against a baseline run.
- :class:`Comparison` holds a table, a selection and the plot options, reads metric
  histories, draws the figures (``compareplots``), and renders it all as text, as HTML
  and as a self-contained HTML file (``to_html``). ``mlnb.notebook.widgets`` builds the
  ipywidgets UI on top of it; without a frontend it is what ``mlnb.compare`` returns.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlnb.comparison import plots as compareplots
from mlnb.comparison.html import STYLE, best_index, cell_text, png_data_uri, render_table
from mlnb.comparison.multidiff import MultiDiff, diff_many
from mlnb.conventions import SPEC_PARAM_PREFIXES, lower_is_better
from mlnb.errors import InvalidInputError, QuerySyntaxError
from mlnb.formatting import escape_html
from mlnb.records import RunRecord, is_system_metric
from mlnb.store import Store, notices
from mlnb.store.query import Field, RunScope, quote_string
from mlnb.tracking import fluent as tracking

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

ATTRIBUTES = ("name", "status", "linearity", "experiment", "start_time", "duration", "run_id")
DEFAULT_PAGE_SIZE = 25
PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_SELECTED = 5  # runs selected at first when none are named
MAX_CURVE_KEYS = 6
MAX_DIFF_RUNS = 12
MAX_RELATION_RUNS = 1_000  # lines of the parallel plot, points of the scatter
MAX_PARALLEL_AXES = 10  # params shown as axes of the parallel plot
SNAPSHOT_ROWS = 1_000
FETCH_CHUNK = 500
EXACT_KEYS_MAX = 2_000  # beyond this many runs in view, columns are the store's keys


class RunsTable:
    """The runs being compared, as SQL sees them: ``ids`` is the filtered, sorted list of
    run ids; ``page_rows()`` reads the visible page in full; ``selected`` is an ordered
    list of run ids that survives filtering, sorting and paging.

    ``run_ids`` limits the table to those runs (``None``: every run of the store, or of
    ``experiment``); ``filter`` is the query language of docs/query.md. The ``job/*`` and
    ``system/*`` metrics are no columns unless ``system_metrics``; the comparison built on
    the table (curves, relations, diff) follows the same choice.
    """

    def __init__(
        self,
        store: Store,
        *,
        filter: str | None = None,
        run_ids: Sequence[str] | None = None,
        experiment: str | Sequence[str] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        system_metrics: bool = False,
    ) -> None:
        if type(page_size) is not int or page_size < 1:
            raise InvalidInputError(f"compare: page_size must be a positive int: {page_size!r}")
        self.store = store
        self.system_metrics = system_metrics
        self.run_ids = list(run_ids) if run_ids is not None else None
        self.experiments = [experiment] if isinstance(experiment, str) else experiment
        if self.experiments is not None:
            store.check_experiments(self.experiments)
        self.filter = ""
        self.error: str | None = None
        self.notices: list[str] = []  # keys of the filter that no run in scope has
        self.sort_column = "start_time"
        self.descending = True
        self.page = 0
        self.page_size = page_size
        self.ids: list[str] = []
        self.columns: list[str] = list(ATTRIBUTES)
        self.pinned: list[str] = ["name"]
        self.selected: list[str] = []
        self.generation = 0  # bumped whenever ids or their data may have changed
        self._page_cache: tuple[tuple[int, tuple[str, ...]], list[dict[str, Any]]] | None = None
        self._now = time.time()
        if not self.set_filter(filter or ""):
            raise QuerySyntaxError(self.error or "bad filter")

    # -- queries ------------------------------------------------------------------------

    def _scope(self) -> RunScope:
        return RunScope(self.experiments, self.run_ids)

    def _query(self, filter: str, column: str, descending: bool) -> tuple[list[str], list[str]]:
        """The ordered ids and the columns (attributes, then metrics, params, tags keys
        present among those runs) for a filter and a sort."""
        ids = self.store.run_ids(
            filter or None,
            order_by=_order_text(column, descending),
            scope=self._scope(),
            now=self._now,
        )
        # the keys those runs have; beyond EXACT_KEYS_MAX runs, every key of the store
        keys = self.store.run_keys(ids if len(ids) <= EXACT_KEYS_MAX else None)
        cols = list(ATTRIBUTES)
        for prefix in ("metrics", "params", "tags"):
            hide = prefix == "metrics" and not self.system_metrics
            cols += [f"{prefix}.{k}" for k in keys[prefix] if not (hide and is_system_metric(k))]
        return ids, cols

    def _apply(self, filter: str, column: str, descending: bool) -> bool:
        try:
            ids, cols = self._query(filter, column, descending)
        except QuerySyntaxError as exc:
            self.error = str(exc)
            return False
        self.error = None
        found = notices.key_notices(
            self.store, filter=filter, experiments=self.experiments, run_ids=self.run_ids
        )
        self.notices = [str(n) for n in found]
        self.filter, self.sort_column, self.descending = filter, column, descending
        self.ids, self.columns = ids, cols
        self.pinned = [c for c in self.pinned if c in cols]
        self.page = min(self.page, self.pages - 1)
        self.generation += 1
        return True

    def set_filter(self, text: str) -> bool:
        """Apply a filter (query language; empty = every run); back to page 1. A filter
        that does not parse changes nothing: ``error`` holds the message (with a caret
        under the position) and False is returned. ``notices`` then names the filter's
        keys that no run in scope has, with the closest that exist."""
        text = (text or "").strip()
        self.page = 0
        return self._apply(text, self.sort_column, self.descending)

    def sort(self, column: str, descending: bool | None = None) -> None:
        """Sort by a column (``name``, ``duration``, ``metrics.acc``...); missing values
        last in either direction. ``descending=None`` flips it when the column is already
        the sort column, else sorts ascending."""
        if column not in self.sortable():
            raise InvalidInputError(
                f"compare: cannot sort by {column!r}; columns: {', '.join(self.sortable())}"
            )
        if descending is None:
            descending = not self.descending if column == self.sort_column else False
        self._apply(self.filter, column, descending)

    def refresh(self) -> None:
        """Read the store again (new runs, new metric values, ended runs); keeps filter,
        sort, page and the selection of runs that still exist."""
        tracking.flush(self.store)
        self.store.reap_crashed()
        self._now = time.time()
        self._page_cache = None
        self._apply(self.filter, self.sort_column, self.descending)
        existing = set(self.ids) if self.run_ids is None else set(self._all_ids())
        self.selected = [i for i in self.selected if i in existing]

    def _all_ids(self) -> list[str]:
        return self.store.run_ids(scope=self._scope(), now=self._now)

    def sortable(self) -> list[str]:
        return [*ATTRIBUTES, "end_time", *(c for c in self.columns if "." in c)]

    # -- pages --------------------------------------------------------------------------

    @property
    def pages(self) -> int:
        return max(1, math.ceil(len(self.ids) / self.page_size))

    def go(self, page: int) -> None:
        """Show page ``page`` (0-based; clamped to the pages there are)."""
        self.page = max(0, min(int(page), self.pages - 1))

    def set_page_size(self, size: int) -> None:
        if type(size) is not int or size < 1:
            raise InvalidInputError(f"compare: page_size must be a positive int: {size!r}")
        first = self.page * self.page_size
        self.page_size = size
        self.page = first // size

    def page_ids(self) -> list[str]:
        start = self.page * self.page_size
        return self.ids[start : start + self.page_size]

    def page_rows(self) -> list[dict[str, Any]]:
        """The visible page, one dict per run (column → value), in table order."""
        ids = tuple(self.page_ids())
        key = (self.generation, ids)
        if self._page_cache is None or self._page_cache[0] != key:
            self._page_cache = (key, self.rows(ids))
        return self._page_cache[1]

    def rows(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Runs by id, read in full, in the order given."""
        table = fetch_runs(self.store, ids, now=self._now)
        n = len(table.get("run_id", []))
        by_id = {table["run_id"][i]: i for i in range(n)}
        return [{col: table[col][by_id[rid]] for col in table} for rid in ids if rid in by_id]

    # -- selection ----------------------------------------------------------------------

    def select(self, ids: Iterable[str], *, add: bool = False) -> None:
        """Select runs (ids, id prefixes or names); ``add`` keeps the current selection."""
        chosen = list(self.selected) if add else []
        known = set(self.ids)
        for ref in ids:
            rid = ref if ref in known else self.store.resolve_run_id(ref)
            if rid not in chosen:
                chosen.append(rid)
        self.selected = chosen

    def toggle(self, run_id: str, on: bool | None = None) -> None:
        """Select or unselect one run (flip it when ``on`` is None)."""
        present = run_id in self.selected
        if on is None:
            on = not present
        if on and not present:
            self.selected.append(run_id)
        elif not on and present:
            self.selected.remove(run_id)

    def select_page(self) -> None:
        self.select(self.page_ids(), add=True)

    def clear(self) -> None:
        self.selected = []


def fetch_runs(
    store: Store, ids: Sequence[str], *, now: float | None = None
) -> dict[str, list[Any]]:
    """``Store.search_runs`` columns for exactly these runs (any number of them, read in
    chunks), deleted ones included; columns missing from a chunk are filled with None."""
    merged: dict[str, list[Any]] = {}
    total = 0
    for start in range(0, len(ids), FETCH_CHUNK):
        chunk = ids[start : start + FETCH_CHUNK]
        flt = "run_id in (" + ",".join(quote_string(i) for i in chunk) + ")"
        table = store.search_runs(flt, include_deleted=True, now=now)
        n = len(table["run_id"])
        for col, values in table.items():
            if col not in merged:
                merged[col] = [None] * total
            merged[col].extend(values)
        for values in merged.values():
            if len(values) < total + n:
                values.extend([None] * (total + n - len(values)))
        total += n
    return merged


def resolve_scope(store: Store, runs: Any) -> tuple[str | None, list[str] | None]:
    """What ``compare(runs)`` was given, as ``(filter, run_ids)``: a filter string, a list
    of run ids (prefixes and names accepted), or a DataFrame with a ``run_id`` column (as
    ``mlnb.runs()`` returns)."""
    if runs is None:
        return None, None
    if isinstance(runs, str):
        return runs.strip() or None, None
    columns = getattr(runs, "columns", None)
    if columns is not None:
        if "run_id" not in columns:
            raise InvalidInputError(
                "compare: a DataFrame needs a run_id column (mlnb.runs() returns one)"
            )
        items = [str(v) for v in runs["run_id"]]
    elif isinstance(runs, Iterable):
        items = [str(v) for v in runs]
    else:
        raise InvalidInputError(
            "compare: runs must be a filter string, a list of run ids or a DataFrame from "
            f"mlnb.runs(), not {type(runs).__name__}"
        )
    exact = set(store.run_ids(scope=RunScope(run_ids=items, include_deleted=True)))
    ids: list[str] = []
    for ref in items:
        rid = ref if ref in exact else store.resolve_run_id(ref)
        if rid not in ids:
            ids.append(rid)
    return None, ids


# -- the comparison -----------------------------------------------------------------------


class Comparison:
    """Runs being compared: a :class:`RunsTable`, the selection, the metric curves, the
    diff and the relations, with text, HTML and static-file views. ``mlnb.compare``
    returns one (or a widget built on one, under Jupyter)."""

    def __init__(
        self,
        table: RunsTable,
        *,
        metrics: Sequence[str] | None = None,
        baseline: str | None = None,
    ) -> None:
        self.table = table
        self.store = table.store
        self.metrics: list[str] | None = list(metrics) if metrics else None
        self.x = "step"
        self.smoothing = 0.0
        self.log_y = False
        self.show_all = False
        self.baseline: str | None = None
        self.relation_metric: str | None = None
        self.scatter_x: str | None = None
        self.scatter_y: str | None = None
        self._histories: dict[tuple[str, str], tuple[list[float], list[float], list[float]]] = {}
        self._records: dict[str, RunRecord] = {}
        self._png: dict[str, tuple[Any, bytes]] = {}
        self._relation_rows: tuple[int, dict[str, list[Any]]] | None = None
        self._lock = threading.RLock()  # the caches; a widget draws in another thread
        if table.run_ids is not None and len(table.ids) <= MAX_DIFF_RUNS:
            table.selected = list(table.ids)
        else:
            table.selected = table.ids[:DEFAULT_SELECTED]
        if baseline is not None:
            self.set_baseline(baseline)

    # -- state --------------------------------------------------------------------------

    def metric_keys(self) -> list[str]:
        return [c[len("metrics.") :] for c in self.table.columns if c.startswith("metrics.")]

    def metric_choices(self) -> list[str]:
        """Metric keys to offer for the curves: those in view and those asked for."""
        keys = self.metric_keys()
        return keys + [k for k in self.metrics or () if k not in keys]

    def param_keys(self) -> list[str]:
        return [c[len("params.") :] for c in self.table.columns if c.startswith("params.")]

    def curve_keys(self) -> list[str]:
        """The metrics plotted: those asked for, else the first few in view (the table's:
        no ``job/*`` or ``system/*`` unless ``system_metrics``)."""
        if self.metrics:
            return list(self.metrics)
        return self.metric_keys()[:MAX_CURVE_KEYS]

    def set_baseline(self, ref: str | None) -> None:
        """The run Δ values are computed against (selected first if it was not)."""
        if ref is None:
            self.baseline = None
            return
        rid = self.store.resolve_run_id(ref)
        if rid not in self.table.selected:
            self.table.selected.insert(0, rid)
        self.baseline = rid

    def refresh(self) -> None:
        """Read everything again: the table, histories and records (runs still running
        have new points)."""
        with self._lock:
            self.table.refresh()
            self._histories.clear()
            self._records.clear()
            self._png.clear()
            self._relation_rows = None
        if self.baseline not in self.table.selected:
            self.baseline = None

    @property
    def selected(self) -> pd.DataFrame:
        """The selected runs as a DataFrame, shaped like ``mlnb.runs()``."""
        import pandas as pd

        table = fetch_runs(self.store, self.table.selected)
        frame = pd.DataFrame(table)
        if frame.empty:
            return pd.DataFrame(columns=["run_id", "name", "experiment", "status"])
        order = {rid: i for i, rid in enumerate(self.table.selected)}
        frame = frame.sort_values("run_id", key=lambda s: s.map(order)).reset_index(drop=True)
        for col in ("start_time", "end_time"):
            frame[col] = pd.to_datetime(frame[col], unit="s", utc=True)
        return frame

    # -- data ---------------------------------------------------------------------------

    def records(self, ids: Sequence[str]) -> list[RunRecord]:
        with self._lock:
            for rid in ids:
                if rid not in self._records:
                    self._records[rid] = self.store.get_run(rid)
            return [self._records[rid] for rid in ids]

    def histories(
        self, ids: Sequence[str], keys: Sequence[str]
    ) -> dict[tuple[str, str], tuple[list[float], list[float], list[float]]]:
        """``(run_id, key) → (steps, values, seconds since the run started)``: each series
        as ``Store.downsampled_history`` samples it (at most a few thousand points, with
        its extremes and last point), read once and cached."""
        with self._lock:
            return self._histories_locked(ids, keys)

    def _histories_locked(
        self, ids: Sequence[str], keys: Sequence[str]
    ) -> dict[tuple[str, str], tuple[list[float], list[float], list[float]]]:
        missing = [(r, k) for r in ids for k in keys if (r, k) not in self._histories]
        if missing:
            tracking.flush(self.store)
            started = {rec.run_id: rec.start_time for rec in self.records(ids)}
            for rid, key in missing:
                points = self.store.downsampled_history(rid, key).points
                self._histories[(rid, key)] = (
                    [p[0] for p in points],
                    [p[1] for p in points],
                    [p[2] - started[rid] for p in points],
                )
        return {(r, k): self._histories[(r, k)] for r in ids for k in keys}

    def _relation_table(self) -> dict[str, list[Any]]:
        """Every run in view (up to MAX_RELATION_RUNS), read in full, in table order."""
        with self._lock:
            return self._relation_table_locked()

    def _relation_table_locked(self) -> dict[str, list[Any]]:
        gen = self.table.generation
        if self._relation_rows is None or self._relation_rows[0] != gen:
            ids = self.table.ids[:MAX_RELATION_RUNS]
            if len(ids) > FETCH_CHUNK * 4:  # many runs: one search, then keep those in view
                flt = self.table.filter or None
                full = self.store.search_runs(flt, experiment=self.table.experiments)
                pos = {rid: i for i, rid in enumerate(full["run_id"])}
                idx = [pos[r] for r in ids if r in pos]
                table = {c: [v[i] for i in idx] for c, v in full.items()}
            else:
                table = fetch_runs(self.store, ids)
                pos = {rid: i for i, rid in enumerate(table.get("run_id", []))}
                idx = [pos[r] for r in ids if r in pos]
                table = {c: [v[i] for i in idx] for c, v in table.items()}
            self._relation_rows = (gen, table)
        return self._relation_rows[1]

    # -- figures ------------------------------------------------------------------------

    def _cached_png(self, name: str, state: Any, draw: Callable[[], Figure]) -> bytes:
        hit = self._png.get(name)
        if hit is not None and hit[0] == state:
            return hit[1]
        png = compareplots.to_png(draw())
        self._png[name] = (state, png)
        return png

    def curves_png(self) -> bytes:
        """:meth:`curves_figure` as PNG (cached until the selection or an option changes)."""
        ids = self.table.selected[:MAX_DIFF_RUNS]
        state = (tuple(ids), tuple(self.curve_keys()), self.x, self.smoothing, self.log_y)
        return self._cached_png("curves", state, self.curves_figure)

    def curve_panels(self) -> dict[str, list[compareplots.Curve]]:
        """What the curves show: per metric key, one series per selected run (that
        logged it) with its best point (lowest or highest, by the key's name)."""
        ids = self.table.selected[:MAX_DIFF_RUNS]
        keys = self.curve_keys()
        hist = self.histories(ids, keys)
        colors = dict(zip(ids, compareplots.run_colors(len(ids)), strict=True))
        labels = {r.run_id: run_label(r.name, r.run_id) for r in self.records(ids)}
        panels: dict[str, list[compareplots.Curve]] = {}
        for key in keys:
            lower = lower_is_better(key)
            curves = []
            for rid in ids:
                steps, values, seconds = hist[(rid, key)]
                if not steps:
                    continue
                x = [float(s) for s in (steps if self.x == "step" else seconds)]
                b = best_index(values, lower)
                best = None if b is None else (x[b], values[b])
                curves.append(compareplots.Curve(labels[rid], colors[rid], x, values, best))
            if curves:
                panels[key] = curves
        return panels

    def curves_figure(self) -> Figure:
        """The selected runs' histories, one axes per metric."""
        return compareplots.curves_figure(
            self.curve_panels(),
            x_label="step" if self.x == "step" else "seconds since run start",
            smoothing=self.smoothing,
            log_y=self.log_y,
            lower={k: lower_is_better(k) for k in self.curve_keys()},
        )

    def default_relation_metric(self) -> str | None:
        keys = self.metric_keys()
        if self.relation_metric in keys:
            return self.relation_metric
        preferred = [k for k in self.curve_keys() if k in keys]
        return (preferred or keys)[0] if (preferred or keys) else None

    def parallel_png(self) -> bytes:
        """:meth:`parallel_figure` as PNG (cached)."""
        metric = self.default_relation_metric()
        state = (self.table.generation, tuple(self.table.selected), metric)
        return self._cached_png("parallel", state, self.parallel_figure)

    def parallel_figure(self) -> Figure:
        """Parallel coordinates of the params that vary → the relation metric."""
        metric = self.default_relation_metric()
        if metric is None:
            return compareplots.message_figure("No metrics logged by the runs in view.")
        table = self._relation_table()
        values = table.get(f"metrics.{metric}", [])
        columns = {k: table[f"params.{k}"] for k in self.varying_params(table, values)}
        columns[metric] = values
        chosen = set(self.table.selected)
        selected = [rid in chosen for rid in table.get("run_id", [])]
        return compareplots.parallel_figure(
            columns, metric, selected=selected, lower=lower_is_better(metric)
        )

    def varying_params(self, table: dict[str, list[Any]], metric: Sequence[Any]) -> list[str]:
        """The param keys worth an axis: two or more distinct values among the runs that
        have the ``metric`` (a param missing from some runs does not vary by that alone),
        leaving out a sweep parent's own params (``grid.*``, ``sweep.*``, ``fixed.*``);
        at most :data:`MAX_PARALLEL_AXES`."""
        drawn = [i for i, v in enumerate(metric) if v is not None]
        varying = []
        for key in self.param_keys():
            if key.startswith(SPEC_PARAM_PREFIXES):
                continue
            column = table.get(f"params.{key}", [])
            if len({_hashable(column[i]) for i in drawn if column[i] is not None}) > 1:
                varying.append(key)
        return varying[:MAX_PARALLEL_AXES]

    def _scatter_keys(self) -> tuple[str | None, str | None]:
        params, metrics = self.param_keys(), self.metric_keys()
        x = self.scatter_x if self.scatter_x in params else (params[0] if params else None)
        y = self.scatter_y if self.scatter_y in metrics else self.default_relation_metric()
        return x, y

    def scatter_png(self) -> bytes:
        """:meth:`scatter_figure` as PNG (cached)."""
        state = (self.table.generation, tuple(self.table.selected), *self._scatter_keys())
        return self._cached_png("scatter", state, self.scatter_figure)

    def scatter_figure(self) -> Figure:
        """One param against one metric over the runs in view."""
        x, y = self._scatter_keys()
        if x is None or y is None:
            return compareplots.message_figure("A scatter needs runs with params and metrics.")
        table = self._relation_table()
        chosen = set(self.table.selected)
        ids = table.get("run_id", [])
        return compareplots.scatter_figure(
            table.get(f"params.{x}", []),
            table.get(f"metrics.{y}", []),
            x_name=f"params.{x}",
            y_name=f"metrics.{y}",
            selected=[rid in chosen for rid in ids],
            labels=[run_label(n, r) for n, r in zip(table.get("name", []), ids, strict=True)],
        )

    def diff(self) -> MultiDiff:
        """The selected runs side by side (the first MAX_DIFF_RUNS of them)."""
        ids = self.table.selected[:MAX_DIFF_RUNS]
        base = ids.index(self.baseline) if self.baseline in ids else None
        return diff_many(
            self.records(ids),
            baseline=base,
            all=self.show_all,
            system_metrics=self.table.system_metrics,
        )

    # -- views --------------------------------------------------------------------------

    def summary(self) -> str:
        t = self.table
        arrow = "desc" if t.descending else "asc"
        return (
            f"{len(t.ids):,} runs · filter: {t.filter or 'none'} · sorted by "
            f"{t.sort_column} {arrow} · page {t.page + 1}/{t.pages} · "
            f"{len(t.selected)} selected"
        )

    def table_html(self, rows: list[dict[str, Any]] | None = None) -> str:
        """The visible page (or ``rows``) as an HTML table with badges."""
        t = self.table
        return render_table(
            t.page_rows() if rows is None else rows,
            t.columns,
            pinned=t.pinned,
            selected=set(t.selected),
            sort=(t.sort_column, t.descending),
        )

    def __repr__(self) -> str:
        t = self.table
        lines = [f"mlnb.compare: {self.summary()}"]
        if t.error:
            lines.append(f"filter error: {t.error}")
        metric_cols = [c for c in t.columns if c.startswith("metrics.")][:4]
        cols = ["name", "status", "duration", *metric_cols]
        rows = t.page_rows()[:10]
        widths = {c: max([len(c)] + [len(cell_text(c, r.get(c))) for r in rows]) for c in cols}
        lines.append("  " + "  ".join(c.ljust(widths[c]) for c in cols))
        for r in rows:
            mark = "*" if r["run_id"] in t.selected else " "
            lines.append(
                mark + " " + "  ".join(cell_text(c, r.get(c)).ljust(widths[c]) for c in cols)
            )
        if len(t.ids) > len(rows):
            lines.append(f"  ... {len(t.ids) - len(rows):,} more")
        if t.selected:
            lines.append("")
            lines.append(str(self.diff()))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.html(images=True, standalone=False)

    def html(self, *, images: bool = True, standalone: bool = True, rows: int | None = None) -> str:
        """The comparison as HTML: summary, runs table (the page, or the first ``rows``
        runs in view), diff, and the plots as embedded PNGs. ``standalone`` makes a whole
        document that needs no kernel, no network and no script."""
        esc = escape_html
        t = self.table
        table_rows = t.page_rows() if rows is None else t.rows(t.ids[:rows])
        parts = [
            STYLE,
            "<div class='mlnb-cmp'>",
            f"<p class='mlnb-cmp-summary'>{esc(self.summary())}</p>",
        ]
        if rows is not None and len(t.ids) > rows:
            parts.append(f"<p class='mlnb-cmp-note'>first {rows:,} of {len(t.ids):,} runs</p>")
        parts.append(f"<div class='mlnb-cmp-scroll'>{self.table_html(table_rows)}</div>")
        parts.append("<h3>Diff of the selected runs</h3>" + self.diff().to_html())
        if images:
            for title, png in (
                ("Metric curves", self.curves_png()),
                ("Params → metric", self.parallel_png()),
                ("Param against metric", self.scatter_png()),
            ):
                parts.append(f"<h3>{title}</h3><img alt='{title}' src='{png_data_uri(png)}'>")
        parts.append("</div>")
        body = "".join(parts)
        if not standalone:
            return body
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>mlnb compare · {stamp}</title></head><body>"
            f"<h2>mlnb compare</h2><p class='mlnb-cmp-note'>snapshot of "
            f"{esc(self.store.location)} at {stamp}</p>{body}</body></html>"
        )

    def to_html(self, path: str | os.PathLike[str]) -> Path:
        """Write a static, self-contained HTML snapshot (table of up to 1,000 runs in
        view, diff, curves and relations as embedded images) that opens in any browser
        without a kernel; returns the path."""
        target = Path(path)
        text = self.html(images=True, standalone=True, rows=SNAPSHOT_ROWS)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        return target


def run_label(name: str, run_id: str) -> str:
    """How the compare view names a run in legends, menus and lists: its name and short
    id (``train (1a2b3c4d)``), so two runs with one name stay two."""
    return f"{name} ({run_id[:8]})"


def _order_text(column: str, descending: bool) -> str:
    prefix, dot, key = column.partition(".")
    text = str(Field((prefix, key))) if dot else column
    return f"{text} {'desc' if descending else 'asc'}"


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True, default=str) if isinstance(v, (list, dict)) else v
