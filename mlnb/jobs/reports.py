"""Run reports for people and for CI: Markdown, self-contained HTML, or JSON. See docs/ci.md.

A report covers one or more runs, each alone or against a baseline run: params that
changed, metrics with Δ and %Δ, data and environment changes (from :mod:`mlnb.comparison.diff`),
the checks and gates recorded on the run, metric plots (matplotlib, Agg) and the executed
notebooks. :func:`build_report` gathers plain data (the JSON shape); the ``render_*``
functions turn it into text; :func:`report` does both and writes the files.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mlnb.checks.gates import find_baseline
from mlnb.comparison.diff import diff_runs, hidden_metrics_note
from mlnb.conventions import MISSING
from mlnb.errors import InvalidInputError
from mlnb.formatting import escape_html, escape_markdown, escape_mathtext
from mlnb.records import JobError, RunRecord, is_system_metric, iso, latest_checks
from mlnb.store import Store

if TYPE_CHECKING:
    from mlnb.tracking.fluent import StoreLike

__all__ = ["FORMATS", "build_report", "render_html", "render_markdown", "report"]

FORMATS = ("md", "html", "json")
REPORT_VERSION = 1
MAX_PLOTS = 24
ENV_STEP_SUMMARY = "GITHUB_STEP_SUMMARY"


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def _run_summary(rec: RunRecord) -> dict[str, Any]:
    git = rec.git
    # why a failed job failed, as its tags say: cell 3 `fit(X)`: ValueError: ..., and where
    error = JobError.from_tags(rec.tags) if rec.status != "finished" else None
    return {
        "run_id": rec.run_id,
        "name": rec.name,
        "experiment": rec.experiment,
        "status": rec.status,
        "start_time": iso(rec.start_time),
        "duration": rec.duration,
        "git_commit": git["commit"] if git else None,
        "git_dirty": git["dirty"] if git else None,
        "source": rec.source,
        "error": error.headline() if error else None,
        "error_traceback": error.traceback or None if error else None,
    }


def _entry(
    store: Store, rec: RunRecord, base: RunRecord | None, system_metrics: bool
) -> tuple[dict[str, Any], list[str]]:
    """A run's part of the report, and its notes (what was left out)."""
    metrics = []
    keys = sorted(set(rec.metrics) | set(base.metrics if base else {}))
    hidden = [] if system_metrics else [k for k in keys if is_system_metric(k)]
    notes = [hidden_metrics_note(len(hidden), "shown")] if hidden else []
    for key in (k for k in keys if k not in hidden):
        value = rec.metrics.get(key)
        bval = base.metrics.get(key) if base else None
        delta = rel = None
        if value is not None and bval is not None:
            delta = value - bval
            if bval and math.isfinite(bval) and math.isfinite(delta):
                rel = delta / abs(bval)
        metrics.append(
            {
                "key": key,
                "value": value,
                "step": rec.metric_steps.get(key),
                "baseline": bval,
                "delta": delta,
                "relative_delta": rel,
            }
        )
    sections: dict[str, list[dict[str, Any]]] = {}
    if base is not None:
        diff = diff_runs(base, rec)
        for name in ("params", "data", "environment", "git"):
            sections[name] = [
                {"key": c.key, "value": _plain(c.b), "baseline": _plain(c.a)}
                for c in diff.sections.get(name, [])
            ]
    else:
        sections["params"] = [
            {"key": k, "value": v, "baseline": None} for k, v in sorted(rec.params.items())
        ]
        sections["data"] = [
            {"key": f"{d.role} {d.name}", "value": _data_text(d), "baseline": None}
            for d in rec.datasets
        ]
        sections["environment"] = []
        sections["git"] = []
    notebooks = [
        {
            "path": a.path,
            "role": _notebook_role(a.path),
            "file": str(store.artifact_file(a.hash).absolute()),
        }
        for a in rec.artifacts
        if a.kind == "notebook" or a.path.endswith(".ipynb")
    ]
    entry = {
        "run": _run_summary(rec),
        "baseline": _run_summary(base) if base is not None else None,
        "metrics": metrics,
        **sections,
        "checks": [c.to_dict() for c in latest_checks(rec.checks)],
        "notebooks": notebooks,
        "plots": {},
    }
    return entry, notes


def _notebook_role(path: str) -> str:
    """``executed`` (a job's output, ``job/``), ``input`` (the notebook as run,
    ``notebook/``), else ``notebook``."""
    if path.startswith("job/"):
        return "executed"
    if path.startswith("notebook/"):
        return "input"
    return "notebook"


