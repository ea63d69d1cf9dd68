"""The run filter and order_by language, parsed: text → tokens → an AST of frozen
dataclasses (:func:`parse_filter`, :func:`parse_order_by`).

A hand-written tokenizer and recursive-descent parser; the limits on nesting, conditions
and IN-list values are checked here, before any SQL is built, so SQLite never refuses what
compiles. Everything here is a pure function of strings (standard library only);
:mod:`mlnb.store.query` compiles the AST to SQL with bound parameters and re-exports these
names. ``docs/query.md`` is the user's page.
"""

from __future__ import annotations

import dataclasses
import math
import re

from mlnb.errors import QuerySyntaxError

# Limits checked while parsing, before any SQL is built, so that SQLite never refuses what
# compiles. Nesting (NOT and parentheses): SQLite's parser stack held 20 nested NOTs and
# 23 levels of any mix here. Conditions: SQLite refuses an expression more than 1,000 levels
# deep, and a chain of N conditions is about N deep (988 was the most it took).
_MAX_DEPTH = 20
MAX_CONDITIONS = 800
MAX_VALUES = 10_000  # values in IN lists, all told (SQLite binds at most 32,766 per query)


@dataclasses.dataclass(frozen=True)
class Field:
    """A field as written: ``params.lr`` is ``Field(("params", "lr"))``.

    Positions (0-based offsets into the text) are kept for error messages and ignored by
    ``==``, so tests can compare shapes.
    """

    path: tuple[str, ...]
    position: int = dataclasses.field(default=0, compare=False)

    def __str__(self) -> str:
        return ".".join(s if _KEY.fullmatch(s) else f"`{s}`" for s in self.path)


@dataclasses.dataclass(frozen=True)
class Value:
    """A literal: ``str`` when quoted, ``int``/``float`` for a bare number, or ``bool``."""

    value: str | int | float | bool
    position: int = dataclasses.field(default=0, compare=False)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """``field op value``. ``op`` is one of ``= != < <= > >=``, ``LIKE``, ``NOT LIKE``,
    ``ILIKE``, ``NOT ILIKE`` (value: a ``str``), ``IN``, ``NOT IN`` (value: a tuple), or
    ``IS NULL``, ``IS NOT NULL``, ``IS NAN``, ``IS NOT NAN`` (value: ``None``)."""

    field: Field
    op: str
    value: Value | tuple[Value, ...] | None = None
    position: int = dataclasses.field(default=0, compare=False)  # of the operator


@dataclasses.dataclass(frozen=True)
class And:
    """All of ``items`` hold (two or more)."""

    items: tuple[Expr, ...]


@dataclasses.dataclass(frozen=True)
class Or:
    """Any of ``items`` holds (two or more)."""

    items: tuple[Expr, ...]


@dataclasses.dataclass(frozen=True)
class Not:
    """``item`` does not hold (so ``not params.x = 1`` matches runs without ``x``)."""

    item: Expr


Expr = Comparison | And | Or | Not


@dataclasses.dataclass(frozen=True)
class OrderKey:
    """One ``order_by`` key: a field and its direction (ascending unless ``desc``)."""

    field: Field
    descending: bool = False


_NAME = re.compile(r"[^\W\d]\w*")
_KEY = re.compile(r"\w[\w/-]*")  # a segment after a dot: `metrics.val/loss`, `params.f1-x`
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_OPS = {"<=": "<=", ">=": ">=", "!=": "!=", "<>": "!=", "==": "=", "=": "=", "<": "<", ">": ">"}
_SEGMENT_KINDS = ("name", "string", "quoted")
_RESERVED = {"and", "or", "not", "in", "like", "ilike", "is", "null", "true", "false"}


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str  # name, string ('…' or "…"), quoted (`…`), number, op, ( ) , . eof
    value: object
    start: int
    end: int


