"""mlnb.compare without a browser: the widget is driven through its values and
``.click()``, the pure part (``mlnb.comparison.table``) is checked directly, all on a real
store. Plots are drawn off the main thread; ``wait()`` blocks until they are."""

from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlnb
from mlnb.comparison import multidiff
from mlnb.comparison import plots as compareplots
from mlnb.comparison import table as comparison
from mlnb.errors import (
    ExperimentNotFoundError,
    InvalidInputError,
    MlnbWarning,
    QuerySyntaxError,
    RunNotFoundError,
)
from mlnb.notebook.widgets import CompareWidget, compare
from mlnb.records import format_duration
from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def add_run(
    store: mlnb.Store,
    name: str,
    *,
    params: dict[str, Any],
    loss: list[float],
    acc: list[float] | None = None,
    tags: dict[str, str] | None = None,
    status: str = "finished",
    start: float = 1.7e9,
    experiment: str = "exp",
) -> str:
    """A run written through the store's API: params, a loss (and acc) history."""
    rid = store.create_run(name=name, experiment=experiment, tags=tags, start_time=start)
    store.log_params(rid, params)
    rowid, _ = store_runs.run_rowid(store.file, rid)
    points = [(rowid, "loss", i, v, start + i) for i, v in enumerate(loss)]
    points += [(rowid, "acc", i, v, start + i) for i, v in enumerate(acc or [])]
    store_metrics.insert_metrics(store.file, points)
    if status != "running":
        store.set_status(rid, status, end_time=start + 60)
    return rid


@pytest.fixture
def runs(store: mlnb.Store) -> dict[str, str]:
    """Four runs: two models, three learning rates, one failed run."""
    return {
        "a": add_run(store, "a", params={"model": "svc", "lr": 0.1, "seed": 0},
                     loss=[1.0, 0.6, 0.4], acc=[0.5, 0.7, 0.8], start=1.7e9),
        "b": add_run(store, "b", params={"model": "svc", "lr": 0.01, "seed": 0},
                     loss=[1.0, 0.5, 0.2, 0.3], acc=[0.5, 0.8, 0.9, 0.85], start=1.7e9 + 10),
        "c": add_run(store, "c", params={"model": "tree", "lr": 0.5, "seed": 0},
                     loss=[0.9, 0.8], acc=[0.6, 0.65], start=1.7e9 + 20, tags={"team": "x"}),
        "d": add_run(store, "d", params={"model": "tree", "lr": 0.05, "seed": 0},
                     loss=[2.0], status="failed", start=1.7e9 + 30),
    }  # fmt: skip


@pytest.fixture
def widget(store: mlnb.Store, runs: dict[str, str]) -> Iterator[CompareWidget]:
    w = compare(store=store, widget=True)
    assert isinstance(w, CompareWidget)
    yield w
    w.close()


def table_names(w: CompareWidget) -> list[str]:
    return re.findall(r"<tr[^>]*data-run='[^']*'><td[^>]*>([^<]*)</td>", w.table_html.value)


def run_names(w: CompareWidget) -> list[str]:
    return [r["name"] for r in w.table.page_rows()]


# -- the table ------------------------------------------------------------------------------


def test_compare_table_lists_runs_newest_first_with_badges(widget: CompareWidget) -> None:
    assert run_names(widget) == ["d", "c", "b", "a"]
    html = widget.table_html.value
    assert html.count("<tr class") + html.count("<tr data-run") == 4
    assert "mlnb-cmp-badge" in html and ">failed</span>" in html and ">finished</span>" in html
    assert "1m 00s" in html  # duration of a 60 s run
    assert "params.lr" in html and "metrics.loss" in html


def test_compare_filter_box_filters_and_shows_syntax_errors_inline(
    widget: CompareWidget,
) -> None:
    widget.filter_box.value = "params.model = 'svc' and metrics.acc > 0.75"
    assert run_names(widget) == ["b", "a"]
    assert widget.filter_error.value == ""
    assert "runs 1–2 of 2" in widget.page_label.value

    widget.filter_box.value = "params.model = "  # no exception, the table stays as it was
    assert "expected a value" in widget.filter_error.value and "^" in widget.filter_error.value
    assert run_names(widget) == ["b", "a"]
    assert widget.table.filter == "params.model = 'svc' and metrics.acc > 0.75"

    widget.filter_box.value = "status = 'failed'"
    assert widget.filter_error.value == ""
    assert run_names(widget) == ["d"]
    widget.filter_box.value = ""
    assert len(run_names(widget)) == 4


