"""The run filter language: text → AST → a SQL boolean expression with bound parameters.

Users write MLflow's search syntax (``params.lr = '0.01' and metrics.acc > 0.9``) and more:
``or``, ``not``, parentheses, ``in``/``not in``, ``like``/``ilike``, ``is [not] null``,
numeric comparison of params, ISO dates and ``duration``. ``docs/query.md`` is the user's
page. :mod:`mlnb.store.query_ast` parses the text into an AST of frozen dataclasses (its
names are re-exported here); :func:`compile_filter` turns it into an expression for::

    SELECT ... FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE <expr>

Every value *and* every key becomes a ``?`` parameter, never SQL text, so no filter can
change the shape of a query. The SQL contains no quote character at all. Everything here is
a pure function of strings (standard library only); the store executes the result.

Fields are resolved through a registry, and the built-ins (``params``, ``metrics``,
``tags``, ``attributes``) use it too::

    def env_field(key: tuple[str, ...], ctx: Context) -> Target:
        return Target(text="x.value", source="FROM env_facts x WHERE x.run = r.id "
                      "AND x.key = ?", source_params=(".".join(key),))

    register_field("env", env_field)

A dotted field whose first segment is a registered prefix (case-insensitive) is handed to
its compiler with the remaining segments (``env.python`` → ``("python",)``; a backtick- or
double-quoted segment arrives as one segment, dots included). A bare name such as
``status`` goes to the ``attributes`` compiler as ``("status",)``. A compiler returns a
:class:`Target` describing where the value lives and which literals it accepts, or raises
``ValueError`` whose message becomes a :class:`QuerySyntaxError` pointing at the field.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from mlnb.errors import QuerySyntaxError
from mlnb.store.query_ast import (
    MAX_CONDITIONS,
    MAX_VALUES,
    And,
    Comparison,
    Expr,
    Field,
    Not,
    Or,
    OrderKey,
    Value,
    parse_filter,
    parse_order_by,
    quote_string,
)

__all__ = [
    "DEFAULT_ORDER",
    "MAX_CONDITIONS",
    "MAX_VALUES",
    "And",
    "Comparison",
    "Context",
    "Expr",
    "Field",
    "FieldCompiler",
    "Not",
    "Or",
    "OrderKey",
    "RunScope",
    "Target",
    "Value",
    "compile_filter",
    "compile_order_by",
    "compile_order_keys",
    "field_key",
    "parse_filter",
    "parse_order_by",
    "quote_string",
    "referenced_keys",
    "register_field",
]

DEFAULT_ORDER = "r.start_time DESC"


@dataclasses.dataclass(frozen=True)
class Context:
    """What a field compiler may depend on besides the key: the time ``duration`` uses."""

    now: float


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a field's value lives in SQL, and which literals it accepts.

    ``text`` and ``number`` are SQL expressions of the value as text and as a number; at
    least one is set. A quoted literal compares with ``text``, a bare number with
    ``number``. If only ``number`` is set, quoted literals are an error unless ``dates``
    (then they are ISO dates, and numbers of 1e11 or more are MLflow-style milliseconds).

    ``source`` is a ``FROM ... WHERE ...`` clause selecting the field's row for the outer
    run ``r`` (e.g. ``FROM params p WHERE p.run = r.id AND p.key = ?``): a comparison then
    becomes ``EXISTS (SELECT 1 <source> AND <predicate>)`` and ``IS NULL`` means "no row".
    Without a source the expressions are columns of ``r``/``e``. Use table aliases other
    than ``r`` and ``e``. ``source_params`` bind the ``?`` in ``source``; ``expr_params``
    bind those in ``text``/``number`` (each time the expression is used).

    ``casefold`` lower-cases quoted literals (status), ``bools`` lets ``true``/``false``
    compare with ``text`` as ``'True'``/``'False'`` (params), ``nan`` says a row whose
    ``number`` is NULL holds NaN, which ``IS NAN`` finds (metrics).
    """

    text: str | None = None
    number: str | None = None
    source: str | None = None
    source_params: tuple[object, ...] = ()
    expr_params: tuple[object, ...] = ()
    dates: bool = False
    casefold: bool = False
    bools: bool = False
    nan: bool = False

    def __post_init__(self) -> None:
        if self.text is None and self.number is None:
            raise ValueError("a Target needs a text or a number expression")
        if (self.bools and self.text is None) or ((self.dates or self.nan) and not self.number):
            raise ValueError("bools needs text; dates and nan need a number expression")


FieldCompiler = Callable[[tuple[str, ...], Context], Target]