def _plain(x: Any) -> Any:
    return None if x is MISSING else x


def _data_text(d: Any) -> str:
    shape = f", {d.rows} rows" if d.rows is not None else ""
    shape += f" x {d.columns} cols" if d.columns is not None else ""
    return f"{d.hash}{shape}"


def build_report(
    store: Store,
    runs: Sequence[str] = (),
    *,
    vs: str | None = None,
    system_metrics: bool = False,
) -> dict[str, Any]:
    """The report as plain data (its JSON shape, without plots): one entry per run, each
    against its baseline when ``vs`` is given (a run, or ``latest``: the newest other
    finished run of the same experiment). Default: the newest run of the store. The
    ``job/*`` and ``system/*`` metrics are left out (a note says how many) unless
    ``system_metrics``."""
    if vs == "best":
        raise InvalidInputError(
            "report --vs best needs a metric to rank by; give a run or 'latest' (the gate "
            "names each metric's best run in its checks)"
        )
    if not runs:
        newest = store.search_runs(max_results=1)["run_id"]
        if not newest:
            raise InvalidInputError(f"no runs in {store.location} to report on")
        runs = newest
    records = [store.get_run(r) for r in runs]  # resolve everything before writing anything
    entries = []
    for rec in records:
        base: RunRecord | None = None
        notes: list[str] = []
        if vs is not None:
            base, notes = find_baseline(store, rec, vs)
        entry, left_out = _entry(store, rec, base, system_metrics)
        entries.append({**entry, "notes": notes + left_out})
    return {
        "mlnb_report": REPORT_VERSION,
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "store": store.location,
        "vs": vs,
        "runs": entries,
    }


# -- plots ----------------------------------------------------------------------------------


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("._") or "metric"