def test_compare_filter_box_names_keys_no_run_has(widget: CompareWidget) -> None:
    """Issue 11 item 6: a typo in the filter box answered an empty table and nothing else;
    the notice comes from ``RunsTable`` (``mlnb.store.notices``), the widget only shows it."""
    widget.filter_box.value = "metrics.los < 0.5 and params.modle = 'svc'"
    assert run_names(widget) == []
    assert widget.table.notices == [
        "no run has metric 'los'; did you mean 'loss'?",
        "no run has param 'modle'; did you mean 'model'?",
    ]
    assert widget.filter_error.value == "".join(
        f"<div class='mlnb-cmp-notice'>{html.escape(n)}</div>" for n in widget.table.notices
    )
    widget.filter_box.value = "metrics.loss < 0.5"
    assert (run_names(widget), widget.filter_error.value) == (["b", "a"], "")


def test_compare_api_warns_about_filter_keys_and_refuses_unknown_experiments(
    store: mlnb.Store, runs: dict[str, str]
) -> None:
    """Issue 11 item 6, without a widget: the API warns; an unknown experiment is an error
    listing the experiments."""
    with pytest.warns(MlnbWarning, match=r"no run has param 'modle'; did you mean 'model'\?"):
        result = mlnb.compare("params.modle = 'svc'", widget=False)
    assert result.table.ids == []
    with pytest.raises(ExperimentNotFoundError, match="did you mean 'exp'"):
        mlnb.compare(experiment="exq", widget=False)


def test_compare_sort_by_column_both_ways_missing_last(widget: CompareWidget) -> None:
    widget.descending.value = False
    widget.sort_by.value = "metrics.acc"
    assert run_names(widget) == ["c", "a", "b", "d"]  # acc 0.65, 0.8, 0.85; d has none
    widget.descending.value = True
    assert run_names(widget) == ["b", "a", "c", "d"]
    assert "metrics.acc ▼" in widget.table_html.value
    widget.sort_by.value = "params.lr"
    assert run_names(widget) == ["c", "a", "d", "b"]  # numeric, not text order


def test_compare_select_rows_clear_and_select_page(
    widget: CompareWidget, runs: dict[str, str]
) -> None:
    widget.clear_button.click()
    assert widget.table.selected == []
    assert len(widget.selected) == 0
    widget.row_checks[1].value = True  # row 2 is run c
    widget.row_checks[3].value = True  # run a
    assert widget.table.selected == [runs["c"], runs["a"]]
    frame = widget.selected
    assert list(frame["name"]) == ["c", "a"]
    assert list(frame["params.lr"]) == [0.5, 0.1]
    assert "2 selected" in widget.selection_label.value
    assert "mlnb-cmp-sel" in widget.table_html.value
    widget.row_checks[1].value = False
    assert widget.table.selected == [runs["a"]]
    widget.select_page_button.click()
    assert set(widget.table.selected) == set(runs.values())
    assert all(c.value for c in widget.row_checks[:4])


def test_compare_pinned_columns_come_first(widget: CompareWidget) -> None:
    widget.pinned.value = ["name", "metrics.loss"]
    head = re.findall(r"<th[^>]*>([^<]*)</th>", widget.table_html.value)
    assert head[:2] == ["name", "metrics.loss"]
    assert "mlnb-cmp-pin" in widget.table_html.value


# -- diff -----------------------------------------------------------------------------------


def test_compare_diff_only_differences_then_all(
    widget: CompareWidget, runs: dict[str, str]
) -> None:
    widget.table.select([runs["a"], runs["b"]])
    widget._selection_changed()
    widget.tabs.selected_index = 1
    assert widget.wait()
    diff = widget.diff_html.value
    assert ">lr</td>" in diff and ">seed</td>" not in diff and ">model</td>" not in diff
    assert "identical values hidden" in diff
    widget.show_all.value = True
    assert widget.wait()
    assert ">seed</td>" in widget.diff_html.value and ">model</td>" in widget.diff_html.value


