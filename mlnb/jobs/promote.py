"""Promotion with a gate: ``mlnb model promote churn --from challenger --to champion --gate
'auc>=+0.0'``. It lives here, above both the registry and the gates (siblings on the
analysis layer never import each other).

A gate expression is ``mlnb gate``'s ``KEY OP NUMBER`` (an absolute threshold), or, with a
sign, a change against the current target's run (MLflow ``MetricThreshold``'s
``min_absolute_change``, or ``min_relative_change`` with ``%``)::

    auc>=0.8      the candidate's auc is at least 0.8
    auc>=+0.0     at least the champion's auc (not worse)
    auc>=+1%      at least 1 % above the champion's
    loss<=-0.01   at least 0.01 below the champion's loss
    auc>=-0.005   at most 0.005 below the champion's (a tolerance)

With no champion yet, the first promotion passes on the absolute thresholds alone (the
relative ones have nothing to compare with; a note says so). The verdict goes into the
``checks`` table on the candidate's run, and a passing promotion moves the alias in the
same transaction, only if the alias still points at the version the gate compared
against; otherwise the gate runs again against the new target (concurrent promoters never
lose a move nor pass a gate against a stale champion).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlnb.checks.gates import GateResult, MetricThreshold, evaluate, parse_metric
from mlnb.errors import AliasMovedError, InvalidInputError, ModelNotFoundError
from mlnb.records import AliasEvent, ModelVersion
from mlnb.registry import models as registry
from mlnb.store import models as table
from mlnb.store.liveness import HOST
from mlnb.store.runs import current_user

if TYPE_CHECKING:
    from mlnb.tracking.active import StoreLike

__all__ = ["Promotion", "promote", "promotion_thresholds"]

_SIGNED = re.compile(
    r"^(?P<head>.*?(?:>=|<=|==|=|>|<)\s*)(?P<sign>[+-])(?P<num>[^%]*?)(?P<pct>%?)\s*$"
)
ATTEMPTS = 20


def promotion_thresholds(expressions: Sequence[str]) -> dict[str, MetricThreshold]:
    """Gate expressions as one ``MetricThreshold`` per metric; a metric may be given twice
    (``auc>=0.8`` and ``auc>=+0.0``), the conditions add up."""
    out: dict[str, MetricThreshold] = {}
    for text in expressions:
        signed = _SIGNED.match(text or "")
        number_text = None
        if signed:
            number_text = signed["sign"] + signed["num"].strip()
            key, op, _ = parse_metric(signed["head"] + "0")
            try:
                number = float(number_text)
            except ValueError:
                raise InvalidInputError(
                    f"bad gate {text!r}: {number_text!r} is not a number"
                ) from None
        else:
            key, op, number = parse_metric(text)  # type: ignore[assignment]
        if op is None:
            raise InvalidInputError(
                f"bad gate {text!r}: give KEY OP NUMBER ('auc>=0.8'), or a change against the "
                "champion with a sign ('auc>=+0.0', 'auc>=+1%', 'loss<=-0.01')"
            )
        if op in ("==", "=") and signed:
            raise InvalidInputError(f"bad gate {text!r}: a change needs >=, >, <= or <")
        spec = out.get(key, MetricThreshold(greater_is_better=op in (">", ">=")))
        if (
            spec.comparator
            and op in (">", ">=", "<", "<=")
            and (op in (">", ">=")) != (spec.greater_is_better)
        ):
            raise InvalidInputError(f"gate {text!r} contradicts the direction given before")
        higher = op in (">", ">=") if op not in ("==", "=") else spec.greater_is_better
        if signed:
            change = number if higher else -number
            if signed["pct"]:
                spec = MetricThreshold(spec.threshold, spec.min_absolute_change, change / 100,
                                       higher, spec.comparator)  # fmt: skip
            else:
                spec = MetricThreshold(spec.threshold, change, spec.min_relative_change, higher,
                                       spec.comparator)  # fmt: skip
        else:
            spec = MetricThreshold(number, spec.min_absolute_change, spec.min_relative_change,
                                   higher, op)  # fmt: skip
        out[key] = spec
    return out


@dataclass(frozen=True)
class Promotion:
    """What a promotion decided: the candidate, the version the alias pointed at, the
    gate's verdict (None: no gate) and, when it moved, the alias event."""

    name: str
    alias: str
    candidate: ModelVersion
    previous: int | None
    gate: GateResult | None
    event: AliasEvent | None
    notes: tuple[str, ...] = field(default=())

    @property
    def moved(self) -> bool:
        return self.event is not None

    @property
    def passed(self) -> bool:
        return self.gate is None or self.gate.passed

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "alias": self.alias, "candidate": self.candidate.version,
            "previous": self.previous, "passed": self.passed, "moved": self.moved,
            "gate": None if self.gate is None else self.gate.to_dict(),
            "notes": list(self.notes),
        }  # fmt: skip

    def __str__(self) -> str:
        lines = [str(self.gate), ""] if self.gate is not None else []
        lines += [f"note: {n}" for n in self.notes]
        was = "unset" if self.previous is None else f"version {self.previous}"
        if self.moved:
            lines.append(f"{self.name}@{self.alias}: {was} → version {self.candidate.version}")
        elif self.previous == self.candidate.version:
            lines.append(f"{self.name}@{self.alias} already points at version {self.previous}")
        elif self.passed:
            lines.append(f"{self.name}@{self.alias} stays at {was}: version "
                         f"{self.candidate.version} passed (no move asked)")  # fmt: skip
        else:
            lines.append(f"{self.name}@{self.alias} stays at {was}: version "
                         f"{self.candidate.version} failed the gate")  # fmt: skip
        return "\n".join(lines)


