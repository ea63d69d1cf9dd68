"""All SQL lives in ``mlnb/store/`` (issue 12 item 2): every other package asks the store.

The check reads the source (``ast``): a string literal outside ``mlnb/store/`` that is a
SQL statement, or a ``.read(lambda conn: ...)`` / ``.write(lambda conn: ...)`` handing a
connection out of the store, fails it. Docstrings and comments are prose and are left
alone; so are strings that only mention a keyword ("select runs", "UPDATE the docs")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "mlnb"
STORE = PACKAGE / "store"

# A statement, not a word: each keyword with what must follow it in SQL.
SQL_STATEMENT = re.compile(
    r"""\b(?:
        SELECT\s+(?:DISTINCT\s+)?[\w*().,\s]+?\s+FROM\s
      | INSERT\s+(?:OR\s+\w+\s+)?INTO\s+\w
      | UPDATE\s+\w+\s+SET\s
      | DELETE\s+FROM\s+\w
      | REPLACE\s+INTO\s+\w
      | CREATE\s+(?:TEMP\s+|UNIQUE\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)\s
      | WITH\s+RECURSIVE\s
      | PRAGMA\s+\w+
    )""",
    re.VERBOSE | re.IGNORECASE,
)
# Uppercase keywords are how this code base writes SQL; lower case needs a second clue.
SQL_UPPER = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|PRAGMA|WITH RECURSIVE)\b")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (prose)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _text(node: ast.AST) -> str | None:
    """The literal text of a string or f-string node (placeholders as ``x``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) or "x" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        if left is not None or right is not None:
            return (left or "x") + (right or "x")
    return None


def looks_like_sql(text: str) -> bool:
    """Whether ``text`` is (part of) a SQL statement, not prose about one."""
    return bool(SQL_STATEMENT.search(text)) and bool(SQL_UPPER.search(text))


def sql_outside_store(root: Path = PACKAGE) -> list[str]:
    """``path:line: text`` for every SQL string outside ``<root>/store/``."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        if (root / "store") in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        prose = _docstrings(tree)  # and the pieces of f-strings, read whole below
        prose |= {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
        for node in ast.walk(tree):
            if id(node) in prose:
                continue
            if (  # `st.read(lambda c: ...)`: a connection handed out of the store
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("read", "write")
                and node.args
                and isinstance(node.args[0], ast.Lambda)
            ):
                rel = path.relative_to(root.parent)
                hits.append(f"{rel}:{node.lineno}: .{node.func.attr}(lambda ...)")
            if isinstance(node, ast.JoinedStr) or (
                isinstance(node, ast.Constant) and isinstance(node.value, str)
            ):
                text = _text(node) or ""
                if looks_like_sql(text):
                    rel = path.relative_to(root.parent)
                    hits.append(f"{rel}:{node.lineno}: {text.strip()[:70]}")
    return hits


def test_no_sql_outside_the_store_package() -> None:
    """Issue 12 item 2: raw SQL sat in jobs/runner, jobs/sweeps, jobs/reproduce,
    tracking/fluent and comparison/table (and the filter WHERE was built twice); every
    query now goes through a ``Store`` method."""
    hits = sql_outside_store()
    assert not hits, "SQL outside mlnb/store/ (add a Store method instead):\n" + "\n".join(hits)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT status FROM runs WHERE run_id = ?",
        "UPDATE runs SET name = ? WHERE run_id = ?",
        "INSERT OR IGNORE INTO tags (run, key, value) VALUES (?, ?, ?)",
        "DELETE FROM runs WHERE deleted_at IS NOT NULL",
        "SELECT r.run_id, r.id FROM runs r JOIN experiments e ON e.id = r.experiment_id",
        "WITH RECURSIVE k(key) AS (SELECT min(key) FROM t) SELECT key FROM k",
        "SELECT DISTINCT key FROM params WHERE run IN (SELECT value FROM json_each(?))",
    ],
)
def test_sql_scan_finds_statements(text: str) -> None:
    """The scan catches each statement shape the store uses (it could not fail otherwise)."""
    assert looks_like_sql(text)


@pytest.mark.parametrize(
    "text",
    [
        "select runs by a filter, then update the table",
        "Select the runs to compare",
        "UPDATE: the notebook changed since this run",
        "a run's params, metrics and tags are selected from the store",
        "delete_run hides a run from every listing",
        "SELECT",
    ],
)
def test_sql_scan_leaves_prose_alone(text: str) -> None:
    """Messages and labels that mention SQL words are not SQL."""
    assert not looks_like_sql(text)


def test_sql_scan_flags_a_query_added_outside_the_store(tmp_path: Path) -> None:
    """A copy of the package with one query put back into jobs/ fails the scan, at that line;
    the store's own SQL does not."""
    pkg = tmp_path / "mlnb"
    (pkg / "jobs").mkdir(parents=True)
    (pkg / "store").mkdir()
    (pkg / "store" / "core.py").write_text('Q = "SELECT id FROM runs WHERE run_id = ?"\n')
    (pkg / "jobs" / "runner.py").write_text(
        '"""Runs notebooks; SELECT id FROM runs is how the store finds one."""\n\n'
        "def status(st, run_id):\n"
        "    return st.read(\n"
        '        lambda c: c.execute(f"SELECT status FROM runs WHERE run_id = ?", [run_id])\n'
        "    )\n"
    )
    assert sql_outside_store(pkg) == [
        "mlnb/jobs/runner.py:4: .read(lambda ...)",
        "mlnb/jobs/runner.py:5: SELECT status FROM runs WHERE run_id = ?",
    ]
