"""Why did two runs differ? A pure comparison of two run records, with text and HTML views;
``diff`` (``mlnb.diff``) reads the two runs and compares them.

Only differences are kept unless ``all=True``. Later capture sections (data, environment,
git) add rows to the same structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlnb.conventions import MISSING
from mlnb.formatting import escape_html
from mlnb.records import RunRecord, check_verdicts, is_system_metric

if TYPE_CHECKING:
    from mlnb.tracking.fluent import StoreLike


@dataclass(frozen=True)
class Change:
    """One key that differs (or, with ``all``, that is compared): its value in each run."""

    key: str
    a: Any
    b: Any

    @property
    def same(self) -> bool:
        return _same(self.a, self.b)

    @property
    def delta(self) -> float | None:
        """b - a for two numbers, else None."""
        if _is_number(self.a) and _is_number(self.b):
            return float(self.b) - float(self.a)
        return None

    @property
    def relative(self) -> float | None:
        """(b - a) / |a| for two numbers with a != 0, else None."""
        d = self.delta
        if d is None or not self.a or not math.isfinite(float(self.a)):
            return None
        return d / abs(float(self.a))


@dataclass
class RunDiff:
    """The differences between run ``a`` and run ``b``, section by section."""

    a: RunRecord
    b: RunRecord
    sections: dict[str, list[Change]] = field(default_factory=dict)
    all: bool = False
    hidden_metrics: int = 0  # job/* and system/* keys left out (system_metrics=False)

    @property
    def identical(self) -> bool:
        return not any(not c.same for rows in self.sections.values() for c in rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: run ids and, per section, key → {a, b, delta}."""
        out: dict[str, Any] = {"a": self.a.run_id, "b": self.b.run_id}
        for name, rows in self.sections.items():
            out[name] = {
                c.key: {"a": _plain(c.a), "b": _plain(c.b), "delta": c.delta} for c in rows
            }
        return out

    def __str__(self) -> str:
        head = f"a = {self.a.name} ({self.a.run_id[:8]})   b = {self.b.name} ({self.b.run_id[:8]})"
        lines = [head]
        if self.identical and not self.all:
            lines.append("no differences (use --all to see every value)")
            lines.extend(f"({note})" for note in self.notes())
            return "\n".join(lines)
        for name, rows in self.sections.items():
            if not rows:
                continue
            lines.append("")
            lines.append(f"{name}:")
            width = max(len(c.key) for c in rows)
            for c in rows:
                mark = " " if c.same else "~"
                text = f"  {mark} {c.key.ljust(width)}  {_fmt(c.a)} → {_fmt(c.b)}"
                if c.delta is not None and not c.same:
                    text += f"  (Δ {c.delta:+.4g}"
                    text += f", {c.relative:+.1%})" if c.relative is not None else ")"
                lines.append(text)
        if self.notes():
            lines.append("")
        lines.extend(f"({note})" for note in self.notes())
        return "\n".join(lines)

    def notes(self) -> list[str]:
        """What the diff left out, and how to see it."""
        return [hidden_metrics_note(self.hidden_metrics, "compared")] if self.hidden_metrics else []

    def _repr_html_(self) -> str:
        parts = [
            "<div class='mlnb-diff'><table><thead><tr><th></th>"
            f"<th>a: {escape_html(self.a.name)}</th><th>b: {escape_html(self.b.name)}</th>"
            "<th>Δ</th></tr></thead><tbody>"
        ]
        for name, rows in self.sections.items():
            if not rows:
                continue
            parts.append(
                f"<tr><th colspan='4' style='text-align:left'>{escape_html(name)}</th></tr>"
            )
            for c in rows:
                delta = "" if c.delta is None or c.same else f"{c.delta:+.4g}"
                style = "" if c.same else " style='background:#fff3cd'"
                parts.append(
                    f"<tr{style}><td>{escape_html(c.key)}</td><td>{escape_html(_fmt(c.a))}</td>"
                    f"<td>{escape_html(_fmt(c.b))}</td><td>{delta}</td></tr>"
                )
        parts.append("</tbody></table>")
        parts += [f"<p>{escape_html(note)}</p>" for note in self.notes()]
        parts.append("</div>")
        return "".join(parts)

    def __repr__(self) -> str:
        return str(self)


