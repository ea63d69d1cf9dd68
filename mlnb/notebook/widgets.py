"""``mlnb.compare``: the compare widget, ipywidgets on top of ``mlnb.comparison.table``.

This module is the only importer of ipywidgets. The logic (filtering, sorting, paging,
selection, diffs, figures, HTML) lives in ``comparison`` and ``compareplots``; here are
the controls and their wiring, so that every behaviour can be driven without a browser
through widget values and ``Button.click()``.

The table shows one page (a checkbox per row beside an HTML table), so 10,000 runs cost
what 25 do. Plots are drawn off the main thread by a painter that keeps only the newest
request per plot: a click never waits for matplotlib (``wait()`` blocks until the
painter is idle, for tests and scripts).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from mlnb.comparison.html import STYLE, png_data_uri
from mlnb.comparison.table import (
    PAGE_SIZES,
    Comparison,
    RunsTable,
    resolve_scope,
    run_label,
)
from mlnb.errors import InvalidInputError, MlnbError, MlnbWarning
from mlnb.formatting import escape_html
from mlnb.notebook.liveplot import _kernel_shell
from mlnb.tracking import fluent as tracking
from mlnb.tracking.fluent import StoreLike

if TYPE_CHECKING:
    import os
    from pathlib import Path

    import pandas as pd

ROW_HEIGHT = "28px"
HEADER_HEIGHT = "35px"  # the table header (30 px) and the HTML widget's top margin
AUTO_REFRESH = (
    ("auto-refresh: off", 0.0),
    ("every 2 s", 2.0),
    ("every 5 s", 5.0),
    ("every 30 s", 30.0),
)
TAB_TITLES = ("Curves", "Diff", "Relations")


def compare(
    runs: Any = None,
    *,
    metrics: str | Sequence[str] | None = None,
    baseline: str | None = None,
    experiment: str | Sequence[str] | None = None,
    page_size: int = 25,
    refresh_every: float | None = None,
    widget: bool | None = None,
    system_metrics: bool = False,
    store: StoreLike | None = None,
) -> CompareWidget | Comparison:
    """Compare runs in the notebook: a sortable, filterable table of runs; the metric
    curves of the selected runs; a diff of their params, tags, data, environment and git
    state; parallel coordinates and a scatter of params against a metric.

    ``runs`` is a filter in the query language (``"metrics.acc > 0.9"``), a list of run
    ids (prefixes and names accepted) or a DataFrame from ``mlnb.runs()``; default: every
    run. ``metrics`` picks the metric keys plotted; ``baseline`` the run Δ values are
    computed against. ``refresh_every`` (seconds) re-reads the store while runs are still
    running. The ``job/*`` and ``system/*`` metrics (a job's cell timings, the sampled
    machine) are left out of the table, the plots and the diff unless ``system_metrics``.

    Under Jupyter it returns a :class:`CompareWidget`; elsewhere (a script, CI, terminal
    IPython) a :class:`~mlnb.comparison.table.Comparison` with text and HTML views. Both have
    ``.selected`` (a DataFrame) and ``.to_html(path)``. ``widget=True``/``False`` forces
    one or the other.
    """
    st = tracking.resolve_store(store, create=False)
    tracking.flush(st)
    if isinstance(metrics, str):
        metrics = [metrics]
    if metrics is not None and not all(isinstance(m, str) and m for m in metrics):
        raise InvalidInputError(f"compare: metrics must be metric keys, got {metrics!r}")
    if refresh_every is not None and not (
        isinstance(refresh_every, (int, float)) and refresh_every > 0
    ):
        raise InvalidInputError(
            f"compare: refresh_every must be a positive number of seconds: {refresh_every!r}"
        )
    flt, ids = resolve_scope(st, runs)
    table = RunsTable(
        st,
        filter=flt,
        run_ids=ids,
        experiment=experiment,
        page_size=page_size,
        system_metrics=system_metrics,
    )
    comparison = Comparison(table, metrics=metrics, baseline=baseline)
    if widget is None:
        widget = _kernel_shell() is not None
    if not widget:  # the widget shows them under its filter box instead
        for notice in table.notices:
            warnings.warn(notice, MlnbWarning, stacklevel=2)
        return comparison
    return CompareWidget(comparison, refresh_every=refresh_every)


def _notices_html(notices: Sequence[str]) -> str:
    """The filter's notices (keys no run has) as the line under the filter box."""
    return "".join(f"<div class='mlnb-cmp-notice'>{escape_html(n)}</div>" for n in notices)


class _Painter:
    """A thread that runs drawing jobs, the newest per name: a plot requested three
    times while one frame is drawn is drawn once more, not three times."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jobs: dict[str, Callable[[], None]] = {}
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    def submit(self, name: str, job: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                return
            self._jobs.pop(name, None)
            self._jobs[name] = job
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="mlnb-compare-painter", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._jobs) or self._closed)
                if self._closed:
                    return
                name = next(iter(self._jobs))
                job = self._jobs.pop(name)
                self._busy = True
            try:
                job()
            except Exception as exc:  # shown in the widget by the job's own handler
                self.errors.append(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until every submitted job has run; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._closed or (not self._jobs and not self._busy), timeout
            )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._jobs.clear()
            self._cond.notify_all()


def _png_output(out: W.Output, png: bytes, alt: str) -> None:
    import base64

    out.outputs = (
        {
            "output_type": "display_data",
            "data": {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": alt},
            "metadata": {},
        },
    )


class CompareWidget(W.VBox):  # type: ignore[misc]
    """The compare widget (see :func:`compare`). Its parts are attributes, so tests and
    power users can drive them: ``filter_box``, ``sort_by``, ``descending``, ``pinned``,
    ``page_size``, ``prev_button``/``next_button``, ``row_checks``, ``select_page_button``,
    ``clear_button``, ``refresh_button``, ``auto_refresh``, ``tabs``, ``curve_keys``,
    ``x_axis``, ``smoothing``, ``log_scale``, ``curves_out``, ``show_all``, ``baseline``,
    ``diff_html``, ``relation_metric``, ``scatter_x``, ``scatter_y``, ``parallel_out``,
    ``scatter_out``."""

    def __init__(self, comparison: Comparison, *, refresh_every: float | None = None) -> None:
        self.comparison = comparison
        self.table: RunsTable = comparison.table
        self._syncing = False
        self._painter = _Painter()
        self._stale: set[int] = set()
        self._auto_gen = 0
        self._closing = threading.Event()
        self._lock = threading.RLock()
        t = self.table
        # toolbar
        self.filter_box = W.Text(
            value=t.filter,
            placeholder="filter, e.g. metrics.acc > 0.9 and params.lr < 0.01 (Enter to apply)",
            continuous_update=False,
            layout=W.Layout(flex="1 1 auto", min_width="320px"),
        )
        self.filter_box.add_class("mlnb-compare-filter")
        self.filter_error = W.HTML(_notices_html(t.notices))
        self.filter_error.add_class("mlnb-compare-error")
        self.refresh_button = W.Button(
            description="Refresh", icon="refresh", layout=W.Layout(width="100px")
        )
        self.auto_refresh = W.Dropdown(
            options=AUTO_REFRESH, value=0.0, layout=W.Layout(width="150px")
        )
        self.sort_by = W.Dropdown(
            description="sort by",
            options=t.sortable(),
            value=t.sort_column,
            layout=W.Layout(width="260px"),
        )
        self.descending = W.Checkbox(
            value=t.descending,
            description="descending",
            indent=False,
            layout=W.Layout(width="110px"),
        )
        self.sort_by.add_class("mlnb-compare-sort")
        self.descending.add_class("mlnb-compare-descending")
        self.pinned = W.TagsInput(
            value=list(t.pinned), allowed_tags=list(t.columns), allow_duplicates=False
        )
        self.page_size = W.Dropdown(
            description="rows",
            options=sorted({*PAGE_SIZES, t.page_size}),
            value=t.page_size,
            layout=W.Layout(width="140px"),
        )
        self.prev_button = W.Button(
            icon="chevron-left", tooltip="previous page", layout=W.Layout(width="36px")
        )
        self.next_button = W.Button(
            icon="chevron-right", tooltip="next page", layout=W.Layout(width="36px")
        )
        self.page_label = W.Label()
        # table
        self.row_checks: list[W.Checkbox] = []
        self.check_column = W.VBox(layout=W.Layout(flex="0 0 auto", width="32px"))
        self.table_html = W.HTML(layout=W.Layout(overflow="auto", flex="1 1 auto"))
        self.table_html.add_class("mlnb-compare-table")
        self.select_page_button = W.Button(description="select page", icon="check-square")
        self.clear_button = W.Button(description="clear selection", icon="square")
        self.selection_label = W.HTML()
        self.selection_label.add_class("mlnb-compare-selection")
        # curves
        self.curve_keys = W.SelectMultiple(
            options=comparison.metric_choices(),
            value=comparison.curve_keys(),
            rows=4,
            description="metrics",
        )
        self.curve_keys.add_class("mlnb-compare-metrics")
        self.x_axis = W.ToggleButtons(options=[("step", "step"), ("time", "time")], value="step")
        self.smoothing = W.FloatSlider(
            value=0.0, min=0.0, max=0.99, step=0.01, description="smoothing", readout_format=".2f"
        )
        self.log_scale = W.Checkbox(value=False, description="log scale", indent=False)
        self.curves_out = W.Output()
        self.curves_out.add_class("mlnb-compare-curves")
        # diff
        self.show_all = W.Checkbox(
            value=False, description="show all (not only differences)", indent=False
        )
        self.baseline = W.Dropdown(description="baseline", options=[("none", "")], value="")
        self.diff_html = W.HTML()
        self.diff_html.add_class("mlnb-compare-diff")
        # relations
        metric_keys = comparison.metric_keys()
        self.relation_metric = W.Dropdown(
            description="metric", options=metric_keys, value=comparison.default_relation_metric()
        )
        self.parallel_out = W.Output()
        self.parallel_out.add_class("mlnb-compare-parallel")
        self.scatter_x = W.Dropdown(description="param", options=comparison.param_keys())
        self.scatter_y = W.Dropdown(
            description="metric", options=metric_keys, value=comparison.default_relation_metric()
        )
        self.scatter_out = W.Output()

        self.tabs = W.Tab(
            children=[
                W.VBox(
                    [
                        W.HBox(
                            [self.curve_keys, W.VBox([self.x_axis, self.smoothing, self.log_scale])]
                        ),
                        self.curves_out,
                    ]
                ),
                W.VBox([W.HBox([self.show_all, self.baseline]), self.diff_html]),
                W.VBox(
                    [
                        self.relation_metric,
                        self.parallel_out,
                        W.HBox([self.scatter_x, self.scatter_y]),
                        self.scatter_out,
                    ]
                ),
            ],
        )
        self.tabs.titles = TAB_TITLES
        super().__init__(
            [
                W.HTML(STYLE, layout=W.Layout(display="none")),
                W.HBox([self.filter_box, self.refresh_button, self.auto_refresh]),
                self.filter_error,
                W.HBox([self.sort_by, self.descending, W.Label("pinned"), self.pinned]),
                W.HBox([self.page_size, self.prev_button, self.page_label, self.next_button]),
                W.HBox(
                    [self.check_column, self.table_html], layout=W.Layout(align_items="flex-start")
                ),
                W.HBox([self.select_page_button, self.clear_button, self.selection_label]),
                self.tabs,
            ]
        )
        self.add_class("mlnb-compare")
        self._make_checks(t.page_size)
        self._wire()
        self._render_table()
        self._selection_changed()
        if refresh_every:
            self.set_auto_refresh(float(refresh_every))

    # -- wiring -------------------------------------------------------------------------

    def _wire(self) -> None:
        self.filter_box.observe(self._on_filter, "value")
        self.sort_by.observe(self._on_sort, "value")
        self.descending.observe(self._on_sort, "value")
        self.pinned.observe(self._on_pinned, "value")
        self.page_size.observe(self._on_page_size, "value")
        self.prev_button.on_click(lambda _: self._go(self.table.page - 1))
        self.next_button.on_click(lambda _: self._go(self.table.page + 1))
        self.select_page_button.on_click(self._on_select_page)
        self.clear_button.on_click(self._on_clear)
        self.refresh_button.on_click(lambda _: self.refresh())
        self.auto_refresh.observe(lambda ch: self.set_auto_refresh(ch["new"]), "value")
        for w in (self.curve_keys, self.x_axis, self.smoothing, self.log_scale):
            w.observe(self._on_curve_option, "value")
        self.show_all.observe(self._on_diff_option, "value")
        self.baseline.observe(self._on_diff_option, "value")
        self.relation_metric.observe(self._on_relation_option, "value")
        self.scatter_x.observe(self._on_relation_option, "value")
        self.scatter_y.observe(self._on_relation_option, "value")
        self.tabs.observe(self._on_tab, "selected_index")

    def _make_checks(self, n: int) -> None:
        for c in self.row_checks:
            c.close()
        self.row_checks = []
        for i in range(n):
            box = W.Checkbox(
                value=False,
                indent=False,
                layout=W.Layout(height=ROW_HEIGHT, width="28px", margin="0"),
            )
            box.add_class("mlnb-compare-check")
            box.observe(self._on_check(i), "value")
            self.row_checks.append(box)
        spacer = W.Box(layout=W.Layout(height=HEADER_HEIGHT, margin="0"))
        self.check_column.children = [spacer, *self.row_checks]

    def _on_check(self, i: int) -> Callable[[dict[str, Any]], None]:
        def handler(change: dict[str, Any]) -> None:
            if self._syncing:
                return
            ids = self.table.page_ids()
            if i < len(ids):
                self.table.toggle(ids[i], bool(change["new"]))
                self._render_table()
                self._selection_changed()

        return handler

    # -- handlers -----------------------------------------------------------------------

    def _on_filter(self, change: dict[str, Any]) -> None:
        with self._lock:
            ok = self.table.set_filter(change["new"])
        if not ok:
            self.filter_error.value = (
                f"<div class='mlnb-cmp-error'>{escape_html(self.table.error or '')}</div>"
            )
            return
        self.filter_error.value = _notices_html(self.table.notices)
        self._columns_changed()
        self._render_table()
        self._plots_stale()

    def _on_sort(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        with self._lock:
            self.table.sort(self.sort_by.value, bool(self.descending.value))
        self._render_table()
        self._plots_stale()

    def _on_pinned(self, change: dict[str, Any]) -> None:
        self.table.pinned = [c for c in change["new"] if c in self.table.columns]
        self._render_table()

    def _on_page_size(self, change: dict[str, Any]) -> None:
        self.table.set_page_size(int(change["new"]))
        self._make_checks(self.table.page_size)
        self._render_table()

    def _go(self, page: int) -> None:
        self.table.go(page)
        self._render_table()

    def _on_select_page(self, _: Any) -> None:
        self.table.select_page()
        self._render_table()
        self._selection_changed()

    def _on_clear(self, _: Any) -> None:
        self.table.clear()
        self._render_table()
        self._selection_changed()

    def _on_curve_option(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        c = self.comparison
        c.metrics = list(self.curve_keys.value) or None
        c.x = self.x_axis.value
        c.smoothing = float(self.smoothing.value)
        c.log_y = bool(self.log_scale.value)
        self._draw(0)

    def _on_diff_option(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        self.comparison.show_all = bool(self.show_all.value)
        self.comparison.baseline = self.baseline.value or None
        self._draw(1)

    def _on_relation_option(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        c = self.comparison
        c.relation_metric = self.relation_metric.value
        c.scatter_x = self.scatter_x.value
        c.scatter_y = self.scatter_y.value
        self._draw(2)

    def _on_tab(self, change: dict[str, Any]) -> None:
        index = change["new"]
        if index in self._stale:
            self._draw(index)

    # -- rendering ----------------------------------------------------------------------

    def _render_table(self) -> None:
        c, t = self.comparison, self.table
        with self._lock:
            rows = t.page_rows()
            html_table = c.table_html(rows)
        self._syncing = True
        try:
            chosen = set(t.selected)
            for i, box in enumerate(self.row_checks):
                if i < len(rows):
                    box.value = rows[i]["run_id"] in chosen
                    box.disabled = False
                    box.layout.display = None
                else:
                    box.value = False
                    box.disabled = True
                    box.layout.display = "none"
            if self.sort_by.value != t.sort_column:
                self.sort_by.value = t.sort_column
            if self.descending.value != t.descending:
                self.descending.value = t.descending
        finally:
            self._syncing = False
        self.table_html.value = html_table
        first = t.page * t.page_size
        shown = f"{first + 1:,}–{first + len(rows):,}" if rows else "0"
        self.page_label.value = (
            f"page {t.page + 1:,} of {t.pages:,} · runs {shown} of {len(t.ids):,}"
        )
        self.prev_button.disabled = t.page == 0
        self.next_button.disabled = t.page >= t.pages - 1
        labels = {r.run_id: run_label(r.name, r.run_id) for r in c.records(t.selected[:8])}
        listed = ", ".join(escape_html(labels[r]) for r in t.selected[:8])
        more = f" and {len(t.selected) - 8} more" if len(t.selected) > 8 else ""
        self.selection_label.value = f"<b>{len(t.selected)} selected</b> {listed}{more}"

    def _columns_changed(self) -> None:
        """Columns (keys) may differ after a filter or refresh: update the choices."""
        c, t = self.comparison, self.table
        self._syncing = True
        try:
            self.sort_by.options = t.sortable()
            self.sort_by.value = t.sort_column
            self.pinned.allowed_tags = list(t.columns)
            metric_keys = c.metric_keys()
            choices = c.metric_choices()
            if list(self.curve_keys.options) != choices:
                # options and selection in one message: sent apart, the frontend marks the
                # old selection among the new options first, and fewer options made it
                # throw "Cannot set properties of undefined (setting 'selected')"
                with self.curve_keys.hold_sync():
                    self.curve_keys.options = choices
                    self.curve_keys.value = [k for k in c.curve_keys() if k in choices]
            for dd, options in (
                (self.relation_metric, metric_keys),
                (self.scatter_y, metric_keys),
                (self.scatter_x, c.param_keys()),
            ):
                if list(dd.options) != options:
                    old = dd.value
                    dd.options = options
                    dd.value = old if old in options else (options[0] if options else None)
        finally:
            self._syncing = False

    def _selection_changed(self) -> None:
        c, t = self.comparison, self.table
        if c.baseline not in t.selected:
            c.baseline = None
        labels = {r.run_id: run_label(r.name, r.run_id) for r in c.records(t.selected[:12])}
        self._syncing = True
        try:
            self.baseline.options = [("none", "")] + [(labels[r], r) for r in t.selected[:12]]
            self.baseline.value = c.baseline or ""
        finally:
            self._syncing = False
        self._plots_stale()

    def _plots_stale(self) -> None:
        self._stale = {0, 1, 2}
        self._draw(self.tabs.selected_index or 0)

    def _draw(self, index: int) -> None:
        """Redraw tab ``index`` (off the main thread); other tabs redraw when shown."""
        self._stale.discard(index)
        c = self.comparison
        if index == 0:
            self.curves_out.outputs = self.curves_out.outputs or (
                {"output_type": "stream", "name": "stdout", "text": "drawing…\n"},
            )
            self._painter.submit(
                "curves",
                self._job(
                    lambda: _png_output(self.curves_out, c.curves_png(), "metric curves"),
                    self.curves_out,
                ),
            )
        elif index == 1:
            self._painter.submit(
                "diff",
                self._job(lambda: setattr(self.diff_html, "value", c.diff().to_html()), None),
            )
        else:
            self._painter.submit(
                "parallel",
                self._job(
                    lambda: _png_output(
                        self.parallel_out, c.parallel_png(), "parallel coordinates"
                    ),
                    self.parallel_out,
                ),
            )
            self._painter.submit(
                "scatter",
                self._job(
                    lambda: _png_output(self.scatter_out, c.scatter_png(), "scatter"),
                    self.scatter_out,
                ),
            )

    def _job(self, fn: Callable[[], None], out: W.Output | None) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception as exc:
                text = f"could not draw: {type(exc).__name__}: {exc}"
                if out is not None:
                    out.outputs = ({"output_type": "stream", "name": "stderr", "text": text},)
                else:
                    self.diff_html.value = f"<pre>{escape_html(text)}</pre>"
                raise

        return run

    # -- public -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the store again (new runs, new points of running runs); keeps the filter,
        the sort, the page and the selection."""
        with self._lock:
            self.comparison.refresh()
        self.filter_error.value = _notices_html(self.table.notices)
        self._columns_changed()
        self._render_table()
        self._selection_changed()

    def set_auto_refresh(self, seconds: float) -> None:
        """Refresh every ``seconds`` (0 stops), from a background thread. Once this
        returns, the previous interval's thread reads the store no more: a refresh it
        had begun has ended (it holds the lock) and one that woke meanwhile sees the
        change under the lock and stops."""
        with self._lock:
            self._auto_gen += 1
            gen = self._auto_gen
        if self.auto_refresh.value != seconds:
            options = dict((v, k) for k, v in self.auto_refresh.options)
            if seconds not in options:
                self.auto_refresh.options = [
                    *self.auto_refresh.options,
                    (f"every {seconds:g} s", seconds),
                ]
            self.auto_refresh.value = seconds
            return  # the observer comes back here with the same value
        if seconds > 0:
            threading.Thread(
                target=self._auto_loop,
                args=(gen, seconds),
                name="mlnb-compare-refresh",
                daemon=True,
            ).start()

    def _auto_loop(self, gen: int, seconds: float) -> None:
        while not self._closing.wait(seconds):
            with self._lock:  # checked where it is changed: a stop is never read past
                if self._auto_gen != gen or self._closing.is_set():
                    return
                try:
                    self.refresh()
                except MlnbError as exc:
                    self.filter_error.value = (
                        f"<div class='mlnb-cmp-error'>refresh failed: {escape_html(str(exc))}</div>"
                    )

    def wait(self, timeout: float = 60.0) -> bool:
        """Wait until the plots and the diff are drawn (they are drawn off the main
        thread); False on timeout."""
        return self._painter.wait(timeout)

    @property
    def selected(self) -> pd.DataFrame:
        """The selected runs as a DataFrame, shaped like ``mlnb.runs()``."""
        return self.comparison.selected

    def to_html(self, path: str | os.PathLike[str]) -> Path:
        """Write a static, self-contained HTML snapshot (no kernel needed to open it)."""
        with self._lock:
            return self.comparison.to_html(path)

    def close(self) -> None:
        """Stop the painter and auto-refresh, and close every widget of the compare view."""
        with self._lock:
            self._closing.set()
            self._auto_gen += 1
        self._painter.close()
        for w in _descendants(self):
            if w is not self:
                w.close()
        super().close()

    def __repr__(self) -> str:
        return f"<mlnb.CompareWidget {self.comparison.summary()}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget for Jupyter, and the comparison as text and static HTML for
        everything else (a console, a notebook viewer without widget state)."""
        bundle = dict(super()._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = repr(self.comparison)
        parts = [self.comparison.html(images=False, standalone=False)]
        cached = self.comparison._png.get("curves")
        if cached is not None:
            parts.append(f"<img alt='metric curves' src='{png_data_uri(cached[1])}'>")
        bundle["text/html"] = "".join(parts)
        return bundle


def _descendants(widget: Any) -> list[Any]:
    out = [widget]
    for child in getattr(widget, "children", ()) or ():
        out.extend(_descendants(child))
    return out


__all__ = ["CompareWidget", "compare"]