def test_compare_diff_best_metric_and_baseline_deltas(
    widget: CompareWidget, runs: dict[str, str]
) -> None:
    widget.table.select([runs["a"], runs["b"]])
    widget._selection_changed()
    widget.tabs.selected_index = 1
    widget.baseline.value = runs["a"]
    assert widget.wait()
    diff = widget.diff_html.value
    # b's loss (0.3 latest) beats a's 0.4; b's acc 0.85 beats 0.8
    assert re.search(r"<td class='mlnb-cmp-best'>0\.3</td>", diff)
    assert re.search(r"<td class='mlnb-cmp-best'>0\.85</td>", diff)
    assert "(baseline)" in diff and "<th>Δ</th>" in diff
    assert "<td class='mlnb-cmp-delta'>-0.09</td>" in diff  # lr 0.01 - 0.1
    widget.baseline.value = ""
    assert widget.wait()
    assert "<th>Δ</th>" not in widget.diff_html.value


def test_diff_many_shows_data_fingerprints_and_packages(store: mlnb.Store) -> None:
    pd = pytest.importorskip("pandas")
    ids = []
    for i, version in enumerate(("2.0.0", "2.1.0")):
        with mlnb.start_run(name=f"r{i}", experiment="data", capture=False) as run:
            run.log_data(pd.DataFrame({"x": [1, 2, 3 + i]}), "train")
            packages = {"numpy": {"version": version}, "click": {"version": "8.1"}}
            env = {"python": {"version": "3.11.2"}, "packages": packages}
            store.save_environment(run.run_id, env, f"env{i}")
            ids.append(run.run_id)
    result = multidiff.diff_many(store_records(store, ids))
    rows = {(r.section, r.key): r for r in result.rows}
    assert ("data", "input train: hash") in rows
    assert rows[("environment", "package numpy")].values == ["2.0.0", "2.1.0"]
    assert ("environment", "package click") not in rows  # the same in both
    assert "package numpy" in str(result)


def store_records(store: mlnb.Store, ids: list[str]) -> list[Any]:
    mlnb.flush(store)
    return [store.get_run(i) for i in ids]


def test_diff_many_best_follows_lower_or_higher_is_better(
    store: mlnb.Store, runs: dict[str, str]
) -> None:
    result = multidiff.diff_many(store_records(store, [runs["a"], runs["c"], runs["d"]]))
    rows = {(r.section, r.key): r for r in result.rows}
    assert rows[("metrics", "loss")].values == [0.4, 0.8, 2.0]
    assert rows[("metrics", "loss")].best == 0
    assert rows[("metrics", "acc")].values == [0.8, 0.65, None]
    assert rows[("metrics", "acc")].best == 0
    with pytest.raises(InvalidInputError, match="baseline"):
        multidiff.diff_many(store_records(store, [runs["a"]]), baseline=3)


def add_system_series(store: mlnb.Store, rid: str, cell_seconds: list[float], cpu: float) -> None:
    """What a job and the system sampler record on a run: job/* and system/* series."""
    rowid, _ = store_runs.run_rowid(store.file, rid)
    points = [(rowid, "job/cell_seconds", i, v, 1.7e9 + i) for i, v in enumerate(cell_seconds)]
    store_metrics.insert_metrics(
        store.file, [*points, (rowid, "system/cpu_percent", 0, cpu, 1.7e9)]
    )