_FIELDS: dict[str, FieldCompiler] = {}
_ALIASES: dict[str, str] = {}
_PREFIX = re.compile(r"[A-Za-z_]\w*")


def register_field(prefix: str, compiler: FieldCompiler, *, aliases: Iterable[str] = ()) -> None:
    """Make ``<prefix>.<key...>`` (and ``<alias>.<key...>``) a field resolved by ``compiler``.

    Prefixes are case-insensitive identifiers; a name already taken raises ``ValueError``.
    Aliases work like the prefix but are not listed in error messages.
    """
    names = [prefix.lower(), *(alias.lower() for alias in aliases)]
    for name in names:
        if not _PREFIX.fullmatch(name) or name in _FIELDS or name in _ALIASES:
            raise ValueError(f"field prefix {name!r} is taken or not an identifier")
    _FIELDS[names[0]] = compiler
    _ALIASES.update(dict.fromkeys(names[1:], names[0]))


def _key_value_field(table: str, alias: str, **columns: Any) -> FieldCompiler:
    """The compiler of fields stored as ``(run, key, value...)`` rows: params, metrics, tags."""
    source = f"FROM {table} {alias} WHERE {alias}.run = r.id AND {alias}.key = ?"

    def compile_field(key: tuple[str, ...], ctx: Context) -> Target:
        return Target(source=source, source_params=(".".join(key),), **columns)

    return compile_field


_ATTRIBUTES = {
    "status": Target(text="r.status", casefold=True),
    "name": Target(text="r.name"),
    "run_id": Target(text="r.run_id"),
    "experiment": Target(text="e.name"),
    "parent_run_id": Target(text="r.parent_run_id"),
    "user": Target(text="r.user"),
    "notebook": Target(text="r.notebook"),
    "source": Target(text="r.source"),
    "linearity": Target(text="r.linearity", casefold=True),
    "start_time": Target(number="r.start_time", dates=True),
    "end_time": Target(number="r.end_time", dates=True),
}
_ATTRIBUTE_ALIASES = {
    "run_name": "name",
    "run name": "name",  # MLflow's `Run name`
    "experiment_name": "experiment",
    "created": "start_time",  # MLflow
    "user_id": "user",  # MLflow
}


def _attribute_field(key: tuple[str, ...], ctx: Context) -> Target:
    name = ".".join(key).lower()
    name = _ATTRIBUTE_ALIASES.get(name, name)
    if name == "duration":
        return Target(number="(COALESCE(r.end_time, ?) - r.start_time)", expr_params=(ctx.now,))
    if name not in _ATTRIBUTES:
        known = ", ".join(sorted([*_ATTRIBUTES, "duration"]))
        raise ValueError(f"unknown attribute '{'.'.join(key)}' (known: {known})")
    return _ATTRIBUTES[name]


_PARAMS = _key_value_field("params", "p", text="p.value", number="p.value_num", bools=True)
register_field("params", _PARAMS, aliases=("param", "parameter", "parameters"))
_METRICS = _key_value_field("latest_metrics", "m", number="m.value", nan=True)
register_field("metrics", _METRICS, aliases=("metric",))
_TAGS = _key_value_field("tags", "t", text="t.value")
_TAG_ALIASES = {"mlflow.runName": "name"}  # MLflow keeps the run's name in this tag


def _tag_field(key: tuple[str, ...], ctx: Context) -> Target:
    """``tags.<key>``; ``tags.`mlflow.runName` `` is the run's name, as in MLflow."""
    alias = _TAG_ALIASES.get(".".join(key))
    return _ATTRIBUTES[alias] if alias else _TAGS(key, ctx)


register_field("tags", _tag_field, aliases=("tag",))
register_field("attributes", _attribute_field, aliases=("attribute", "attr", "run"))


_DATA_COLUMNS = {"hash": ("d.hash", None), "kind": ("d.kind", None), "role": ("l.role", None),
                 "rows": (None, "d.rows"), "columns": (None, "d.columns"),
                 "size_bytes": (None, "d.size_bytes")}  # fmt: skip


def _data_field(key: tuple[str, ...], ctx: Context) -> Target:
    """``data.<name>.<hash|rows|columns|kind|role|size_bytes>`` of a dataset the run logged."""
    if len(key) != 2 or key[1].lower() not in _DATA_COLUMNS:
        raise ValueError(
            f"data fields are data.<name>.<{'|'.join(_DATA_COLUMNS)}>, e.g. data.train.hash"
        )
    text, number = _DATA_COLUMNS[key[1].lower()]
    return Target(
        text=text,
        number=number,
        source="FROM run_datasets l JOIN datasets d ON d.hash = l.hash "
        "WHERE l.run = r.id AND l.name = ?",
        source_params=(key[0],),
    )


