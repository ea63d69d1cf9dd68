"""``mlnb monitor NAME``: is the served model still seeing what it was trained on? See
docs/monitoring.md.

1. The window: the prediction log's newest served rows (``10000``: that many input rows)
   or its newest period (``1h``, ``30m``, ``2d``), of every version that answered.
2. The reference: the version ``NAME@ALIAS`` (default ``champion``) points at, its
   training run, and that run's stored profile of its input dataset (``train`` when there
   are several). Only the columns the service was sent are compared.
3. Input drift: :func:`mlnb.checks.drift.compare`, the statistics of ``mlnb data drift``
   against a stored profile (PSI on the reference's bins for numbers, Jensen–Shannon for
   categories). The row-count integrity check is left out: a window is not a dataset.
4. Prediction drift, when the training run recorded its predictions as a dataset named
   ``predictions`` (``mlnb.log_data(pd.DataFrame({"prediction": p}), "predictions")``).
5. Live metrics, when feedback exists for requests the reference version answered:
   accuracy for labels that are classes, RMSE and MAE for numbers, against the training
   run's metric of the same name (accuracy may drop by ``ACCURACY_DROP``, RMSE and MAE
   grow by ``ERROR_GROWTH`` of the training value).

The verdicts are ``checks`` rows (kind ``validation``) on the model's monitor run (one
per model, experiment ``monitoring``, tag ``mlnb.monitor``), one batch per call; the row
``monitor`` carries the input-drift verdict and its reason
(``drift: age psi=0.31 (served, window 10000)``): what ``mlnb retrain --when drift``
reads (:func:`latest_verdict`).
"""

from __future__ import annotations

import math
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mlnb.conventions import MONITOR_TAG
from mlnb.errors import InvalidInputError, MlnbError, NoServedDataError, RunNotFoundError
from mlnb.records import CheckRecord

if TYPE_CHECKING:
    from mlnb.checks.drift import DriftResult
    from mlnb.store import Store
    from mlnb.tracking.active import StoreLike

__all__ = ["MonitorResult", "MonitorVerdict", "latest_verdict", "monitor", "parse_window"]

DEFAULT_WINDOW = "10000"
ANY_COLUMN = 1e-12  # the drift share at which a window drifts: any drifted column
EXPERIMENT = "monitoring"
ACCURACY_DROP = 0.05  # live accuracy may be this much below the training run's
ERROR_GROWTH = 0.2  # live RMSE / MAE may be this share above the training run's
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(window: str | int) -> tuple[float | None, int | None]:
    """``(seconds, rows)``: ``"1h"`` → ``(3600, None)``, ``10000`` → ``(None, 10000)``."""
    text = str(window).strip().lower()
    if re.fullmatch(r"\d+", text) and int(text) > 0:
        return None, int(text)
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text)
    if found and float(found[1]) > 0:
        return float(found[1]) * UNITS[found[2]], None
    raise InvalidInputError(
        f"--window {window!r}: give a number of served rows (10000) or a period (30m, 1h, 2d)"
    )


@dataclass(frozen=True)
class LiveMetric:
    """A metric computed from feedback (``n`` labelled rows) and the training run's value."""

    name: str
    value: float
    n: int
    train_value: float | None
    passed: bool
    rule: str


