"""Several runs side by side: the params, metrics, tags, data fingerprints, environment
packages, git state and run attributes of each, only what differs unless ``all``, the best
value of each metric marked and Δ against a baseline run. Pure (records in, a table out),
with text and HTML views; the compare widget shows it, ``rundiff`` does the same for two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mlnb.comparison.diff import run_sections
from mlnb.comparison.html import STYLE, as_number, best_index, fmt_value
from mlnb.conventions import MISSING, lower_is_better
from mlnb.errors import InvalidInputError
from mlnb.formatting import escape_html
from mlnb.records import RunRecord

SECTIONS = ("params", "metrics", "tags", "data", "environment", "git", "checks", "run")


@dataclass
class DiffRow:
    """One key across the runs: its values (``None`` where a run lacks it), whether they
    are all the same, and the index of the best value (metrics only)."""

    section: str
    key: str
    values: list[Any]
    same: bool
    best: int | None = None


@dataclass
class MultiDiff:
    """Runs side by side, section by section (``diff_many``)."""

    runs: list[RunRecord]
    rows: list[DiffRow] = field(default_factory=list)
    baseline: int | None = None
    all: bool = False
    hidden: int = 0  # identical rows left out

    def delta(self, row: DiffRow, i: int) -> float | None:
        """Value of run ``i`` minus the baseline's, for two numbers; else None."""
        if self.baseline is None or i == self.baseline:
            return None
        a, b = as_number(row.values[self.baseline]), as_number(row.values[i])
        return None if a is None or b is None else b - a

    def __str__(self) -> str:
        if not self.runs:
            return "no runs selected"
        names = [r.name for r in self.runs]
        lines = [
            "runs: "
            + ", ".join(f"{n} ({r.run_id[:8]})" for n, r in zip(names, self.runs, strict=True))
        ]
        if self.baseline is not None:
            lines.append(f"baseline: {names[self.baseline]}")
        if not self.rows:
            lines.append(
                "no differences" + (" (show all to see every value)" if self.hidden else "")
            )
        width = max([len(r.key) for r in self.rows] + [4])
        section = None
        for row in self.rows:
            if row.section != section:
                section = row.section
                lines.append(f"{section}:")
            cells = []
            for i, v in enumerate(row.values):
                text = fmt_value(v) + (" *" if row.best == i else "")
                d = self.delta(row, i)
                if d is not None:
                    text += f" (Δ {d:+.4g})"
                cells.append(text)
            lines.append(f"  {row.key.ljust(width)}  " + " | ".join(cells))
        if self.hidden and not self.all:
            lines.append(f"({self.hidden} identical values hidden)")
        return "\n".join(lines)

    def to_html(self) -> str:
        """A table: one column per run (and a Δ column per run with a baseline), best
        metric values highlighted, sections as header rows."""
        esc = escape_html
        if not self.runs:
            return "<p class='mlnb-cmp-note'>Select runs in the table to compare them.</p>"
        heads = ["<th>key</th>"]
        for i, r in enumerate(self.runs):
            tag = " (baseline)" if i == self.baseline else ""
            heads.append(f"<th>{esc(r.name)}<br><code>{esc(r.run_id[:8])}</code>{tag}</th>")
            if self.baseline is not None and i != self.baseline:
                heads.append("<th>Δ</th>")
        width = len(heads)
        body = []
        section = None
        for row in self.rows:
            if row.section != section:
                section = row.section
                body.append(
                    f"<tr class='mlnb-cmp-section'><th colspan='{width}'>{esc(section)}</th></tr>"
                )
            cells = [f"<td class='mlnb-cmp-key'>{esc(row.key)}</td>"]
            for i, v in enumerate(row.values):
                cls = " class='mlnb-cmp-best'" if row.best == i else ""
                cells.append(f"<td{cls}>{esc(fmt_value(v))}</td>")
                if self.baseline is not None and i != self.baseline:
                    d = self.delta(row, i)
                    cells.append(
                        "<td class='mlnb-cmp-delta'>"
                        + ("" if d is None or d == 0 else f"{d:+.4g}")
                        + "</td>"
                    )
            style = "" if row.same else " class='mlnb-cmp-differs'"
            body.append(f"<tr{style}>{''.join(cells)}</tr>")
        note = ""
        if not self.rows:
            note = "<p class='mlnb-cmp-note'>No differences between the selected runs.</p>"
        elif self.hidden and not self.all:
            note = (
                f"<p class='mlnb-cmp-note'>{self.hidden} identical values hidden "
                "(show all to see them).</p>"
            )
        return (
            f"<table class='mlnb-cmp-diff'><thead><tr>{''.join(heads)}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>{note}"
        )

    def _repr_html_(self) -> str:
        return STYLE + self.to_html()

    def __repr__(self) -> str:
        return str(self)


def diff_many(
    records: Sequence[RunRecord],
    *,
    baseline: int | None = None,
    all: bool = False,
    system_metrics: bool = False,
) -> MultiDiff:
    """Params, metrics, tags, data fingerprints, environment packages, git and run
    attributes of several runs side by side. Only keys whose values differ unless
    ``all``; ``job/*`` and ``system/*`` metrics only with ``system_metrics``; for each
    metric the best value (lowest or highest, see ``conventions.lower_is_better``) is
    marked; ``baseline`` (an index) gives Δ values."""
    if baseline is not None and not 0 <= baseline < len(records):
        raise InvalidInputError(f"compare: baseline index {baseline} is out of range")
    result = MultiDiff(list(records), baseline=baseline, all=all)
    views = [run_sections(r, system_metrics=system_metrics) for r in records]
    for section in SECTIONS:
        keys = sorted(set().union(*(v[section] for v in views))) if views else []
        for key in keys:
            values = [v[section].get(key, MISSING) for v in views]
            same = _all_same(values)
            if same and not all and len(records) > 1:
                result.hidden += 1
                continue
            if section == "run" and key == "duration" and not all:
                continue  # always differs; not what anyone is looking for
            best = best_index(values, lower_is_better(key)) if section == "metrics" else None
            shown = [None if v is MISSING else v for v in values]
            result.rows.append(DiffRow(section, key, shown, same, best))
    return result


def _all_same(values: Sequence[Any]) -> bool:
    first = values[0] if values else None
    for v in values[1:]:
        nan_pair = isinstance(v, float) and isinstance(first, float) and v != v and first != first
        if not nan_pair and (type(v) is not type(first) or v != first):
            return False
    return True


__all__ = ["DiffRow", "MultiDiff", "diff_many"]