def test_job_and_system_metrics_are_hidden_from_diffs_and_compare_unless_asked(
    store: mlnb.Store,
) -> None:
    """Issue 11 item 9: job/* and system/* series were diffed, plotted and starred as the
    "best" value next to the model's metrics; one switch, system_metrics, shows them."""
    from click.testing import CliRunner

    from mlnb.cli.app import cli

    a = add_run(store, "a", params={"lr": 0.1}, loss=[1.0, 0.5], start=1.7e9)
    b = add_run(store, "b", params={"lr": 0.2}, loss=[1.0, 0.4], start=1.7e9 + 10)
    add_system_series(store, a, [0.1, 2.0], cpu=40.0)
    add_system_series(store, b, [0.3, 1.0], cpu=60.0)
    hidden = ("job/cell_seconds", "system/cpu_percent")

    two = mlnb.diff("a", "b", store=store)  # two runs
    assert [c.key for c in two.sections["metrics"]] == ["loss"]
    assert not any(k in str(two) for k in hidden)
    assert "2 system metrics (job/*, system/*) not compared; --system-metrics" in str(two)
    shown = mlnb.diff("a", "b", store=store, system_metrics=True)
    assert [c.key for c in shown.sections["metrics"]] == ["job/cell_seconds", "loss",
                                                          "system/cpu_percent"]  # fmt: skip
    cli_out = CliRunner().invoke(cli, ["--store", str(store.root), "diff", "a", "b"]).output
    assert "loss" in cli_out and not any(k in cli_out for k in hidden)
    cli_out = (
        CliRunner()
        .invoke(cli, ["--store", str(store.root), "diff", "a", "b", "--system-metrics"])
        .output
    )
    assert all(k in cli_out for k in hidden)

    many = multidiff.diff_many(store_records(store, [a, b]))  # several runs
    assert [r.key for r in many.rows if r.section == "metrics"] == ["loss"]
    many = multidiff.diff_many(store_records(store, [a, b]), system_metrics=True)
    best = {r.key: r.best for r in many.rows if r.section == "metrics"}
    assert best == {"job/cell_seconds": 1, "loss": 1, "system/cpu_percent": 0}

    view = compare(store=store, widget=False)  # the compare view: table, curves, diff
    assert isinstance(view, comparison.Comparison)
    assert [c for c in view.table.columns if c.startswith("metrics.")] == ["metrics.loss"]
    assert view.curve_keys() == ["loss"] and view.default_relation_metric() == "loss"
    assert [r.key for r in view.diff().rows if r.section == "metrics"] == ["loss"]
    view = compare(store=store, widget=False, system_metrics=True)
    assert isinstance(view, comparison.Comparison)
    assert {f"metrics.{k}" for k in hidden} <= set(view.table.columns)
    assert set(hidden) <= {r.key for r in view.diff().rows if r.section == "metrics"}
    assert set(hidden) <= set(view.curve_keys())


# -- curves and relations -------------------------------------------------------------------


def png_of(out: Any) -> bytes:
    import base64

    (item,) = out.outputs
    return base64.b64decode(item["data"]["image/png"])


def test_compare_curves_drawn_for_selection_and_options(
    widget: CompareWidget, runs: dict[str, str]
) -> None:
    assert widget.wait()
    first = png_of(widget.curves_out)
    assert first.startswith(PNG_MAGIC)
    panels = widget.comparison.curve_panels()
    assert set(panels) == {"acc", "loss"}
    b = comparison.run_label("b", runs["b"])  # the legend's "b (1a2b3c4d)"
    best = {c.label: c.best for c in panels["loss"]}
    assert best[b] == (2.0, 0.2)  # lowest loss, at step 2
    assert {c.label: c.best for c in panels["acc"]}[b] == (2.0, 0.9)  # highest acc
    widget.smoothing.value = 0.6
    widget.log_scale.value = True
    assert widget.wait()
    smoothed = png_of(widget.curves_out)
    assert smoothed.startswith(PNG_MAGIC) and smoothed != first
    widget.x_axis.value = "time"
    assert widget.wait()
    by_run = {c.label: c for c in widget.comparison.curve_panels()["loss"]}
    assert list(by_run[b].x) == [0.0, 1.0, 2.0, 3.0]  # seconds since b started
    widget.curve_keys.value = ["loss"]
    assert widget.wait()
    assert set(widget.comparison.curve_panels()) == {"loss"}
    assert widget._painter.errors == []


def test_compare_relations_tab_draws_parallel_and_scatter(widget: CompareWidget) -> None:
    assert widget.parallel_out.outputs == ()  # not drawn until the tab is shown
    widget.tabs.selected_index = 2
    assert widget.wait()
    assert png_of(widget.parallel_out).startswith(PNG_MAGIC)
    assert png_of(widget.scatter_out).startswith(PNG_MAGIC)
    widget.scatter_x.value = "model"
    widget.scatter_y.value = "acc"
    assert widget.wait()
    assert widget.comparison.scatter_x == "model"
    assert widget._painter.errors == []


