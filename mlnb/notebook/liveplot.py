"""Live metric plots in the notebook: ``mlnb.live("loss", "val_acc")`` before a training loop.

How it works, and what each part costs:

- A batch listener (``tracking.active.add_batch_listener``) gets every batch of points the
  metric writer thread has just stored (every ~0.1 s, or every 8,192 points) and appends
  the watched run's ``step`` and ``value`` to a pair of plain lists per key. It runs in the
  writer thread, so ``log_metric`` pays nothing for a plot.
- A daemon thread wakes every ``every`` seconds. When points arrived it moves them into
  numpy series (at most ``max_points`` per key: beyond that, min/max decimation halves a
  series), draws them with matplotlib's Agg backend off-screen, and sends the PNG to an
  ``ipywidgets.Image``. Axis limits grow in steps, so most frames only redraw the lines
  over a cached background (a few ms of CPU); a frame that took longer (axes laid out
  again) delays the next, so the thread never uses more than ``MAX_DUTY`` of a CPU: a
  training loop that holds the GIL loses about that much at most.
- The plot stops when its run ends or on ``close()``: the listener is removed and a last
  frame is drawn, which also becomes the output's static PNG (kept in the saved notebook).

``live()`` shows the plot only under a Jupyter kernel. In a script, CI, or terminal IPython
it returns an inactive ``LivePlot``: no listener, no thread, no output, no error.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import math
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlnb.conventions import lower_is_better
from mlnb.errors import InvalidInputError, MlnbError, MlnbWarning
from mlnb.formatting import escape_html, escape_mathtext
from mlnb.records import is_system_metric
from mlnb.store import inputs as validation
from mlnb.tracking import active as tracking_active
from mlnb.tracking import fluent as tracking
from mlnb.tracking.fluent import ActiveRun

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Array = npt.NDArray[np.float64]

X_AXES = ("step", "time")
MAX_DUTY = 0.05  # after a frame that took t of CPU, the drawing thread waits t / MAX_DUTY
JOIN_TIMEOUT_S = 30.0
EXIT_WAIT_S = 2.0
DPI = 80
STATS_PT = 8  # the numbers right of each axes' title
TITLE_PAD_PT = 5.0  # between the axes and the line with its title and numbers
ROW_HEIGHT_IN = 2.4
WIDTH_IN = {1: 6.4, 2: 8.8, 3: 10.4}  # by number of columns (at most 3)
X_HEADROOM = 0.5  # when x outgrows its axis, the new limit adds half the range again
Y_MARGIN = 0.08  # and y gets this margin (of the data's range) on both sides

Listener = Callable[[Any, Sequence[tuple[int, str, int, float, float]]], None]
Append = Callable[[Any], None]
_SINK: Append = deque(maxlen=0).append  # a C-level no-op for keys this plot ignores
_SINKS = (_SINK, _SINK)

_open: list[LivePlot] = []  # plots with a running thread (re-running a cell replaces them)
_open_lock = threading.Lock()
_exit_hook = False


@dataclass(frozen=True)
class Series:
    """What a live plot holds for one key: the points to draw (``x`` is the step, or the
    wall-clock time with ``x="time"``), decimated beyond ``max_points``, and exact
    counts, best and last point over everything logged."""

    key: str
    x: Array
    y: Array
    count: int = 0
    best: tuple[float, float] | None = None  # (x, value)
    last: tuple[float, float] | None = None
    lower_is_better: bool = True


def live(
    *keys: str,
    run: ActiveRun | None = None,
    every: float = 0.5,
    x: str = "step",
    max_points: int = 10_000,
) -> LivePlot:
    """Plot metrics in the notebook while a training loop in the same cell logs them.

    Shows ``keys`` (default: every key the run logs, except ``job/*`` and ``system/*``),
    one axes per key with its best value marked, redrawn at most every ``every`` seconds while new
    points arrive, until the run ends or ``close()`` is called. The run is ``run``;
    without it, the first run that logs a metric after this call: normally the active
    run (whose history is shown meanwhile), or one started after the call (``live()``
    may come before ``with mlnb.start_run():``). The run's history for those keys is
    loaded first. ``x="time"`` plots against seconds instead of steps; at most
    ``max_points`` points per key are kept (min/max decimation beyond that).

    Outside a Jupyter kernel (scripts, CI) it returns an inactive plot that does nothing.
    Calling it again for the same keys and run (re-running the cell) closes the earlier
    plot, which keeps its last frame.
    """
    shell = _kernel_shell()
    if shell is None or not _widgets_available():
        return LivePlot.inactive(keys, run=run, every=every, x=x, max_points=max_points)
    plot = LivePlot(keys, run=run, every=every, x=x, max_points=max_points)
    with _open_lock:
        earlier = [p for p in _open if p is not plot and p._same_as(plot)]
    for p in earlier:
        p.close()
    plot.show()
    return plot


class LivePlot:
    """A live plot of some metrics of one run (see ``live``).

    ``series[key]`` holds the data, ``png`` the last frame, ``widget`` the
    ``ipywidgets.Image`` that shows it (None without ipywidgets or when inactive),
    ``frames`` counts frames drawn and ``draw_seconds`` the CPU time spent drawing them.
    Usable as a context manager: leaving the block closes the plot.
    """

    def __init__(
        self,
        keys: Sequence[str] = (),
        *,
        run: ActiveRun | None = None,
        every: float = 0.5,
        x: str = "step",
        max_points: int = 10_000,
        _active: bool = True,
    ) -> None:
        self.keys = _check_keys(keys)
        if not (isinstance(every, (int, float)) and math.isfinite(every) and every > 0):
            raise InvalidInputError(f"live: every must be a positive number of seconds: {every!r}")
        if x not in X_AXES:
            raise InvalidInputError(f"live: x must be one of {', '.join(X_AXES)}: {x!r}")
        if type(max_points) is not int or max_points < 16:
            raise InvalidInputError(f"live: max_points must be an integer >= 16: {max_points!r}")
        self.every = float(every)
        self.x = x
        self.max_points = max_points
        self.active = _active
        self.series: dict[str, Series] = {}
        self.png: bytes | None = None
        self.widget: Any = None
        self.frames = 0
        self.draw_seconds = 0.0
        self.error: BaseException | None = None
        self.closed = not _active
        self._explicit = run is not None
        self.run: ActiveRun | None = run if run is not None else tracking.active_run()
        self._bound = self._explicit  # an implicit plot binds to the first run that logs
        self._reload = False
        self._inbox: dict[str, tuple[list[Any], list[float]]] = {}
        self._appends: dict[str, tuple[Append, Append]] = {}
        self._keys_lock = threading.Lock()
        self._listener: Listener | None = None
        self._since = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handles: list[Any] = []
        self._shown_at: object = None
        if not _active:
            return

        import numpy  # noqa: F401  (imported here, not in the drawing thread)

        self._renderer = _Renderer("seconds" if x == "time" else None)
        with contextlib.suppress(ImportError):
            import ipywidgets

            self.widget = ipywidgets.Image(format="png")
            self.widget.add_class("mlnb-live")
        for key in self.keys:
            self._add_key(key)
        if self.run is not None and self.run.ended and self._explicit:
            self._load_history(self.run)  # a finished run: one frame, nothing to watch
            self._draw()
            self.closed = True
            return
        self._listener = self._make_listener()
        self._since = time.time()
        tracking_active.add_batch_listener(self._listener)
        try:
            if self.run is not None and not self.run.ended:
                self._load_history(self.run)
            self._draw()
        except BaseException:
            tracking_active.remove_batch_listener(self._listener)
            raise
        with _open_lock:
            _open.append(self)
            _stop_at_exit()
        self._thread = threading.Thread(target=self._loop, name="mlnb-live", daemon=True)
        self._thread.start()

    @classmethod
    def inactive(
        cls,
        keys: Sequence[str] = (),
        *,
        run: ActiveRun | None = None,
        every: float = 0.5,
        x: str = "step",
        max_points: int = 10_000,
    ) -> LivePlot:
        """A plot that does nothing (what ``live`` returns outside a Jupyter kernel)."""
        return cls(keys, run=run, every=every, x=x, max_points=max_points, _active=False)

    # -- the logging thread ----------------------------------------------------------

    def _make_listener(self) -> Listener:
        """What the metric writer thread calls with each batch it stored: append the
        watched run's points to their keys' lists. It runs in the writer thread, after the
        batch is on disk, so ``log_metric`` itself pays nothing for a live plot."""
        watched = self.run if self._bound else None
        appends = self._appends
        add_key = self._add_key
        plot = self
        use_time = self.x == "time"

        def adopt(store: Any, rowid: int) -> bool:
            nonlocal watched
            candidates = [plot.run, *tracking.state.live_runs()]  # in any thread
            run = next(
                (r for r in candidates if r is not None and r._rowid == rowid and r.store is store),
                None,
            )
            if run is None:
                return False
            with _open_lock:  # two threads logging their first point at once
                if watched is None and not plot.closed:
                    watched = run
                    plot._adopt(run)
            return watched is run

        def listener(store: Any, rows: Sequence[tuple[int, str, int, float, float]]) -> None:
            since = plot._since  # points logged before it are read from the store instead
            for rowid, key, step, value, stamp in rows:
                if stamp < since:
                    continue
                if watched is None and not adopt(store, rowid):
                    continue
                if watched is None or rowid != watched._rowid or store is not watched.store:
                    continue
                try:
                    append_x, append_y = appends[key]
                except KeyError:  # once per key
                    append_x, append_y = add_key(key)
                append_x(stamp if use_time else step)
                append_y(value)

        return listener

    def _add_key(self, key: str) -> tuple[Append, Append]:
        """Start collecting ``key`` (or ignore it: not asked for, or ``job/*`` and
        ``system/*`` when no keys were given)."""
        with self._keys_lock:  # the listener and the drawing thread may both add one
            appends = self._appends.get(key)
            if appends is not None:
                return appends
            if (key not in self.keys) if self.keys else is_system_metric(key):
                appends = _SINKS
            else:
                xs: list[Any] = []
                ys: list[float] = []
                self._inbox[key] = (xs, ys)
                appends = (xs.append, ys.append)
            self._appends[key] = appends
            return appends

    def _adopt(self, run: ActiveRun) -> None:
        """An implicit plot binds to the first run that logs after it was made."""
        self._bound = True
        if run is not self.run:
            self.run = run
            self._reload = True

    # -- the drawing thread ------------------------------------------------------------

    def _loop(self) -> None:
        wait = self.every
        try:
            while True:
                stopping = self._stop.wait(wait)
                start = time.thread_time()
                run = self.run
                ending = stopping or (self._bound and run is not None and run.ended)
                if ending and self._listener is not None:
                    tracking_active.remove_batch_listener(self._listener)
                changed = False
                if self._reload and run is not None:
                    self._reload = False
                    self.series.clear()
                    self._renderer.reset()
                    self._load_history(run)
                    changed = True
                changed = self._drain() or changed
                if changed or ending:
                    self._draw()
                # CPU time, not wall time: a frame drawn beside a busy loop spends most of
                # its wall time waiting for the GIL, which costs the loop nothing
                wait = max(self.every, (time.thread_time() - start) / MAX_DUTY)
                if ending:
                    return
        except Exception as exc:
            self.error = exc
            warnings.warn(f"mlnb.live stopped: {exc!r}", MlnbWarning, stacklevel=1)
        finally:
            self._finish()

    def _finish(self) -> None:
        if self._listener is not None:
            tracking_active.remove_batch_listener(self._listener)
        self.closed = True
        with _open_lock:
            if self in _open:
                _open.remove(self)
        self._update_displays()

    def _drain(self) -> bool:
        """Move what the listener collected into the series; True when anything moved."""
        import numpy as np

        moved = False
        for key, (xs, ys) in list(self._inbox.items()):
            n = len(ys)  # the listener appends x first: xs holds at least n items
            if not n:
                continue
            x = xs[:n]
            del xs[:n]  # appends made meanwhile stay (they are after the first n)
            y = ys[:n]
            del ys[:n]
            self._extend(key, np.array(x, dtype=float), np.array(y, dtype=float))
            moved = True
        return moved

    def _load_history(self, run: ActiveRun) -> None:
        """The run's points logged before the listener was attached."""
        import numpy as np

        if not run.ended:
            with contextlib.suppress(MlnbError):  # the writer keeps them and says why
                run._writer.flush()  # points queued a moment ago are history too
        if self.keys:
            keys: Sequence[str] = self.keys
        else:
            stored = sorted(run.store.max_steps(run.run_id))
            keys = [k for k in stored if not is_system_metric(k)]
        before = self._since or None  # later points reached the listener
        column = 2 if self.x == "time" else 0
        for key in keys:
            self._add_key(key)
            sample = run.store.downsampled_history(
                run.run_id, key, max_points=self.max_points, before=before
            )  # bounded, with the extremes and the last point: what _extend would keep
            if sample.points:
                data = np.array(sample.points, dtype=float)
                self._extend(key, data[:, column], data[:, 1], count=sample.count)

    def _extend(self, key: str, x: Array, y: Array, *, count: int | None = None) -> None:
        """Add points to a key's series (decimated beyond ``max_points``); ``count`` is how
        many points they stand for when they are a sample (default: ``len(y)``)."""
        import numpy as np

        old = self.series.get(key)
        if old is None:
            old = Series(key, x[:0], y[:0], lower_is_better=lower_is_better(key))
        finite = np.isfinite(y)
        y = np.where(finite, y, np.nan)  # ±inf would wreck the axis limits
        best = old.best
        if finite.any():
            ranked = np.where(finite, y, np.inf if old.lower_is_better else -np.inf)
            i = int(np.argmin(ranked) if old.lower_is_better else np.argmax(ranked))
            value = float(y[i])
            if (
                best is None
                or (old.lower_is_better and value < best[1])
                or (not old.lower_is_better and value > best[1])
            ):
                best = (float(x[i]), value)
        xs, ys = np.concatenate([old.x, x]), np.concatenate([old.y, y])
        while len(ys) > self.max_points:
            xs, ys = _minmax(xs, ys, 4)
        self.series[key] = Series(
            key,
            xs,
            ys,
            count=old.count + (len(y) if count is None else count),
            best=best,
            last=(float(x[-1]), float(y[-1])),
            lower_is_better=old.lower_is_better,
        )

    def _draw(self) -> None:
        """Render a frame and send it to the widget."""
        start = time.thread_time()
        shown = [s for s in self._ordered() if s.count]
        origin = min((float(s.x[0]) for s in shown if len(s.x)), default=0.0)
        png = self._renderer.render(
            shown, origin=origin if self.x == "time" else 0.0, note=self._note()
        )
        self.png = png
        if self.widget is not None:
            self.widget.value = png
        self.frames += 1
        self.draw_seconds += time.thread_time() - start

    def _ordered(self) -> list[Series]:
        if self.keys:
            return [self.series[k] for k in self.keys if k in self.series]
        return list(self.series.values())

    def _note(self) -> str:
        what = ", ".join(self.keys) if self.keys else "metrics"
        if self.run is None or (not self._bound and self.run.ended):
            return f"mlnb.live: waiting for a run to log {what}"
        return f"mlnb.live: waiting for {what} of run {self.run.run_id[:8]}"

    # -- the notebook --------------------------------------------------------------------

    @property
    def shown_keys(self) -> tuple[str, ...]:
        """The keys the last frame has an axes for (keys with at least one point)."""
        return self._renderer.keys if self.active else ()

    @property
    def live(self) -> bool:
        """Whether the plot is still following its run (or waiting for one)."""
        return not self.closed and self._thread is not None and self._thread.is_alive()

    def show(self) -> None:
        """Display the plot in the notebook (``live`` does it when creating the plot)."""
        shell = _kernel_shell()
        if self.widget is None or shell is None:
            return
        from IPython import display as ipython_display

        display: Any = ipython_display.display
        self._handles.append(display(self._mimebundle(), raw=True, display_id=True))
        self._shown_at = shell.execution_count

    def _ipython_display_(self) -> None:
        shell = _kernel_shell()
        if shell is not None and shell.execution_count == self._shown_at:
            return  # the cell that made the plot shows it already
        self.show()

    def _mimebundle(self) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": repr(self)}
        if self.png is not None:
            bundle["image/png"] = base64.b64encode(self.png).decode("ascii")
        if self.widget is not None:
            view = self.widget._repr_mimebundle_()
            view.pop("text/plain", None)
            bundle.update(view)
        return bundle

    def _update_displays(self) -> None:
        """Put the last frame into every output showing the plot (as the PNG the saved
        notebook keeps next to the widget view)."""
        if not self._handles:
            return
        with contextlib.suppress(Exception):  # the kernel may be shutting down
            bundle = self._mimebundle()
            for handle in self._handles:
                handle.update(bundle, raw=True)

    def _repr_html_(self) -> str | None:
        if self.png is None:
            return None
        data = base64.b64encode(self.png).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{escape_html(repr(self))}">'

    def __repr__(self) -> str:
        what = ", ".join(self.keys) if self.keys else "all metrics"
        if not self.active:
            return f"<mlnb.LivePlot {what}: inactive (no notebook)>"
        run = f"run {self.run.run_id[:8]}" if self.run is not None else "no run yet"
        points = sum(s.count for s in list(self.series.values()))
        state = "live" if self.live else "stopped"
        return f"<mlnb.LivePlot {what} of {run}: {points:,} points, {self.frames} frames, {state}>"

    # -- stopping ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop following the run: remove the listener and draw a last frame."""
        run = self.run
        if run is not None and not run.ended and not self.closed:
            with contextlib.suppress(MlnbError):
                run._writer.flush()  # what the loop logged so far reaches the last frame
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)
        elif self._listener is not None:
            tracking_active.remove_batch_listener(self._listener)
        self.closed = True

    def __enter__(self) -> LivePlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _same_as(self, other: LivePlot) -> bool:
        """Whether ``other`` (newer) replaces this plot: same keys, and the same run or
        this one still waits for a run."""
        same_run = self.run is other.run or not self._bound
        return same_run and self.keys == other.keys and self.x == other.x


# -- drawing ------------------------------------------------------------------------------


class _Panel:
    """One key's axes: a line and a marker at the best value, both animated (drawn over
    the cached background), limits that grow in steps, and a text with the numbers."""

    def __init__(self, ax: Any, key: str, index: int, x_label: str | None) -> None:
        from matplotlib.ticker import MaxNLocator

        self.ax = ax
        # a fixed title height spares matplotlib measuring every tick label to place it
        ax.set_title(escape_mathtext(key), loc="left", fontsize=9, y=1.0, pad=TITLE_PAD_PT)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=x_label is None))
        ax.yaxis.set_major_locator(MaxNLocator(4))
        if x_label:
            ax.set_xlabel(x_label, fontsize=8)
        (self.line,) = ax.plot([], [], lw=1.3, color=f"C{index % 10}", animated=True)
        (self.marker,) = ax.plot(
            [], [], "o", ms=7, mfc="none", mec="C3", mew=1.6, animated=True, zorder=3
        )
        self.text = ""  # drawn by PIL onto the frame: matplotlib text costs ~20x more
        self.limits: tuple[float, float, float, float] | None = None
        self.time_axis = x_label is not None

    def update(self, s: Series, origin: float) -> bool:
        """Set the data; True when the limits had to move (the background is stale)."""
        import numpy as np

        x = s.x - origin if origin else s.x
        width = max(50, int(self.ax.bbox.width))
        xd, yd = _minmax(x, s.y, math.ceil(len(x) / width)) if len(x) > 4 * width else (x, s.y)
        self.line.set_data(xd, yd)
        if s.best is not None:
            bx, by = s.best
            self.marker.set_data([bx - origin], [by])
            side = "min" if s.lower_is_better else "max"
            text = f"{side} {by:.4g} @ {self._fmt_x(bx - origin)}"
        else:
            self.marker.set_data([], [])
            text = ""
        if s.last is not None:
            text += f"   last {s.last[1]:.4g}"
        self.text = text

        finite = s.y[np.isfinite(s.y)]
        xmin, xmax = float(x.min()), float(x.max())
        ymin, ymax = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        if self.limits is not None:
            x0, x1, y0, y1 = self.limits
            if x0 <= xmin and xmax <= x1 and y0 <= ymin and ymax <= y1:
                return False
        xspan = xmax - xmin
        yspan = (ymax - ymin) or (abs(ymax) or 1.0)
        self.limits = (
            xmin,
            xmax + max(X_HEADROOM * xspan, 1.0),
            ymin - Y_MARGIN * yspan,
            ymax + Y_MARGIN * yspan,
        )
        self.ax.set_xlim(self.limits[0], self.limits[1])
        self.ax.set_ylim(self.limits[2], self.limits[3])
        return True

    def _fmt_x(self, x: float) -> str:
        return f"{x:.1f} s" if self.time_axis else f"{x:.0f}"

    def draw(self) -> None:
        self.ax.draw_artist(self.line)
        self.ax.draw_artist(self.marker)


class _Renderer:
    """The matplotlib side: a Figure on an Agg canvas, never shown by pyplot. Frames redraw
    only the animated artists over a cached background unless the axes changed."""

    def __init__(self, x_label: str | None) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.figure = Figure(dpi=DPI)
        self.canvas: Any = FigureCanvasAgg(self.figure)  # Any: its blitting API is untyped
        self.x_label = x_label
        self.keys: tuple[str, ...] = ()
        self.panels: list[_Panel] = []
        self.note: str | None = None
        self.background: Any = None
        self.font: Any = None
        self.full_redraws = 0

    def reset(self) -> None:
        """Lay the axes out afresh at the next frame (another run's data)."""
        self.keys, self.background = (), None
        self.panels = []

    def render(self, series: Sequence[Series], *, origin: float, note: str) -> bytes:
        keys = tuple(s.key for s in series)
        full = self.background is None
        if keys != self.keys or (not keys and note != self.note):
            self._layout(keys, note)
            full = True
        for panel, s in zip(self.panels, series, strict=True):
            full = panel.update(s, origin) or full
        if full:
            self.canvas.draw()
            self.background = self.canvas.copy_from_bbox(self.figure.bbox)
            self.full_redraws += 1
        else:
            self.canvas.restore_region(self.background)
        for panel in self.panels:
            panel.draw()
        return self._png()

    def _layout(self, keys: tuple[str, ...], note: str) -> None:
        fig = self.figure
        fig.clear()
        self.keys, self.note, self.panels = keys, note, []
        if not keys:  # a one-line placeholder until the first point
            fig.set_size_inches(WIDTH_IN[1], 0.45)
            fig.text(0.01, 0.5, note, va="center", fontsize=9, color="0.35")
            return
        cols = min(len(keys), 3)
        rows = math.ceil(len(keys) / cols)
        width = WIDTH_IN[cols]
        height = ROW_HEIGHT_IN * rows + (0.6 if len(keys) == 1 else 0.0)
        fig.set_size_inches(width, height)
        # fixed margins in inches: constrained layout would cost more than the drawing
        left, right, top, bottom = 0.6, 0.2, 0.3, 0.55 if self.x_label else 0.35
        gap_w, gap_h = 0.7, 0.65
        axes_w = (width - left - right - (cols - 1) * gap_w) / cols
        axes_h = (height - top - bottom - (rows - 1) * gap_h) / rows
        fig.subplots_adjust(
            left=left / width,
            right=1 - right / width,
            top=1 - top / height,
            bottom=bottom / height,
            wspace=gap_w / axes_w,
            hspace=gap_h / axes_h,
        )
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax in axes[len(keys) :]:
            fig.delaxes(ax)
        self.panels = [
            _Panel(ax, key, i, self.x_label)
            for i, (ax, key) in enumerate(zip(axes, keys, strict=False))
        ]

    def _png(self) -> bytes:
        import io

        from PIL import Image

        width, height = self.canvas.get_width_height()
        rgba = Image.frombuffer(
            "RGBA", (width, height), self.canvas.buffer_rgba(), "raw", "RGBA", 0, 1
        )
        image = rgba.convert("RGB")
        if self.panels:
            from PIL import ImageDraw

            draw = ImageDraw.Draw(image)
            font = self._font()
            for panel in self.panels:  # right-aligned on the title's baseline
                box = panel.ax.bbox
                where = (box.x1, height - box.y1 - TITLE_PAD_PT * DPI / 72)
                draw.text(where, panel.text, font=font, fill=(64, 64, 64), anchor="rs")
        out = io.BytesIO()
        image.save(out, format="png", compress_level=1)
        return out.getvalue()

    def _font(self) -> Any:
        if self.font is None:
            from matplotlib import font_manager
            from PIL import ImageFont

            path = font_manager.findfont(font_manager.FontProperties(size=STATS_PT))
            self.font = ImageFont.truetype(path, round(STATS_PT * DPI / 72))
        return self.font


def _minmax(x: Array, y: Array, size: int) -> tuple[Array, Array]:
    """Keep the lowest and the highest point (in their order) of every ``size`` points, so
    spikes survive decimation; NaN (gaps) count as neither unless a bin has nothing else."""
    import numpy as np

    n = len(y)
    whole = n // size * size
    if size < 2 or whole == 0:
        return x, y
    bins = y[:whole].reshape(-1, size)
    nan = np.isnan(bins)
    low = np.argmin(np.where(nan, np.inf, bins), axis=1)
    high = np.argmax(np.where(nan, -np.inf, bins), axis=1)
    start = np.arange(0, whole, size)
    index = np.sort(np.stack([start + low, start + high], axis=1), axis=1).ravel()
    index = np.concatenate([index, np.arange(whole, n)])
    return x[index], y[index]


def _stop_at_exit() -> None:
    """Once per process: at exit, stop open plots (last frame sent while the kernel still
    runs) before tracking ends their runs under them."""
    global _exit_hook
    if not _exit_hook:
        _exit_hook = True
        atexit.register(_close_open_plots)


def _close_open_plots() -> None:
    with _open_lock:
        plots = list(_open)
    for plot in plots:
        plot._stop.set()
    deadline = time.monotonic() + EXIT_WAIT_S
    for plot in plots:
        if plot._thread is not None:
            plot._thread.join(max(0.0, deadline - time.monotonic()))


# -- where are we ---------------------------------------------------------------------------


def _kernel_shell() -> Any:
    """The IPython shell when this process is a Jupyter kernel, else None (imports nothing
    new: a process that never imported IPython is not a kernel)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    shell = ipython.get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    return shell


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _check_keys(keys: Sequence[str]) -> tuple[str, ...]:
    """Keys as given (a list among them is spread), checked, without repeats."""
    flat: list[object] = []
    for item in [keys] if isinstance(keys, str) else keys:
        flat.extend(item) if isinstance(item, (list, tuple)) else flat.append(item)
    out: list[str] = []
    for key in flat:
        checked = validation.check_key(key, "metric key")
        if checked not in out:
            out.append(checked)
    return tuple(out)


__all__ = ["LivePlot", "Series", "live"]
