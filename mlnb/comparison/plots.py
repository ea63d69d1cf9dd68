"""The figures of the compare widget, drawn with matplotlib's object API (``Figure``, no
pyplot, so no global state and no window): metric curves of several runs, parallel
coordinates of params against a metric, and a scatter of one param against one metric.

Each builder takes plain data (lists and dicts) and returns a ``Figure`` (tests read its
artists); ``to_png`` turns it into the PNG bytes the widget shows in an Output and the
static HTML snapshot embeds as ``data:`` URIs. Nothing here reads the store. Every name
drawn (metric keys, params, their values, run names) goes through
:func:`~mlnb.formatting.escape_mathtext`, so a ``$`` is drawn as a ``$``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlnb.comparison.html import best_index
from mlnb.formatting import escape_mathtext

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 80
PANEL_W_IN = 4.6
PANEL_H_IN = 2.9
MAX_COLS = 3
SELECTED_COLOR = "#d62728"
SELECTED_WIDTH = 2.8  # parallel coordinates: selected runs are wider, not another colour
_STAR = {"marker": "*", "markersize": 12, "markeredgecolor": "black", "markeredgewidth": 0.6}


@dataclass(frozen=True)
class Curve:
    """One run's series of one metric: ``x`` (steps, or seconds since the run started),
    ``y`` as logged, and the best point (already chosen: min or max of ``y``)."""

    label: str
    color: str
    x: Sequence[float]
    y: Sequence[float]
    best: tuple[float, float] | None


def run_colors(n: int) -> list[str]:
    """``n`` distinct colors (tab10, then tab20), the same run keeps its color everywhere."""
    from matplotlib import colormaps

    palette = [colormaps["tab10"](i) for i in range(10)] + [
        colormaps["tab20"](i) for i in range(1, 20, 2)
    ]
    return [_hex(palette[i % len(palette)]) for i in range(n)]


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing):
    ``weight`` 0 returns the values, 0.99 smooths hard. NaN points stay NaN and do not
    disturb their neighbours."""
    if weight <= 0:
        return list(values)
    out: list[float] = []
    acc, norm = 0.0, 0.0
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        acc = acc * weight + (1 - weight) * v
        norm = norm * weight + (1 - weight)
        out.append(acc / norm)
    return out