def test_smooth_is_a_debiased_moving_average() -> None:
    assert compareplots.smooth([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])
    out = compareplots.smooth([0.0, 10.0, math.nan, 10.0], 0.5)
    assert out[0] == 0.0 and math.isnan(out[2]) and 0 < out[1] < 10 and out[1] < out[3] < 10


# -- the figures, read from their artists ----------------------------------------------------


def test_curves_single_step_metric_draws_one_dot_per_run() -> None:
    """Issue 11 item 10: a metric logged once per run was drawn as empty line axes holding
    one star (every run's only point at step 0, on top of each other)."""
    panels = {
        "test_acc": [
            compareplots.Curve("a (11111111)", "#1f77b4", [0.0], [0.90], (0.0, 0.90)),
            compareplots.Curve("b (22222222)", "#ff7f0e", [0.0], [0.95], (0.0, 0.95)),
            compareplots.Curve("c (33333333)", "#2ca02c", [3.0], [0.93], (3.0, 0.93)),
        ]
    }
    fig = compareplots.curves_figure(panels, lower={"test_acc": False})
    (ax,) = fig.axes
    points: dict[str, set[tuple[float, float]]] = {}
    for line in ax.lines:
        assert len(line.get_xdata()) == 1  # nothing to join: no line, one mark per run
        points.setdefault(line.get_color(), set()).add((line.get_xdata()[0], line.get_ydata()[0]))
    assert {c: len(p) for c, p in points.items()} == {"#1f77b4": 1, "#ff7f0e": 1, "#2ca02c": 1}
    xs = [next(iter(p))[0] for p in points.values()]
    assert len(set(xs)) == 3  # side by side, not on top of each other
    (best,) = [line for line in ax.lines if line.get_marker() == "*"]
    assert best.get_color() == "#ff7f0e"  # higher is better: b
    shown = {t.get_text() for t in ax.texts}
    assert {"0.9", "0.95", "0.93"} <= shown  # each run's value is written beside its dot


def test_compare_legend_names_runs_with_short_ids(store: mlnb.Store) -> None:
    """Issue 11 item 10: two runs named `train` shared one legend entry."""
    one = add_run(store, "train", params={"lr": 0.1}, loss=[1.0, 0.5], start=1.7e9)
    two = add_run(store, "train", params={"lr": 0.2}, loss=[1.0, 0.7], start=1.7e9 + 5)
    result = compare(store=store, widget=False)
    assert isinstance(result, comparison.Comparison)
    expected = {f"train ({one[:8]})", f"train ({two[:8]})"}
    assert {c.label for c in result.curve_panels()["loss"]} == expected
    (legend,) = result.curves_figure().legends
    assert {t.get_text() for t in legend.get_texts()} == expected


def test_parallel_axes_are_the_params_that_vary_without_sweep_bookkeeping(
    store: mlnb.Store,
) -> None:
    """Issue 11 item 10: parallel coordinates had axes for constant params and for the
    sweep's own params (grid.*, sweep.*, fixed.*)."""
    for i, (lrs, accs) in enumerate((([0.1, 0.01], [0.8, 0.9]), ([0.5, 0.05], [0.7, 0.85]))):
        spec = {"sweep.notebook": "nb.ipynb", "sweep.points": 2 + i, "sweep.mode": "product",
                "grid.lr": lrs, "fixed.epochs": 3 + i}  # fmt: skip
        add_run(store, f"sweep-{i}", params=spec, loss=[], acc=[max(accs)], start=1.7e9 + i)
        for lr, acc in zip(lrs, accs, strict=True):
            add_run(store, f"lr-{lr}", params={"lr": lr, "epochs": 3, "seed": 0},
                    loss=[], acc=[acc], start=1.7e9 + 10 * i + lr)  # fmt: skip
    result = compare(store=store, widget=False)
    assert isinstance(result, comparison.Comparison)
    result.relation_metric = "acc"
    ax = result.parallel_figure().axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lr", "acc"]


