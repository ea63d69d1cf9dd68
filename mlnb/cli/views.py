"""How the ``mlnb`` commands print: runs tables (text, CSV, JSON, Markdown) fitted to the
terminal, one run as text (``mlnb show``), JSON with NaN and infinities as strings."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

import click

from mlnb.cli.common import indent
from mlnb.conventions import ERROR_TAG
from mlnb.formatting import escape_markdown
from mlnb.records import JobError, RunRecord, format_duration, iso

FORMATS = ("table", "csv", "json", "markdown")
DEFAULT_COLUMNS = ("run_id", "name", "status", "start_time", "duration")
KEPT_COLUMNS = ("run_id", "name", "experiment", "status")  # never left out to fit a terminal
TIMES = ("linearity", "start_time", "duration")  # left out after the params, before metrics
MAX_CELL = 30  # characters of a cell when the table is fitted to a terminal


def terminal_width() -> int | None:
    """``$COLUMNS`` when set, else the terminal's width; None when stdout is not a terminal
    (piped output is not fitted)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def fit_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int
) -> tuple[list[str], list[list[str]], list[str]]:
    """A runs table that fits ``width`` characters: cells as table text cut to
    ``MAX_CELL`` characters with '…'; then params and tags (rightmost first), linearity
    and the times, then metrics (rightmost first) are left out until the lines fit.
    ``KEPT_COLUMNS`` always stay.
    Returns the columns kept, their cells, and the columns left out (in table order)."""
    cells = [
        [_elide(str(_cell(v, c, "table"))) for v, c in zip(row, columns, strict=True)]
        for row in rows
    ]
    widths = {c: max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)}
    keyed = [c for c in columns if c.startswith(("params.", "tags."))]
    metrics = [c for c in columns if c.startswith("metrics.")]
    candidates = [*reversed(keyed), *(c for c in TIMES if c in widths), *reversed(metrics)]
    candidates += [c for c in reversed(columns) if c not in candidates and c not in KEPT_COLUMNS]

    def fits(chosen: list[str]) -> bool:
        return sum(widths[c] for c in chosen) + 2 * (len(chosen) - 1) <= width

    kept = list(columns)
    removed: list[str] = []
    for column in candidates:
        if fits(kept):
            break
        kept.remove(column)
        removed.append(column)
    for column in reversed(removed[:-1]):  # a narrow column may fit in what is left
        if fits([*kept, column]):
            kept = [c for c in columns if c in kept or c == column]
    index = [columns.index(c) for c in kept]
    dropped = [c for c in columns if c not in kept]
    return kept, [[r[i] for i in index] for r in cells], dropped


