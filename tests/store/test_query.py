"""The filter language: parser shapes and errors, and what the compiled SQL selects in a
real store built with the real migrations."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlite_utils

from mlnb.errors import QuerySyntaxError
from mlnb.store import query
from mlnb.store.migrations import migrations
from mlnb.store.query import (
    And,
    Comparison,
    Context,
    Field,
    Not,
    Or,
    OrderKey,
    Target,
    Value,
    compile_filter,
    compile_order_by,
    parse_filter,
    parse_order_by,
    quote_string,
    register_field,
)
from tests.conftest import REPO

UNKNOWN_FOO_BAR = (
    "unknown field 'foo.bar' (known prefixes: attributes, data, env, git, metrics, params, tags)"
)
KNOWN_ATTRIBUTES = (
    "(known: duration, end_time, experiment, linearity, name, notebook, parent_run_id, run_id, "
    "source, start_time, status, user)"
)
OPERATORS = " (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS)"
NOW = 1_800_000_000.0  # 2027-01-15, passed as `now` so durations are exact


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


# run_id, experiment, name, status, start_time, duration (None: still running), parent
RUNS = [
    ("a", "vision", "base-1", "finished", ts("2026-11-01T10:00"), 100, None),
    ("b", "vision", "Base-2", "finished", ts("2026-11-02T00:00"), 50, None),
    ("c", "nlp", "other", "failed", ts("2026-10-30T00:00"), 10, "a"),
    ("d", "vision", "running-1", "running", NOW - 1000, None, None),
    ("e", "nlp", "100%_done*", "killed", ts("2026-11-03T00:00"), 5, None),
]
# key: (value, type, value_num) as mlnb.store.inputs.encode_param writes them
PARAMS: dict[str, dict[str, tuple[str, str, float | None]]] = {
    "a": {
        "lr": ("0.01", "float", 0.01),
        "depth": ("3", "int", 3.0),
        "opt": ("adam", "str", None),
        "flag": ("True", "bool", 1.0),
        "model.lr": ("0.5", "float", 0.5),
    },
    "b": {
        "lr": ("0.1", "float", 0.1),
        "depth": ("3", "str", 3.0),
        "opt": ("Adam", "str", None),
        "flag": ("False", "bool", 0.0),
    },
    "c": {
        "lr": ("0.001", "float", 0.001),
        "depth": ("deep", "str", None),
        "opt": ("sgd", "str", None),
        "my key": ("x", "str", None),
        "q'uote": ("v", "str", None),
        "x": ("1' or 1=1 --", "str", None),
    },
    "e": {"depth": ("10", "str", 10.0)},
}
METRICS: dict[str, dict[str, float | None]] = {  # None is NaN
    "a": {"acc": 0.95, "loss": 0.1, "val/loss": 0.2},
    "b": {"acc": 0.8, "loss": None},
    "c": {"acc": 0.5, "delta": -0.5},
    "e": {"loss": float("inf")},
}
TAGS: dict[str, dict[str, str]] = {
    "a": {"team": "vision", "note": "it's", "env.python": "3.12.1"},
    "b": {"team": "nlp", "env.python": "3.11.4"},
    "d": {"team": "vision"},
}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite_utils.Database]:
    database = sqlite_utils.Database(tmp_path_factory.mktemp("query") / "mlnb.db")
    migrations().apply(database)
    for exp_id, name in enumerate(["vision", "nlp"], 1):
        database.execute("INSERT INTO experiments VALUES (?, ?, 0)", [exp_id, name])
    for rid, (run_id, exp, name, status, start, duration, parent) in enumerate(RUNS, 1):
        database.execute(
            "INSERT INTO runs (id, run_id, experiment_id, name, status, parent_run_id, "
            "start_time, end_time) VALUES (?, ?, (SELECT id FROM experiments WHERE name = ?), "
            "?, ?, ?, ?, ?)",
            [rid, run_id, exp, name, status, parent, start, duration and start + duration],
        )
        for key, (value, type_, num) in PARAMS.get(run_id, {}).items():
            database.execute(
                "INSERT INTO params VALUES (?, ?, ?, ?, ?)", [rid, key, value, type_, num]
            )
        for key, metric in METRICS.get(run_id, {}).items():
            database.execute(
                "INSERT INTO latest_metrics VALUES (?, ?, 0, ?, 0)", [rid, key, metric]
            )
        for key, tag in TAGS.get(run_id, {}).items():
            database.execute("INSERT INTO tags VALUES (?, ?, ?)", [rid, key, tag])
    database.conn.commit()
    yield database
    database.close()


def select(db: sqlite_utils.Database, text: str | None) -> str:
    """The run ids a filter selects, sorted and joined: ``"abd"``."""
    where, params = compile_filter(text, now=NOW)
    sql = (
        "SELECT r.run_id FROM runs r JOIN experiments e ON e.id = r.experiment_id "
        f"WHERE {where} ORDER BY r.run_id"
    )
    return "".join(row[0] for row in db.execute(sql, params).fetchall())


def ordered(db: sqlite_utils.Database, order_by: str | list[str] | None) -> str:
    """The run ids in the order ``order_by`` gives (ties broken by run id)."""
    order, params = compile_order_by(order_by, now=NOW)
    sql = (
        "SELECT r.run_id FROM runs r JOIN experiments e ON e.id = r.experiment_id "
        f"ORDER BY {order}, r.run_id"
    )
    return "".join(row[0] for row in db.execute(sql, params).fetchall())


Literal = str | int | float | bool


def cmp(path: str, op: str, value: Literal | tuple[Literal, ...] | None = None) -> Comparison:
    """A Comparison as the parser builds it (positions are not compared)."""
    field = Field(tuple(path.split(".")))
    if isinstance(value, tuple):
        return Comparison(field, op, tuple(Value(v) for v in value))
    return Comparison(field, op, None if value is None else Value(value))


# -- parser: shapes


def test_parse_filter_mlflow_conjunction() -> None:
    assert parse_filter("params.lr = '0.01' and metrics.acc > 0.9") == And(
        (cmp("params.lr", "=", "0.01"), cmp("metrics.acc", ">", 0.9))
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a = 1 or b = 2 and c = 3",
            Or((cmp("a", "=", 1), And((cmp("b", "=", 2), cmp("c", "=", 3))))),
        ),
        (
            "(a = 1 or b = 2) and c = 3",
            And((Or((cmp("a", "=", 1), cmp("b", "=", 2))), cmp("c", "=", 3))),
        ),
        ("not a = 1 and b = 2", And((Not(cmp("a", "=", 1)), cmp("b", "=", 2)))),
        ("not (a = 1 and b = 2)", Not(And((cmp("a", "=", 1), cmp("b", "=", 2))))),
        ("not not a = 1", Not(Not(cmp("a", "=", 1)))),
        ("a = 1 and b = 2 and c = 3", And((cmp("a", "=", 1), cmp("b", "=", 2), cmp("c", "=", 3)))),
        ("((a = 1))", cmp("a", "=", 1)),
    ],
)
def test_parse_filter_precedence_not_and_or(text: str, expected: object) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "status = 'x' AND name = 'y'",
        "status = 'x' and name = 'y'",
        "status = 'x' AnD name = 'y'",
        "status = 'x'\n\tand name = 'y'",
    ],
)
def test_parse_filter_keywords_are_case_insensitive(text: str) -> None:
    assert parse_filter(text) == And((cmp("status", "=", "x"), cmp("name", "=", "y")))


@pytest.mark.parametrize(
    ("text", "op"),
    [
        ("x = 1", "="),
        ("x == 1", "="),
        ("x != 1", "!="),
        ("x <> 1", "!="),
        ("x < 1", "<"),
        ("x <= 1", "<="),
        ("x > 1", ">"),
        ("x >= 1", ">="),
        ("x like 'a'", "LIKE"),
        ("x NOT LIKE 'a'", "NOT LIKE"),
        ("x ILIKE 'a'", "ILIKE"),
        ("x not ilike 'a'", "NOT ILIKE"),
        ("x in ('a')", "IN"),
        ("x Not In ('a',)", "NOT IN"),
        ("x is null", "IS NULL"),
        ("x IS NOT NULL", "IS NOT NULL"),
        ("x is nan", "IS NAN"),
        ("x is not NaN", "IS NOT NAN"),
    ],
)
def test_parse_filter_operators(text: str, op: str) -> None:
    tree = parse_filter(text)
    assert isinstance(tree, Comparison)
    assert tree.op == op


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("params.lr", ("params", "lr")),
        ("param.lr", ("param", "lr")),
        ("metrics.`val/loss`", ("metrics", "val/loss")),
        ("metrics.val/loss", ("metrics", "val/loss")),
        ("params.f1-score", ("params", "f1-score")),
        ('params."my key"', ("params", "my key")),
        ("params.'my key'", ("params", "my key")),
        ("tags.mlflow.runName", ("tags", "mlflow", "runName")),
        ("tags.`mlflow.runName`", ("tags", "mlflow.runName")),
        ("metrics.top1", ("metrics", "top1")),
        ("metrics.5x", ("metrics", "5x")),
        ("status", ("status",)),
        ("attributes.status", ("attributes", "status")),
        ("`run name`", ("run name",)),
    ],
)
def test_parse_filter_field_paths(text: str, path: tuple[str, ...]) -> None:
    tree = parse_filter(f"{text} = 'v'")
    assert isinstance(tree, Comparison)
    assert tree.field.path == path


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'adam'", "adam"),
        ('"adam"', "adam"),
        ("'it''s'", "it's"),
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'back\\slash'", "back\\slash"),
        (r"'a\nb'", "a\\nb"),
        ("''", ""),
        ("3", 3),
        ("-3", -3),
        ("+3", 3),
        ("0.5", 0.5),
        (".5", 0.5),
        ("-1.5e-3", -0.0015),
        ("1E6", 1e6),
        ("true", True),
        ("FALSE", False),
    ],
)
def test_parse_filter_values(literal: str, value: object) -> None:
    tree = parse_filter(f"x = {literal}")
    assert isinstance(tree, Comparison) and isinstance(tree.value, Value)
    assert tree.value.value == value
    assert type(tree.value.value) is type(value)


@pytest.mark.parametrize(
    "text", ["plain", "bob's train.ipynb", "C:\\runs\\it's", "ends with \\", "''", ""]
)
def test_quote_string_is_read_back_as_the_same_text(text: str) -> None:
    tree = parse_filter(f"source = {quote_string(text)}")
    assert isinstance(tree, Comparison) and isinstance(tree.value, Value)
    assert tree.value.value == text


def test_parse_filter_records_positions() -> None:
    tree = parse_filter("status = 'a' or  metrics.acc >= 0.5")
    assert isinstance(tree, Or)
    second = tree.items[1]
    assert isinstance(second, Comparison) and isinstance(second.value, Value)
    assert (second.field.position, second.position, second.value.position) == (17, 29, 32)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_parse_filter_empty_is_none(text: str) -> None:
    assert parse_filter(text) is None
    assert compile_filter(text) == ("1", [])


def test_compile_filter_none_matches_everything(db: sqlite_utils.Database) -> None:
    assert compile_filter(None) == ("1", [])
    assert select(db, None) == "abcde"


# -- parser: errors


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("metrics.acc >", "expected a value after '>'", 13),
        ("metrics.acc > ", "expected a value after '>'", 14),
        ("metrics.acc > and status = 'x'", "expected a value after '>'", 14),
        ("status = 'finished", "unterminated string (missing closing ')", 9),
        ('tags.x = "abc', 'unterminated string (missing closing ")', 9),
        ("metrics.`val = 1", "unterminated backtick-quoted key (missing closing `)", 8),
        ("status = finished", "expected a value after '='; quote text values, e.g. 'finished'", 9),
        ("status 'x'", "expected an operator after 'status'" + OPERATORS, 7),
        ("status", "expected an operator after 'status'" + OPERATORS, 6),
        ("status = 'a' and", "expected a condition after 'and'", 16),
        ("status = 'a' or or", "expected a condition after 'or'", 16),
        ("and status = 'a'", "expected a condition such as metrics.acc > 0.9", 0),
        ("'a' = status", "expected a condition such as metrics.acc > 0.9", 0),
        ("status = 'a' name = 'b'", "expected AND, OR or the end of the text, found 'name'", 13),
        ("(status = 'a'", "expected ')' (the '(' at position 0 is open)", 13),
        ("status = 'a')", "unmatched ')'", 12),
        ("params. lr = 1", "expected a key after 'params.'", 8),
        ("params.lr = null", "NULL cannot be compared; use IS NULL or IS NOT NULL", 12),
        ("status in 'a'", "expected '(' after IN", 10),
        ("status in ()", "expected a value in the IN list", 11),
        ("status in ('a' 'b')", "expected ',' or ')' in the IN list", 15),
        ("status in ('a',", "expected a value after ','", 15),
        ("status is 'a'", "expected NULL, NOT NULL, NAN or NOT NAN after IS", 10),
        ("status not = 'a'", "expected LIKE, ILIKE or IN after NOT", 11),
        ("name like 5", "expected a quoted pattern after LIKE", 10),
        ("name ilike x", "expected a quoted pattern after ILIKE", 11),
        ("metrics.acc > 0.9x", "invalid number", 14),
        ("metrics.acc > 1.2.3", "invalid number", 14),
        ("status = 'a' & name = 'b'", "unexpected character '&'", 13),
        ("metrics.acc > 1; drop table runs", "unexpected character ';'", 15),
    ],
)
def test_parse_filter_syntax_errors(text: str, message: str, position: int) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_filter(text)
    assert info.value.reason == message
    assert info.value.position == position
    assert info.value.text == text


def test_parse_filter_error_message_has_a_caret() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        compile_filter("metrics.acc > ")
    assert str(info.value) == (
        "expected a value after '>' at position 14\n  metrics.acc > \n                ^"
    )


@pytest.mark.parametrize(
    "text", ["(" * 150 + "status = 'a'" + ")" * 150, "not " * 150 + "status = 'a'"]
)
def test_parse_filter_limits_nesting(text: str) -> None:
    with pytest.raises(QuerySyntaxError, match="nested more than 20 levels"):
        parse_filter(text)


def test_parse_filter_long_flat_chains_are_fine(db: sqlite_utils.Database) -> None:
    text = " or ".join(f"run_id = '{i}'" for i in range(500)) + " or run_id = 'c'"
    assert select(db, text) == "c"


# -- compile: errors found when resolving fields and literals


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        (
            "statuss = 'x'",
            "unknown attribute 'statuss' " + KNOWN_ATTRIBUTES,
            0,
        ),
        ("attributes.nope = 1", "unknown attribute 'nope' " + KNOWN_ATTRIBUTES, 0),
        (
            "status = 'a' or foo.bar = 1",
            UNKNOWN_FOO_BAR,
            16,
        ),
        ("params = 1", "params needs a key, as in params.<key>", 0),
        (
            "metrics.acc = 'high'",
            "metrics.acc is a number; compare it with a number, not a string",
            14,
        ),
        (
            "metrics.acc in (0.5, 'x')",
            "metrics.acc is a number; compare it with a number, not a string",
            21,
        ),
        ("metrics.acc like 'x%'", "LIKE needs text, but metrics.acc is a number", 12),
        ("metrics.acc = true", "metrics.acc cannot be compared with true or false", 14),
        ("tags.team = false", "tags.team cannot be compared with true or false", 12),
        ("params.flag > true", "true and false only work with =, != and IN", 12),
        ("tags.team = 3", "tags.team is text; quote the value: '3'", 12),
        ("status = 1", "status is text; quote the value: '1'", 9),
        (
            "start_time > 'yesterday'",
            "expected unix seconds or an ISO date such as '2026-11-01' or '2026-11-01T12:00' "
            "for start_time",
            13,
        ),
        ("duration > '1h'", "duration is a number; compare it with a number, not a string", 11),
        ("params.lr is nan", "only metrics can be NaN, not params.lr", 10),
    ],
)
def test_compile_filter_field_errors(text: str, message: str, position: int) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        compile_filter(text)
    assert info.value.reason == message
    assert info.value.position == position


# -- compile: the SQL shape


def test_compile_filter_sql_and_params_in_order() -> None:
    sql, params = compile_filter(
        "params.lr > 0.005 and (duration < 10 or tags.t in ('a', 'b'))", now=5.0
    )
    assert sql == (
        "(EXISTS (SELECT 1 FROM params p WHERE p.run = r.id AND p.key = ? AND p.value_num > ?)"
        " AND ((COALESCE(r.end_time, ?) - r.start_time) < ?"
        " OR EXISTS (SELECT 1 FROM tags t WHERE t.run = r.id AND t.key = ? AND t.value IN (?, ?))))"
    )
    assert params == ["lr", 0.005, 5.0, 10.0, "t", "a", "b"]


@pytest.mark.parametrize(
    "text",
    [
        "params.x = '1'' or 1=1 --'",
        "tags.`k'); DROP TABLE runs; --` = 'v'",
        'params."a"" or ""1""=""1" = \'x\'',
        "name like '%'' or ''1''=''1'",
        "status in ('a''); --', 'b')",
        "experiment ilike '\\' OR 1=1'",
        "start_time > '2026-11-01' and duration > 1",
    ],
)
def test_compile_filter_binds_values_and_keys(text: str) -> None:
    sql, params = compile_filter(text, now=NOW)
    assert "'" not in sql and '"' not in sql and "--" not in sql and ";" not in sql
    assert sql.count("?") == len(params)


# -- behaviour against a real store


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status = 'finished'", "ab"),
        ("attributes.status = 'FINISHED'", "ab"),
        ("attribute.status != 'finished'", "cde"),
        ("status == 'finished'", "ab"),
        ("status <> 'finished'", "cde"),
        ("status in ('finished', 'failed')", "abc"),
        ("status not in ('finished', 'failed')", "de"),
        ("status like 'FIN%'", "ab"),
        ("name = 'base-1'", "a"),
        ("run_id = 'c'", "c"),
        ("run_id in ('a', 'e')", "ae"),
        ("run_id > 'c'", "de"),
        ("experiment = 'nlp'", "ce"),
        ("experiment_name like 'vis%'", "abd"),
        ("parent_run_id = 'a'", "c"),
        ("parent_run_id is null", "abde"),
        ("attributes.parent_run_id is not null", "c"),
        ("end_time is null", "d"),
        ("end_time is not null", "abce"),
        ("end_time != 0", "abce"),
        ("source is null", "abcde"),
    ],
)
def test_filter_attributes(db: sqlite_utils.Database, text: str, expected: str) -> None:
    assert select(db, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("attributes.run_name LIKE 'base%'", "a"),
        ("name like 'Base%'", "b"),
        ("name ILIKE 'BASE%'", "ab"),
        ("name not like 'base%'", "bcde"),
        ("name not ilike 'base%'", "cde"),
        ("name like '%-_'", "abd"),
        ("name like '%_%'", "abcde"),
        (r"name like '%\_%'", "e"),
        (r"name like '1__\%%'", "e"),
        (r"name ilike '%\%%'", "e"),
        ("name like '%*'", "e"),
        ("name like '%?'", ""),
        ("name like '[b]%'", ""),
        ("params.opt like 'a%'", "a"),
        ("params.opt ilike 'ADAM'", "ab"),
        ("tags.team like 'v%'", "ad"),
    ],
)
def test_filter_like_is_case_sensitive_and_ilike_is_not(
    db: sqlite_utils.Database, text: str, expected: str
) -> None:
    assert select(db, text) == expected


def test_filter_like_ignores_case_sensitive_like_pragma(db: sqlite_utils.Database) -> None:
    for setting in ("ON", "OFF"):
        db.execute(f"PRAGMA case_sensitive_like = {setting}")
        assert (select(db, "name like 'base%'"), select(db, "name ilike 'base%'")) == ("a", "ab")
    db.execute("PRAGMA case_sensitive_like = OFF")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("start_time >= '2026-11-01'", "abde"),
        ("start_time < '2026-11-01T00:00:00Z'", "c"),
        ("start_time > '2026-11-01T11:00+02:00'", "abde"),  # 09:00 UTC; a started at 10:00
        ("start_time > '2026-11-01T11:00'", "bde"),  # no offset: UTC
        ("start_time > '2026-11-01 11:00:00'", "bde"),
        (f"created < {ts('2026-11-01')}", "c"),
        (f"attributes.start_time < {int(ts('2026-11-01') * 1000)}", "c"),  # MLflow's ms
        ("end_time < '2026-11-02'", "ac"),
        ("duration > 60", "ad"),
        ("duration < 20", "ce"),
        ("duration >= 1000", "d"),  # still running: measured up to `now`
    ],
)
def test_filter_times_and_duration(db: sqlite_utils.Database, text: str, expected: str) -> None:
    assert select(db, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.lr = '0.01'", "a"),
        ("params.lr = 0.01", "a"),
        ("param.lr > 0.005", "ab"),
        ("params.lr <= 1e-2", "ac"),
        ("params.depth = 3", "ab"),  # an int 3 and a string '3'
        ("params.depth = '3'", "ab"),
        ("params.depth > 2", "abe"),  # numeric: '10' > 2, 'deep' is not a number
        ("params.depth > '2'", "abc"),  # text: '3' and 'deep' > '2' but '10' < '2'
        ("params.depth = 'deep'", "c"),
        ("params.depth != 3", "e"),  # numeric comparisons skip text values
        ("params.depth != '3'", "ce"),
        ("params.depth in (3, 'deep')", "abc"),
        ("params.depth not in (3)", "e"),
        ("params.flag = true", "a"),
        ("params.flag = FALSE", "b"),
        ("params.flag != true", "b"),
        ("params.flag = 1", "a"),
        ("params.opt = 'adam'", "a"),
        ("params.opt in ('adam', 'sgd')", "ac"),
        ("params.opt not in ('adam', 'sgd')", "b"),
        ("params.model.lr = 0.5", "a"),
        ("params.`model.lr` = 0.5", "a"),
        ("params.`my key` = 'x'", "c"),
        ("params.\"my key\" = 'x'", "c"),
        ("parameters.'my key' = 'x'", "c"),
    ],
)
def test_filter_params_numeric_and_text(
    db: sqlite_utils.Database, text: str, expected: str
) -> None:
    assert select(db, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.opt != 'adam'", "bc"),  # runs without opt never match (MLflow)
        ("not params.opt = 'adam'", "bcde"),  # the negation does
        ("params.opt is null", "de"),
        ("params.opt is not null", "abc"),
        ("params.nothing != 'x'", ""),
        ("params.nothing is null", "abcde"),
        ("tags.team is null", "ce"),
        ("tags.team != 'vision'", "b"),
        ("metrics.acc is null", "de"),
    ],
)
def test_filter_missing_keys(db: sqlite_utils.Database, text: str, expected: str) -> None:
    assert select(db, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.acc > 0.9", "a"),
        ("metric.acc >= 0.8", "ab"),
        ("metrics.acc < 0.9", "bc"),
        ("metrics.acc = 0.5", "c"),
        ("metrics.acc != 0.5", "ab"),
        ("metrics.acc in (0.5, 0.8)", "bc"),
        ("metrics.acc not in (0.5)", "ab"),
        ("metrics.`val/loss` < 1", "a"),
        ("metrics.val/loss < 1", "a"),
        ("metrics.delta > -1", "c"),
        ("metrics.delta>-1", "c"),
        ("metrics.delta < -.1", "c"),
    ],
)
def test_filter_metrics(db: sqlite_utils.Database, text: str, expected: str) -> None:
    assert select(db, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.loss < 100", "a"),  # b's loss is NaN, e's is inf
        ("metrics.loss >= 0 or metrics.loss < 0", "ae"),
        ("metrics.loss > 100", "e"),
        ("metrics.loss != 0.1", "e"),
        ("not metrics.loss = 0.1", "bcde"),
        ("metrics.loss is nan", "b"),
        ("metrics.loss is not nan", "ae"),
        ("metrics.loss is null", "cd"),  # absent only: NaN is a value
        ("metrics.loss is not null", "abe"),
    ],
)
def test_filter_nan_metrics_never_match_comparisons(
    db: sqlite_utils.Database, text: str, expected: str
) -> None:
    assert select(db, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('tags.team = "vision"', "ad"),
        ("tag.team in ('nlp')", "b"),
        ("tags.note = 'it''s'", "a"),
        (r"tags.note = 'it\'s'", "a"),
        ('tags.note = "it\'s"', "a"),
        ("tags.env.python like '3.12%'", "a"),
    ],
)
def test_filter_tags(db: sqlite_utils.Database, text: str, expected: str) -> None:
    assert select(db, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status = 'failed' or status = 'finished' and experiment = 'vision'", "abc"),
        ("(status = 'failed' or status = 'finished') and experiment = 'vision'", "ab"),
        ("not status = 'finished' and experiment = 'vision'", "d"),
        ("not (status = 'finished' and experiment = 'vision')", "cde"),
        ("NOT NOT status = 'finished'", "ab"),
        ("not parent_run_id = 'a'", "abde"),  # NULL parent: not a match, so NOT matches
        ("not end_time > 0", "d"),
        ("not (parent_run_id = 'a' or end_time is null)", "abe"),
        ("not not parent_run_id = 'a'", "c"),
        ("STATUS = 'finished' AnD Params.lr > 0.05", "b"),
        ("((metrics.acc > 0.6 or tags.team = 'vision') and not end_time is null)", "ab"),
    ],
)
def test_filter_precedence_and_parentheses(
    db: sqlite_utils.Database, text: str, expected: str
) -> None:
    assert select(db, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.x = '1'' or 1=1 --'", "c"),  # one string, matched literally
        (r"params.x = '1\' or 1=1 --'", "c"),
        ("params.`q'uote` = 'v'", "c"),
        ("params.\"x' or 1=1 --\" = 'v'", ""),
        ("name = '''; DROP TABLE runs; --'", ""),
        ("tags.`k') OR 1=1 --` is null", "abcde"),
    ],
)
def test_filter_injection_attempts_stay_values(
    db: sqlite_utils.Database, text: str, expected: str
) -> None:
    assert select(db, text) == expected
    assert db["runs"].count == len(RUNS)


# -- order_by


def test_parse_order_by_keys_and_directions() -> None:
    assert parse_order_by("metrics.acc DESC, params.lr, start_time asc") == [
        OrderKey(Field(("metrics", "acc")), descending=True),
        OrderKey(Field(("params", "lr"))),
        OrderKey(Field(("start_time",))),
    ]


@pytest.mark.parametrize("text", [None, "", "  ", []])
def test_compile_order_by_default_is_newest_first(text: str | list[str] | None) -> None:
    assert compile_order_by(text) == ("r.start_time DESC", [])


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        ("metrics.acc desc", "abcde"),
        ("metrics.acc", "cbade"),
        ("metrics.loss", "aebcd"),  # NaN and missing last
        ("metrics.loss desc", "eabcd"),  # ... in either direction
        ("params.lr desc", "bacde"),
        ("params.depth", "abecd"),  # numbers numerically (3, 3, 10), then text, then missing
        ("params.depth desc", "eabcd"),
        ("params.opt", "bacde"),
        ("start_time", "cabed"),
        ("attributes.start_time desc", "debac"),
        ("name", "ebacd"),
        ("duration desc", "dabce"),
        ("status", "cabed"),
        ("tags.team, metrics.acc desc", "badce"),
        ("experiment desc, name", "badec"),
        (["params.lr desc"], "bacde"),
        (["tags.team", "metrics.acc desc"], "badce"),
    ],
)
def test_order_by_sorts_missing_last(
    db: sqlite_utils.Database, order_by: str | list[str], expected: str
) -> None:
    assert ordered(db, order_by) == expected


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("metrics.acc descending", "expected ASC, DESC or ',' after 'metrics.acc'", 12),
        ("metrics.acc desc,", "expected a field to order by after ','", 17),
        (", name", "expected a field to order by such as metrics.acc desc", 0),
        ("nope", "unknown attribute 'nope' " + KNOWN_ATTRIBUTES, 0),
        (
            "name, foo.bar",
            UNKNOWN_FOO_BAR,
            6,
        ),
    ],
)
def test_compile_order_by_errors(text: str, message: str, position: int) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        compile_order_by(text)
    assert info.value.reason == message
    assert info.value.position == position


# -- the field registry


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made in a test are undone after it."""
    monkeypatch.setattr(query, "_FIELDS", dict(query._FIELDS))
    monkeypatch.setattr(query, "_ALIASES", dict(query._ALIASES))


