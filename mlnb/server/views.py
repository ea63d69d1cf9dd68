"""What the API answers, as plain dicts built from mlnb's records (pure functions), and the
JSON text of an answer: always valid JSON, with NaN and ±inf as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` (the convention of MLflow's REST API)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mlnb.comparison.multidiff import MultiDiff
from mlnb.records import RunRecord

JOB_OUTPUT_PREFIX = "job/"  # the executed notebook of a job is stored as job/<name>.ipynb


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth) replaced by its string."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Mapping):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """The JSON text of an answer; values JSON has no type for become their ``str``."""
    return json.dumps(finite(value), allow_nan=False, default=str, separators=(",", ":"))


def shown_notebook(path: str | None, roots: Sequence[Path]) -> str | None:
    """A run's notebook path as the lab knows it: relative to the server's root (one of
    ``roots``: resolved, and as given) when it is inside it, else as stored."""
    if not path:
        return path
    absolute = Path(os.path.abspath(path))
    for root in roots:
        if absolute.is_relative_to(root):
            return absolute.relative_to(root).as_posix()
    return path


def artifact_url(run_id: str, name: str) -> str:
    """The API path (relative to ``mlnb/api/``) of one artifact's bytes."""
    return f"artifacts/{run_id}/{quote(name, safe='/')}"


def run_detail(rec: RunRecord, metrics: Mapping[str, Any], roots: Sequence[Path]) -> dict[str, Any]:
    """Everything the details view shows of one run (``GET runs/{id}``)."""
    detail = rec.linearity_detail or {}
    output = next(
        (
            a.path
            for a in rec.artifacts
            if a.path.startswith(JOB_OUTPUT_PREFIX) and a.path.endswith(".ipynb")
        ),
        None,
    )
    return {
        "run": {
            "run_id": rec.run_id,
            "name": rec.name,
            "experiment": rec.experiment,
            "status": rec.status,
            "start_time": rec.start_time,
            "end_time": rec.end_time,
            "parent_run_id": rec.parent_run_id,
            "notebook": shown_notebook(rec.notebook, roots),
            "linearity": rec.linearity,
            "user": rec.user,
            "host": rec.host,
            "source": rec.source,
            "duration": rec.duration,
            "deleted": rec.deleted,
        },
        "params": {k: _param_text(v) for k, v in rec.params.items()},
        "metrics": dict(metrics),
        "tags": dict(rec.tags),
        "datasets": [{**d.to_dict(), "profile": d.profile} for d in rec.datasets],
        "environment": rec.environment,
        "git": rec.git,
        "checks": [{**c.to_dict(), "created_at": c.created_at} for c in rec.checks],
        "artifacts": [
            {
                "name": a.path,
                "size": a.size,
                "digest": a.hash,
                "kind": a.kind,
                "created_at": a.created_at,
                "url": artifact_url(rec.run_id, a.path),
            }
            for a in rec.artifacts
        ],
        "lineage": {
            "verdict": rec.linearity,
            "out_of_order_cells": list(detail.get("cells") or []),
            "detail": detail or None,
        },
        "output_notebook": output,
    }


def _param_text(value: Any) -> str:
    """A param as text, as the runs table shows it (``None`` → ``"None"``, lists as JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(finite(value), allow_nan=False, default=str)
    return str(value)


def compare_view(diff: MultiDiff) -> dict[str, Any]:
    """``diff_many``'s table as ``GET compare`` answers it: one list of rows per section,
    each row's values keyed by run id, Δ against the baseline for numbers."""
    ids = [r.run_id for r in diff.runs]
    sections: dict[str, list[dict[str, Any]]] = {}
    for row in diff.rows:
        item: dict[str, Any] = {
            "key": row.key,
            "values": dict(zip(ids, row.values, strict=True)),
            "same": row.same,
        }
        if row.section == "metrics":
            item["best"] = None if row.best is None else ids[row.best]
        if diff.baseline is not None:
            deltas = {ids[i]: diff.delta(row, i) for i in range(len(ids)) if i != diff.baseline}
            item["delta"] = {k: v for k, v in deltas.items() if v is not None}
        sections.setdefault(row.section, []).append(item)
    return {
        "runs": [{"run_id": r.run_id, "name": r.name} for r in diff.runs],
        "baseline": None if diff.baseline is None else ids[diff.baseline],
        "sections": sections,
        "varying_params": [r.key for r in diff.rows if r.section == "params" and not r.same],
        "hidden": diff.hidden,
    }


def run_rows(rows: Sequence[dict[str, Any]], roots: Sequence[Path]) -> list[dict[str, Any]]:
    """``mlnb.store.pages.page_rows`` rows with notebook paths as the lab knows them."""
    return [{**row, "notebook": shown_notebook(row["notebook"], roots)} for row in rows]