def _env_field(key: tuple[str, ...], ctx: Context) -> Target:
    """``env.python``, ``env.platform``, ``env.packages`` (a count), ``env.hash``, and
    ``env.package.<name>`` (an installed version) of the run's environment."""
    source = "FROM environments v WHERE v.hash = r.environment_hash"
    name = ".".join(key).lower()
    if name == "hash":
        return Target(text="r.environment_hash")
    if name in ("python", "platform"):
        return Target(text=f"v.{name}", source=source)
    if name == "packages":
        return Target(number="v.packages", source=source)
    if len(key) == 2 and key[0].lower() in ("package", "packages"):
        package = re.sub(r"[-_.]+", "-", key[1]).lower()  # PEP 503 normalization
        return Target(
            text="json_extract(v.data, ?)",
            source=source,
            expr_params=(f'$.packages."{package}"',),
        )
    raise ValueError(
        "env fields are env.python, env.platform, env.packages, env.hash, env.package.<name>"
    )


_GIT_COLUMNS = {"commit": ("g.commit_sha", None), "branch": ("g.branch", None),
                "remote": ("g.remote", None), "dirty": (None, "g.dirty")}  # fmt: skip


def _git_field(key: tuple[str, ...], ctx: Context) -> Target:
    """``git.commit``, ``git.branch``, ``git.remote``, ``git.dirty`` (1 or 0)."""
    name = ".".join(key).lower()
    if name not in _GIT_COLUMNS:
        raise ValueError(f"git fields are git.{', git.'.join(_GIT_COLUMNS)}")
    text, number = _GIT_COLUMNS[name]
    return Target(text=text, number=number, source="FROM git_states g WHERE g.run = r.id")


register_field("data", _data_field, aliases=("dataset", "datasets"))
register_field("env", _env_field, aliases=("environment",))
register_field("git", _git_field)