def test_parallel_lines_coloured_by_metric_selection_drawn_wider() -> None:
    """Issue 11 item 10: every line of the parallel coordinates was red (selected runs
    were drawn red on top, and every run was selected)."""
    from matplotlib.colors import to_hex

    fig = compareplots.parallel_figure(
        {"lr": [0.1, 0.01, 0.5], "acc": [0.8, 0.9, 0.7]},
        "acc",
        selected=[True, False, True],
        lower=False,
    )
    ax = fig.axes[0]
    lines = []
    for coll in ax.collections:
        n = len(coll.get_segments())
        colors = np.broadcast_to(coll.get_colors(), (n, 4))
        widths = np.broadcast_to(coll.get_linewidths(), n)
        lines += [(to_hex(c), float(w)) for c, w in zip(colors, widths, strict=True)]
    assert len(lines) == 3  # one line per run, none drawn twice
    assert compareplots.SELECTED_COLOR not in {c for c, _ in lines}
    assert len({c for c, _ in lines}) == 3  # three values of acc, three colours
    widths = sorted(w for _, w in lines)
    assert widths[0] < widths[1] == widths[2]  # the two selected runs are wider


def test_parallel_colour_bar_of_a_constant_metric_reads_its_value() -> None:
    """Issue 11 item 10: the static snapshot's colour bar read 1.0–1.8 when both runs had
    0.9415."""
    fig = compareplots.parallel_figure({"lr": [0.1, 0.01], "acc": [0.9415, 0.9415]}, "acc")
    fig.draw_without_rendering()
    cax = fig.axes[1]
    lo, hi = cax.get_ylim()
    assert lo < 0.9415 < hi and hi - lo < 0.01
    assert [t.get_text() for t in cax.get_yticklabels()] == ["0.9415"]


# -- paging over many runs ------------------------------------------------------------------


def test_compare_pages_over_many_runs(store: mlnb.Store) -> None:
    rows = []
    for i in range(1203):
        rid = store.create_run(name=f"r{i:04d}", experiment="many", start_time=1.7e9 + i)
        rows.append(rid)
        store.log_params(rid, {"i": i, "group": f"g{i % 3}"})
    w = compare(store=store, widget=True, metrics=["loss"])
    try:
        assert isinstance(w, CompareWidget)
        assert w.page_label.value == "page 1 of 49 · runs 1–25 of 1,203"
        assert w.prev_button.disabled and not w.next_button.disabled
        assert run_names(w)[0] == "r1202"
        for _ in range(48):
            w.next_button.click()
        assert w.next_button.disabled
        assert run_names(w) == ["r0002", "r0001", "r0000"]
        assert [c.layout.display for c in w.row_checks[2:4]] == [None, "none"]
        w.page_size.value = 100
        assert len(w.row_checks) == 100
        assert "of 13" in w.page_label.value and len(run_names(w)) == 3
        w.filter_box.value = "params.group = 'g1' and params.i >= 600"
        assert w.table.page == 0 and len(w.table.ids) == 201
        w.clear_button.click()
        w.row_checks[0].value = True
        w.next_button.click()
        w.next_button.click()
        assert run_names(w) == ["r0601"] and not w.row_checks[0].value
        assert w.table.selected == [store.resolve_run_id("r1201")]  # kept across pages
        w.prev_button.click()
        w.prev_button.click()
        assert w.row_checks[0].value and run_names(w)[0] == "r1201"
        w.next_button.click()
        w.next_button.click()
        w.sort_by.value = "params.i"
        w.descending.value = False
        assert w.table.page == 2 and run_names(w) == ["r1201"]  # page kept, order flipped
    finally:
        w.close()


# -- refresh --------------------------------------------------------------------------------


def test_compare_refresh_button_reads_new_runs_and_points(
    widget: CompareWidget, store: mlnb.Store
) -> None:
    run = mlnb.start_run(name="live", experiment="exp", capture=False)  # holds its lock
    run.log_params({"model": "svc", "lr": 0.2})
    run.log_metric("loss", 1.0, step=0)
    assert "live" not in run_names(widget)
    widget.refresh_button.click()
    assert run_names(widget)[0] == "live"
    widget.table.select(["live"])
    widget._selection_changed()
    assert widget.wait()
    assert [c.y for c in widget.comparison.curve_panels()["loss"]] == [[1.0]]
    run.log_metric("loss", 0.5, step=1)  # the refresh flushes the metric writer
    widget.refresh_button.click()
    assert widget.wait()
    assert [c.y for c in widget.comparison.curve_panels()["loss"]] == [[1.0, 0.5]]
    assert ">running</span>" in widget.table_html.value
    mlnb.end_run()
    widget.refresh_button.click()
    assert ">finished</span>" in widget.table_html.value and ">running</span>" not in (
        widget.table_html.value
    )