def _short(name: str, width: int = 24) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _plot(store: Store, key: str, run: dict[str, Any], base: dict[str, Any] | None) -> bytes | None:
    """One metric's series (and the baseline's) as PNG bytes; None with fewer than two
    points in every series (a single number is in the table already). Series are read
    down-sampled in SQL (``Store.downsampled_history``), so a run of millions of steps
    costs what one of thousands does."""
    series = [(_short(run["name"]), store.downsampled_history(run["run_id"], key).points)]
    if base is not None:
        points = store.downsampled_history(base["run_id"], key).points
        series.append((f"baseline {_short(base['name'])}", points))
    if all(len(points) < 2 for _, points in series):
        return None
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.5, 3.2), dpi=100)
    ax = fig.subplots()
    for (label, points), style in zip(series, ("-", "--"), strict=False):
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], style, marker=".",
                    label=escape_mathtext(label))  # fmt: skip
    ax.set_title(escape_mathtext(key))
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    # fixed margins: tight_layout and legend loc="best" cost a third of each plot's time
    fig.subplots_adjust(left=0.1, right=0.72, top=0.9, bottom=0.16)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def make_plots(store: Store, data: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes per file name (``<metric>.png``, prefixed by the run's id when the report
    has several runs); also fills each entry's ``plots`` with ``{metric: file name}``."""
    files: dict[str, bytes] = {}
    several = len(data["runs"]) > 1
    for entry in data["runs"]:
        run, base = entry["run"], entry["baseline"]
        for m in entry["metrics"][:MAX_PLOTS]:
            if m["value"] is None:
                continue
            png = _plot(store, m["key"], run, base)
            if png is None:
                continue
            name = (f"{run['run_id'][:8]}-" if several else "") + _safe_name(m["key"]) + ".png"
            files[name] = png
            entry["plots"][m["key"]] = name
    return files


# -- rendering -----------------------------------------------------------------------------


def _num(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def _delta(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:+.4g}"


def _pct(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:+.2%}"


def _check_row(c: dict[str, Any]) -> list[str]:
    threshold = "" if c["threshold"] is None else f"{c['comparator'] or ''} {_num(c['threshold'])}"
    base = _num(c["baseline_value"])
    if c["baseline_run_id"]:
        base += f" ({c['baseline_run_id'][:8]})"
    return [
        c["kind"],
        c["name"],
        _num(c["value"]),
        threshold.strip(),
        base,
        "PASS" if c["passed"] else "FAIL",
        c["message"] or "",
    ]


def _tables(entry: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Each section as (title, header, rows) for both renderers."""
    has_base = entry["baseline"] is not None
    out: list[tuple[str, list[str], list[list[str]]]] = []
    if entry["checks"]:
        out.append(
            (
                "Checks and gates",
                ["kind", "check", "value", "threshold", "baseline", "result", "why"],
                [_check_row(c) for c in entry["checks"]],
            )
        )
    if has_base:
        out.append(
            (
                "Metrics",
                ["metric", "value", "baseline", "Δ", "%Δ"],
                [
                    [
                        m["key"],
                        _num(m["value"]),
                        _num(m["baseline"]),
                        _delta(m["delta"]),
                        _pct(m["relative_delta"]),
                    ]
                    for m in entry["metrics"]
                ],
            )
        )
    else:
        out.append(
            (
                "Metrics",
                ["metric", "value", "step"],
                [[m["key"], _num(m["value"]), _num(m["step"])] for m in entry["metrics"]],
            )
        )
    titles = {
        "params": "Params changed" if has_base else "Params",
        "data": "Data changed" if has_base else "Data",
        "environment": "Environment changed",
        "git": "Git changed",
    }
    for name, title in titles.items():
        rows = entry.get(name) or []
        if not rows and name != "params":
            continue
        header = ["key", "value", "baseline"] if has_base else ["key", "value"]
        cells = [
            [r["key"], _num(r["value"]), *([_num(r["baseline"])] if has_base else [])] for r in rows
        ]
        out.append((title, header, cells or [["(no change)", "", *([""] if has_base else [])]]))
    return out


def _title(entry: dict[str, Any]) -> tuple[str, str]:
    run, base = entry["run"], entry["baseline"]
    title = f"{run['name']} ({run['run_id'][:8]})"
    if base is not None:
        title += f" vs {base['name']} ({base['run_id'][:8]})"
    status = f"status {run['status']}"
    if run.get("error"):
        status += f" ({run['error']})"
    facts = [f"experiment {run['experiment']}", status]
    if run["duration"] is not None:
        facts.append(f"{run['duration']:.1f} s")
    if run["git_commit"]:
        facts.append(f"git {run['git_commit'][:12]}" + (" (dirty)" if run["git_dirty"] else ""))
    return title, " · ".join(facts)


def _verdict(entry: dict[str, Any]) -> str | None:
    gates = [c for c in entry["checks"] if c["kind"] in ("gate", "check")]
    if not gates:
        return None
    failed = sum(not c["passed"] for c in gates)
    return f"FAIL: {failed} of {len(gates)} checks failed" if failed else "PASS: every check passed"


def render_markdown(data: dict[str, Any], plots_dir: str | None = "report_files") -> str:
    """The report as GitHub-flavoured Markdown; plots are linked from ``plots_dir``
    (None: listed by name only, as in a CI job summary, where local images cannot show).
    Every text that comes from a run (names, params, keys, messages, paths) is escaped with
    :func:`~mlnb.formatting.escape_markdown`; links are URL-quoted."""
    md = escape_markdown
    lines = ["# mlnb report", ""]
    for entry in data["runs"]:
        title, facts = _title(entry)
        lines += [f"## {md(title)}", "", md(facts), ""]
        traceback = entry["run"]["error_traceback"]
        if traceback:  # a fence longer than any run of backticks in it: it cannot close early
            fence = "`" * max([3, *(len(run) + 1 for run in re.findall("`+", traceback))])
            lines += [f"{fence}text", traceback, fence, ""]
        lines += [f"> {md(note)}\n" for note in entry["notes"]]
        verdict = _verdict(entry)
        if verdict:
            lines += [f"**{verdict}**", ""]
        for section, header, rows in _tables(entry):
            lines += [f"### {section}", ""]
            lines.append("| " + " | ".join(md(h) for h in header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
            lines.append("")
        if entry["plots"]:
            lines += ["### Plots", ""]
            for key, name in entry["plots"].items():
                if plots_dir is None:
                    lines.append(f"- {md(key)}: `{name}`")  # name: [A-Za-z0-9_.-]
                else:
                    lines.append(f"![{md(key)}]({quote(f'{plots_dir}/{name}')})")
            lines.append("")
        if entry["notebooks"]:
            lines += ["### Notebooks", ""]
            lines += [
                f"- [{md(n['path'])}]({quote(Path(n['file']).as_posix())}) ({n['role']})"
                for n in entry["notebooks"]
            ]
            lines.append("")
    lines.append(f"_generated {data['generated_at']} by mlnb from {md(data['store'])}_")
    return "\n".join(lines) + "\n"


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}"
    "th{background:#f4f4f4}.PASS{color:#1a7f37;font-weight:bold}"
    ".FAIL{color:#cf222e;font-weight:bold}img{max-width:100%;margin:.5em 1em .5em 0}"
    "code{background:#f4f4f4;padding:0 .2em}"
)


def render_html(data: dict[str, Any], plots: dict[str, bytes]) -> str:
    """The report as one self-contained HTML page: inline CSS, plots embedded as base64
    PNG, no external reference of any kind (it opens the same offline or as a CI
    artifact)."""
    esc = escape_html
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>mlnb report</title>"
        f"<style>{_CSS}</style></head><body><h1>mlnb report</h1>"
    ]
    for entry in data["runs"]:
        title, facts = _title(entry)
        parts.append(f"<h2>{esc(title)}</h2><p>{esc(facts)}</p>")
        if entry["run"]["error_traceback"]:
            parts.append(f"<pre>{esc(entry['run']['error_traceback'])}</pre>")
        parts += [f"<p><em>{esc(note)}</em></p>" for note in entry["notes"]]
        verdict = _verdict(entry)
        if verdict:
            parts.append(f"<p class='{verdict[:4]}'>{esc(verdict)}</p>")
        for section, header, rows in _tables(entry):
            parts.append(f"<h3>{esc(section)}</h3><table><thead><tr>")
            parts += [f"<th>{esc(h)}</th>" for h in header]
            parts.append("</tr></thead><tbody>")
            for row in rows:
                cells = "".join(
                    f"<td class='{c}'>{c}</td>" if c in ("PASS", "FAIL") else f"<td>{esc(c)}</td>"
                    for c in row
                )
                parts.append(f"<tr>{cells}</tr>")
            parts.append("</tbody></table>")
        if entry["plots"]:
            parts.append("<h3>Plots</h3><div>")
            for key, name in entry["plots"].items():
                b64 = base64.b64encode(plots[name]).decode("ascii")
                parts.append(f"<img alt='{esc(key)}' src='data:image/png;base64,{b64}'>")
            parts.append("</div>")
        if entry["notebooks"]:
            parts.append("<h3>Notebooks</h3><ul>")
            parts += [
                f"<li>{esc(n['path'])} ({esc(n['role'])}): <code>{esc(n['file'])}</code></li>"
                for n in entry["notebooks"]
            ]
            parts.append("</ul>")
    parts.append(
        f"<p><small>generated {esc(data['generated_at'])} by mlnb from "
        f"{esc(data['store'])}</small></p></body></html>"
    )
    return "\n".join(parts) + "\n"


def report(
    runs: Sequence[str] = (),
    *,
    vs: str | None = None,
    format: str = "md",
    output: str | os.PathLike[str] | None = None,
    plots: bool = True,
    system_metrics: bool = False,
    store: StoreLike | None = None,
) -> str:
    """Write a report of ``runs`` (default: the newest run), each against ``vs`` when
    given, as ``format`` ``md``, ``html`` or ``json``; returns the text, and writes it to
    ``output`` when given. Plots go to ``<output stem>_files/`` (``report_files/`` without
    ``output``) for md and json, and into the page for html. With ``$GITHUB_STEP_SUMMARY``
    set, a Markdown report is also appended to that file (plots listed by name). The
    ``job/*`` and ``system/*`` metrics (a job's cell timings, the sampled machine) are left
    out of the tables and plots unless ``system_metrics``."""
    from mlnb.tracking import fluent as tracking

    if format not in FORMATS:
        raise InvalidInputError(f"format must be one of {', '.join(FORMATS)}: {format!r}")
    st = tracking.resolve_store(store, create=False)
    tracking.flush(st)
    data = build_report(st, list(runs), vs=vs, system_metrics=system_metrics)
    pngs = make_plots(st, data) if plots else {}
    out_path = Path(output) if output is not None else None
    folder = Path("report_files")
    if out_path is not None:
        folder = out_path.with_name(out_path.stem + "_files")
    if format == "html":
        text = render_html(data, pngs)
    elif format == "json":
        for entry in data["runs"]:
            entry["plots"] = {k: (folder / n).as_posix() for k, n in entry["plots"].items()}
        text = json.dumps(_json_safe(data), indent=2) + "\n"
    else:
        text = render_markdown(data, folder.name if out_path is not None else folder.as_posix())
    if pngs and format != "html":
        folder.mkdir(parents=True, exist_ok=True)
        for name, png in pngs.items():
            (folder / name).write_bytes(png)
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text)
    summary = os.environ.get(ENV_STEP_SUMMARY)
    if summary and format == "md":
        with open(summary, "a") as fh:
            fh.write(render_markdown(data, None))
    return text
