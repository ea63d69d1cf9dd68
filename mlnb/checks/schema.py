"""Data schemas: infer one from data or a stored profile, check data against it. See
docs/validation.md for the YAML format.

A schema names columns and, per column, rules: ``dtype``, ``required``, ``nullable``,
``min``, ``max``, ``categories``, ``length`` (``{min, max}`` characters), ``unique`` and
``pattern`` (a regular expression each string must match in full). A rule may hold only
for ``mostly`` of the values (a fraction: the share that passes must be at least it), per
rule (``min: {value: 0, mostly: 0.99}``) or per column (``mostly: 0.99``). A check runs
every rule and reports every failure, with counts and example values, never only the first.

:func:`infer` reads a profile (the one ``log_data`` stores, or one computed from the data),
so a schema can be taken from a run without its data; :func:`validate` checks raw data and
stores the verdicts as ``checks`` rows (kind ``validation``) on the active run.
:meth:`Schema.to_pandera` hands the same rules to pandera (an optional extra).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlnb.checks.sources import Source, load_source, record_result
from mlnb.errors import InvalidInputError, MissingExtraError, SchemaError
from mlnb.records import CheckRecord

if TYPE_CHECKING:
    import pandera.pandas

    from mlnb.tracking.active import StoreLike

__all__ = [
    "RULES",
    "RuleResult",
    "Schema",
    "ValidationResult",
    "check",
    "from_profile",
    "infer",
    "validate",
]

RULES = ("dtype", "required", "nullable", "min", "max", "categories", "length", "unique",
         "pattern", "mostly")  # fmt: skip
VERSION = 1
MAX_SCHEMA_BYTES = 1024 * 1024
EXAMPLES = 5
CATEGORIES_MAX = 100


@dataclass
class Schema:
    """Columns and their rules (``{column: {rule: value}}``, as in the YAML file);
    ``strict``: a column the schema does not name fails the check."""

    columns: dict[Any, dict[str, Any]]
    strict: bool = False

    @classmethod
    def infer(cls, data: Any, *, store: StoreLike | None = None) -> Schema:
        """The schema ``data`` satisfy today (see :func:`infer`)."""
        return infer(data, store=store)

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "schema") -> Schema:
        """Parse schema YAML; a file that does not parse, or names an unknown rule, raises
        :class:`~mlnb.errors.SchemaError` with its line and column."""
        return _parse(text, source)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Schema:
        """The schema in a YAML file."""
        p = Path(path)
        try:
            if p.stat().st_size > MAX_SCHEMA_BYTES:
                raise SchemaError(f"{p}: a schema file is at most {MAX_SCHEMA_BYTES:,} bytes")
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SchemaError(f"cannot read schema {p}: {exc}") from None
        return _parse(text, str(p))

    def to_yaml(self) -> str:
        """The YAML text (the format of docs/validation.md)."""
        import yaml

        doc = {"version": VERSION, "strict": self.strict, "columns": self.columns}
        header = "# mlnb data schema: rules per column (docs/validation.md)\n"
        return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)

    def write(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

    def to_pandera(self) -> pandera.pandas.DataFrameSchema:
        """The same rules as a pandera ``DataFrameSchema``, for pipelines that validate with
        pandera (``pip install 'mlnb[pandera]'``). pandera has no tolerated failure share:
        a check with ``mostly`` below 1 only warns there, and ``nullable`` or ``unique``
        with ``mostly`` below 1 is left out (docs/validation.md, "pandera")."""
        return _to_pandera(self)


def _mark_of(node: Any, path: list[Any]) -> tuple[int | None, int | None]:
    """Line and column (1-based) of the key at ``path`` in a composed YAML node."""
    import yaml

    found = None
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if str(k.value) == str(key):
                found, node = k, v
                break
        else:
            break
    if found is None:
        return None, None
    return found.start_mark.line + 1, found.start_mark.column + 1


def _parse(text: str, source: str) -> Schema:
    import yaml

    if len(text.encode()) > MAX_SCHEMA_BYTES:
        raise SchemaError(f"{source}: a schema is at most {MAX_SCHEMA_BYTES:,} bytes")
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, (yaml.AliasToken, yaml.AnchorToken)):
                m = token.start_mark
                raise SchemaError(
                    f"{source}: line {m.line + 1}, column {m.column + 1}: anchors and aliases "
                    "are not allowed in a schema; write each rule out",
                    line=m.line + 1, column=m.column + 1,
                )  # fmt: skip
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark or exc.context_mark
        line, col = (m.line + 1, m.column + 1) if m is not None else (None, None)
        where = f"line {line}, column {col}: " if line else ""
        raise SchemaError(
            f"{source}: {where}not valid YAML ({exc.problem or exc.context})",
            line=line, column=col,
        ) from None  # fmt: skip
    except yaml.YAMLError as exc:
        raise SchemaError(f"{source}: not valid YAML ({exc})") from None

    def fail(message: str, path: list[Any]) -> SchemaError:
        line, col = _mark_of(node, path)
        where = f"line {line}, column {col}: " if line else ""
        return SchemaError(f"{source}: {where}{message}", line=line, column=col)

    if not isinstance(doc, dict) or not isinstance(doc.get("columns"), dict):
        raise fail("a schema is a mapping with 'columns:' (docs/validation.md)", [])
    unknown = [k for k in doc if k not in ("version", "strict", "columns")]
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}: use version, strict, columns", [unknown[0]])
    if doc.get("version", VERSION) != VERSION:
        raise fail(f"schema version {doc['version']!r} is not known; this mlnb reads 1",
                   ["version"])  # fmt: skip
    columns: dict[Any, dict[str, Any]] = {}
    for col, rules in doc["columns"].items():
        rules = rules or {}
        if not isinstance(rules, dict):
            raise fail(f"column {col!r}: its rules must be a mapping", ["columns", col])
        for rule, value in rules.items():
            if rule not in RULES:
                raise fail(f"column {col!r}: unknown rule {rule!r}; rules: {', '.join(RULES)}",
                           ["columns", col, rule])  # fmt: skip
            problem = _rule_problem(rule, value)
            if problem:
                raise fail(f"column {col!r}, rule {rule}: {problem}", ["columns", col, rule])
        columns[col] = dict(rules)
    return Schema(columns, strict=bool(doc.get("strict", False)))


def _unwrap(value: Any) -> tuple[Any, float | None]:
    """A rule's value and its own ``mostly`` (``{value: X, mostly: F}`` or plain X)."""
    if isinstance(value, dict) and "value" in value:
        return value["value"], value.get("mostly")
    return value, None