def test_compare_auto_refresh_picks_up_new_runs(widget: CompareWidget, store: mlnb.Store) -> None:
    widget.set_auto_refresh(0.2)
    assert widget.auto_refresh.value == 0.2
    add_run(store, "late", params={"lr": 1.0}, loss=[0.1], start=1.7e9 + 50)
    deadline = time.monotonic() + 20
    while "late" not in run_names(widget) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_names(widget)[0] == "late"
    widget.auto_refresh.value = 0.0  # stops
    add_run(store, "later", params={"lr": 1.0}, loss=[0.1], start=1.7e9 + 60)
    time.sleep(0.6)
    assert "later" not in run_names(widget)


def test_compare_auto_refresh_reads_nothing_once_it_is_stopped(
    widget: CompareWidget, store: mlnb.Store
) -> None:
    """Pins a race behind the test above, found by reading: the refresh thread checked that
    it was still wanted, then read the store, so a stop (and a run added) in between was
    still shown. The widget's lock holds a woken refresh between the two while the test
    stops auto-refresh and adds a run; once stopped, nothing reads the store again."""
    import threading

    widget.set_auto_refresh(0.02)
    with widget._lock:
        time.sleep(0.3)  # the refresh thread wakes and waits for the lock meanwhile
        widget.auto_refresh.value = 0.0
        add_run(store, "later", params={"lr": 1.0}, loss=[0.1], start=1.7e9 + 60)
    for thread in threading.enumerate():
        if thread.name == "mlnb-compare-refresh":
            thread.join(10)
    assert "later" not in run_names(widget)


# -- out of the widget ----------------------------------------------------------------------