def env_field(key: tuple[str, ...], ctx: Context) -> Target:
    """A stand-in for a later module: ``env.<name>`` read from ``env.*`` tags."""
    return Target(
        text="x.value",
        source="FROM tags x WHERE x.run = r.id AND x.key = ?",
        source_params=("env." + ".".join(key),),
    )


@pytest.mark.usefixtures("registry")
def test_register_field_adds_a_prefix(db: sqlite_utils.Database) -> None:
    register_field("lab", env_field, aliases=["laboratory"])
    assert select(db, "lab.python like '3.12%'") == "a"
    assert select(db, "Laboratory.python is null") == "cde"
    assert ordered(db, "lab.python desc") == "abcde"
    with pytest.raises(QuerySyntaxError, match="known prefixes: attributes, data, env, git, lab"):
        compile_filter("nope.x = 1")


@pytest.mark.usefixtures("registry")
def test_register_field_passes_quoted_segments_whole() -> None:
    seen = []

    def data_field(key: tuple[str, ...], ctx: Context) -> Target:
        seen.append(key)
        if key[-1] != "hash":
            raise ValueError(f"unknown data field '{key[-1]}' (known: hash)")
        return Target(
            text="d.hash",
            source="FROM datasets d WHERE d.run = r.id AND d.name = ?",
            source_params=(key[0],),
        )

    register_field("files", data_field)
    sql, params = compile_filter("files.`train.csv`.hash = 'abc'")
    assert (
        sql == "EXISTS (SELECT 1 FROM datasets d WHERE d.run = r.id AND d.name = ? AND d.hash = ?)"
    )
    assert seen == [("train.csv", "hash")]
    assert params == ["train.csv", "abc"]
    with pytest.raises(QuerySyntaxError) as info:
        compile_filter("status = 'a' and files.train.size > 1")
    assert (info.value.reason, info.value.position) == (
        "unknown data field 'size' (known: hash)",
        17,
    )


