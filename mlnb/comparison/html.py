"""HTML of the compare view: the runs table (badges, pinned columns, sort marker), the
shared style sheet, durations and embedded images. Pure string building."""

from __future__ import annotations

import base64
import datetime as _dt
import math
from collections.abc import Sequence
from typing import Any

from mlnb.conventions import MISSING
from mlnb.formatting import escape_html
from mlnb.records import format_duration

STATUS_COLORS = {
    "finished": "#2e7d32",
    "running": "#1565c0",
    "queued": "#757575",
    "failed": "#c62828",
    "crashed": "#8e0000",
    "killed": "#ef6c00",
}
LINEARITY_COLORS = {"linear": "#2e7d32", "out-of-order": "#ef6c00", "unknown": "#757575"}

STYLE = """<style>
.mlnb-cmp-scroll { overflow-x: auto; max-width: 100%; }
table.mlnb-cmp-table { border-collapse: collapse; font-size: 12px; white-space: nowrap; }
table.mlnb-cmp-table th, table.mlnb-cmp-table td { height: 28px; box-sizing: border-box;
  padding: 0 8px; border-bottom: 1px solid #e0e0e0; text-align: left; max-width: 240px;
  overflow: hidden; text-overflow: ellipsis; background: var(--jp-layout-color0, #fff); }
table.mlnb-cmp-table th { height: 30px; border-bottom: 2px solid #999; }
table.mlnb-cmp-table th.mlnb-cmp-sorted { color: #1565c0; }
table.mlnb-cmp-table td.mlnb-cmp-num { text-align: right; font-variant-numeric: tabular-nums; }
table.mlnb-cmp-table tr.mlnb-cmp-sel td { background: #fff8e1; }
table.mlnb-cmp-table .mlnb-cmp-pin { position: sticky; z-index: 1; }
.mlnb-cmp-badge { display: inline-block; padding: 1px 6px; border-radius: 8px; color: #fff;
  font-size: 11px; line-height: 16px; }
table.mlnb-cmp-diff { border-collapse: collapse; font-size: 12px; }
table.mlnb-cmp-diff th, table.mlnb-cmp-diff td { padding: 2px 8px; border-bottom: 1px solid #eee;
  text-align: left; vertical-align: top; }
table.mlnb-cmp-diff tr.mlnb-cmp-section th { background: #f0f0f0; }
table.mlnb-cmp-diff tr.mlnb-cmp-differs td.mlnb-cmp-key { font-weight: 600; }
table.mlnb-cmp-diff td.mlnb-cmp-best { background: #c8e6c9; font-weight: 600; }
table.mlnb-cmp-diff td.mlnb-cmp-delta { color: #555; font-size: 11px; }
.mlnb-cmp-note { color: #666; font-size: 12px; margin: 4px 0; }
.mlnb-cmp-error { color: #b00020; font-family: monospace; white-space: pre; font-size: 12px; }
.mlnb-cmp-notice { color: #8a5300; font-size: 12px; }
</style>"""
PIN_WIDTH_PX = 170


def render_table(
    rows: list[dict[str, Any]],
    columns: Sequence[str],
    *,
    pinned: Sequence[str] = (),
    selected: set[str] | frozenset[str] = frozenset(),
    sort: tuple[str, bool] | None = None,
) -> str:
    """Runs as an HTML table: pinned columns first (sticky when scrolling sideways), status
    and linearity badges, durations, times in UTC, numbers right-aligned; selected rows
    tinted; the sort column marked ▲/▼."""
    esc = escape_html
    pins = [c for c in pinned if c in columns]
    order = [*pins, *(c for c in columns if c not in pins and c != "run_id"), "run_id"]
    heads = []
    for j, col in enumerate(order):
        cls, style = [], ""
        if j < len(pins):
            cls.append("mlnb-cmp-pin")
            style = f" style='left:{j * PIN_WIDTH_PX}px;min-width:{PIN_WIDTH_PX}px'"
        arrow = ""
        if sort is not None and sort[0] == col:
            cls.append("mlnb-cmp-sorted")
            arrow = " ▼" if sort[1] else " ▲"
        heads.append(f"<th class='{' '.join(cls)}'{style}>{esc(col)}{arrow}</th>")
    body = []
    for r in rows:
        cells = []
        for j, col in enumerate(order):
            value = r.get(col)
            cls = ["mlnb-cmp-num"] if as_number(value) is not None and col != "name" else []
            style = ""
            if j < len(pins):
                cls.append("mlnb-cmp-pin")
                style = f" style='left:{j * PIN_WIDTH_PX}px;min-width:{PIN_WIDTH_PX}px'"
            text = cell_text(col, value)
            if col == "status" and value:
                inner = _badge(text, STATUS_COLORS.get(str(value), "#757575"))
            elif col == "linearity" and value:
                inner = _badge(text, LINEARITY_COLORS.get(str(value), "#757575"))
            elif col == "run_id":
                inner = f"<code title='{esc(str(value))}'>{esc(text)}</code>"
            else:
                inner = esc(text)
            title = f" title='{esc(str(value))}'" if col.startswith(("params.", "tags.")) else ""
            cells.append(f"<td class='{' '.join(cls)}'{style}{title}>{inner}</td>")
        sel = " class='mlnb-cmp-sel'" if r.get("run_id") in selected else ""
        body.append(f"<tr{sel} data-run='{esc(str(r.get('run_id')))}'>{''.join(cells)}</tr>")
    if not rows:
        body.append(f"<tr><td colspan='{len(order)}'>no runs match</td></tr>")
    return (
        f"<table class='mlnb-cmp-table'><thead><tr>{''.join(heads)}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _badge(text: str, color: str) -> str:
    return f"<span class='mlnb-cmp-badge' style='background:{color}'>{escape_html(text)}</span>"


def cell_text(col: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value) and col != "duration"):
        return "" if value is None else "nan"
    if col == "duration":
        return format_duration(value)
    if col in ("start_time", "end_time"):
        when = _dt.datetime.fromtimestamp(float(value), _dt.timezone.utc)
        return when.strftime("%Y-%m-%d %H:%M:%S")
    if col == "run_id":
        return str(value)[:8]
    return fmt_value(value)


def as_number(v: Any) -> float | None:
    """A finite number as float; None for anything else (missing, NaN, bool, text)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def best_index(values: Sequence[Any], lower: bool) -> int | None:
    """Index of the lowest (``lower``) or highest finite number; None if there is none."""
    best: int | None = None
    for i, v in enumerate(values):
        f = as_number(v)
        if f is None:
            continue
        b = as_number(values[best]) if best is not None else None
        if b is None or (f < b if lower else f > b):
            best = i
    return best


def fmt_value(x: Any) -> str:
    if x is None or x is MISSING:
        return "—"
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


__all__ = [
    "STYLE",
    "as_number",
    "best_index",
    "cell_text",
    "fmt_value",
    "png_data_uri",
    "render_table",
]
