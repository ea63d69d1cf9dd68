"""The command line, through click's runner and as a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import mlnb
from mlnb.cli.app import cli
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


# -- typos, reads without a store, the width of the table (issue 11 items 6, 7, 12) ---------


def invoke_split(store: Store | None, *args: str, **env: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr apart (stdout must stay parseable)."""
    where = ["--store", str(store.root)] if store is not None else []
    result = CliRunner(env=env or None).invoke(cli, [*where, *args])
    return result.exit_code, result.stdout, result.stderr


def test_runs_notes_keys_no_run_has_on_stderr_with_the_closest(
    store: Store, populated: dict
) -> None:
    """Issue 11 item 6: `-f "metrics.acuracy > 0.9"`, `-c name,metrics.acuracy` and
    `--order-by "metrics.acc desc"` with a typo answered "no runs" or a blank column."""
    code, out, err = invoke_split(
        store, "runs", "-f", "metrics.accc > 0.5 or params.lr > 0", "-o", "params.lrr desc",
        "-c", "name,metrics.los,tags.teem", "--format", "csv",
    )  # fmt: skip
    assert code == 0
    assert len(list(csv.DictReader(io.StringIO(out)))) == 3  # stdout: only the CSV
    assert err.splitlines() == [
        "note: no run has metric 'accc'; did you mean 'acc'?",
        "note: no run has param 'lrr'; did you mean 'lr'?",
        "note: no run has metric 'los'; did you mean 'loss'?",
        "note: no run has tag 'teem'; did you mean 'team'?",
    ]
    code, out, err = invoke_split(store, "runs", "-f", "metrics.acc > 0.5", "-c", "name")
    assert (code, err) == (0, "")


def test_runs_and_show_unknown_experiment_is_an_error_listing_them(
    store: Store, populated: dict
) -> None:
    """Issue 11 item 6: `mlnb runs -e play-jbos` answered "(no runs)"."""
    for args in (("runs", "-e", "grdi"), ("show", "-e", "grdi")):
        code, out = invoke(store, *args)
        assert code == 1
        assert f"no experiment named 'grdi' in {store.db_path}; did you mean 'grid'?" in out
        assert "The experiments are: grid" in out


def test_show_without_a_match_says_what_was_asked_and_notes_typos(
    store: Store, populated: dict
) -> None:
    code, _, err = invoke_split(store, "show", "-f", "metrics.accc > 0.5")
    assert code == 1
    assert err.splitlines() == [
        "note: no run has metric 'accc'; did you mean 'acc'?",
        f"Error: no run matches --filter 'metrics.accc > 0.5' in {store.db_path}",
    ]


READS = [("runs",), ("runs", "--format", "json"), ("show", "x"), ("show",), ("diff", "a", "b"),
         ("store",), ("delete", "x"), ("restore", "x"), ("gc",), ("report", "x"),
         ("gate", "x", "-m", "acc"), ("reproduce", "x")]  # fmt: skip


@pytest.mark.parametrize("args", READS, ids=" ".join)
def test_read_commands_never_create_a_store(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Issue 11 item 7: `mlnb runs` in an empty folder created `.mlnb/` there and printed
    "(no runs)"; `mlnb show X` said only "no run matches". Reads say where they looked."""
    code, out, err = invoke_split(None, *args)
    assert (code, out) == (1, "")
    here = Path.cwd()
    assert err == (
        f"Error: no mlnb store found: $MLNB_STORE is not set, and neither {here} nor a folder "
        f"above it has .mlnb/mlnb.db; the first run (mlnb run, mlnb.start_run, %track start) "
        f"creates one in {here}/.mlnb (or set MLNB_STORE to a store's folder)\n"
    )
    code, out, err = invoke_split(None, "--store", str(tmp_path / "gone"), *args)
    assert code == 1 and f"no mlnb store at {tmp_path / 'gone' / 'mlnb.db'}" in err
    assert not [p for p in tmp_path.rglob("*") if p.name in (".mlnb", "gone")]


def test_runs_verbose_names_the_store_it_read_and_empty_tables_say_where(store: Store) -> None:
    """Issue 11 item 7: `mlnb runs` says which store it read."""
    code, out, err = invoke_split(store, "runs", "-v", "--format", "json")
    assert (code, json.loads(out), err) == (0, [], f"store: {store.db_path}\n")
    assert invoke_split(store, "runs") == (0, f"(no runs in {store.db_path})\n", "")


@pytest.fixture
def wide(store: Store) -> Store:
    """Runs in two experiments with 12 params and 6 metrics, some values long."""
    for i, experiment in enumerate(("baseline", "sweep", "sweep")):
        with mlnb.start_run(f"run-{i}-" + "x" * 40, experiment=experiment):
            mlnb.log_params({f"param_{k:02d}": f"value-{k}-{i}" for k in range(11)})
            mlnb.log_param("notes", "a long free-text description " * 3)
            mlnb.log_metrics({f"metric_{k}": 0.1 * k + i for k in range(6)})
    return store


def test_runs_table_fits_the_terminal_and_says_what_it_left_out(wide: Store) -> None:
    """Issue 11 item 12: the default `mlnb runs` table was 424 characters wide and had no
    experiment column."""
    code, out, err = invoke_split(wide, "runs", COLUMNS="100")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 4 and max(map(len, lines)) <= 100
    assert lines[0].split()[:4] == ["run_id", "name", "experiment", "status"]
    assert "run-2-" + "x" * 23 + "…" in lines[1]  # long values are cut to 30 characters
    assert {line.split()[2] for line in lines[1:]} == {"baseline", "sweep"}
    (note,) = err.splitlines()
    assert re.fullmatch(
        r"note: \d+ columns left out to fit 100 characters: start_time, duration, "
        r"params\.notes, params\.param_00, .* and \d+ more "
        r"\(choose columns with -c, or set COLUMNS\)",
        note,
    )
    # metrics outlast params and times; the run's id, name, experiment and status stay
    assert "metrics.metric_0" in lines[0] and "params." not in lines[0]
    assert "start_time" not in lines[0]
    code, out, err = invoke_split(wide, "runs", COLUMNS="20")
    assert out.splitlines()[0].split() == ["run_id", "name", "experiment", "status"]


def test_runs_table_shows_the_experiment_only_when_several_and_pipes_keep_all(
    wide: Store,
) -> None:
    code, out, err = invoke_split(wide, "runs", "-e", "sweep", COLUMNS="2000")
    assert (code, err) == (0, "")
    header = out.splitlines()[0].split()
    assert "experiment" not in header and len(header) == 5 + 12 + 6
    code, out, err = invoke_split(wide, "runs")  # not a terminal, no COLUMNS: nothing left out
    assert (code, err) == (0, "") and len(out.splitlines()[0].split()) == 6 + 12 + 6
    assert "a long free-text description a long" in out


def test_a_file_the_command_cannot_write_is_a_one_line_error(tmp_path: Path) -> None:
    """Found at stop 19: ``mlnb schema infer DATA -o`` into a missing folder (or any
    ``-o`` that cannot be written) ended in a FileNotFoundError traceback. It is one line
    naming the file, exit 1, in a real process as users run it."""
    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,x\n2,y\n")
    target = tmp_path / "missing" / "schema.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "mlnb", "schema", "infer", str(data), "-o", str(target)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == f"Error: No such file or directory: {target}"