def _tokenize(text: str) -> list[_Token]:
    """Split ``text`` into tokens; a segment right after a dot may hold ``-`` and ``/``."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise QuerySyntaxError(
                f"lone surrogate {text[exc.start]!r} (not text SQLite can store); remove it",
                text,
                exc.start,
            ) from None
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        prev = tokens[-1].kind if tokens and tokens[-1].end == i else None  # adjacent
        if ch in "'\"`":
            value, end = _read_quoted(text, i)
            tokens.append(_Token("quoted" if ch == "`" else "string", value, i, end))
        elif prev == "." and (m := _KEY.match(text, i)):
            tokens.append(_Token("name", m.group(), i, m.end()))
        elif (m := _NUMBER.match(text, i)) and not (ch == "." and prev in _SEGMENT_KINDS):
            end = m.end()
            if end < n and (text[end].isalnum() or text[end] in "_."):
                raise QuerySyntaxError("invalid number", text, i)
            tokens.append(_Token("number", _number(m.group()), i, end))
        elif m := _NAME.match(text, i):
            tokens.append(_Token("name", m.group(), i, m.end()))
        elif op := next((o for o in _OPS if text.startswith(o, i)), None):
            tokens.append(_Token("op", _OPS[op], i, i + len(op)))
        elif ch in "(),.":
            tokens.append(_Token(ch, ch, i, i + 1))
        else:
            raise QuerySyntaxError(f"unexpected character {ch!r}", text, i)
        i = tokens[-1].end
    tokens.append(_Token("eof", None, n, n))
    return tokens


def _number(text: str) -> int | float:
    """A bare number: an int when written as one and within a float's range (values are
    compared as floats), else a float. An integer beyond that range is ±inf, as ``1e400``
    is, rather than an error from ``int()``'s digit limit or the float conversion."""
    value = float(text)
    if math.isfinite(value) and not any(c in text for c in ".eE"):
        return int(text)
    return value


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """A quoted string or key from ``start``: the quote doubled or after a backslash, and a
    doubled backslash, stand for themselves. Returns the content and the end offset."""
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and quote != "`" and text[i + 1 : i + 2] in (quote, "\\"):
            out.append(text[i + 1])
            i += 2
        elif ch == quote and text.startswith(quote, i + 1):
            out.append(quote)
            i += 2
        elif ch == quote:
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    what = "backtick-quoted key" if quote == "`" else "string"
    raise QuerySyntaxError(f"unterminated {what} (missing closing {quote})", text, start)