@dataclass(frozen=True)
class MonitorResult:
    """What ``mlnb monitor`` found: the window, the reference, input drift, prediction
    drift and live metrics (each None or empty when there was nothing to compute), and
    what could not be computed (``notes``). Truthy when no input column drifted and no
    live metric degraded."""

    model: str
    alias: str
    version: int
    run_id: str
    reference: str
    window: str
    rows: int
    served: dict[int, int]  # version → served rows in the window
    inputs: DriftResult
    predictions: DriftResult | None = None
    live: tuple[LiveMetric, ...] = ()
    notes: tuple[str, ...] = ()
    batch: str = ""
    monitor_run_id: str | None = None
    created_at: float = field(default_factory=time.time)

    @property
    def drifted(self) -> list[str]:
        """The drifted input columns as ``age psi=0.31``."""
        return [f"{c.column} {c.method}={c.statistic:.2f}" for c in self.inputs.columns
                if c.drifted]  # fmt: skip

    @property
    def drift(self) -> bool:
        return bool(self.drifted)

    @property
    def reason(self) -> str:
        """``drift: age psi=0.31 (served, window 10000)``, or ``no drift (...)``."""
        where = f"(served, window {self.window})"
        if self.drift:
            return f"drift: {', '.join(self.drifted)} {where}"
        top = max(self.inputs.columns, key=lambda c: c.statistic if c.p_value is None else 0.0,
                  default=None)  # fmt: skip
        most = f", largest {top.column} {top.method}={top.statistic:.2f}" if top else ""
        return f"no drift{most} {where}"

    @property
    def passed(self) -> bool:
        return not self.drift and all(m.passed for m in self.live)

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "alias": self.alias, "version": self.version,
            "run_id": self.run_id, "reference": self.reference, "window": self.window,
            "rows": self.rows, "served": {str(k): v for k, v in self.served.items()},
            "passed": self.passed, "drift": self.drift, "reason": self.reason,
            "inputs": self.inputs.to_dict(),
            "predictions": None if self.predictions is None else self.predictions.to_dict(),
            "live": [m.__dict__ for m in self.live], "notes": list(self.notes),
            "batch": self.batch, "monitor_run_id": self.monitor_run_id,
        }  # fmt: skip

    def _head(self) -> list[str]:
        served = ", ".join(f"v{v}: {n:,}" for v, n in sorted(self.served.items()))
        return [
            f"monitor {self.model}@{self.alias} (v{self.version}, run {self.run_id[:8]}): "
            f"{self.rows:,} served rows, window {self.window} ({served})",
            self.reason,
        ]

    def _live_rows(self) -> list[list[str]]:
        return [[m.name, f"{m.value:.4g}", f"{m.n:,}",
                 "" if m.train_value is None else f"{m.train_value:.4g}", m.rule,
                 "ok" if m.passed else "DEGRADED"] for m in self.live]  # fmt: skip

    LIVE_HEADER = ("metric", "live", "labelled", "training", "passes when", "result")

    def __str__(self) -> str:
        lines = [*self._head(), "", str(self.inputs)]
        if self.predictions is not None:
            lines += ["", str(self.predictions)]
        if self.live:
            rows = [list(self.LIVE_HEADER), *self._live_rows()]
            widths = [max(len(r[i]) for r in rows) for i in range(len(self.LIVE_HEADER))]
            lines += ["", "live metrics (from feedback)"]
            lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                      for r in rows]  # fmt: skip
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        from mlnb.formatting import escape_markdown

        def row(cells: list[str]) -> str:
            return "| " + " | ".join(escape_markdown(c) for c in cells) + " |"

        head = self._head()
        out = [f"## Monitor of {escape_markdown(head[0].removeprefix('monitor '))}", "",
               f"**{escape_markdown(head[1])}**", "", self.inputs.to_markdown()]  # fmt: skip
        if self.predictions is not None:
            out += [self.predictions.to_markdown()]
        if self.live:
            out += ["### Live metrics (from feedback)", "", row(list(self.LIVE_HEADER)),
                    "|" + "---|" * len(self.LIVE_HEADER),
                    *(row(r) for r in self._live_rows()), ""]  # fmt: skip
        out += [f"- note: {escape_markdown(n)}" for n in self.notes]
        return "\n".join(out).rstrip() + "\n"

    def to_checks(self, batch: str) -> list[CheckRecord]:
        """The ``checks`` rows: the input drift's (``drift:COLUMN``, ``integrity:NAME``,
        ``drift``), the predictions' (``predictions:…``), ``live:METRIC`` and ``monitor``."""
        context = {"model": self.model, "alias": self.alias, "version": self.version,
                   "window": self.window, "rows": self.rows}  # fmt: skip
        out = [replace(c, details={**c.details, **context}) for c in self.inputs.to_checks(batch)]
        if self.predictions is not None:
            out += [replace(c, name=f"predictions:{c.name}", details={**c.details, **context})
                    for c in self.predictions.to_checks(batch)]  # fmt: skip
        out += [
            CheckRecord(
                kind="validation", name=f"live:{m.name}", passed=m.passed, value=m.value,
                baseline_run_id=self.run_id if m.train_value is not None else None,
                baseline_value=m.train_value, message=f"{m.name} {m.value:.4g} on {m.n:,} "
                f"labelled rows; passes when {m.rule}", details={**context, "n": m.n},
                batch=batch,
            )
            for m in self.live
        ]  # fmt: skip
        out.append(CheckRecord(
            kind="validation", name="monitor", passed=not self.drift, message=self.reason,
            details={**context, "drifted": self.drifted, "reference_run": self.run_id,
                     "served": {str(k): v for k, v in self.served.items()}},
            batch=batch,
        ))  # fmt: skip
        return out


@dataclass(frozen=True)
class MonitorVerdict:
    """The newest ``monitor`` check of a model: drift or not, and why."""

    model: str
    drift: bool
    reason: str
    version: int | None
    created_at: float


