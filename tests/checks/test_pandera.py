"""Issue 14 item 1 (the optional part): an mlnb schema exported as a pandera
``DataFrameSchema`` passes what ``mlnb.validate`` passes and fails what it fails, on the same
columns, also after pandera's own YAML round trip; ``mostly`` is what pandera cannot say."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_iris

import mlnb
from mlnb.cli.app import cli
from mlnb.errors import MissingExtraError, SchemaError

pa = pytest.importorskip("pandera.pandas")
from pandera.errors import SchemaErrors, SchemaWarning  # noqa: E402


def iris() -> pd.DataFrame:
    """scikit-learn's iris with an id and the species' name (a text column)."""
    bunch = load_iris(as_frame=True)
    frame = bunch.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame.insert(0, "id", np.arange(len(frame), dtype="int64"))
    frame["species"] = pd.Series(bunch.target_names[frame["target"]], dtype="str")
    return frame


def mlnb_columns(df: pd.DataFrame, schema: mlnb.Schema) -> set[str]:
    """The columns mlnb's check reports (the extra columns, for ``strict``)."""
    failures = mlnb.validate(df, schema, record=False).failures
    return {str(e) for r in failures for e in (r.examples if r.column == "*" else [r.column])}


def pandera_columns(df: pd.DataFrame, schema: Any) -> set[str]:
    """The columns pandera reports (a missing or an extra column is its failure case)."""
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        named = cases["column"].where(cases["column"].notna(), cases["failure_case"])
        return {str(c) for c in named}
    return set()


def _set(df: pd.DataFrame, column: str, value: Any, rows: int = 1) -> pd.DataFrame:
    out = df.copy()
    out.loc[: rows - 1, column] = value
    return out


# rule (YAML of one column), the column, how a frame breaks it
RULES: list[tuple[str, str, str, Callable[[pd.DataFrame], pd.DataFrame]]] = [
    ("dtype", "target", "dtype: int64", lambda f: f.assign(target=f["target"].astype("float64"))),
    ("required", "petal_width", "required: true", lambda f: f.drop(columns=["petal_width"])),
    ("nullable", "petal_length", "nullable: false", lambda f: _set(f, "petal_length", np.nan)),
    ("min", "sepal_length", "min: 4.3", lambda f: _set(f, "sepal_length", -1.0)),
    ("max", "sepal_width", "max: 4.4", lambda f: _set(f, "sepal_width", 100.0)),
    ("categories", "species", "categories: [setosa, versicolor, virginica]",
     lambda f: _set(f, "species", "daisy")),
    ("length", "species", "length: {min: 6, max: 10}", lambda f: _set(f, "species", "iris")),
    ("unique", "id", "unique: true", lambda f: _set(f, "id", 7, rows=3)),
    ("pattern", "species", "pattern: '[a-z]+'", lambda f: _set(f, "species", "Setosa")),
    ("pattern-in-full", "species", "pattern: 'set'",
     lambda f: _set(f.assign(species="set"), "species", "setosa")),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "column", "yaml", "breaks"), RULES, ids=[r[0] for r in RULES])
def test_to_pandera_fails_and_passes_what_validate_does(
    rule: str, column: str, yaml: str, breaks: Callable[[pd.DataFrame], pd.DataFrame]
) -> None:
    """Per rule: a frame that meets it passes mlnb and pandera; a frame that breaks it fails
    both, on the same column; so does the schema pandera reads back from its own YAML."""
    schema = mlnb.Schema.from_yaml(f"columns:\n  {column}: {{{yaml}}}\n")
    good, bad = iris(), breaks(iris())
    if rule == "pattern-in-full":  # mlnb matches in full: 'set' is no match for 'setosa'
        good = good.assign(species="set")
    exported = schema.to_pandera()
    reloaded = pa.DataFrameSchema.from_yaml(exported.to_yaml())
    assert mlnb_columns(good, schema) == set()
    assert mlnb_columns(bad, schema) == {column}
    for pandera_schema in (exported, reloaded):
        assert pandera_columns(good, pandera_schema) == set()
        assert pandera_columns(bad, pandera_schema) == {column}


def test_to_pandera_strict_refuses_columns_the_schema_does_not_name() -> None:
    schema = mlnb.Schema.from_yaml("strict: true\ncolumns:\n  id: {}\n")
    frame = iris()[["id"]]
    wider = frame.assign(extra=1)
    exported = schema.to_pandera()
    assert exported.strict is True
    assert mlnb_columns(frame, schema) == pandera_columns(frame, exported) == set()
    assert mlnb_columns(wider, schema) == pandera_columns(wider, exported) == {"extra"}


def test_to_pandera_of_an_inferred_schema_reports_the_same_columns() -> None:
    """The whole inferred schema of iris: every rule inference writes, several broken."""
    frame = iris()
    schema = mlnb.Schema.infer(frame)
    exported = schema.to_pandera()
    reloaded = pa.DataFrameSchema.from_yaml(exported.to_yaml())
    bad = _set(_set(_set(frame, "species", "daisy"), "id", 3, rows=4), "sepal_width", np.nan)
    bad = bad.drop(columns=["petal_width"])
    assert mlnb_columns(frame, schema) == set()
    assert mlnb_columns(bad, schema) == {"species", "id", "sepal_width", "petal_width"}
    for pandera_schema in (exported, reloaded):
        assert pandera_columns(frame, pandera_schema) == set()
        assert pandera_columns(bad, pandera_schema) == mlnb_columns(bad, schema)