def curves_figure(
    panels: Mapping[str, Sequence[Curve]],
    *,
    x_label: str = "step",
    smoothing: float = 0.0,
    log_y: bool = False,
    lower: Mapping[str, bool] | None = None,
) -> Figure:
    """One axes per metric key with one line per run, the best point of each run marked
    with a star (best = lowest when ``lower[key]``, else highest); ``smoothing`` draws the
    smoothed line over a faint raw one; ``log_y`` uses a log y axis where every value is
    positive. A metric every run logged once (a test score) has no line to draw: its
    axes get one dot per run, side by side with its value, the best run's a star."""
    keys = list(panels)
    if not keys:
        return message_figure("Select runs that logged metrics to see their curves.")
    cols = min(MAX_COLS, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = _figure(PANEL_W_IN * cols, PANEL_H_IN * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False)
    legend: dict[str, str] = {}  # label -> color, in order of appearance
    for i, key in enumerate(keys):
        ax = axes[i // cols][i % cols]
        is_lower = (lower or {}).get(key, True)
        curves = panels[key]
        for curve in curves:
            legend.setdefault(curve.label, curve.color)
        if all(len(c.x) == 1 for c in curves):
            _draw_dots(ax, curves, is_lower)
        else:
            _draw_lines(ax, curves, smoothing)
            ax.set_xlabel(x_label, fontsize=8)
        positive = all(v > 0 for c in curves for v in c.y if math.isfinite(v))
        if log_y and positive and any(c.y for c in curves):
            ax.set_yscale("log")
        better = "lower" if is_lower else "higher"
        ax.set_title(f"{escape_mathtext(key)}  ({better} is better, ★ best)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    for j in range(len(keys), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    if legend:
        from matplotlib.lines import Line2D

        fig.legend(
            [Line2D([], [], color=color, linewidth=1.6) for color in legend.values()],
            [escape_mathtext(label) for label in legend],
            loc="outside lower center",
            ncol=min(5, len(legend)),
            fontsize=8,
            frameon=False,
        )
    return fig


def _draw_lines(ax: Any, curves: Sequence[Curve], smoothing: float) -> None:
    """One line per run (a dot for a run with one point), its best point a star."""
    for curve in curves:
        if smoothing > 0:
            ax.plot(curve.x, curve.y, color=curve.color, alpha=0.25, linewidth=1)
            y = smooth(curve.y, smoothing)
        else:
            y = list(curve.y)
        marker = "o" if len(curve.x) == 1 else None
        ax.plot(curve.x, y, color=curve.color, linewidth=1.6, marker=marker)
        if curve.best is not None:
            ax.plot(*curve.best, linestyle="none", color=curve.color, **_STAR)


def _draw_dots(ax: Any, curves: Sequence[Curve], lower: bool) -> None:
    """One mark per run, side by side (x is the run, not a step), labelled with its
    value; the best run's mark is a star."""
    best = best_index([c.y[0] for c in curves], lower)
    for i, curve in enumerate(curves):
        value = curve.y[0]
        style = _STAR if i == best else {"marker": "o", "markersize": 7}
        ax.plot([i], [value], linestyle="none", color=curve.color, **style)
        if math.isfinite(value):
            ax.annotate(
                f"{value:.4g}",
                (i, value),
                xytext=(7, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
    ax.set_xlim(-0.6, len(curves) - 0.2)
    ax.set_xticks([])
    ax.set_xlabel("runs (one value each)", fontsize=8)


def parallel_figure(
    columns: Mapping[str, Sequence[Any]],
    metric: str,
    *,
    selected: Sequence[bool] = (),
    lower: bool = True,
) -> Figure:
    """Parallel coordinates: one vertical axis per param in ``columns`` and the ``metric``
    last, one line per run that has the metric, coloured by it (dark = best). Numeric axes
    are scaled min..max, text axes list their values. Selected runs are drawn wider, on
    top, in the same colours: the colour always means the metric."""
    from matplotlib.collections import LineCollection

    names = [*columns.keys()]
    if metric not in names or len(names) < 2:
        return message_figure("Parallel coordinates need a metric and at least one param.")
    scaled: list[list[float]] = []
    ticks: list[tuple[list[float], list[str]]] = []
    for name in names:
        s, t = _scale(columns[name])
        scaled.append(s)
        ticks.append(t)
    metric_values = [_num(v) for v in columns[metric]]
    values = {i: v for i, v in enumerate(metric_values) if v is not None}
    if not values:
        return message_figure(f"No run in view has a value for {metric}.")
    fig = _figure(max(6.0, 1.3 * len(names) + 1.5), 4.2)
    ax = fig.add_subplot()
    from matplotlib import colormaps

    cmap = colormaps["viridis" if lower else "viridis_r"]  # the best run is the darkest
    norm, bar_ticks = _metric_norm(list(values.values()))

    def segments(chosen: bool) -> tuple[list[list[tuple[int, float]]], list[Any]]:
        keep = [i for i in sorted(values) if (i < len(selected) and selected[i]) == chosen]
        lines = [[(j, scaled[j][i]) for j in range(len(names))] for i in keep]
        segs = [[p for p in line if math.isfinite(p[1])] for line in lines]
        return segs, [cmap(norm(values[i])) for i in keep]

    rest, rest_colors = segments(False)
    alpha = 0.6 if len(values) > 200 else 0.85
    ax.add_collection(LineCollection(rest, colors=rest_colors, linewidths=1.0, alpha=alpha))
    chosen, chosen_colors = segments(True)
    if chosen:
        ax.add_collection(
            LineCollection(chosen, colors=chosen_colors, linewidths=SELECTED_WIDTH, zorder=3)
        )
    for j, (positions, labels) in enumerate(ticks):
        ax.axvline(j, color="#555", linewidth=0.8)
        for pos, text in zip(positions, labels, strict=True):
            ax.text(j + 0.03, pos, escape_mathtext(text), fontsize=7, va="center", ha="left",
                    color="#333")  # fmt: skip
    ax.set_xlim(-0.1, len(names) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    shown = [escape_mathtext(n) for n in names]
    ax.set_xticks(range(len(names)), shown, rotation=20, fontsize=8, ha="right")
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    metric_text = escape_mathtext(metric)
    bar = fig.colorbar(coll_mappable(cmap, norm), ax=ax, label=metric_text, fraction=0.04)
    if bar_ticks is not None:
        bar.set_ticks(bar_ticks[0], labels=bar_ticks[1])
    wide = f"; wide: {len(chosen)} selected" if chosen else ""
    ax.set_title(f"params → {metric_text} ({len(values)} runs{wide})", fontsize=9)
    return fig


def _metric_norm(values: Sequence[float]) -> tuple[Any, tuple[list[float], list[str]] | None]:
    """The colour scale of a metric, and the colour bar's ticks when they must be set: a
    metric with one value gets a narrow scale around it and one tick that reads it
    (``Normalize`` of ``lo..lo+1`` read 1.0–1.8 for two runs at 0.9415)."""
    from matplotlib.colors import Normalize

    lo, hi = min(values), max(values)
    if hi > lo:
        return Normalize(vmin=lo, vmax=hi), None
    pad = abs(lo) * 1e-3 or 1e-3
    return Normalize(vmin=lo - pad, vmax=hi + pad), ([lo], [f"{lo:.4g}"])


def scatter_figure(
    x: Sequence[Any],
    y: Sequence[Any],
    *,
    x_name: str,
    y_name: str,
    selected: Sequence[bool] = (),
    labels: Sequence[str] = (),
) -> Figure:
    """One point per run: a param (``x``; text values become evenly spaced categories)
    against a metric (``y``); selected runs in red and labelled."""
    ys = [_num(v) for v in y]
    xs, (positions, names) = _categorical_or_numeric(x)
    pts: list[tuple[int, float, float]] = []
    for i, (px, py) in enumerate(zip(xs, ys, strict=False)):
        if px is not None and py is not None:
            pts.append((i, px, py))
    if not pts:
        return message_figure(f"No run in view has both {x_name} and {y_name}.")
    fig = _figure(6.4, 3.8)
    ax = fig.add_subplot()
    ax.scatter(
        [p[1] for p in pts], [p[2] for p in pts], s=14, color="#1f77b4", alpha=0.6, linewidths=0
    )
    sel = [p for p in pts if p[0] < len(selected) and selected[p[0]]]
    if sel:
        ax.scatter(
            [p[1] for p in sel],
            [p[2] for p in sel],
            s=40,
            color=SELECTED_COLOR,
            edgecolors="black",
            linewidths=0.6,
            zorder=3,
        )
        for i, px, py in sel[:20]:
            if i < len(labels):
                ax.annotate(
                    escape_mathtext(labels[i]), (px, py), fontsize=7, xytext=(4, 4),
                    textcoords="offset points",
                )  # fmt: skip
    if names:
        ticks = [escape_mathtext(n) for n in names]
        ax.set_xticks(positions, ticks, rotation=20, fontsize=8, ha="right")
    x_text, y_text = escape_mathtext(x_name), escape_mathtext(y_name)
    ax.set_xlabel(x_text, fontsize=9)
    ax.set_ylabel(y_text, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{y_text} by {x_text} ({len(pts)} runs; red: selected)", fontsize=9)
    return fig


def message_figure(text: str) -> Figure:
    """A small figure that says why there is no plot (keeps the layout steady)."""
    fig = _figure(6.4, 0.8)
    fig.text(0.5, 0.5, escape_mathtext(text), ha="center", va="center", fontsize=10, color="#555")
    return fig


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (at :data:`DPI`). Very long names (a run or param named by
    someone else) can leave constrained layout no room: matplotlib then draws without it
    and says so, which is noise for the person looking at the plot."""
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "constrained_layout not applied", UserWarning)
        fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def coll_mappable(cmap: Any, norm: Any) -> Any:
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=cmap)


# -- helpers ------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _hex(rgba: tuple[float, ...]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgba[:3])


def _num(v: Any) -> float | None:
    """A finite float, or None (missing, NaN, text)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _categorical_or_numeric(
    values: Sequence[Any],
) -> tuple[list[float | None], tuple[list[float], list[str]]]:
    """Numbers stay numbers; otherwise each distinct text gets a position 0, 1, 2..."""
    nums = [_num(v) for v in values]
    present = [v for v in values if v is not None and not (isinstance(v, float) and v != v)]
    if all(_num(v) is not None for v in present):
        return nums, ([], [])
    cats = sorted({str(v) for v in present})
    index = {c: float(i) for i, c in enumerate(cats)}
    out = [None if v is None else index.get(str(v)) for v in values]
    return out, ([index[c] for c in cats], cats)


def _scale(values: Sequence[Any]) -> tuple[list[float], tuple[list[float], list[str]]]:
    """Values placed on 0..1 (NaN for missing; one value in the middle) and the tick
    labels of the axis."""
    xs, (positions, names) = _categorical_or_numeric(values)
    finite = [v for v in xs if v is not None]
    if not finite:
        return [math.nan] * len(xs), ([], [])
    lo, hi = min(finite), max(finite)
    if hi == lo:
        label = names[0] if names else f"{lo:.4g}"
        return [math.nan if v is None else 0.5 for v in xs], ([0.5], [label])
    span = hi - lo
    scaled = [math.nan if v is None else (v - lo) / span for v in xs]
    if names:
        step = max(1, len(names) // 12)  # at most ~12 labels per axis
        shown = list(range(0, len(names), step))
        return scaled, ([(positions[i] - lo) / span for i in shown], [names[i] for i in shown])
    return scaled, ([0.0, 1.0], [f"{lo:.4g}", f"{hi:.4g}"])
