"""Gates: pass or fail a run on its metrics, for CI. See docs/ci.md.

Each gated metric gets MLflow's ``MetricThreshold`` semantics: an absolute ``threshold``
(``acc >= 0.9``; higher is better for ``>``/``>=``, lower for ``<``/``<=``), then, against a
baseline run, a minimum absolute and/or relative improvement in the metric's direction.
The direction is, first, what the caller says (a comparator, ``lower_is_better`` /
``higher_is_better``), else what the metric's name says (``loss``, ``rmse``: lower;
``acc``, ``f1``: higher; :func:`mlnb.conventions.metric_direction`), else higher (MLflow's
default)::

    higher is better:  value >= baseline + min_abs    value >= baseline + |baseline| * min_rel
    lower is better:   value <= baseline - min_abs    value <= baseline - |baseline| * min_rel

With a baseline and neither minimum given, the run must not be worse than the baseline
(``min_abs = 0``). A negative minimum is a tolerance (``min_abs=-0.01``: at most 0.01
worse). The baseline is a run (id, id prefix, name) or an alias: ``latest`` (the newest
finished run of the run's experiment other than the run) or ``best`` (per metric, the
finished run of that experiment with the best value in the metric's direction). Every
verdict is stored in the ``checks`` table (kind ``gate``).

The logic is pure (:func:`evaluate`); :func:`gate` reads the runs and records the result.
"""

from __future__ import annotations

import math
import operator
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from mlnb.conventions import EXIT_FAILED, EXIT_OK, metric_direction
from mlnb.errors import InvalidInputError
from mlnb.records import CheckRecord, RunRecord, is_system_metric
from mlnb.store import Store

if TYPE_CHECKING:
    from mlnb.tracking.fluent import StoreLike

__all__ = [
    "ALIASES",
    "GateResult",
    "MetricThreshold",
    "MetricVerdict",
    "check_records",
    "evaluate",
    "find_baseline",
    "gate",
    "parse_metric",
    "resolve_baseline",
]

ALIASES = ("latest", "best")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "=": operator.eq,
}
_SPEC = re.compile(r"\s*(?P<key>[^<>=!]+?)\s*(?:(?P<op>>=|<=|==|=|>|<)\s*(?P<num>.*?))?\s*")


@dataclass(frozen=True)
class MetricThreshold:
    """What one metric must reach (MLflow's ``MetricThreshold``). ``comparator`` defaults
    to ``>=`` when greater is better, else ``<=``; ``min_absolute_change`` and
    ``min_relative_change`` apply only against a baseline."""

    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    greater_is_better: bool = True
    comparator: str | None = None

    @property
    def op(self) -> str:
        return self.comparator or (">=" if self.greater_is_better else "<=")


def _greater_is_better(key: str, op: str | None, lower: set[str], higher: set[str]) -> bool:
    """A gated key's direction: its comparator's, else the caller's, else its name's
    (:func:`~mlnb.conventions.metric_direction`), else higher (MLflow's default)."""
    if op in (">", ">=", "<", "<="):
        return op in (">", ">=")
    if key in lower or key in higher:
        return key in higher
    return metric_direction(key) != "lower"


def parse_metric(text: str) -> tuple[str, str | None, float | None]:
    """``"acc>=0.9"`` → ``("acc", ">=", 0.9)``; ``"loss"`` → ``("loss", None, None)``. A
    ``metrics.`` prefix is allowed. Raises ``InvalidInputError`` for anything else."""
    match = _SPEC.fullmatch(text or "")
    if not match or "!" in text:
        raise InvalidInputError(
            f"bad metric expression {text!r}: expected KEY, or KEY OP NUMBER with OP one of "
            ">=, >, <=, <, == (e.g. 'acc>=0.9', 'loss<0.3')"
        )
    key = match["key"].strip()
    if key.startswith("metrics."):
        key = key[len("metrics.") :]
    key = key.strip("`\"'")
    if not key:
        raise InvalidInputError(f"bad metric expression {text!r}: no metric key")
    if match["op"] is None:
        return key, None, None
    try:
        number = float(match["num"])
    except ValueError:
        raise InvalidInputError(
            f"bad metric expression {text!r}: {match['num']!r} is not a number"
        ) from None
    if math.isnan(number):
        raise InvalidInputError(f"bad metric expression {text!r}: the threshold is NaN")
    return key, match["op"], number