def promote(
    name: str,
    *,
    source: str | int = "challenger",
    to: str = "champion",
    gate: Sequence[str] = (),
    reason: str | None = None,
    move: bool = True,
    store: StoreLike | None = None,
) -> Promotion:
    """Move ``name@to`` to the version ``source`` names (an alias or a version number)
    if it passes ``gate`` against the run of the version ``to`` points at now
    (``mlnb.promote("churn", gate=["auc>=+0.0"])``). The verdict is stored in ``checks``
    on the candidate's run and the move is one transaction with its history row.
    ``move=False`` runs and records the gate only (``mlnb retrain --gate`` without
    ``--promote``). Returns a :class:`Promotion` (truthy when the gate passed)."""
    registry.check_name(name)
    registry.check_name(to, "alias")
    specs = promotion_thresholds(gate) if gate else {}
    st = registry._store(store)
    if isinstance(source, int) or str(source).isdigit():
        ref = registry.ModelRef(name, version=int(source))
    else:
        ref = registry.ModelRef(name, alias=registry.check_name(str(source), "alias"))
    for _ in range(ATTEMPTS):
        candidate = registry.resolve_version(st, ref)
        try:
            current: int | None = table.resolve_alias(st.file, name, to)
        except ModelNotFoundError:
            current = None
        if current == candidate.version:
            return Promotion(name, to, candidate, current, None, None)
        result = _gate(st, name, candidate, current, specs) if specs else None
        records = None
        if result is not None:
            records = [v.to_check(result.batch) for v in result.verdicts]
            if not result.passed or not move:
                st.log_checks(result.run_id, records)
                return Promotion(name, to, candidate, current, result, None)
        if not move:
            return Promotion(name, to, candidate, current, result, None)
        why = reason or (f"promoted from {source}" if not isinstance(source, int) else "manual")
        if result is not None:
            why += f"; gate passed: {', '.join(gate)}"
        try:
            event = table.move_alias(
                st.file, name, to, candidate.version, expect=current, reason=why,
                user=current_user(), host=HOST,
                checks=(result.run_id, records) if result is not None and records else None,
            )  # fmt: skip
        except AliasMovedError:
            continue  # another promoter won: gate against the new target
        return Promotion(name, to, candidate, current, result, event)
    raise AliasMovedError(
        f"{name}@{to} kept moving while this promotion was decided ({ATTEMPTS} attempts); "
        "nothing changed. Try again"
    )


def _gate(
    st: Any,
    name: str,
    candidate: ModelVersion,
    current: int | None,
    specs: dict[str, MetricThreshold],
) -> GateResult:
    """The gate's verdict on the candidate against the run of the version the alias points
    at (``current``); with none, the absolute thresholds alone (a note says so)."""
    if candidate.run_id is None:
        raise InvalidInputError(
            f"{name}/{candidate.version} has no run, so it has no metrics to gate"
        )
    run = st.get_run(candidate.run_id)
    notes: list[str] = []
    baselines: dict[str, Any] = {}
    relative = {
        k: s
        for k, s in specs.items()
        if s.min_absolute_change is not None or s.min_relative_change is not None
    }
    use = specs
    if current is None:
        if relative:
            notes.append(
                "no version holds the alias yet: the first promotion passes on the absolute "
                f"thresholds alone ({', '.join(relative)} not compared)"
            )
            use = {
                k: MetricThreshold(s.threshold, None, None, s.greater_is_better, s.comparator)
                for k, s in specs.items()
                if s.threshold is not None
            }
    else:
        base_version = table.get_version(st.file, name, current)
        if base_version.run_id is None:
            raise InvalidInputError(f"{name}/{current} has no run to compare with")
        base_run = st.get_run(base_version.run_id)
        baselines = dict.fromkeys(relative, base_run)
    verdicts = evaluate(run, use, baselines)
    vs = None if current is None else f"{name}/{current}"
    return GateResult(run.run_id, run.name, tuple(verdicts), vs, tuple(notes), uuid.uuid4().hex)
