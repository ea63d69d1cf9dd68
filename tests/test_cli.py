"""The command line, through click's runner and as a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import mlnb
from mlnb.cli import cli
from mlnb.store import Store


@pytest.fixture
def populated(store: Store) -> dict[str, str]:
    ids = {}
    for name, lr, acc in (("slow", 0.001, 0.81), ("best", 0.01, 0.93), ("fast", 0.1, 0.77)):
        with mlnb.start_run(name, experiment="grid") as run:
            mlnb.log_params({"lr": lr, "opt": "adam" if lr < 0.05 else "sgd"})
            for step in range(3):
                mlnb.log_metric("acc", acc - 0.1 * (2 - step))
            mlnb.log_metric("loss", float("nan"))
            mlnb.set_tag("team", "vision")
        ids[name] = run.run_id
    return ids


def invoke(store: Store, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--store", str(store.root), *args])
    return result.exit_code, result.output


def test_runs_table_lists_runs_with_params_and_metrics(store: Store, populated: dict) -> None:
    code, out = invoke(store, "runs", "-o", "metrics.acc desc")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["run_id", "name", "status", "start_time", "duration"]
    assert "params.lr" in lines[0] and "metrics.acc" in lines[0]
    assert [line.split()[1] for line in lines[1:]] == ["best", "slow", "fast"]
    assert populated["best"][:8] in lines[1]


def test_runs_filter_columns_limit(store: Store, populated: dict) -> None:
    code, out = invoke(
        store, "runs", "--filter", "params.opt = 'adam' and metrics.acc > 0.9",
        "--columns", "name,metrics.*", "--format", "csv",
    )  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows == [{"name": "best", "metrics.acc": repr(0.93), "metrics.loss": "nan"}]
    code, out = invoke(store, "runs", "-n", "1", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 1


def test_runs_json_is_valid_json_with_nan_and_infinity_spelled_out(
    store: Store, populated: dict
) -> None:
    code, out = invoke(store, "runs", "--format", "json")
    assert code == 0
    data = json.loads(out)  # strict parser would fail on bare NaN
    assert {row["metrics.loss"] for row in data} == {"NaN"}
    assert "NaN," not in out.replace('"NaN"', "")


def test_runs_markdown(store: Store, populated: dict) -> None:
    code, out = invoke(store, "runs", "--format", "markdown", "-c", "name,params.lr")
    assert code == 0
    assert out.splitlines()[:2] == ["| name | params.lr |", "|---|---|"]


def test_show_prints_a_run_by_prefix_or_the_best_by_order(store: Store, populated: dict) -> None:
    code, out = invoke(store, "show", populated["best"][:6])
    assert code == 0
    assert f"run {populated['best']}" in out
    assert "lr" in out and "acc" in out and "(step 2)" in out
    code, out = invoke(store, "show", "-o", "metrics.acc asc", "-e", "grid")
    assert f"run {populated['fast']}" in out
    code, out = invoke(store, "show", "slow", "--format", "json")
    assert json.loads(out)["params"]["lr"] == 0.001


def test_diff_shows_only_differences_unless_all(store: Store, populated: dict) -> None:
    code, out = invoke(store, "diff", "slow", "best")
    assert code == 0
    assert "lr" in out and "0.001 → 0.01" in out
    assert "acc" in out and "Δ +0.12" in out
    assert "team" not in out  # same tag in both: hidden by default
    code, out = invoke(store, "diff", "slow", "best", "--all")
    assert "team" in out


def test_delete_restore_and_gc(store: Store, populated: dict) -> None:
    code, out = invoke(store, "delete", "fast")
    assert code == 0 and out.startswith("deleted ")
    assert "fast" not in invoke(store, "runs")[1]
    assert "fast" in invoke(store, "runs", "--deleted")[1]
    code, out = invoke(store, "restore", populated["fast"][:8])
    assert code == 0
    assert "fast" in invoke(store, "runs")[1]
    code, out = invoke(store, "gc", "--dry-run")
    assert code == 0 and "would remove 0 artifact files" in out


def test_store_command_reports_path_schema_and_counts(store: Store, populated: dict) -> None:
    code, out = invoke(store, "store")
    assert code == 0
    assert str(store.db_path) in out and "schema version" in out
    info = json.loads(invoke(store, "store", "--format", "json")[1])
    assert info["counts"]["runs"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "nope"), "no run matches 'nope'"),
        (("runs", "--filter", "metrics.acc >"), "expected"),
        (("runs", "--columns", "bogus"), "unknown column 'bogus'"),
        (("delete", "best", "nope"), "no run matches 'nope'"),
    ],
)
def test_user_mistakes_give_one_clear_line_and_nonzero_exit(
    store: Store, populated: dict, args: tuple[str, ...], message: str
) -> None:
    code, out = invoke(store, *args)
    assert code != 0
    assert message in out
    assert "Traceback" not in out
    assert len(invoke(store, "runs", "--format", "json")[1]) > 10  # nothing was deleted


def test_corrupt_store_is_reported_not_traced(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "mlnb.db").write_text("garbage" * 100)
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "bad"), "runs"])
    assert result.exit_code == 1
    assert "not a readable mlnb store" in result.output


@pytest.mark.slow
def test_cli_runs_as_a_program_and_as_a_module(store: Store, populated: dict) -> None:
    exe = Path(sys.executable).parent / "mlnb"
    for cmd in ([str(exe)], [sys.executable, "-m", "mlnb"]):
        proc = subprocess.run(
            [*cmd, "--store", str(store.root), "runs", "-c", "name"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert sorted(proc.stdout.split()[1:]) == ["best", "fast", "slow"]
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert mlnb.__version__ in version.stdout
    bad = subprocess.run([str(exe), "--store", str(store.root), "show", "zzz"],
                         capture_output=True, text=True)  # fmt: skip
    assert (
        bad.returncode == 1
        and bad.stderr.strip()
        == f"Error: no run matches 'zzz' (by id prefix or name) in {store.db_path}"
    )