def monitor_run_id(model: str) -> str:
    """The id of ``model``'s monitor run: the same for a model name in every store, so a
    monitor finds its run without a search."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"mlnb-monitor:{model}").hex


def _monitor_run(st: Store, model: str) -> str:
    run_id = monitor_run_id(model)
    try:
        st.resolve_run_id(run_id)
    except RunNotFoundError:
        try:
            st.create_run(experiment=EXPERIMENT, name=f"monitor-{model}", status="finished",
                          tags={MONITOR_TAG: model}, run_id=run_id)  # fmt: skip
        except MlnbError:
            st.resolve_run_id(run_id)  # another monitor created it meanwhile
    return run_id


def latest_verdict(st: Store, model: str) -> MonitorVerdict | None:
    """The newest ``monitor`` verdict of ``model`` (None: never monitored)."""
    try:
        checks = st.get_checks(monitor_run_id(model), kind="validation")
    except RunNotFoundError:
        return None
    found = [c for c in checks if c.name == "monitor"]
    if not found:
        return None
    last = found[-1]
    number = last.details.get("version")
    version = int(number) if number is not None else None
    return MonitorVerdict(model, not last.passed, last.message or "", version, last.created_at)


def monitor(
    model: str,
    *,
    window: str | int = DEFAULT_WINDOW,
    alias: str = "champion",
    reference: str | None = None,
    thresholds: float | dict[str, float] | None = None,
    record: bool = True,
    store: StoreLike | None = None,
) -> MonitorResult:
    """Drift of ``model``'s served inputs in ``window`` against the training profile of
    ``model@alias``, prediction drift and live metrics; see the module docstring.
    ``reference``: the training dataset's name on that run (default ``train``, or the only
    one). ``thresholds``: per-column drift thresholds as in :func:`mlnb.drift`. The
    verdicts are stored on the model's monitor run unless ``record=False``."""
    from mlnb.registry import models as registry
    from mlnb.store.predictions import served_rows
    from mlnb.tracking.active import resolve_store

    registry.check_name(model)
    seconds, limit = parse_window(window)
    label = str(window)
    st = resolve_store(store, create=False)
    version = registry.resolve_version(st, registry.ModelRef(model, alias=alias))
    if not version.run_id:
        raise InvalidInputError(
            f"{model}@{alias} (v{version.version}) has no training run to compare with"
        )
    run = st.get_run(version.run_id)
    ref = _training_profile(run, reference, model, alias)
    since = None if seconds is None else time.time() - seconds
    served_log = served_rows(st.file, model, since=since, max_rows=limit)
    columns = served_log.columns
    if not served_log.rows:
        raise NoServedDataError(
            f"no served inputs of {model!r} in the window {label}; serve it with "
            "`mlnb serve` and a --log-rate above 0, or widen --window"
        )
    import pandas as pd

    from mlnb.checks.drift import compare
    from mlnb.checks.sources import Source

    frame = pd.DataFrame(served_log.rows, columns=columns)
    served_cols = [c for c in columns if c in _names(ref[1])]
    if not served_cols:
        raise InvalidInputError(
            f"the served columns ({', '.join(columns)}) are not in {ref[0]}'s profile"
        )
    reduced = _only(ref[1], served_cols)
    current = _as_reference_types(frame[served_cols], reduced)
    inputs = compare(Source(f"run {run.name}:{ref[0]}", stored=reduced),
                     Source(f"served {model} (window {label})", frame=current),
                     thresholds=thresholds, drift_share=ANY_COLUMN)  # fmt: skip
    inputs = replace(inputs, integrity=tuple(c for c in inputs.integrity if c.name != "rows"))
    notes: list[str] = []
    predictions = _prediction_drift(run, served_log.predictions, model, label, notes)
    live = _live_metrics(st, model, version.version, run.metrics, since, limit, notes)
    served: dict[int, int] = {}
    for number in served_log.versions:
        served[number] = served.get(number, 0) + 1
    result = MonitorResult(
        model=model, alias=alias, version=version.version, run_id=run.run_id,
        reference=f"run {run.name}:{ref[0]}", window=label, rows=len(frame), served=served,
        inputs=inputs, predictions=predictions, live=tuple(live), notes=tuple(notes),
    )  # fmt: skip
    if record:
        run_id = _monitor_run(st, model)
        batch = uuid.uuid4().hex
        st.log_checks(run_id, result.to_checks(batch))
        result = replace(result, batch=batch, monitor_run_id=run_id)
    return result


def _training_profile(
    run: Any, name: str | None, model: str, alias: str
) -> tuple[str, dict[str, Any]]:
    found = [d for d in run.datasets if d.role == "input" and d.profile is not None]
    names = [d.name for d in found]
    if name is None:
        chosen = [d for d in found if d.name == "train"] or (found if len(found) == 1 else [])
    else:
        chosen = [d for d in found if d.name == name]
    if not chosen:
        have = ", ".join(names) or "none"
        raise InvalidInputError(
            f"{model}@{alias}'s run {run.name} has no input dataset "
            f"{name or 'train'!r} with a profile (it has: {have}); log the training data "
            "with mlnb.log_data(df, 'train'), or name one with --reference NAME"
        )
    return chosen[0].name, chosen[0].profile