def _rule_problem(rule: str, raw: Any) -> str | None:
    value, mostly = _unwrap(raw)
    if rule == "mostly":
        value, mostly = None, raw
    if mostly is not None and (
        isinstance(mostly, bool) or not isinstance(mostly, (int, float)) or not 0 <= mostly <= 1
    ):
        return f"mostly must be a fraction from 0 to 1, got {mostly!r}"
    if rule in ("required", "nullable", "unique") and not isinstance(value, bool):
        return f"expected true or false, got {value!r}"
    if rule in ("min", "max") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"expected a number, got {value!r}"
    if rule == "categories" and not isinstance(value, list):
        return f"expected a list of values, got {value!r}"
    if rule == "length" and not (
        isinstance(value, dict) and value and set(value) <= {"min", "max"}
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value.values())
    ):  # fmt: skip
        return f"expected {{min: N, max: N}} (either or both), got {value!r}"
    if rule == "pattern":
        if not isinstance(value, str):
            return f"expected a regular expression, got {value!r}"
        try:
            re.compile(value)
        except re.error as exc:
            return f"not a regular expression: {exc}"
    if rule == "dtype" and not isinstance(value, str):
        return f"expected a dtype name such as int64, got {value!r}"
    return None


# ---------------------------------------------------------------- pandera