def _elide(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def select_columns(table: dict[str, list[Any]], spec: str | None, fmt: str) -> list[str]:
    all_columns = list(table)
    if not spec:
        if fmt in ("json", "csv"):
            return all_columns
        notebook = ["linearity"] if any(table["linearity"]) else []  # notebook runs only
        several = len(set(table["experiment"])) > 1
        dynamic = [c for c in all_columns if c.startswith(("params.", "metrics."))]
        base = list(DEFAULT_COLUMNS)
        if several:  # which experiment each run is in, right after its name
            base.insert(base.index("name") + 1, "experiment")
        return [*base, *notebook, *dynamic]
    chosen: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.endswith("*"):
            chosen.extend(c for c in all_columns if c.startswith(item[:-1]) and c not in chosen)
        elif item in all_columns:
            chosen.append(item)
        elif item.startswith(("params.", "metrics.", "tags.")):
            chosen.append(item)  # a key no listed run has: an empty column, not an error
        else:
            raise click.BadParameter(
                f"unknown column {item!r}; known: {', '.join(all_columns)}", param_hint="--columns"
            )
    return chosen


def _cell(value: Any, column: str, fmt: str) -> Any:
    if value is None:
        return "" if fmt != "json" else None
    if column in ("start_time", "end_time") and isinstance(value, float):
        return iso(value) if fmt != "table" else local_time(value)
    if column == "duration" and isinstance(value, float) and fmt in ("table", "markdown"):
        return format_duration(value)
    if column == "run_id" and fmt in ("table", "markdown"):
        return value[:8]
    if isinstance(value, float):
        if fmt == "json":
            return _json_number(value)
        if fmt in ("table", "markdown"):
            return f"{value:.6g}"
        return repr(value)
    if isinstance(value, (dict, list)) and fmt != "json":
        return json.dumps(value, sort_keys=True)
    return value


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """Rows as a text table, CSV, JSON (NaN/±inf as strings) or Markdown (every cell and
    header escaped, so names, params and tags show as text)."""
    cells = [[_cell(v, c, fmt) for v, c in zip(row, columns, strict=True)] for row in rows]
    if fmt == "json":
        return json.dumps([dict(zip(columns, r, strict=True)) for r in cells], indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(cells)
        return buf.getvalue()
    text = [[str(c) for c in r] for r in cells]
    if fmt == "markdown":
        head = [escape_markdown(c) for c in columns]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(escape_markdown(t) for t in r) + " |" for r in text]
        return "\n".join(lines) + "\n"
    if not rows:
        return "(no runs)\n"
    widths = [max(len(c), *(len(r[i]) for r in text)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(t.ljust(w) for t, w in zip(r, widths, strict=True)).rstrip() for r in text]
    return "\n".join(lines) + "\n"


def _json_number(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def json_default(value: Any) -> Any:
    return str(value)


def json_clean(value: Any) -> Any:
    if isinstance(value, float):
        return _json_number(value)
    if isinstance(value, dict):
        return {k: json_clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_clean(v) for v in value]
    return value


def local_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def format_run(rec: RunRecord) -> str:
    """A run as readable text (what ``mlnb show`` prints)."""
    lines = [
        f"run {rec.run_id}",
        f"  name        {rec.name}",
        f"  experiment  {rec.experiment}",
        f"  status      {rec.status}{'  (deleted)' if rec.deleted else ''}",
        f"  started     {local_time(rec.start_time)}",
    ]
    if rec.duration is not None:
        lines.append(f"  duration    {format_duration(rec.duration)}")
    if rec.parent_run_id:
        lines.append(f"  parent      {rec.parent_run_id}")
    lines.append(f"  source      {rec.source or '(interactive)'}")
    if rec.linearity:
        reasons = "; ".join((rec.linearity_detail or {}).get("reasons") or [])
        lines.append(f"  linearity   {rec.linearity}" + (f" ({reasons})" if reasons else ""))
    lines.append(f"  host        {rec.host}  pid {rec.pid}  user {rec.user}")
    error = JobError.from_tags(rec.tags) if rec.status != "finished" else None
    if error is not None:
        lines += ["error:", indent(str(error), "  ")]
    tags = rec.tags
    if error is not None:  # shown above, not again as tags (the traceback has many lines)
        tags = {k: v for k, v in tags.items() if not k.startswith(f"{ERROR_TAG}.")}
    for title, mapping in (("params", rec.params), ("metrics", rec.metrics), ("tags", tags)):
        if not mapping:
            continue
        lines.append(f"{title}:")
        width = max(len(k) for k in mapping)
        for key, value in mapping.items():
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            if title == "metrics":
                shown += f"  (step {rec.metric_steps.get(key, 0)})"
            lines.append(f"  {key.ljust(width)}  {shown}")
    lines.extend(_provenance_lines(rec))
    if rec.checks:
        lines.append("checks:")
        for chk in rec.checks:
            mark = "PASS" if chk.passed else "FAIL"
            value = "" if chk.value is None else f"  value {chk.value:.6g}"
            base = ""
            if chk.baseline_run_id:
                base = f"  vs {chk.baseline_run_id[:8]}"
            lines.append(f"  {local_time(chk.created_at)}  {chk.kind:<5} {mark}  {chk.name}"
                         f"{value}{base}")  # fmt: skip
            if chk.message and not chk.passed:
                lines.append(f"      {chk.message}")
    if rec.artifacts:
        lines.append("artifacts:")
        for art in rec.artifacts:
            lines.append(f"  {art.path}  {art.size} bytes  {art.kind}  {art.hash[:12]}")
    return "\n".join(lines)


def _provenance_lines(rec: RunRecord) -> list[str]:
    lines = []
    if rec.environment is not None:
        env = rec.environment
        python = env.get("python") or {}
        platform = (env.get("os") or {}).get("platform", "?")
        packages = len(env.get("packages") or {})
        lines.append("environment:")
        lines.append(
            f"  python {python.get('version', '?')} ({python.get('implementation', '?')}) on "
            f"{platform}; {packages} packages  [{(rec.environment_hash or '')[:12]}]"
        )
    if rec.git is not None:
        git = rec.git
        commit = (git.get("commit") or "no commits yet")[:12]
        state = "dirty" if git.get("dirty") else "clean"
        extra = ""
        if git.get("diff_bytes"):
            cut = ", truncated" if git.get("diff_truncated") else ""
            extra = f"; diff {git['diff_bytes']} bytes{cut} (artifact mlnb/git.diff)"
        if git.get("untracked_count"):
            extra += f"; {git['untracked_count']} untracked"
        lines.append("git:")
        lines.append(f"  {commit} on {git.get('branch') or '(detached)'}, {state}{extra}")
        if git.get("remote"):
            lines.append(f"  remote {git['remote']}")
    if rec.datasets:
        lines.append("data:")
        width = max(len(d.name) for d in rec.datasets)
        for d in rec.datasets:
            shape = ""
            if d.rows is not None:
                shape = f"{d.rows} rows" + (f" x {d.columns} cols" if d.columns is not None else "")
            elif d.size_bytes is not None:
                shape = f"{d.size_bytes} bytes"
            sampled = " (sampled)" if d.sampled else ""
            lines.append(
                f"  {d.role:<6} {d.name.ljust(width)}  {d.kind:<9} {shape}{sampled}  {d.hash}"
            )
    return lines
