"""Issue 14 item 1: schemas inferred from data or a stored profile, checks that report
every failure with counts and examples, ``mostly``, bad schema files, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import mlnb
from mlnb.cli.app import cli
from mlnb.errors import SchemaError


def people(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "age": rng.integers(18, 80, n),
            "plan": rng.choice(["basic", "plus", "pro"], n),
            "score": rng.normal(0, 1, n),
        }
    )


def test_infer_writes_dtype_nullable_bounds_categories_length_unique() -> None:
    df = people()
    df.loc[3, "score"] = np.nan
    schema = mlnb.Schema.infer(df)
    cols = schema.columns
    assert cols["id"]["unique"] is True and "unique" not in cols["age"]
    assert cols["age"]["min"] == int(df["age"].min()) and cols["age"]["dtype"] == "int64"
    assert cols["plan"]["categories"] == ["basic", "plus", "pro"]
    assert cols["plan"]["length"] == {"min": 3, "max": 5}
    assert cols["score"]["nullable"] is True and cols["age"]["nullable"] is False
    assert mlnb.Schema.from_yaml(schema.to_yaml()) == schema


def test_check_reports_every_failure_with_counts_and_examples() -> None:
    """Every failing rule is reported (not only the first), with counts and examples."""
    df = people()
    schema = mlnb.Schema.infer(df)
    bad = df.drop(columns=["score"]).copy()
    bad.loc[:9, "age"] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    bad.loc[20:22, "plan"] = ["gold", "gold", "platinum-plus"]
    bad.loc[30, "id"] = 31
    result = mlnb.validate(bad, schema, record=False)
    failed = {(r.column, r.rule): r for r in result.failures}
    assert set(failed) == {("age", "min"), ("plan", "categories"), ("plan", "length"),
                           ("id", "unique"), ("score", "required")}  # fmt: skip
    assert failed["age", "min"].failed == 10 and failed["age", "min"].total == 200
    assert failed["age", "min"].examples == (1, 2, 3, 4, 5)
    assert failed["plan", "categories"].examples == ("gold", "platinum-plus")
    assert failed["id", "unique"].failed == 2
    assert "column 'score' is missing" in failed["score", "required"].message
    assert not result and "FAIL: 5 of" in str(result)


def test_mostly_lets_a_rule_hold_for_a_share_of_values() -> None:
    df = people()
    df.loc[:4, "age"] = 0  # 5 of 200 = 2.5 % below
    schema = mlnb.Schema.from_yaml(
        "columns:\n"
        "  age:\n"
        "    min: {value: 18, mostly: 0.97}\n"
        "  plan:\n"
        "    mostly: 0.5\n"
        "    categories: [basic]\n"
    )
    result = mlnb.validate(df, schema, record=False)
    by_rule = {(r.column, r.rule): r for r in result.results}
    assert by_rule["age", "min"].passed and by_rule["age", "min"].passing_share == 0.975
    assert by_rule["plan", "categories"].mostly == 0.5
    assert not mlnb.validate(df, mlnb.Schema.from_yaml("columns:\n  age: {min: 18}\n"),
                             record=False)  # fmt: skip


def test_a_schema_that_does_not_parse_says_line_and_column(tmp_path: Path) -> None:
    """Issue 14 item 9: a schema file that does not parse names its line and column."""
    path = tmp_path / "bad.yaml"
    path.write_text("columns:\n  age:\n    min: 18\n    max: [1, 2\n")
    with pytest.raises(SchemaError, match=r"line 5, column 1") as info:
        mlnb.Schema.read(path)
    assert info.value.line == 5
    with pytest.raises(SchemaError, match=r"line 3, column 5: column 'age': unknown rule 'mn'"):
        mlnb.Schema.from_yaml("columns:\n  age:\n    mn: 18\n")
    with pytest.raises(SchemaError, match="mostly must be a fraction"):
        mlnb.Schema.from_yaml("columns:\n  age:\n    min: {value: 1, mostly: 2}\n")
    with pytest.raises(SchemaError, match="anchors and aliases"):
        mlnb.Schema.from_yaml("columns:\n  a: &r {min: 1}\n  b: *r\n")


def test_validate_records_checks_on_the_active_run(store: mlnb.Store) -> None:
    df = people()
    with mlnb.start_run("check", store=store, capture=False) as run:
        result = mlnb.validate(df.assign(age=df["age"] - 100), mlnb.Schema.infer(df))
    assert result.batch
    checks = {c.name: c for c in store.get_checks(run.run_id)}
    assert not checks["schema:age:min"].passed and checks["schema:age:min"].kind == "validation"
    assert checks["schema:plan:categories"].passed


def test_cli_schema_infer_and_check(store: mlnb.Store, tmp_path: Path) -> None:
    df = people()
    df.to_csv(tmp_path / "data.csv", index=False)
    bad = df.assign(age=df["age"].where(df.index > 2, 5))
    bad.to_csv(tmp_path / "bad.csv", index=False)
    runner = CliRunner()
    base = ["--store", str(store.root)]
    out = runner.invoke(cli, [*base, "schema", "infer", str(tmp_path / "data.csv"), "-o",
                              str(tmp_path / "schema.yaml")])  # fmt: skip
    assert out.exit_code == 0, out.output
    ok = runner.invoke(cli, [*base, "schema", "check", str(tmp_path / "data.csv"),
                             str(tmp_path / "schema.yaml")])  # fmt: skip
    assert ok.exit_code == 0 and "PASS" in ok.output
    fail = runner.invoke(cli, [*base, "schema", "check", str(tmp_path / "bad.csv"),
                               str(tmp_path / "schema.yaml"), "--format", "json"])  # fmt: skip
    assert fail.exit_code == 1
    data = json.loads(fail.output)
    assert [(r["column"], r["rule"], r["failed"]) for r in data["results"] if not r["passed"]] == [
        ("age", "min", 3)
    ]
    (tmp_path / "broken.yaml").write_text("columns: [\n")
    broken = runner.invoke(cli, [*base, "schema", "check", str(tmp_path / "data.csv"),
                                 str(tmp_path / "broken.yaml")])  # fmt: skip
    assert broken.exit_code == 2 and "line 2, column 1" in broken.output


def test_schema_from_a_runs_stored_profile(store: mlnb.Store, tmp_path: Path) -> None:
    """``--from RUN:NAME``: the schema of a run's logged data, without the data."""
    df = people()
    with mlnb.start_run("train", store=store, capture=False) as r:
        r.log_data(df, name="train")
    df.assign(plan="gold").to_csv(tmp_path / "new.csv", index=False)
    runner = CliRunner()
    base = ["--store", str(store.root)]
    out = runner.invoke(cli, [*base, "schema", "check", str(tmp_path / "new.csv"), "--from",
                              "train:train", "--run", "train"])  # fmt: skip
    assert out.exit_code == 1 and "plan" in out.output and "'gold'" in out.output
    assert any(c.name == "schema:plan:categories" and not c.passed
               for c in store.get_checks("train"))  # fmt: skip
    assert "categories" in runner.invoke(cli, [*base, "schema", "infer", "--from", "train"]).output