def quote_string(text: str) -> str:
    """``text`` as a string literal of the language (what :func:`_read_quoted` reads back):
    for filters built from values, e.g. a path with a quote in it."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


class _Parser:
    """Recursive descent over the tokens; precedence: NOT > AND > OR."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.conditions = 0
        self.values = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self, kind: str, *words: str) -> _Token | None:
        """Consume and return the next token if it is a ``kind`` (and one of ``words``)."""
        tok = self.tokens[self.i]
        if tok.kind != kind or (words and str(tok.value).lower() not in words):
            return None
        self.i += 1
        return tok

    def keyword(self, *words: str) -> _Token | None:
        return self.take("name", *words)

    def source(self, tok: _Token) -> str:
        return self.text[tok.start : tok.end]

    def error(self, message: str, tok: _Token | None = None) -> QuerySyntaxError:
        return QuerySyntaxError(message, self.text, (tok or self.peek()).start)

    def after(self, default: str) -> str:
        """``expected X after '<previous token>'``, or ``default`` at the start."""
        return f"after '{self.source(self.tokens[self.i - 1])}'" if self.i else default

    def parse_or(self) -> Expr:
        items = [self.parse_and()]
        while self.keyword("or"):
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Expr:
        items = [self.parse_not()]
        while self.keyword("and"):
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_not(self) -> Expr:
        tok = self.keyword("not")
        if tok is None:
            return self.parse_primary()
        self.enter(tok)
        item = self.parse_not()
        self.depth -= 1
        return Not(item)

    def enter(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error(f"expression nested more than {_MAX_DEPTH} levels deep", tok)

    def parse_primary(self) -> Expr:
        if opening := self.take("("):
            self.enter(opening)
            inner = self.parse_or()
            self.depth -= 1
            if not self.take(")"):
                raise self.error(f"expected ')' (the '(' at position {opening.start} is open)")
            return inner
        field = self.parse_field(f"expected a condition {self.after('such as metrics.acc > 0.9')}")
        return self.parse_comparison(field)

    def parse_field(self, expected: str) -> Field:
        first = self.peek()
        is_name = first.kind == "name" and str(first.value).lower() not in _RESERVED
        if not (is_name or first.kind == "quoted"):
            raise self.error(expected)
        self.i += 1
        path = [str(first.value)]
        while dot := self.take("."):
            seg = self.peek()
            if seg.kind not in _SEGMENT_KINDS or seg.start != dot.end:
                raise self.error(f"expected a key after '{self.text[first.start : dot.end]}'")
            path.append(str(seg.value))
            self.i += 1
        return Field(tuple(path), first.start)

    def parse_comparison(self, field: Field) -> Comparison:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise QuerySyntaxError(
                f"a filter may have at most {MAX_CONDITIONS} conditions (SQLite limits how "
                "deep an expression may be); combine them, e.g. params.x in ('a', 'b') "
                "instead of many ORs, or filter in steps",
                self.text,
                field.position,
            )
        if op := self.take("op"):
            value = self.parse_value(f"expected a value after '{self.source(op)}'")
            return Comparison(field, str(op.value), value, op.start)
        negated = self.keyword("not")
        if like := self.keyword("like", "ilike"):
            word = str(like.value).upper()
            pattern = self.take("string")
            if pattern is None:
                raise self.error(f"expected a quoted pattern after {word}")
            op_text = f"NOT {word}" if negated else word
            return Comparison(field, op_text, Value(str(pattern.value), pattern.start), like.start)
        if in_ := self.keyword("in"):
            values = self.parse_list()
            return Comparison(field, "NOT IN" if negated else "IN", values, in_.start)
        if negated:
            raise self.error("expected LIKE, ILIKE or IN after NOT")
        if is_ := self.keyword("is"):
            negated = self.keyword("not")
            what = self.keyword("null", "nan")
            if what is None:
                raise self.error("expected NULL, NOT NULL, NAN or NOT NAN after IS")
            op_text = f"IS {'NOT ' if negated else ''}{str(what.value).upper()}"
            return Comparison(field, op_text, None, is_.start)
        raise self.error(
            f"expected an operator after '{field}' (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS)"
        )

    def parse_value(self, expected: str) -> Value:
        tok = self.peek()
        if tok.kind in ("string", "number"):
            self.i += 1
            return Value(tok.value, tok.start)  # type: ignore[arg-type]
        word = str(tok.value).lower() if tok.kind == "name" else ""
        if word in ("true", "false"):
            self.i += 1
            return Value(word == "true", tok.start)
        if word == "null":
            raise self.error("NULL cannot be compared; use IS NULL or IS NOT NULL")
        if word and word not in _RESERVED:
            expected += f"; quote text values, e.g. '{tok.value}'"
        raise self.error(expected)

    def parse_list(self) -> tuple[Value, ...]:
        if not self.take("("):
            raise self.error("expected '(' after IN")
        values = [self.parse_value("expected a value in the IN list")]
        while self.take(","):
            if self.peek().kind == ")":
                break  # a trailing comma is harmless
            values.append(self.parse_value("expected a value after ','"))
        if not self.take(")"):
            raise self.error("expected ',' or ')' in the IN list")
        self.values += len(values)
        if self.values > MAX_VALUES:
            raise self.error(
                f"a filter may list at most {MAX_VALUES:,} values in its IN lists; filter in "
                "steps, or tag the runs you want and filter on the tag",
                self.tokens[self.i - 1],
            )
        return tuple(values)

    def expect_end(self, expected: str) -> None:
        tok = self.peek()
        if tok.kind == ")":
            raise self.error("unmatched ')'")
        if tok.kind != "eof":
            raise self.error(
                f"expected {expected} or the end of the text, found '{self.source(tok)}'"
            )


def parse_filter(text: str) -> Expr | None:
    """The AST of a filter; ``None`` for empty or blank text. Raises QuerySyntaxError."""
    parser = _Parser(text)
    if parser.peek().kind == "eof":
        return None
    tree = parser.parse_or()
    parser.expect_end("AND, OR")
    return tree


def parse_order_by(text: str) -> list[OrderKey]:
    """``metrics.acc desc, params.lr`` → order keys (ascending by default)."""
    parser = _Parser(text)
    keys: list[OrderKey] = []
    while parser.peek().kind != "eof":
        if keys and not parser.take(","):
            last = keys[-1].field
            raise parser.error(f"expected ASC, DESC or ',' after '{last}'")
        where = parser.after("such as metrics.acc desc")
        field = parser.parse_field(f"expected a field to order by {where}")
        direction = str(getattr(parser.keyword("asc", "desc"), "value", "asc")).lower()
        keys.append(OrderKey(field, direction == "desc"))
    return keys