def test_to_pandera_columns_without_rules_allow_nulls_as_mlnb_does() -> None:
    """pandera's columns refuse nulls unless told; mlnb's allow them unless told."""
    schema = mlnb.Schema.from_yaml("columns:\n  sepal_length: {min: 0}\n")
    frame = _set(iris(), "sepal_length", np.nan, rows=5)
    assert mlnb_columns(frame, schema) == set()
    assert pandera_columns(frame, schema.to_pandera()) == set()


def test_to_pandera_turns_a_rule_with_mostly_into_a_warning() -> None:
    """pandera has no tolerated failure share: a check with ``mostly`` below 1 only warns
    (pandera's ``raise_warning``), in the schema and in its YAML, so what mlnb passes
    pandera passes; what mlnb fails for more than ``mostly`` pandera warns about."""
    schema = mlnb.Schema.from_yaml(
        "columns:\n"
        "  sepal_length: {min: {value: 4.3, mostly: 0.9}}\n"
        "  species: {mostly: 0.9, categories: [setosa, versicolor, virginica], pattern: '[a-z]+'}\n"
    )
    few = _set(iris(), "sepal_length", 0.0, rows=5)  # 5 of 150 below: within mostly
    many = _set(iris(), "sepal_length", 0.0, rows=50)  # a third below: beyond it
    exported = schema.to_pandera()
    reloaded = pa.DataFrameSchema.from_yaml(exported.to_yaml())
    assert mlnb_columns(few, schema) == set()
    assert mlnb_columns(many, schema) == {"sepal_length"}
    for pandera_schema in (exported, reloaded):
        checks = [c for col in pandera_schema.columns.values() for c in col.checks]
        assert len(checks) == 3 and all(c.raise_warning for c in checks)
        for frame in (few, many):
            with pytest.warns(SchemaWarning, match="sepal_length"):
                assert pandera_columns(frame, pandera_schema) == set()


def test_to_pandera_leaves_out_nullable_and_unique_with_mostly() -> None:
    """``nullable`` and ``unique`` are column properties in pandera, which cannot warn:
    with ``mostly`` below 1 they are left out (nulls and repeats allowed); ``dtype`` stays
    unless its ``mostly`` is 0."""
    schema = mlnb.Schema.from_yaml(
        "columns:\n  id: {nullable: false, unique: true, mostly: 0.95, dtype: int64}\n"
    )
    column = schema.to_pandera().columns["id"]
    assert (column.nullable, column.unique, str(column.dtype)) == (True, False, "int64")
    frame = _set(iris(), "id", 1, rows=3)
    assert mlnb_columns(frame, schema) == pandera_columns(frame, schema.to_pandera()) == set()
    anything = mlnb.Schema.from_yaml("columns:\n  id: {dtype: {value: float64, mostly: 0}}\n")
    assert anything.to_pandera().columns["id"].dtype is None  # mostly 0: any dtype passes
    assert mlnb_columns(frame, anything) == pandera_columns(frame, anything.to_pandera()) == set()


def test_to_pandera_refuses_a_dtype_pandera_does_not_know() -> None:
    schema = mlnb.Schema.from_yaml("columns:\n  id: {dtype: integer-ish}\n")
    with pytest.raises(SchemaError, match=r"column 'id'.*'integer-ish'"):
        schema.to_pandera()


def test_to_pandera_without_pandera_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pandera installed: an MlnbError that says what to install."""
    for name in [m for m in sys.modules if m == "pandera" or m.startswith("pandera.")]:
        monkeypatch.setitem(sys.modules, name, None)
    schema = mlnb.Schema.from_yaml("columns:\n  id: {min: 0}\n")
    with pytest.raises(MissingExtraError, match=r"pip install 'mlnb\[pandera\]'"):
        schema.to_pandera()
    result = CliRunner().invoke(cli, ["schema", "export", _write(schema), "--format", "pandera"])
    assert result.exit_code == 1
    assert "pip install 'mlnb[pandera]'" in result.output


def _write(schema: mlnb.Schema, path: str = "schema.yaml") -> str:
    schema.write(path)
    return path


def test_cli_schema_export_writes_pandera_yaml(tmp_path: Path) -> None:
    """`mlnb schema export SCHEMA --format pandera`: pandera's YAML on stdout, or in -o FILE,
    that pandera loads back and that fails what mlnb fails."""
    frame = iris()
    schema = mlnb.Schema.infer(frame)
    runner = CliRunner()
    shown = runner.invoke(cli, ["schema", "export", _write(schema), "--format", "pandera"])
    assert shown.exit_code == 0, shown.output
    loaded = pa.DataFrameSchema.from_yaml(shown.stdout)
    assert loaded == schema.to_pandera()
    out = tmp_path / "pandera.yaml"
    written = runner.invoke(cli, ["schema", "export", "schema.yaml", "--format", "pandera",
                                  "-o", str(out)])  # fmt: skip
    assert written.exit_code == 0, written.output
    assert out.read_text(encoding="utf-8") == shown.stdout
    bad = _set(frame, "species", "daisy")
    assert pandera_columns(bad, pa.DataFrameSchema.from_yaml(out.read_text())) == {"species"}


def test_cli_schema_export_refuses_a_bad_schema_file() -> None:
    Path("bad.yaml").write_text("columns:\n  age:\n    mn: 18\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["schema", "export", "bad.yaml", "--format", "pandera",
                                      "-o", "out.yaml"])  # fmt: skip
    assert result.exit_code == 2
    assert "line 3, column 5" in result.output and not Path("out.yaml").exists()