class _Compiler:
    """Walks an AST, writing SQL and appending parameters in the order their ``?`` appear."""

    def __init__(self, text: str, now: float | None) -> None:
        self.text = text
        self.ctx = Context(time.time() if now is None else float(now))
        self.params: list[object] = []

    def fail(self, message: str, position: int) -> QuerySyntaxError:
        return QuerySyntaxError(message, self.text, position)

    def target(self, field: Field) -> Target:
        head = field.path[0].lower()
        name = _ALIASES.get(head, head)
        if len(field.path) == 1 and name in _FIELDS:
            raise self.fail(f"{field} needs a key, as in {field}.<key>", field.position)
        key: tuple[str, ...] = field.path
        if len(field.path) == 1:
            name = "attributes"
        elif name in _FIELDS:
            key = field.path[1:]
        else:
            known = ", ".join(sorted(_FIELDS))
            raise self.fail(f"unknown field '{field}' (known prefixes: {known})", field.position)
        try:
            return _FIELDS[name](key, self.ctx)
        except QuerySyntaxError:
            raise
        except ValueError as exc:
            raise self.fail(str(exc), field.position) from exc

    def expr(self, node: Expr) -> str:
        if isinstance(node, (And, Or)):
            joiner = " AND " if isinstance(node, And) else " OR "
            return "(" + joiner.join(self.expr(item) for item in node.items) + ")"
        if isinstance(node, Not):  # unknown (a NULL column) counts as "did not match"
            return f"NOT COALESCE({self.expr(node.item)}, 0)"
        return self.comparison(node)

    def column(self, target: Target, expr: str) -> str:
        self.params.extend(target.expr_params)
        return expr

    def scalar(self, target: Target, expr: str) -> str:
        """``expr`` as a value per run: a subquery when the field lives in a child table."""
        if target.source is None:
            return self.column(target, expr)
        sql = f"(SELECT {self.column(target, expr)} {target.source})"
        self.params.extend(target.source_params)
        return sql

    def exists(self, target: Target, predicate: Callable[[], str]) -> str:
        if target.source is None:
            return predicate()
        self.params.extend(target.source_params)
        return f"EXISTS (SELECT 1 {target.source} AND {predicate()})"

    def comparison(self, node: Comparison) -> str:
        t = self.target(node.field)
        if node.op in ("IS NULL", "IS NOT NULL"):
            if t.source is None:
                return f"{self.column(t, t.text or t.number or '')} {node.op}"
            self.params.extend(t.source_params)
            absent = "NOT " if node.op == "IS NULL" else ""
            return f"{absent}EXISTS (SELECT 1 {t.source})"
        if node.op in ("IS NAN", "IS NOT NAN"):
            if not t.nan:
                raise self.fail(f"only metrics can be NaN, not {node.field}", node.position)
            test = "IS NULL" if node.op == "IS NAN" else "IS NOT NULL"
            return self.exists(t, lambda: f"{self.column(t, t.number or '')} {test}")
        return self.exists(t, lambda: self.predicate(node, t))

    def predicate(self, node: Comparison, t: Target) -> str:
        op = node.op
        if op.endswith("LIKE"):
            if t.text is None:
                raise self.fail(f"{op} needs text, but {node.field} is a number", node.position)
            assert isinstance(node.value, Value)
            pattern = str(node.value.value)
            pattern = pattern.lower() if t.casefold else pattern
            negation = "NOT " if op.startswith("NOT") else ""
            col = self.column(t, t.text)
            if op.endswith("ILIKE"):
                self.params += [_translate_like(pattern, glob=False), "\\"]
                return f"lower({col}) {negation}LIKE lower(?) ESCAPE ?"
            self.params.append(_translate_like(pattern, glob=True))
            return f"{col} {negation}GLOB ?"
        if op in ("IN", "NOT IN"):
            assert isinstance(node.value, tuple)
            groups: dict[str, list[object]] = {}
            for value in node.value:
                expr, bound = self.operand(node, t, value)
                groups.setdefault(expr, []).append(bound)
            parts = []
            for expr, bound in groups.items():
                parts.append(f"{self.column(t, expr)} {op} ({', '.join('?' * len(bound))})")
                self.params.extend(bound)
            joined = (" AND " if op == "NOT IN" else " OR ").join(parts)
            return joined if len(parts) == 1 else f"({joined})"
        assert isinstance(node.value, Value)
        expr, bound = self.operand(node, t, node.value)
        sql = f"{self.column(t, expr)} {op} ?"
        self.params.append(bound)
        return sql

    def operand(self, node: Comparison, t: Target, value: Value) -> tuple[str, object]:
        """Which expression of ``t`` a literal compares with, and the value to bind."""
        x, field = value.value, node.field
        if isinstance(x, bool):
            if not t.bools or t.text is None:
                raise self.fail(f"{field} cannot be compared with true or false", value.position)
            if node.op not in ("=", "!=", "IN", "NOT IN"):
                raise self.fail("true and false only work with =, != and IN", node.position)
            return t.text, str(x)
        if isinstance(x, (int, float)):
            if t.number is None:
                raise self.fail(f"{field} is text; quote the value: '{x}'", value.position)
            if t.dates and abs(x) >= 1e11:
                x = x / 1000  # MLflow's times are milliseconds; ours are seconds
            return t.number, float(x)
        if t.text is not None:
            return t.text, x.lower() if t.casefold else x
        if t.dates and t.number is not None:
            seconds = _iso_to_seconds(x)
            if seconds is None:
                raise self.fail(
                    f"expected unix seconds or an ISO date such as '2026-11-01' or "
                    f"'2026-11-01T12:00' for {field}",
                    value.position,
                )
            return t.number, seconds
        raise self.fail(
            f"{field} is a number; compare it with a number, not a string", value.position
        )


def compile_filter(text: str | None, *, now: float | None = None) -> tuple[str, list[object]]:
    """A filter as ``(sql_boolean_expression, params)``; ``("1", [])`` for no filter.

    ``now`` (unix seconds, default the current time) is what ``duration`` measures running
    runs against. Raises QuerySyntaxError with the offending position.
    """
    tree = parse_filter(text) if text else None
    if tree is None:
        return "1", []
    compiler = _Compiler(text or "", now)
    return compiler.expr(tree), compiler.params


def compile_order_by(
    text: str | Sequence[str] | None, *, now: float | None = None
) -> tuple[str, list[object]]:
    """An ORDER BY list (without the words ``ORDER BY``) and its params; missing values and
    NaN sort last in either direction. Params order by their number, then by their text.
    A list of keys (MLflow's ``order_by=[...]``) is joined with commas. No keys → newest
    first (``DEFAULT_ORDER``)."""
    keys = compile_order_keys(text, now=now)
    if keys == DEFAULT_ORDER_KEYS:
        return DEFAULT_ORDER, []
    parts = [f"{expr} {'DESC' if desc else 'ASC'} NULLS LAST" for expr, _, desc in keys]
    return ", ".join(parts), [p for _, params, _ in keys for p in params]


OrderTerm = tuple[str, list[object], bool]  # (SQL expression, its params, descending)
DEFAULT_ORDER_KEYS: list[OrderTerm] = [("r.start_time", [], True)]