def _to_pandera(schema: Schema) -> pandera.pandas.DataFrameSchema:
    """pandera's column properties for dtype, required, nullable and unique, and one built-in
    check per other rule (built-in, so pandera's YAML keeps them)."""
    try:
        import pandera.pandas as pa
        from pandera.engines import pandas_engine
    except ImportError:
        raise MissingExtraError(
            "exporting a schema to pandera needs pandera: pip install 'mlnb[pandera]'"
        ) from None
    columns = {}
    for col, rules in schema.columns.items():
        default = float(rules.get("mostly", 1.0))
        required, _ = _unwrap(rules.get("required", True))
        props: dict[str, Any] = {"required": bool(required), "nullable": True}
        checks = []
        for rule, raw in rules.items():
            if rule in ("mostly", "required"):
                continue
            value, own = _unwrap(raw)
            mostly = float(own if own is not None else default)
            whole = mostly >= 1 - 1e-12  # as check(): below it, some failures pass
            if rule == "dtype":
                if mostly > 0:  # one verdict per column: any mostly above 0 needs it
                    try:
                        props["dtype"] = pandas_engine.Engine.dtype(value)
                    except TypeError as exc:
                        raise SchemaError(
                            f"column {col!r}: pandera does not know dtype {value!r} ({exc}); "
                            "use a pandas dtype name such as int64, float64, str, category"
                        ) from None
            elif rule == "nullable":
                props["nullable"] = bool(value) or not whole
            elif rule == "unique":
                props["unique"] = bool(value) and whole
            else:
                checks.append(_pandera_check(pa.Check, rule, value, warn=not whole))
        columns[col] = pa.Column(checks=checks, **props)
    return pa.DataFrameSchema(columns, strict=schema.strict)


def _pandera_check(check: Any, rule: str, value: Any, *, warn: bool) -> Any:
    """The built-in pandera check of one rule; ``warn``: pandera only warns when it fails."""
    if rule == "min":
        return check.ge(value, raise_warning=warn)
    if rule == "max":
        return check.le(value, raise_warning=warn)
    if rule == "categories":
        return check.isin(list(value), raise_warning=warn)
    if rule == "length":
        return check.str_length(value.get("min"), value.get("max"), raise_warning=warn)
    if rule == "pattern":  # pandera's str_matches anchors only the start; mlnb matches in full
        return check.str_matches(f"(?:{value})\\Z", raise_warning=warn)
    raise SchemaError(f"unknown rule {rule!r}")  # the parser refuses it first


# ---------------------------------------------------------------- inference


def infer(data: Any, *, store: StoreLike | None = None) -> Schema:
    """The schema data satisfy today: dtype, nullable, min/max, categories (at most 100),
    string length, uniqueness. ``data``: a DataFrame, a data file, a profile dict or
    ``RUN[:NAME]`` (a run's stored profile: no data needed)."""
    prof = load_source(data, store=store).profile
    return from_profile(prof)


def from_profile(prof: Mapping[str, Any]) -> Schema:
    """A schema from a profile (:mod:`mlnb.capture.profile`)."""
    columns: dict[Any, dict[str, Any]] = {}
    for s in prof["stats"]:
        rules: dict[str, Any] = {"dtype": s["dtype"], "nullable": bool(s["nulls"])}
        kind = s.get("kind")
        if kind == "numeric":
            for key in ("min", "max"):
                if s.get(key) is not None:
                    rules[key] = s[key]
        domain = s.get("domain")
        if kind in ("categorical", "string", "object") and domain and len(domain) <= CATEGORIES_MAX:
            rules["categories"] = [v for v, _ in domain]
        if kind == "string" and s.get("length"):
            rules["length"] = dict(s["length"])
        integral = kind == "numeric" and str(s["dtype"]).lower().startswith(("int", "uint"))
        if (
            (integral or kind in ("string", "object"))
            and s.get("count", 0) > 1 and s.get("distinct") == s.get("count")
            and not s.get("distinct_estimated")
        ):  # fmt: skip
            rules["unique"] = True
        columns[s["name"]] = rules
    return Schema(columns)


# ---------------------------------------------------------------- checking