@pytest.mark.usefixtures("registry")
@pytest.mark.parametrize("prefix", ["params", "Metrics", "tag", "attr", "a.b", "1x", ""])
def test_register_field_refuses_taken_or_invalid_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match="taken or not an identifier"):
        register_field(prefix, env_field)


def test_register_field_builtins_use_the_registry() -> None:
    assert {"params", "metrics", "tags", "attributes"} <= set(query._FIELDS)


def test_target_needs_an_expression() -> None:
    with pytest.raises(ValueError, match="needs a text or a number"):
        Target(source="FROM x")


# -- docs/query.md stays true


DOCS = REPO / "docs" / "query.md"


def doc_examples() -> list[str]:
    """The Examples block, the first column of the dates block, and every table row whose
    last cell is one backticked expression."""
    text = DOCS.read_text()
    examples = text.split("## Examples")[1].split("```text")[1].split("```")[0].split("\n")
    dates = text.split("### Dates and times")[1].split("```text")[1].split("```")[0]
    examples += [re.split(r"\s{2,}", line)[0] for line in dates.split("\n")]
    examples += re.findall(r"^\|.*\| `([^`]+)` \|$", text, re.MULTILINE)
    return [line.strip() for line in examples if line.strip()]


def test_docs_examples_compile() -> None:
    examples = doc_examples()
    assert len(examples) > 40
    for example in examples:
        compile_filter(example)