def compile_order_keys(
    text: str | Sequence[str] | None, *, now: float | None = None
) -> list[OrderTerm]:
    """The terms of :func:`compile_order_by` one by one, each with its own params (keyset
    paging compares a row with the last row of the previous page term by term)."""
    if text is not None and not isinstance(text, str):
        text = ", ".join(text)
    keys = parse_order_by(text) if text else []
    if not keys:
        return list(DEFAULT_ORDER_KEYS)
    compiler = _Compiler(text or "", now)
    terms: list[OrderTerm] = []
    for key in keys:
        t = compiler.target(key.field)
        for expr in (t.number, t.text):
            if expr is not None:
                start = len(compiler.params)
                sql = compiler.scalar(t, expr)
                terms.append((sql, compiler.params[start:], key.descending))
    return terms


@dataclasses.dataclass(frozen=True)
class RunScope:
    """Which runs a query looks at, before any filter: the runs of ``experiments`` (None:
    every experiment), only ``run_ids`` (None: any), deleted runs or not, only the runs
    whose recorded notebook path is one of ``notebooks`` (None: any; the lab panel's "this
    notebook"). The runs table, ``search_runs`` and the typo notices share it, so "in
    scope" means one thing."""

    experiments: Sequence[str] | None = None
    run_ids: Sequence[str] | None = None
    include_deleted: bool = False
    notebooks: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.experiments, str):  # one name, not its letters
            object.__setattr__(self, "experiments", (self.experiments,))

    def where(self) -> tuple[str, list[object]]:
        """The scope as a SQL condition on ``runs r JOIN experiments e``, with its params."""
        conds, args = ["1"], list[object]()
        if not self.include_deleted:
            conds.append("r.deleted_at IS NULL")
        if self.experiments is not None:
            conds.append(f"e.name IN ({','.join('?' * len(self.experiments))})")
            args += self.experiments
        if self.run_ids is not None:
            conds.append("r.run_id IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(list(self.run_ids)))
        if self.notebooks is not None:
            conds.append("r.notebook IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(list(self.notebooks)))
        return " AND ".join(conds), args


KEYED_PREFIXES = ("params", "metrics", "tags")  # fields that name a key runs may lack


def field_key(field: Field) -> tuple[str, str] | None:
    """``("params" | "metrics" | "tags", key)`` for a field that names a key of a run
    (aliases resolved: ``metric.acc`` → ``("metrics", "acc")``); None for attributes,
    data, env and git fields, and for ``tags.`mlflow.runName` `` (the run's name)."""
    head = field.path[0].lower()
    prefix = _ALIASES.get(head, head)
    if len(field.path) < 2 or prefix not in KEYED_PREFIXES:
        return None
    key = ".".join(field.path[1:])
    return None if prefix == "tags" and key in _TAG_ALIASES else (prefix, key)


def referenced_keys(
    filter: str | None = None, order_by: str | Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """The params, metrics and tags keys a filter and an order_by name, in order, each
    once (what a typo check looks up). Raises QuerySyntaxError as the parsers do."""
    fields: list[Field] = []
    pending: list[Expr] = [tree] if filter and (tree := parse_filter(filter)) else []
    while pending:
        node = pending.pop(0)
        if isinstance(node, Comparison):
            fields.append(node.field)
        elif isinstance(node, Not):
            pending.insert(0, node.item)
        else:
            pending[:0] = node.items
    if order_by is not None and not isinstance(order_by, str):
        order_by = ", ".join(order_by)
    fields += [k.field for k in parse_order_by(order_by)] if order_by else []
    keys = (field_key(f) for f in fields)
    return list(dict.fromkeys(k for k in keys if k is not None))


def _iso_to_seconds(text: str) -> float | None:
    """Unix seconds of an ISO date or date-time; UTC unless it carries an offset."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


_LIKE_PIECE = re.compile(r"\\[%_]|.", re.DOTALL)  # `\%` and `\_` are a literal % and _


def _translate_like(pattern: str, *, glob: bool) -> str:
    """A LIKE pattern as GLOB (case-sensitive, whatever ``PRAGMA case_sensitive_like`` says)
    or as LIKE for ``ESCAPE '\\'`` (every literal ``%``, ``_`` and ``\\`` escaped)."""
    out = []
    for match in _LIKE_PIECE.finditer(pattern):
        piece, ch = match.group(), match.group()[-1]
        if piece in ("%", "_"):
            out.append(("*" if ch == "%" else "?") if glob else ch)
        elif glob:
            out.append(f"[{ch}]" if ch in "*?[" else ch)
        else:
            out.append("\\" + ch if ch in "%_\\" else ch)
    return "".join(out)