@dataclass(frozen=True)
class RuleResult:
    """One rule on one column: how many values it was checked on (``total``), how many
    failed, the share it needed (``mostly``) and up to five failing values."""

    column: str
    rule: str
    passed: bool
    failed: int
    total: int
    mostly: float
    expected: Any
    examples: tuple[Any, ...] = ()
    message: str = ""

    @property
    def passing_share(self) -> float:
        return 1.0 if self.total == 0 else (self.total - self.failed) / self.total

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column, "rule": self.rule, "passed": self.passed,
            "failed": self.failed, "total": self.total, "passing_share": self.passing_share,
            "mostly": self.mostly, "expected": _plain(self.expected),
            "examples": [_plain(e) for e in self.examples], "message": self.message,
        }  # fmt: skip


def _plain(v: Any) -> Any:
    from mlnb.capture.profile import _json_value

    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return _json_value(v)


@dataclass(frozen=True)
class ValidationResult:
    """Every rule's result; truthy when all passed."""

    data: str
    results: tuple[RuleResult, ...]
    batch: str = ""

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.results if not r.passed]

    @property
    def passed(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "passed": self.passed,
                "failed": len(self.failures), "rules": len(self.results),
                "results": [r.to_dict() for r in self.results]}  # fmt: skip

    def summary(self) -> str:
        if self.passed:
            return f"PASS: {self.data} meets all {len(self.results)} rules"
        return f"FAIL: {len(self.failures)} of {len(self.results)} rules failed on {self.data}"

    def _rows(self) -> list[list[str]]:
        return [
            [str(r.column), r.rule, f"{r.failed:,} of {r.total:,}", f"{r.mostly:g}",
             ", ".join(repr(_plain(e)) for e in r.examples), r.message]
            for r in self.failures
        ]  # fmt: skip

    HEADER = ("column", "rule", "failed", "mostly", "examples", "why")

    def __str__(self) -> str:
        if self.passed:
            return self.summary()
        rows = [list(self.HEADER), *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEADER))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]  # fmt: skip
        return "\n".join([*lines, "", self.summary()])

    def to_markdown(self) -> str:
        from mlnb.formatting import escape_markdown

        out = [f"**{escape_markdown(self.summary())}**", ""]
        if self.failures:
            out.append("| " + " | ".join(self.HEADER) + " |")
            out.append("|" + "---|" * len(self.HEADER))
            out += ["| " + " | ".join(escape_markdown(c) for c in r) + " |" for r in self._rows()]
        return "\n".join(out) + "\n"

    def to_checks(self, batch: str) -> list[CheckRecord]:
        """One ``checks`` row per rule: ``schema:COLUMN:RULE``, the passing share against
        ``mostly``."""
        return [
            CheckRecord(
                kind="validation", name=f"schema:{r.column}:{r.rule}", passed=r.passed,
                value=r.passing_share, threshold=r.mostly, comparator=">=",
                message=r.message or None,
                details={"check": "schema", **r.to_dict()}, batch=batch,
            )
            for r in self.results
        ]  # fmt: skip


def validate(
    data: Any,
    schema: Schema | str | os.PathLike[str],
    *,
    run: str | None = None,
    record: bool = True,
    store: StoreLike | None = None,
) -> ValidationResult:
    """Check ``data`` (a DataFrame or a data file) against ``schema`` (a :class:`Schema`,
    a YAML file, or ``RUN[:NAME]``: the schema inferred from that run's stored profile).
    Every rule runs; every failure is reported with counts and examples. The verdicts are
    stored as checks on ``run``, else on the active run, unless ``record=False``."""
    src = load_source(data, store=store)
    if not src.raw:
        raise InvalidInputError(
            f"{src.label}: validation reads the data itself; pass a DataFrame or a data file"
        )
    result = check(src, _schema(schema, store))
    if record:
        result = record_result(result, run=run, store=store)
    return result


def _schema(schema: Any, store: StoreLike | None) -> Schema:
    if isinstance(schema, Schema):
        return schema
    if isinstance(schema, (str, os.PathLike)):
        if Path(schema).is_file():
            return Schema.read(schema)
        if str(schema).endswith((".yaml", ".yml")):
            raise SchemaError(f"no schema file at {schema}")
        return infer(str(schema), store=store)
    raise InvalidInputError(f"schema: expected a Schema, a YAML file or RUN[:NAME], got "
                            f"{type(schema).__name__}")  # fmt: skip