def _names(profile: dict[str, Any]) -> list[Any]:
    return [f["name"] for f in profile.get("schema", [])]


def _only(profile: dict[str, Any], columns: list[Any]) -> dict[str, Any]:
    """The profile reduced to ``columns`` (the served ones: a label is not sent)."""
    keep = set(columns)
    schema = [f for f in profile["schema"] if f["name"] in keep]
    stats = [s for s in profile["stats"] if s["name"] in keep]
    return {**profile, "schema": schema, "stats": stats, "columns": len(schema)}


def _as_reference_types(frame: Any, profile: dict[str, Any]) -> Any:
    """JSON does not keep ``3`` and ``3.0`` apart: a served column of whole numbers whose
    training column was an integer is read as that integer type, not as a dtype change."""
    from pandas.api import types as pt

    out = frame.copy()
    for entry in profile["schema"]:
        name, dtype = entry["name"], str(entry["dtype"])
        s = out[name]
        if dtype.startswith(("int", "uint")) and pt.is_float_dtype(s.dtype) and s.notna().all() \
                and (s % 1 == 0).all():  # fmt: skip
            out[name] = s.astype(dtype)
    return out


def _prediction_drift(
    run: Any, values: list[Any], model: str, label: str, notes: list[str]
) -> DriftResult | None:
    import pandas as pd

    from mlnb.checks.drift import compare
    from mlnb.checks.sources import Source

    found = [d for d in run.datasets if d.name == "predictions" and d.profile is not None]
    if not found:
        notes.append("prediction drift: the training run recorded no dataset 'predictions' "
                     "(mlnb.log_data(pd.DataFrame({'prediction': p}), 'predictions'))")  # fmt: skip
        return None
    profile = found[0].profile
    column = _names(profile)[0]
    if any(isinstance(v, (list, dict)) for v in values):
        notes.append("prediction drift: the predictions are not one value per row")
        return None
    cur = pd.DataFrame({column: values})
    result = compare(Source(f"run {run.name}:predictions", stored=_only(profile, [column])),
                     Source(f"served {model} predictions (window {label})", frame=cur))  # fmt: skip
    return replace(result, integrity=tuple(c for c in result.integrity if c.name != "rows"))


def _pairs(outputs: Any, label: Any) -> list[tuple[Any, Any]]:
    if isinstance(label, list):
        return list(zip(outputs, label, strict=False)) if len(label) == len(outputs) else []
    return [(outputs[0], label)] if len(outputs) == 1 else []


def _is_class(v: Any) -> bool:
    return isinstance(v, (bool, str, int)) or (isinstance(v, float) and v.is_integer())


def _live_metrics(
    st: Store, model: str, version: int, trained: dict[str, float], since: float | None,
    limit: int | None, notes: list[str],
) -> list[LiveMetric]:  # fmt: skip
    from mlnb.store.predictions import predictions_with_feedback

    logged = predictions_with_feedback(st.file, model, since=since, limit=limit,
                                       labelled_only=True)  # fmt: skip
    pairs = [p for r in logged if r["label"] is not None and r["version"] == version
             for p in _pairs(r["outputs"], r["label"])]  # fmt: skip
    pairs = [(p, y) for p, y in pairs if p is not None and y is not None]
    if not pairs:
        notes.append(f"live metrics: no feedback yet for requests v{version} answered "
                     "(mlnb.log_feedback(request_id, label))")  # fmt: skip
        return []
    n = len(pairs)
    if all(_is_class(p) and _is_class(y) for p, y in pairs) and len({y for _, y in pairs}) <= 50:
        value = sum(1 for p, y in pairs if p == y) / n
        base = trained.get("accuracy")
        ok = base is None or value >= base - ACCURACY_DROP
        return [LiveMetric("accuracy", value, n, base, ok, f"≥ training − {ACCURACY_DROP:g}")]
    try:
        errors = [float(p) - float(y) for p, y in pairs]
    except (TypeError, ValueError):
        notes.append("live metrics: the labels are neither classes nor numbers")
        return []
    out = []
    for name, value in (("rmse", math.sqrt(sum(e * e for e in errors) / n)),
                        ("mae", sum(abs(e) for e in errors) / n)):  # fmt: skip
        base = trained.get(name)
        ok = base is None or value <= base * (1 + ERROR_GROWTH)
        out.append(LiveMetric(name, value, n, base, ok, f"≤ training × {1 + ERROR_GROWTH:g}"))
    return out
