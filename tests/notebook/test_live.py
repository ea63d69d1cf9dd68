"""Live plots: a listener feeds a buffer, a thread draws PNG frames into a widget, and
nothing happens outside a notebook. Everything runs in-process with a real store; timing
is never assumed, only polled for with a deadline."""

from __future__ import annotations

import importlib
import json
import math
import time
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mlnb
from mlnb.conventions import lower_is_better
from mlnb.errors import InvalidInputError
from mlnb.tracking import fluent as tracking
from tests.conftest import run_python

# `mlnb.live` may be re-exported as the function; the module is what these tests need
live_module: Any = importlib.import_module("mlnb.notebook.liveplot")
LivePlot = live_module.LivePlot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def fast_frames(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Frames follow each other at `every` even after a slow one (tests poll for them),
    and no plot outlives its test, nor its widgets (once ipykernel is imported, a widget
    left open complains when the interpreter shuts down)."""
    monkeypatch.setattr(live_module, "MAX_DUTY", 1.0)
    made: list[Any] = []
    init = LivePlot.__init__

    def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(LivePlot, "__init__", recording_init)
    yield
    for plot in made:
        plot.close()
        if plot.widget is not None:
            plot.widget.layout.close()
            plot.widget.close()


def wait_until(condition: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {condition}")
        time.sleep(0.01)


def count(plot: Any, key: str) -> int:
    s = plot.series.get(key)
    return 0 if s is None else int(s.count)


def listening(plot: Any) -> bool:
    return plot._listener is not None and plot._listener in tracking.state.batch_listeners


# -- drawing while a loop logs ---------------------------------------------------------------


def test_live_plot_draws_the_points_a_loop_logs(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False):
        plot = LivePlot(["loss"], every=0.05)
        first_frames = plot.frames
        for i in range(200):
            mlnb.log_metric("loss", 1.0 / (i + 1))
        wait_until(lambda: count(plot, "loss") == 200 and plot.frames > first_frames)
        s = plot.series["loss"]
        assert s.x.tolist() == list(range(200))
        assert s.y.tolist() == [1.0 / (i + 1) for i in range(200)]
        assert s.best == (199.0, 1.0 / 200) and s.last == (199.0, 1.0 / 200)
        assert plot.shown_keys == ("loss",)
        assert plot.png.startswith(PNG_MAGIC)
        assert plot.widget.value == plot.png
        assert "mlnb-live" in plot.widget._dom_classes
        assert plot.live and listening(plot)
    plot.close()


def test_live_plot_loads_the_run_history_at_start(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as run:
        for i in range(30):
            run.log_metric("loss", float(i))  # still queued, not yet written
        plot = LivePlot(["loss"], every=0.05)
        assert count(plot, "loss") == 30  # loaded before the constructor returned
        assert plot.shown_keys == ("loss",)
        for i in range(30, 40):
            run.log_metric("loss", float(i))
        wait_until(lambda: count(plot, "loss") == 40)
        assert plot.series["loss"].x.tolist() == list(range(40))  # no point twice
    plot.close()


def test_closing_removes_the_listener_and_draws_a_last_frame(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as run:
        plot = LivePlot(["loss"], every=60)  # no frame would come before close()
        frames = plot.frames
        run.log_metric("loss", 0.5)
        plot.close()
        assert not plot.live and plot.closed and not listening(plot)
        assert plot.frames == frames + 1 and count(plot, "loss") == 1
        run.log_metric("loss", 0.25)
        assert count(plot, "loss") == 1
        plot.close()  # again: nothing happens
    assert live_module._open == []


def test_the_plot_stops_when_its_run_ends(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as run:
        plot = LivePlot(["loss"], every=0.05)
        for i in range(50):
            run.log_metric("loss", float(i))
    wait_until(lambda: not plot.live)
    assert plot.closed and not listening(plot)
    assert count(plot, "loss") == 50


def test_a_plot_as_context_manager_closes_at_the_end_of_the_block(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as run:
        with LivePlot(["loss"], every=60) as plot:
            run.log_metric("loss", 1.0)
        assert plot.closed and count(plot, "loss") == 1


# -- which keys, which run ---------------------------------------------------------------------


def test_only_the_keys_asked_for_are_plotted_in_their_order(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as run:
        plot = LivePlot(["val_acc", "loss"], every=0.05)
        for i in range(20):
            run.log_metrics({"loss": 1.0 / (i + 1), "val_acc": i / 20, "lr": 0.1})
        wait_until(lambda: count(plot, "loss") == 20 and count(plot, "val_acc") == 20)
        wait_until(lambda: plot.shown_keys == ("val_acc", "loss"))
        assert set(plot.series) == {"val_acc", "loss"}
    plot.close()


def test_without_keys_every_key_but_system_metrics_is_plotted(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as run:
        run.log_metric("loss", 2.0)
        plot = LivePlot(every=0.05)
        run.log_metrics({"loss": 1.0, "acc": 0.5, "system/cpu_percent": 12.0})
        wait_until(lambda: count(plot, "acc") == 1 and count(plot, "loss") == 2)
        wait_until(lambda: plot.shown_keys == ("loss", "acc"))
        assert "system/cpu_percent" not in plot.series
    plot.close()


def test_a_key_not_logged_yet_gets_its_axes_when_it_is(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as run:
        plot = LivePlot(["val_acc"], every=0.05)
        assert plot.shown_keys == () and plot.series == {}
        assert plot.png.startswith(PNG_MAGIC)  # a one-line "waiting for val_acc" frame
        run.log_metric("loss", 1.0)
        time.sleep(0.2)
        assert plot.shown_keys == ()
        run.log_metric("val_acc", 0.75)
        wait_until(lambda: plot.shown_keys == ("val_acc",))
    plot.close()


def test_other_runs_do_not_reach_the_plot(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as parent:
        child = mlnb.start_run(nested=True, capture=False)
        plot = LivePlot(["loss"], run=parent, every=0.05)
        child.log_metric("loss", 9.0)
        parent.log_metric("loss", 1.0)
        wait_until(lambda: count(plot, "loss") == 1)
        assert plot.series["loss"].y.tolist() == [1.0]
        child.end()
    plot.close()


def test_with_no_active_run_the_plot_follows_the_first_run_that_logs(store: mlnb.Store) -> None:
    plot = LivePlot(["loss"], every=0.05)
    assert plot.run is None and plot.live
    with mlnb.start_run(capture=False) as run:
        for i in range(10):
            mlnb.log_metric("loss", float(i))
        wait_until(lambda: count(plot, "loss") == 10)
        assert plot.run is run
    wait_until(lambda: not plot.live)  # and stops when that run ends
    assert not listening(plot)


def test_a_new_run_started_after_the_plot_replaces_the_active_one(store: mlnb.Store) -> None:
    old = mlnb.start_run("old", capture=False)
    for i in range(5):
        old.log_metric("loss", 10.0 + i)
    plot = LivePlot(["loss"], every=0.05)
    assert plot.run is old and count(plot, "loss") == 5  # its history is shown meanwhile
    with mlnb.start_run("new", capture=False) as new:  # finishes "old"
        new.log_metric("loss", 1.0)
        new.log_metric("loss", 0.5)
        wait_until(lambda: plot.run is new and count(plot, "loss") == 2)
        assert plot.series["loss"].y.tolist() == [1.0, 0.5]
        assert plot.live
    plot.close()


def test_a_finished_run_is_drawn_once(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as run:
        for i in range(7):
            run.log_metric("loss", float(i))
    plot = LivePlot(["loss"], run=run)
    assert count(plot, "loss") == 7 and plot.frames == 1
    assert not plot.live and plot.closed and plot._listener is None


# -- the data a plot keeps ------------------------------------------------------------------------


def test_a_series_keeps_at_most_max_points_and_exact_extremes(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as run:
        plot = LivePlot(["loss"], every=0.05, max_points=100)
        for i in range(1000):
            run.log_metric("loss", 50.0 if i == 333 else 1.0 - i / 1000)
        wait_until(lambda: count(plot, "loss") == 1000)
        s = plot.series["loss"]
        assert 50 <= len(s.x) <= 100 and len(s.x) == len(s.y)
        assert 333.0 in s.x.tolist() and max(s.y) == 50.0  # the spike survives
        assert s.best == (999.0, 1.0 - 999 / 1000) and s.last == s.best
        assert s.x.tolist() == sorted(s.x.tolist())
    plot.close()


@pytest.mark.parametrize(
    ("key", "lower"),
    [("loss", True), ("val/loss", True), ("val_acc", False), ("train/f1", False),
     ("accuracy", False), ("error_rate", True), ("lr", True), ("auc", False),
     ("map@5", False), ("Top1-Acc", False), ("window_size", True), ("bitmap", True),
     ("acc_loss", True), ("eval/perplexity", True)],
)  # fmt: skip
def test_best_is_the_minimum_or_the_maximum_by_the_key_name(key: str, lower: bool) -> None:
    assert lower_is_better(key) is lower


def test_accuracy_like_keys_mark_their_maximum(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as run:
        plot = LivePlot(["val_acc"], every=0.05)
        for value in (0.5, 0.9, 0.7):
            run.log_metric("val_acc", value)
        wait_until(lambda: count(plot, "val_acc") == 3)
        assert plot.series["val_acc"].best == (1.0, 0.9)
    plot.close()


def test_nan_and_infinite_values_are_gaps_not_best_values(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as run:
        plot = LivePlot(["loss"], every=0.05)
        for value in (1.0, math.nan, -math.inf, 0.5, math.inf):
            run.log_metric("loss", value)
        wait_until(lambda: count(plot, "loss") == 5 and plot.frames > 1)
        s = plot.series["loss"]
        assert s.best == (3.0, 0.5)
        assert [v if v == v else "nan" for v in s.y.tolist()] == [1.0, "nan", "nan", 0.5, "nan"]
        assert plot.png.startswith(PNG_MAGIC) and plot.error is None
    plot.close()


def test_x_time_plots_against_the_clock(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as run:
        run.log_metric("loss", 2.0)
        before = time.time()
        plot = LivePlot(["loss"], every=0.05, x="time")
        run.log_metric("loss", 1.0)
        wait_until(lambda: count(plot, "loss") == 2)
        first, second = plot.series["loss"].x.tolist()
        assert first <= before <= second <= time.time()
    plot.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every": 0}, "every must be a positive number"),
        ({"every": math.nan}, "every must be a positive number"),
        ({"x": "epoch"}, "x must be one of step, time"),
        ({"max_points": 3}, "max_points must be an integer >= 16"),
        ({"keys": ["loss", ""]}, "metric key must not be empty"),
        ({"keys": [7]}, "metric key must be a string"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    keys = options.pop("keys", ["loss"])
    with pytest.raises(InvalidInputError, match=message):
        live_module.live(*keys, **options)


def test_keys_may_be_given_as_a_list_and_repeats_are_dropped() -> None:
    assert live_module.live(["loss", "acc"], "loss").keys == ("loss", "acc")


def test_the_listener_costs_no_more_than_a_few_appends(store: mlnb.Store) -> None:
    """Regression guard for the hot path: ~0.1 µs; 2 µs leaves room for a slow machine."""
    with mlnb.start_run(capture=False) as run:
        plot = LivePlot(["loss"], every=60)
        listener = plot._listener
        rows = [(run._rowid, "loss", 1, 0.5, 0.0)]
        calls = timeit.repeat(lambda: listener(run.store, rows), number=20_000)
        per_call = min(calls) / 20_000
        assert per_call < 2e-6
    plot.close()


# -- the notebook and the script ----------------------------------------------------------------


def test_outside_a_kernel_live_is_an_inactive_plot(store: mlnb.Store) -> None:
    with mlnb.start_run(capture=False) as run:
        plot = live_module.live("loss")
        run.log_metric("loss", 1.0)
        assert not plot.active and not plot.live and plot.widget is None
        assert plot._listener is None and tracking.state.batch_listeners == []
        assert plot._repr_html_() is None and "inactive" in repr(plot)
        plot._ipython_display_()
        plot.close()


def test_a_script_with_a_live_plot_prints_nothing_and_loads_no_plotting(tmp_path: Path) -> None:
    code = (
        "import sys, json, mlnb\n"
        "from mlnb.notebook.liveplot import live\n"
        "with mlnb.start_run(capture=False):\n"
        "    plot = live('loss', 'val_acc')\n"
        "    for i in range(100):\n"
        "        mlnb.log_metric('loss', 1 / (i + 1))\n"
        "    plot.close()\n"
        "heavy = [m for m in ('matplotlib', 'ipywidgets', 'IPython') if m in sys.modules]\n"
        "sys.stderr.write(json.dumps(heavy))\n"
    )
    proc = run_python(code, env={"MLNB_STORE": str(tmp_path / "s")})
    assert proc.stdout == "" and json.loads(proc.stderr) == []


class FakeShell:
    """What live() looks at in a kernel: `kernel` is set, `execution_count` moves on."""

    kernel = object()
    execution_count = 5


class FakeHandle:
    def __init__(self, displays: list[dict[str, Any]]) -> None:
        self.displays = displays
        self.updates: list[dict[str, Any]] = []

    def update(self, bundle: dict[str, Any], raw: bool = False) -> None:
        assert raw
        self.updates.append(bundle)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeShell, list[FakeHandle]]]:
    """A pretend Jupyter kernel: live() sees a shell with a kernel; displays are recorded."""
    import IPython.display

    shell = FakeShell()
    handles: list[FakeHandle] = []

    def display(bundle: dict[str, Any], *, raw: bool = False, display_id: bool = False) -> Any:
        assert raw and display_id
        handles.append(FakeHandle([bundle]))
        return handles[-1]

    monkeypatch.setattr(live_module, "_kernel_shell", lambda: shell)
    monkeypatch.setattr(IPython.display, "display", display)
    yield shell, handles


def test_under_a_kernel_live_displays_the_widget_once_per_cell(
    store: mlnb.Store, kernel: tuple[FakeShell, list[FakeHandle]]
) -> None:
    shell, handles = kernel
    with mlnb.start_run(capture=False) as run:
        run.log_metric("loss", 1.0)
        plot = live_module.live("loss", every=0.05)
        run.log_metric("loss", 0.5)
        assert plot.active and plot.live and len(handles) == 1
        (bundle,) = handles[0].displays
        view = bundle["application/vnd.jupyter.widget-view+json"]
        assert view["model_id"] == plot.widget.model_id
        assert bundle["text/plain"] == repr(plot)
        assert bundle["image/png"]  # what a saved notebook shows without widget state
        plot._ipython_display_()  # the cell's last expression: shown already
        assert len(handles) == 1
        shell.execution_count += 1
        plot._ipython_display_()  # displayed again in a later cell: a second view
        assert len(handles) == 2
    wait_until(lambda: not plot.live)
    for handle in handles:  # the final frame replaces the static PNG of every view
        (final,) = handle.updates
        assert final["image/png"] and "stopped" in final["text/plain"]


def test_running_a_cell_again_closes_its_earlier_plot(
    store: mlnb.Store, kernel: tuple[FakeShell, list[FakeHandle]]
) -> None:
    with mlnb.start_run(capture=False):
        first = live_module.live("loss", every=0.05)
        other_keys = live_module.live("acc", every=0.05)
        second = live_module.live("loss", every=0.05)
        assert not first.live and not listening(first)
        assert second.live and other_keys.live
        assert live_module._open == [other_keys, second]
        mlnb.log_metric("loss", 1.0)
        mlnb.log_metric("acc", 1.0)
    wait_until(lambda: live_module._open == [])


def test_a_plot_still_waiting_for_a_run_is_replaced_too(
    store: mlnb.Store, kernel: tuple[FakeShell, list[FakeHandle]]
) -> None:
    first = live_module.live("loss", every=0.05)
    second = live_module.live("loss", every=0.05)
    assert first.closed and not first.live and second.live
    second.close()


def test_mlnb_live_works_whether_the_module_or_the_function_came_first() -> None:
    """Regression: importing the module `mlnb.live` first bound `mlnb.live` to it, and
    `mlnb.live("loss")` then raised "'module' object is not callable"."""
    code = (
        "import mlnb\n"
        "from mlnb.notebook.liveplot import LivePlot\n"
        "plot = mlnb.live('loss', every=1)\n"
        "print(type(plot).__name__, plot.active, callable(mlnb.live))"
    )
    assert run_python(code).stdout.split() == ["LivePlot", "False", "True"]


def test_import_mlnb_live_loads_no_plotting_library() -> None:
    code = (
        "import sys, json, mlnb.notebook.liveplot\n"
        "print(json.dumps([m for m in ('matplotlib', 'ipywidgets', 'IPython', 'numpy') "
        "if m in sys.modules]))"
    )
    assert json.loads(run_python(code).stdout) == []


@pytest.mark.slow
def test_frames_reach_the_widget_from_the_thread_in_a_real_kernel(tmp_path: Path) -> None:
    """ipykernel forwards widget updates made by the drawing thread while the cell runs."""
    import nbformat
    from nbclient import NotebookClient

    code = (
        "import time, mlnb\n"
        "from mlnb.notebook.liveplot import live\n"
        "with mlnb.start_run(capture=False):\n"
        "    plot = live('loss', every=0.05)\n"
        "    for i in range(300):\n"
        "        mlnb.log_metric('loss', 1 / (i + 1))\n"
        "        time.sleep(0.002)\n"
        "plot.close()\n"
        "print(plot.frames, plot.series['loss'].count, plot.live)"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLNB_STORE", str(tmp_path / "store"))
        client.execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data", "stream"], outputs
    frames, points, alive = outputs[1].text.split()
    assert int(frames) >= 2 and points == "300" and alive == "False"
    data = outputs[0].data
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "300 points" in data["text/plain"] and "stopped" in data["text/plain"]
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    model = state[data["application/vnd.jupyter.widget-view+json"]["model_id"]]
    assert model["model_name"] == "ImageModel"
    (buffer,) = model["buffers"]  # the last frame, drawn and sent by the thread...
    assert buffer["path"] == ["value"]
    assert buffer["data"] == data["image/png"]  # ...is also the output's static PNG