def check(src: Source, schema: Schema) -> ValidationResult:
    """Every rule of ``schema`` on ``src``'s raw data (pure)."""
    frame = src.frame
    results: list[RuleResult] = []
    rows = len(frame)
    for col, rules in schema.columns.items():
        default = float(rules.get("mostly", 1.0))
        present = col in frame.columns
        if not present:
            required, _ = _unwrap(rules.get("required", True))
            results.append(RuleResult(
                str(col), "required", not required, rows if required else 0, rows, 1.0, True,
                message=f"column {col!r} is missing",
            ))  # fmt: skip
            continue
        s = frame[col]
        for rule, raw in rules.items():
            if rule in ("mostly", "required"):
                continue
            value, own = _unwrap(raw)
            mostly = float(own if own is not None else default)
            failed, total, examples, message = _apply(rule, value, s)
            ok = total == 0 or (total - failed) / total >= mostly - 1e-12
            results.append(RuleResult(str(col), rule, ok, failed, total, mostly, value,
                                      tuple(examples), message if failed else ""))  # fmt: skip
    if schema.strict:
        extra = [c for c in frame.columns if c not in schema.columns]
        results.append(RuleResult(
            "*", "strict", not extra, len(extra), len(frame.columns), 1.0, True,
            tuple(extra[:EXAMPLES]), f"columns the schema does not name: {len(extra)}",
        ))  # fmt: skip
    return ValidationResult(src.label, tuple(results))


def _examples(values: Any) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
        if len(out) == EXAMPLES:
            break
    return out


def _n(count: int) -> str:
    return f"{count:,} value{'' if count == 1 else 's'}"


def _apply(rule: str, value: Any, s: Any) -> tuple[int, int, list[Any], str]:
    """(failed, total, examples, why) of one rule on one column."""
    import pandas as pd
    from pandas.api import types as pt

    if rule == "dtype":
        ok = str(s.dtype) == value
        return int(not ok), 1, [] if ok else [str(s.dtype)], f"dtype is {s.dtype}, not {value}"
    nulls = s.isna()
    if rule == "nullable":
        if value:
            return 0, len(s), [], ""
        return int(nulls.sum()), len(s), [], f"{_n(int(nulls.sum()))} null"
    kept = s[~nulls]
    total = len(kept)
    if rule in ("min", "max"):
        if not (pt.is_numeric_dtype(kept.dtype) and not pt.is_bool_dtype(kept.dtype)):
            return total, total, _examples(kept.head(EXAMPLES * 20)), "not numeric"
        bad = kept[kept < value] if rule == "min" else kept[kept > value]
        order = bad.sort_values(ascending=rule == "min")
        word = "below" if rule == "min" else "above"
        return len(bad), total, _examples(order.tolist()), f"{_n(len(bad))} {word} {value}"
    if rule == "categories":
        bad = kept[~kept.isin(value)]
        counts = bad.value_counts()
        return (len(bad), total, list(counts.index[:EXAMPLES]),
                f"{_n(len(bad))} outside the {len(value)} categories")  # fmt: skip
    if rule == "length":
        lengths = kept.astype(str).str.len()
        bad_mask = pd.Series(False, index=kept.index)
        if "min" in value:
            bad_mask |= lengths < value["min"]
        if "max" in value:
            bad_mask |= lengths > value["max"]
        bad = kept[bad_mask]
        span = f"{value.get('min', 0)}–{value.get('max', '∞')}"
        return (len(bad), total, _examples(bad.tolist()),
                f"{_n(len(bad))} not {span} characters long")  # fmt: skip
    if rule == "unique":
        if not value:
            return 0, total, [], ""
        dup = kept[kept.duplicated(keep=False)]
        counts = dup.value_counts()
        return (len(dup), total, list(counts.index[:EXAMPLES]),
                f"{_n(len(dup))} repeated ({len(counts):,} distinct)")  # fmt: skip
    if rule == "pattern":
        text = kept.astype(str)
        bad = kept[~text.str.fullmatch(value)]
        return len(bad), total, _examples(bad.tolist()), f"{_n(len(bad))} not matching {value!r}"
    raise SchemaError(f"unknown rule {rule!r}")  # the parser refuses it first