@dataclass(frozen=True)
class MetricVerdict:
    """The verdict on one metric: its value, what it was held to, and why it passed or
    failed (``reasons``, one per condition)."""

    key: str
    passed: bool
    value: float | None
    threshold: float | None
    comparator: str | None
    greater_is_better: bool
    baseline_run_id: str | None = None
    baseline_name: str | None = None
    baseline_value: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    reasons: tuple[str, ...] = ()

    @property
    def direction(self) -> str:
        return "higher" if self.greater_is_better else "lower"

    @property
    def delta(self) -> float | None:
        """value - baseline value, when both exist."""
        if self.value is None or self.baseline_value is None:
            return None
        return self.value - self.baseline_value

    @property
    def relative_delta(self) -> float | None:
        """delta / |baseline value| (None for a zero or missing baseline)."""
        d = self.delta
        if d is None or not self.baseline_value or not math.isfinite(self.baseline_value):
            return None
        return d / abs(self.baseline_value)

    def to_check(self, batch: str) -> CheckRecord:
        """This verdict as a row of the ``checks`` table."""
        return CheckRecord(
            kind="gate",
            name=self.key,
            passed=self.passed,
            value=self.value,
            threshold=self.threshold,
            comparator=self.comparator,
            direction=self.direction,
            baseline_run_id=self.baseline_run_id,
            baseline_value=self.baseline_value,
            message="; ".join(self.reasons),
            details={
                k: v
                for k, v in (
                    ("min_absolute_change", self.min_absolute_change),
                    ("min_relative_change", self.min_relative_change),
                    ("delta", self.delta),
                    ("relative_delta", self.relative_delta),
                )
                if v is not None and math.isfinite(v)
            },
            batch=batch,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "passed": self.passed,
            "value": self.value,
            "threshold": self.threshold,
            "comparator": self.comparator,
            "direction": self.direction,
            "baseline_run_id": self.baseline_run_id,
            "baseline_value": self.baseline_value,
            "delta": self.delta,
            "relative_delta": self.relative_delta,
            "min_absolute_change": self.min_absolute_change,
            "min_relative_change": self.min_relative_change,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class GateResult:
    """The verdict on a run: one :class:`MetricVerdict` per gated metric. ``passed`` when
    every metric passed; ``exit_code`` is what ``mlnb gate`` exits with (0 or 1)."""

    run_id: str
    run_name: str
    verdicts: tuple[MetricVerdict, ...]
    vs: str | None = None
    notes: tuple[str, ...] = ()
    batch: str = field(default="", compare=False)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_FAILED

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "run_name": self.run_name,
            "vs": self.vs,
            "passed": self.passed,
            "notes": list(self.notes),
            "metrics": [v.to_dict() for v in self.verdicts],
        }

    def __str__(self) -> str:
        head = f"gate {self.run_name} ({self.run_id[:8]})"
        bases = {(v.baseline_run_id, v.baseline_name) for v in self.verdicts if v.baseline_run_id}
        if self.vs and len(bases) == 1:
            (bid, bname) = next(iter(bases))
            shown = f"{bname} ({(bid or '')[:8]})"
            head += f" vs {shown}" if self.vs in (bid, bname) else f" vs {self.vs}: {shown}"
        elif self.vs:
            head += f" vs {self.vs}"
        columns = ["metric", "value", "threshold", "baseline", "Δ", "%Δ", "result"]
        rows = []
        for v in self.verdicts:
            threshold = "" if v.threshold is None else f"{v.comparator} {_num(v.threshold)}"
            baseline = _num(v.baseline_value)
            if self.vs and self.vs == "best" and v.baseline_name:
                baseline += f" ({v.baseline_name})"
            rel = v.relative_delta
            rows.append(
                [
                    v.key,
                    _num(v.value) if v.value is not None else "missing",
                    threshold,
                    baseline,
                    "" if v.delta is None else f"{v.delta:+.4g}",
                    "" if rel is None else f"{rel:+.2%}",
                    "PASS" if v.passed else "FAIL",
                ]
            )
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        lines = [head, ""]
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        for v, r in zip(self.verdicts, rows, strict=True):
            cells = "  ".join(t.ljust(w) for t, w in zip(r, widths, strict=True))
            lines.append(("  " + cells).rstrip())
            for reason in v.reasons:
                lines.append(f"      {reason}")
        lines.extend(f"  note: {n}" for n in self.notes)
        failed = sum(not v.passed for v in self.verdicts)
        lines.append("")
        if failed:
            lines.append(f"FAIL: {failed} of {len(self.verdicts)} metrics failed the gate")
        else:
            lines.append(f"PASS: {len(self.verdicts)} of {len(self.verdicts)} metrics passed")
        return "\n".join(lines)


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def _finite(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise InvalidInputError(f"{what} must be a finite number: {value!r}")
    return number


def _per_key(
    value: float | Mapping[str, float] | None, keys: Sequence[str], what: str
) -> dict[str, float | None]:
    if value is None:
        return dict.fromkeys(keys)
    if not isinstance(value, Mapping):
        return dict.fromkeys(keys, _finite(value, what))
    for key in value:
        if key != "*" and key not in keys:
            raise InvalidInputError(
                f"{what} names {key!r}, which is not a gated metric ({', '.join(keys)})"
            )
    checked = {key: _finite(number, what) for key, number in value.items()}
    default = checked.get("*")
    return {key: checked.get(key, default) for key in keys}


def thresholds(
    metrics: str | Sequence[str] | Mapping[str, MetricThreshold],
    *,
    min_abs: float | Mapping[str, float] | None = None,
    min_rel: float | Mapping[str, float] | None = None,
    lower_is_better: Iterable[str] = (),
    higher_is_better: Iterable[str] = (),
) -> dict[str, MetricThreshold]:
    """Metric expressions (or ``{key: MetricThreshold}``) and the options of ``mlnb gate``
    as one ``MetricThreshold`` per key. ``min_abs`` / ``min_rel`` are a number for every
    metric or ``{key: number}`` (``"*"`` for the rest). A key's direction is its
    comparator's, else ``lower_is_better`` / ``higher_is_better``, else its name's, else
    higher. Raises ``InvalidInputError``."""
    lower, higher = set(lower_is_better), set(higher_is_better)
    if lower & higher:
        raise InvalidInputError(
            f"{', '.join(sorted(lower & higher))} marked both lower- and higher-is-better; give one"
        )
    out: dict[str, MetricThreshold] = {}
    if isinstance(metrics, Mapping):
        for key, spec in metrics.items():
            if not isinstance(spec, MetricThreshold):
                raise InvalidInputError(f"metrics[{key!r}] must be a MetricThreshold")
            if spec.comparator is not None and spec.comparator not in OPERATORS:
                raise InvalidInputError(f"unknown comparator {spec.comparator!r} for {key!r}")
            out[key] = spec
    else:
        items = [metrics] if isinstance(metrics, str) else list(metrics)
        for text in items:
            key, op, number = parse_metric(text)
            if key in out:
                raise InvalidInputError(f"metric {key!r} is gated twice; give it once")
            if op in (">", ">=") and key in lower:
                raise InvalidInputError(
                    f"{text!r} says higher is better but {key!r} is marked lower-is-better"
                )
            if op in ("<", "<=") and key in higher:
                raise InvalidInputError(
                    f"{text!r} says lower is better but {key!r} is marked higher-is-better"
                )
            greater = _greater_is_better(key, op, lower, higher)
            out[key] = MetricThreshold(threshold=number, greater_is_better=greater, comparator=op)
    if not out:
        raise InvalidInputError("no metric to gate: give at least one, e.g. 'acc>=0.9'")
    for option, marked in (("lower-is-better", lower), ("higher-is-better", higher)):
        if marked - set(out):
            raise InvalidInputError(
                f"{option} names {', '.join(sorted(marked - set(out)))}, not a gated metric"
            )
    keys = list(out)
    abs_by_key = _per_key(min_abs, keys, "min_abs")
    rel_by_key = _per_key(min_rel, keys, "min_rel")
    for key in keys:
        spec = out[key]
        out[key] = MetricThreshold(
            threshold=spec.threshold,
            min_absolute_change=(
                abs_by_key[key] if abs_by_key[key] is not None else spec.min_absolute_change
            ),
            min_relative_change=(
                rel_by_key[key] if rel_by_key[key] is not None else spec.min_relative_change
            ),
            greater_is_better=spec.greater_is_better,
            comparator=spec.comparator,
        )
    return out


def evaluate(
    run: RunRecord,
    specs: Mapping[str, MetricThreshold],
    baselines: Mapping[str, RunRecord | None] | None = None,
) -> list[MetricVerdict]:
    """The pure part of a gate: each metric of ``run`` against its threshold and, when
    ``baselines[key]`` is a run, against that run's value of the metric."""
    verdicts = []
    for key, spec in specs.items():
        base = (baselines or {}).get(key)
        reasons: list[str] = []
        ok = True
        value = run.metrics.get(key)
        base_value = base.metrics.get(key) if base is not None else None
        threshold = spec.threshold
        op = spec.op if threshold is not None else None
        if value is None:
            ok = False
            # the model's metrics: a job's timings and system/* would bury them
            known = ", ".join(k for k in sorted(run.metrics) if not is_system_metric(k))
            known = known or "none"
            reasons.append(f"the run has no metric {key!r} (it has: {known})")
        elif math.isnan(value):
            ok = False
            reasons.append("the value is NaN")
        else:
            if threshold is not None and op is not None:
                if OPERATORS[op](value, threshold):
                    reasons.append(f"threshold: {_num(value)} {op} {_num(threshold)}")
                else:
                    ok = False
                    reasons.append(f"threshold: {_num(value)} is not {op} {_num(threshold)}")
            if base is not None:
                ok = _compare(key, value, spec, base, base_value, reasons) and ok
        verdicts.append(
            MetricVerdict(
                key=key,
                passed=ok,
                value=value,
                threshold=threshold,
                comparator=op,
                greater_is_better=spec.greater_is_better,
                baseline_run_id=base.run_id if base is not None else None,
                baseline_name=base.name if base is not None else None,
                baseline_value=base_value
                if base_value is None or not math.isnan(base_value)
                else None,
                min_absolute_change=spec.min_absolute_change,
                min_relative_change=spec.min_relative_change,
                reasons=tuple(reasons),
            )
        )
    return verdicts


def _meets(
    value: float, base: float, minimum: float, *, relative: bool, higher: bool
) -> tuple[bool, float]:
    """Whether ``value`` beats ``base`` by ``minimum`` in the metric's direction, and the
    value required. Decimal arithmetic on the numbers as written, as MLflow does, so that
    0.84 meets 0.80 + 5 % (in floats 0.8 * 1.05 is 0.8400000000000001)."""
    try:
        b = Decimal(repr(base))
        need = abs(b) * Decimal(repr(minimum)) if relative else Decimal(repr(minimum))
        required = b + need if higher else b - need
        v = Decimal(repr(value))
        return (v >= required if higher else v <= required), float(required)
    except InvalidOperation:  # infinities times zero and the like: plain floats
        fneed = abs(base) * minimum if relative else minimum
        freq = base + fneed if higher else base - fneed
        return (value >= freq if higher else value <= freq), freq


def _compare(
    key: str,
    value: float,
    spec: MetricThreshold,
    base: RunRecord,
    base_value: float | None,
    reasons: list[str],
) -> bool:
    who = f"{base.name} ({base.run_id[:8]})"
    if base_value is None or math.isnan(base_value):
        reasons.append(f"baseline {who} has no value of {key!r}: cannot compare")
        return False
    higher = spec.greater_is_better
    word = "higher" if higher else "lower"
    min_abs, min_rel = spec.min_absolute_change, spec.min_relative_change
    if min_abs is None and min_rel is None:
        min_abs = 0.0  # a baseline and no minimum: not worse than the baseline
    ok = True
    for label, minimum in (("min_abs", min_abs), ("min_rel", min_rel)):
        if minimum is None:
            continue
        good, required = _meets(value, base_value, minimum, relative=label == "min_rel",
                                higher=higher)  # fmt: skip
        sign = ">=" if higher else "<="
        what = f"{minimum:g}" if label == "min_abs" else f"{minimum:.2%}"
        text = f"{label} {what} ({word} is better): {_num(value)} "
        text += f"{sign} {_num(required)}" if good else f"is not {sign} {_num(required)}"
        text += f" (baseline {_num(base_value)} of {who})"
        reasons.append(text)
        ok = ok and good
    return ok


def _candidates(store: Store, run: RunRecord) -> tuple[list[str], dict[str, list[Any]]]:
    """Other finished runs of ``run``'s experiment, newest first, and their table."""
    table = store.search_runs("status = 'finished'", experiment=run.experiment)
    return [i for i in table["run_id"] if i != run.run_id], table


def find_baseline(store: Store, run: RunRecord, vs: str) -> tuple[RunRecord | None, list[str]]:
    """The baseline ``vs`` names for ``run`` (a run reference, or ``latest``), and notes;
    None when ``latest`` finds no other finished run (a first run has nothing to beat)."""
    if vs == "best":
        raise InvalidInputError("'best' depends on the metric: use resolve_baseline")
    if vs != "latest":
        base = store.get_run(vs)
        if base.run_id == run.run_id:
            raise InvalidInputError(f"the run and its baseline are the same run ({vs!r})")
        return base, []
    candidates, _ = _candidates(store, run)
    if not candidates:
        return None, [
            f"no other finished run in experiment {run.experiment!r} to be 'latest': "
            "improvement not checked"
        ]
    return store.get_run(candidates[0]), []


def resolve_baseline(
    store: Store, run: RunRecord, vs: str, keys: Mapping[str, MetricThreshold]
) -> tuple[dict[str, RunRecord | None], list[str]]:
    """The baseline run of each gated metric, and notes. ``vs`` is a run reference or an
    alias (:data:`ALIASES`); an alias that finds no run gives None (first run: nothing to
    compare with) and a note; an unknown run reference raises ``RunNotFoundError``."""
    if vs != "best":
        base, notes = find_baseline(store, run, vs)
        return dict.fromkeys(keys, base), notes
    candidates, table = _candidates(store, run)
    out: dict[str, RunRecord | None] = {}
    notes = []
    cache: dict[str, RunRecord] = {}
    pos = {rid: i for i, rid in enumerate(table["run_id"])}
    for key, spec in keys.items():
        column = table.get(f"metrics.{key}")
        best_id = None
        best_val = math.nan
        for rid in candidates:
            val = column[pos[rid]] if column is not None else None
            if val is None or math.isnan(val):
                continue
            better = val > best_val if spec.greater_is_better else val < best_val
            if best_id is None or better:
                best_id, best_val = rid, val
        if best_id is None:
            out[key] = None
            notes.append(
                f"no other finished run in {run.experiment!r} has {key!r}: improvement not checked"
            )
        else:
            if best_id not in cache:
                cache[best_id] = store.get_run(best_id)
            out[key] = cache[best_id]
    return out, notes


def check_records(store: Store, run_id: str, expressions: Sequence[str]) -> list[CheckRecord]:
    """``mlnb run --check``: each query expression evaluated against the finished run, as
    rows of the ``checks`` table (kind ``check``). A simple ``metrics.KEY OP NUMBER`` also
    records the value, the threshold and the comparator."""
    rec = store.get_run(run_id)
    batch = uuid.uuid4().hex
    out = []
    for expr in expressions:
        ok = bool(store.search_runs(f"run_id = '{rec.run_id}' and ({expr})")["run_id"])
        value = threshold = op = None
        try:
            key, op, threshold = parse_metric(expr)
            value = rec.metrics.get(key)
        except InvalidInputError:
            key = None
        simple = key is not None and op is not None and expr.strip().startswith("metrics.")
        out.append(
            CheckRecord(
                kind="check",
                name=expr,
                passed=ok,
                value=value if simple else None,
                threshold=threshold if simple else None,
                comparator=op if simple else None,
                message="passed" if ok else "the run does not match the expression",
                batch=batch,
            )
        )
    return out


def record_checks(store: Store, run_id: str, expressions: Sequence[str]) -> list[CheckRecord]:
    """Evaluate ``--check`` expressions on a finished run (of ``mlnb run`` or a sweep's
    child) and record them: rows of kind ``check`` and the tags ``mlnb.check.N``
    (``pass: EXPR`` / ``fail: EXPR``). Returns the rows."""
    records = check_records(store, run_id, expressions)
    tags = {
        f"mlnb.check.{i}": f"{'pass' if r.passed else 'fail'}: {r.name}"
        for i, r in enumerate(records)
    }
    store.set_tags(run_id, tags, check_state=False)
    store.log_checks(run_id, records)
    return records


def gate(
    run: str,
    metrics: str | Sequence[str] | Mapping[str, MetricThreshold],
    *,
    vs: str | None = None,
    min_abs: float | Mapping[str, float] | None = None,
    min_rel: float | Mapping[str, float] | None = None,
    lower_is_better: Iterable[str] = (),
    higher_is_better: Iterable[str] = (),
    record: bool = True,
    store: StoreLike | None = None,
) -> GateResult:
    """Pass or fail ``run`` on its metrics (MLflow ``MetricThreshold`` semantics; see
    docs/ci.md): ``mlnb.gate("nightly", ["acc>=0.9", "loss"], vs="best", min_rel=0.01)``.

    ``metrics`` are expressions (``KEY OP NUMBER`` or just ``KEY``) or ``{key:
    MetricThreshold}``; ``vs`` a baseline run or ``latest`` / ``best``; ``min_abs`` /
    ``min_rel`` a number or ``{key: number}``; ``lower_is_better`` / ``higher_is_better``
    name keys whose direction neither a comparator nor the name gives (see
    :func:`thresholds`). The verdicts are stored in the ``checks``
    table unless ``record=False``. A missing metric fails; a bad expression or unknown run
    raises an ``MlnbError``. The result is truthy when the gate passed.
    """
    from mlnb.tracking import fluent as tracking

    specs = thresholds(
        metrics, min_abs=min_abs, min_rel=min_rel, lower_is_better=lower_is_better,
        higher_is_better=higher_is_better,
    )  # fmt: skip
    if vs is None and any(
        s.min_absolute_change is not None or s.min_relative_change is not None
        for s in specs.values()
    ):
        raise InvalidInputError("min_abs / min_rel compare with a baseline: give vs (--vs)")
    st = tracking.resolve_store(store, create=False)
    tracking.flush(st)
    rec = st.get_run(run)
    baselines: dict[str, RunRecord | None] = {}
    notes: list[str] = []
    if vs is not None:
        baselines, notes = resolve_baseline(st, rec, vs, specs)
    verdicts = evaluate(rec, specs, baselines)
    batch = uuid.uuid4().hex
    if record:
        st.log_checks(rec.run_id, [v.to_check(batch) for v in verdicts])
    return GateResult(rec.run_id, rec.name, tuple(verdicts), vs, tuple(notes), batch)