def diff_runs(
    a: RunRecord, b: RunRecord, *, all: bool = False, system_metrics: bool = False
) -> RunDiff:
    """Compare two runs: params, metrics (latest values, with Δ), tags, data (hash, rows,
    schema), environment (Python, packages), git (commit, dirty) and run attributes.
    Metrics about the run's machinery (``job/*``, ``system/*``) are left out, and counted,
    unless ``system_metrics``."""
    result = RunDiff(a, b, all=all)
    view_a = run_sections(a, system_metrics=system_metrics)
    view_b = run_sections(b, system_metrics=system_metrics)
    for name in view_a:
        always = {"duration"} if name == "run" else None
        result.sections[name] = _compare(view_a[name], view_b[name], all, always_differs=always)
    if not system_metrics:
        result.hidden_metrics = len({k for k in (*a.metrics, *b.metrics) if is_system_metric(k)})
    return result


def diff(
    run_a: str,
    run_b: str,
    *,
    all: bool = False,
    system_metrics: bool = False,
    store: StoreLike | None = None,
) -> RunDiff:
    """What differs between two runs: params, metrics (with Δ), tags, status. Only the
    differences unless ``all``; ``job/*`` and ``system/*`` metrics only with
    ``system_metrics``; prints as text, renders as HTML in a notebook."""
    from mlnb.tracking.reading import get_run  # reading the runs; the diff itself is pure

    return diff_runs(
        get_run(run_a, store=store),
        get_run(run_b, store=store),
        all=all,
        system_metrics=system_metrics,
    )


def hidden_metrics_note(count: int, what: str) -> str:
    """The one sentence every comparison uses for the ``job/*`` and ``system/*``
    metrics it left out."""
    noun, it = ("metric", "it") if count == 1 else ("metrics", "them")
    return (
        f"{count} system {noun} (job/*, system/*) not {what}; --system-metrics "
        f"(system_metrics=True) shows {it}"
    )


def run_sections(rec: RunRecord, *, system_metrics: bool = False) -> dict[str, dict[str, Any]]:
    """A run flattened into the sections a diff compares, key → value: params, metrics
    (without ``job/*`` and ``system/*`` unless ``system_metrics``), tags, data,
    environment, git, checks (one verdict per family: gate, schema, drift, …), run. The
    compare widget diffs many runs with it."""
    return {
        "params": dict(rec.params),
        "metrics": {
            k: v for k, v in rec.metrics.items() if system_metrics or not is_system_metric(k)
        },
        "tags": dict(rec.tags),
        "data": _data_view(rec),
        "environment": _env_view(rec),
        "git": _git_view(rec),
        "checks": check_verdicts(rec.checks),
        "run": {"status": rec.status, "experiment": rec.experiment, "duration": rec.duration},
    }


def _data_view(rec: RunRecord) -> dict[str, Any]:
    """Datasets flattened to comparable keys: hash, rows, columns, and one key per column
    of the schema (so added, removed and retyped columns show up as such)."""
    out: dict[str, Any] = {}
    for d in rec.datasets:
        prefix = f"{d.role} {d.name}"
        out[f"{prefix}: hash"] = d.hash
        if d.rows is not None:
            out[f"{prefix}: rows"] = d.rows
        if d.columns is not None:
            out[f"{prefix}: columns"] = d.columns
        for col in d.schema or []:
            out[f"{prefix}: column {col.get('name')}"] = str(col.get("dtype"))
    return out


def _env_view(rec: RunRecord) -> dict[str, Any]:
    """The environment flattened: Python, platform, and one key per installed package."""
    env = rec.environment or {}
    out: dict[str, Any] = {}
    python = env.get("python") or {}
    if python:
        out["python"] = python.get("version")
    platform = (env.get("os") or {}).get("platform")
    if platform:
        out["platform"] = platform
    for name, info in sorted((env.get("packages") or {}).items()):
        out[f"package {name}"] = info.get("version") if isinstance(info, dict) else info
    return out


def _git_view(rec: RunRecord) -> dict[str, Any]:
    git = rec.git
    if git is None:
        return {}
    return {"commit": git["commit"], "branch": git["branch"], "dirty": git["dirty"],
            "remote": git["remote"]}  # fmt: skip


def _compare(
    a: dict[str, Any], b: dict[str, Any], all: bool, always_differs: set[str] | None = None
) -> list[Change]:
    rows = []
    for key in sorted(set(a) | set(b)):
        change = Change(key, a.get(key, MISSING), b.get(key, MISSING))
        if all or (not change.same and key not in (always_differs or set())):
            rows.append(change)
    return rows


def _same(x: Any, y: Any) -> bool:
    if _is_number(x) and _is_number(y) and math.isnan(float(x)) and math.isnan(float(y)):
        return True
    return type(x) is type(y) and x == y


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _plain(x: Any) -> Any:
    return None if x is MISSING else x


def _fmt(x: Any) -> str:
    if x is MISSING:
        return "—"
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)