def test_compare_to_html_is_a_self_contained_snapshot(
    widget: CompareWidget, tmp_path: Path
) -> None:
    path = widget.to_html(tmp_path / "snap.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("src='data:image/png;base64,") == 3
    assert "<script" not in text and "http://" not in text and "https://" not in text
    for name in ("a", "b", "c", "d"):
        assert f">{name}</td>" in text
    assert "Diff of the selected runs" in text


def test_compare_mimebundle_has_widget_text_and_html(widget: CompareWidget) -> None:
    bundle = widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("mlnb.compare: 4 runs")
    assert "<table class='mlnb-cmp-table'>" in bundle["text/html"]


# -- without a frontend ---------------------------------------------------------------------


def test_compare_without_frontend_returns_text_and_html(
    store: mlnb.Store, runs: dict[str, str]
) -> None:
    result = mlnb.compare("params.model = 'svc'")
    assert isinstance(result, comparison.Comparison)
    text = repr(result)
    assert text.startswith("mlnb.compare: 2 runs · filter: params.model = 'svc'")
    assert re.search(r"^\* b\s+finished", text, re.MULTILINE)
    assert "lr" in text and "Δ" not in text
    page = result._repr_html_()
    assert "<table class='mlnb-cmp-table'>" in page and "data:image/png;base64," in page
    assert list(result.selected["name"]) == ["b", "a"]


def test_compare_scopes_ids_dataframe_and_errors(store: mlnb.Store, runs: dict[str, str]) -> None:
    # a name that cannot be mistaken for an id prefix (run ids are hex)
    zeta = add_run(store, "zeta", params={"model": "tree"}, loss=[0.9], start=1.7e9 + 5)
    by_ids = mlnb.compare([runs["a"][:8], "zeta"], baseline="zeta")
    assert isinstance(by_ids, comparison.Comparison)
    assert sorted(by_ids.table.ids) == sorted([runs["a"], zeta])
    assert by_ids.table.selected[0] == zeta and by_ids.baseline == zeta
    assert "baseline: zeta" in repr(by_ids)
    by_ids.table.set_filter("params.model = 'tree'")  # the filter narrows the given runs
    assert by_ids.table.ids == [zeta]

    frame = mlnb.runs("metrics.loss < 0.5")
    from_frame = mlnb.compare(frame)
    assert set(from_frame.table.ids) == {runs["a"], runs["b"]}

    with pytest.raises(InvalidInputError, match="run_id column"):
        mlnb.compare(frame[["name"]])
    with pytest.raises(RunNotFoundError):
        mlnb.compare(["nope"])
    with pytest.raises(QuerySyntaxError):
        mlnb.compare("metrics.acc >")
    with pytest.raises(InvalidInputError, match="runs must be"):
        mlnb.compare(42)
    with pytest.raises(InvalidInputError, match="refresh_every"):
        mlnb.compare(refresh_every=-1)
    with pytest.raises(InvalidInputError, match="cannot sort"):
        from_frame.table.sort("params.nope")


def test_track_compare_magic_keeps_quotes_and_reports_errors(
    store: mlnb.Store, runs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    # IPython installs its own __main__, which breaks multiprocessing's spawn in later tests
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "mlnb")
    try:
        line = "compare params.model = 'tree' and status != 'failed'"
        result = shell.run_line_magic("track", line)
        assert isinstance(result, comparison.Comparison)  # no kernel: the text/HTML object
        assert [r["name"] for r in result.table.page_rows()] == ["c"]
        with pytest.raises(UsageError, match="expected a value"):
            shell.run_line_magic("track", "compare metrics.acc >")
        everything = shell.run_line_magic("track", "compare")
        assert len(everything.table.ids) == 4
    finally:
        shell.run_line_magic("unload_ext", "mlnb")


def test_format_duration() -> None:
    assert format_duration(None) == ""
    assert format_duration(4.25) == "4.2 s"
    assert format_duration(187) == "3m 07s"
    assert format_duration(7500) == "2h 05m"
    assert format_duration(3 * 86400 + 4 * 3600) == "3d 4h"


def test_diff_and_compare_view_share_one_missing_sentinel(store: mlnb.Store) -> None:
    """Issue 12 item 6: diff had its own MISSING (a bare ``object()``) beside the compare
    view's, so a key one run lacks, formatted by the compare view, read "<object object at
    0x…>" instead of "—" (and a deep copy of a Change lost it). One MISSING now."""
    import copy

    from mlnb.comparison import html as compare_html
    from mlnb.comparison.diff import diff_runs

    a = add_run(store, "a", params={"lr": 0.1}, loss=[1.0])
    b = add_run(store, "b", params={"lr": 0.1, "depth": 3}, loss=[1.0])
    result = diff_runs(store.get_run(a), store.get_run(b))
    (change,) = result.sections["params"]
    assert change.key == "depth"
    assert compare_html.fmt_value(change.a) == "—"
    assert copy.deepcopy(change).a is change.a
    assert result.to_dict()["params"]["depth"] == {"a": None, "b": 3, "delta": None}
    assert "depth  — → 3" in str(result)


def test_compare_diff_shows_the_newest_verdict_of_each_check_family(store: mlnb.Store) -> None:
    """Issue 14 item 7: drift and validation results were in ``mlnb show`` and reports but
    not in the compare view's diff. Each run now has one verdict per family of its newest
    checks (a drift check run again replaces the earlier one), and runs whose verdicts
    differ show a ``checks`` row."""
    from mlnb.records import CheckRecord

    def drift(passed: list[bool], batch: str) -> list[CheckRecord]:
        return [
            CheckRecord(kind="validation", name=f"drift:c{i}", passed=p, batch=batch,
                        details={"check": "drift"})
            for i, p in enumerate(passed)
        ]  # fmt: skip

    a, b = store.create_run(name="a"), store.create_run(name="b")
    store.log_checks(a, drift([True, False, False], "old"))
    store.log_checks(a, drift([True, True, True], "new"))  # the newest batch wins
    store.log_checks(b, drift([True, False, True], "one"))
    store.log_checks(b, [CheckRecord(kind="gate", name="metrics.acc >= 0.9", passed=True)])
    d = multidiff.diff_many([store.get_run(a), store.get_run(b)])
    rows = {(r.section, r.key): r.values for r in d.rows}
    assert rows[("checks", "drift")] == ["PASS", "FAIL (1 of 3)"]
    assert rows[("checks", "gate")] == [None, "PASS"]
    assert "FAIL (1 of 3)" in d.to_html() and "checks" in str(d)