@pytest.mark.parametrize("text", ["metrics.acc > and status = 'finished'", "statuss = 'finished'"])
def test_docs_error_examples_are_verbatim(text: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        compile_filter(text)
    assert str(info.value) in DOCS.read_text()


# -- module hygiene


@pytest.mark.parametrize(
    ("module", "ours"),
    [("query", {"mlnb.errors", "mlnb.store.query_ast"}), ("query_ast", {"mlnb.errors"})],
)
def test_query_module_imports_only_the_standard_library(module: str, ours: set[str]) -> None:
    """The language (parse and compile) is pure: the standard library and our errors only
    (the parser was split out of the compiler, issue 12)."""
    tree = ast.parse((Path(query.__file__).parent / f"{module}.py").read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    outside = {
        name
        for name in imported
        if name.split(".")[0] not in sys.stdlib_module_names and name != "__future__"
    }
    assert outside == ours


# -- MLflow spellings and typos (issue 11 item 6) -------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tags.`mlflow.runName` = 'Base-2'", "b"),
        ("tags.mlflow.runName like 'base%'", "a"),
        ("tag.`mlflow.runName` in ('other', 'base-1')", "ac"),
    ],
)
def test_filter_mlflow_run_name_tag_is_the_run_name(
    db: sqlite_utils.Database, text: str, expected: str
) -> None:
    """Issue 11 item 6: MLflow keeps a run's name in the tag ``mlflow.runName``; the filter
    ``tags.`mlflow.runName` = 'x'`` silently matched nothing."""
    assert select(db, text) == expected


def test_order_by_mlflow_run_name_tag_is_the_run_name(db: sqlite_utils.Database) -> None:
    """Issue 11 item 6: ordering by ``tags.`mlflow.runName` `` orders by name."""
    assert ordered(db, "tags.`mlflow.runName` desc") == ordered(db, "name desc") == "dcabe"


def test_referenced_keys_lists_params_metrics_tags_keys_once_in_order() -> None:
    text = (
        "metrics.acuracy > 0.9 and (not param.lr = 1 or tags.`mlflow.runName` = 'x') "
        "or metric.acuracy is null or status = 'finished' or data.train.rows > 1"
    )
    assert query.referenced_keys(text, "params.`a.b` desc, name, metrics.loss") == [
        ("metrics", "acuracy"), ("params", "lr"), ("params", "a.b"), ("metrics", "loss"),
    ]  # fmt: skip
    assert query.referenced_keys(None, ["metrics.acc desc"]) == [("metrics", "acc")]
    assert query.referenced_keys("", None) == []
