"""The CI gate and reports: the checks table, `mlnb gate`, `mlnb report`, `mlnb ci init`
(real store files, click's CliRunner, real subprocesses and, for jobs, real kernels)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

import mlnb
from mlnb.checks.gates import MetricThreshold, parse_metric
from mlnb.cli.app import cli
from mlnb.errors import InvalidInputError, RunNotFoundError
from mlnb.formatting import escape_markdown
from mlnb.jobs.reports import build_report
from mlnb.jobs.workflows import github_workflow
from mlnb.records import CheckRecord
from tests.conftest import REPO

DOCS = REPO / "docs"
NOTEBOOKS = REPO / "tests" / "notebooks"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(
    name: str,
    metrics: dict[str, float | list[float]],
    *,
    params: dict[str, object] | None = None,
    experiment: str = "exp",
    rows: int | None = None,
) -> str:
    """A finished run with these metrics (a list is a series by step)."""
    with mlnb.start_run(name=name, experiment=experiment) as run:
        mlnb.log_params(params or {"lr": 0.1})
        for key, value in metrics.items():
            for step, v in enumerate(value if isinstance(value, list) else [value]):
                mlnb.log_metric(key, v, step=step)
        if rows is not None:
            import pandas as pd

            mlnb.log_data(pd.DataFrame({"x": range(rows)}), "train")
    mlnb.flush()
    return run.run_id


def invoke(store: mlnb.Store, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store.root), *args], catch_exceptions=False)


def gate_rows(store: mlnb.Store, run: str) -> list[CheckRecord]:
    return store.get_checks(run, kind="gate")


# -- the checks table -----------------------------------------------------------------------


def test_checks_are_written_read_back_and_deleted_with_their_run(store: mlnb.Store) -> None:
    run_id = make_run("a", {"acc": 0.5})
    batch = store.log_checks(
        run_id,
        [CheckRecord("gate", "acc", False, value=0.5, threshold=0.9, comparator=">=",
                     direction="higher", message="too low", details={"delta": -0.1})],
    )  # fmt: skip
    (row,) = store.get_checks(run_id)
    assert (row.kind, row.name, row.passed, row.value, row.threshold) == ("gate", "acc", False,
                                                                          0.5, 0.9)  # fmt: skip
    assert row.details == {"delta": -0.1} and row.batch == batch and row.created_at > 0
    assert store.get_run(run_id).checks == [row]
    with pytest.raises(InvalidInputError, match="kind"):
        store.log_checks(run_id, [CheckRecord("nonsense", "x", True)])
    store.delete_run(run_id)
    store.gc(purge_deleted=True)
    assert store.file.read(lambda c: c.execute("SELECT count(*) FROM checks").fetchone()[0]) == 0


# -- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acc>=0.9", ("acc", ">=", 0.9)),
        ("metrics.val/loss < 0.3", ("val/loss", "<", 0.3)),
        ("  f1 == 1e-2 ", ("f1", "==", 0.01)),
        ("loss", ("loss", None, None)),
    ],
)
def test_parse_metric(text: str, expected: tuple[str, str | None, float | None]) -> None:
    assert parse_metric(text) == expected


@pytest.mark.parametrize("text", ["acc>>1", "acc >= high", "acc != 1", "", ">= 3", "acc > nan"])
def test_parse_metric_refuses_bad_expressions(text: str) -> None:
    with pytest.raises(InvalidInputError, match="bad metric expression"):
        parse_metric(text)


# -- mlnb gate ------------------------------------------------------------------------------


def test_gate_passes_and_fails_on_thresholds(store: mlnb.Store) -> None:
    make_run("cand", {"acc": 0.92, "loss": 0.35})
    ok = invoke(store, "gate", "cand", "--metric", "acc>=0.9", "--metric", "loss<0.4")
    assert ok.exit_code == 0, ok.output
    assert re.search(r"acc\s+0\.92\s+>= 0\.9\s+PASS", ok.output)
    assert ok.output.rstrip().endswith("PASS: 2 of 2 metrics passed")
    bad = invoke(store, "gate", "cand", "-m", "acc>=0.95", "-m", "loss<0.4")
    assert bad.exit_code == 1
    assert re.search(r"acc\s+0\.92\s+>= 0\.95\s+FAIL", bad.output)
    assert "threshold: 0.92 is not >= 0.95" in bad.output
    assert "FAIL: 1 of 2 metrics failed the gate" in bad.output


def test_gate_records_its_verdicts_in_the_checks_table(store: mlnb.Store) -> None:
    make_run("base", {"acc": 0.80})
    cand = make_run("cand", {"acc": 0.85})
    assert invoke(store, "gate", "cand", "-m", "acc>=0.9", "--vs", "base").exit_code == 1
    (row,) = gate_rows(store, cand)
    assert not row.passed and row.value == 0.85 and row.threshold == 0.9
    assert row.comparator == ">=" and row.direction == "higher"
    assert row.baseline_value == 0.8 and row.baseline_run_id == store.resolve_run_id("base")
    assert row.details["delta"] == pytest.approx(0.05)
    assert row.details["relative_delta"] == pytest.approx(0.0625)
    assert "is not >= 0.9" in (row.message or "")
    shown = invoke(store, "show", "cand").output
    assert "checks:" in shown and "gate  FAIL  acc  value 0.85" in shown


@pytest.mark.parametrize(
    ("cand", "option", "passed"),
    [
        (0.86, ("--min-abs", "0.05"), True),  # 0.86 >= 0.80 + 0.05
        (0.84, ("--min-abs", "0.05"), False),
        (0.84, ("--min-rel", "0.05"), True),  # 0.84 >= 0.80 * 1.05
        (0.83, ("--min-rel", "0.05"), False),
        (0.79, ("--min-abs", "-0.02"), True),  # a tolerance: at most 0.02 worse
        (0.80, (), True),  # a baseline and no minimum: not worse
        (0.79, (), False),
    ],
)
def test_gate_improvement_higher_is_better(
    store: mlnb.Store, cand: float, option: tuple[str, ...], passed: bool
) -> None:
    make_run("base", {"acc": 0.80})
    make_run("cand", {"acc": cand})
    result = invoke(store, "gate", "cand", "-m", "acc", "--vs", "base", *option)
    assert result.exit_code == (0 if passed else 1), result.output


@pytest.mark.parametrize(
    ("cand", "args", "passed"),
    [
        (0.45, ("-m", "loss", "--lower-is-better", "loss", "--min-abs", "0.05"), True),
        (0.46, ("-m", "loss", "--lower-is-better", "loss", "--min-abs", "0.05"), False),
        (0.45, ("-m", "loss<1", "--min-rel", "0.1"), True),  # 0.45 <= 0.5 * 0.9
        (0.46, ("-m", "loss<1", "--min-rel", "0.1"), False),
        (0.55, ("-m", "loss<=1"), False),  # worse than the baseline, lower is better
        (0.55, ("-m", "loss"), False),  # the name says lower is better: 0.55 is worse
    ],
)
def test_gate_improvement_lower_is_better(
    store: mlnb.Store, cand: float, args: tuple[str, ...], passed: bool
) -> None:
    make_run("base", {"loss": 0.50})
    make_run("cand", {"loss": cand})
    result = invoke(store, "gate", "cand", "--vs", "base", *args)
    assert result.exit_code == (0 if passed else 1), result.output
    assert "(lower is better)" in result.output


@pytest.mark.parametrize(
    ("key", "base", "cand", "options", "passed", "word"),
    [
        ("loss", 0.50, 0.55, (), False, "lower"),  # the name says lower: a rise is worse
        ("val/rmse", 2.0, 1.5, (), True, "lower"),
        ("val_acc", 0.80, 0.85, (), True, "higher"),
        ("custom", 1.0, 2.0, (), True, "higher"),  # the name says nothing: higher (MLflow's)
        ("custom", 1.0, 0.5, ("--lower-is-better", "custom"), True, "lower"),  # told
        ("loss", 0.50, 0.55, ("--higher-is-better", "loss"), True, "higher"),  # told
        ("loss", 0.50, 0.55, ("-m", "acc>=0"), False, "lower"),  # another metric's comparator
    ],
)
def test_gate_direction_not_told_follows_the_metric_name(
    store: mlnb.Store,
    key: str,
    base: float,
    cand: float,
    options: tuple[str, ...],
    passed: bool,
    word: str,
) -> None:
    """Issue 12 item 6: gates defaulted to higher-is-better while the compare view and the
    live plots read the direction from the metric's name, so `mlnb gate cand -m loss --vs
    base` passed a run whose loss went up. One policy now: a comparator or
    --lower/--higher-is-better, else the name (``conventions.metric_direction``), else
    higher."""
    make_run("base", {key: base, "acc": 0.5})
    make_run("cand", {key: cand, "acc": 0.5})
    result = invoke(store, "gate", "cand", "-m", key, "--vs", "base", *options)
    assert result.exit_code == (0 if passed else 1), result.output
    assert f"{key}" in result.output and f"({word} is better)" in result.output


def test_gate_vs_best_picks_the_lowest_loss(store: mlnb.Store) -> None:
    """Issue 12 item 6: `--vs best` on a bare `loss` took the run with the highest loss as
    the best (higher-is-better by default); the best loss is the lowest one."""
    make_run("low", {"loss": 0.3})
    make_run("high", {"loss": 0.5})
    make_run("cand", {"loss": 0.4})
    result = invoke(store, "gate", "cand", "-m", "loss", "--vs", "best")
    assert result.exit_code == 1, result.output
    assert "baseline 0.3 of low" in result.output


def test_gate_direction_told_twice_is_a_usage_error(store: mlnb.Store) -> None:
    make_run("cand", {"loss": 0.4})
    both = ("--lower-is-better", "loss", "--higher-is-better", "loss")
    result = invoke(store, "gate", "cand", "-m", "loss", *both)
    assert result.exit_code == 2 and "both" in result.output
    result = invoke(store, "gate", "cand", "-m", "loss<1", "--higher-is-better", "loss")
    assert result.exit_code == 2 and "lower is better" in result.output


def test_gate_min_change_per_key(store: mlnb.Store) -> None:
    make_run("base", {"acc": 0.80, "f1": 0.50})
    make_run("cand", {"acc": 0.82, "f1": 0.60})
    args = ["gate", "cand", "-m", "acc", "-m", "f1", "--vs", "base"]
    assert invoke(store, *args, "--min-abs", "f1=0.05").exit_code == 0  # acc: not worse
    assert invoke(store, *args, "--min-abs", "0.05", "--min-abs", "f1=0.05").exit_code == 1
    assert invoke(store, *args, "--min-abs", "0.01", "--min-abs", "f1=0.2").exit_code == 1
    assert invoke(store, *args, "--min-abs", "nope=1").exit_code == 2


def test_gate_python_api_with_metric_thresholds(store: mlnb.Store) -> None:
    make_run("base", {"rmse": 3.0})
    make_run("cand", {"rmse": 2.5})
    spec = MetricThreshold(threshold=3.0, min_relative_change=0.1, greater_is_better=False)
    result = mlnb.gate("cand", {"rmse": spec}, vs="base")
    assert result.passed and bool(result)
    (v,) = result.verdicts
    assert (v.value, v.baseline_value, v.comparator) == (2.5, 3.0, "<=")
    assert v.delta == pytest.approx(-0.5) and v.relative_delta == pytest.approx(-1 / 6)
    stricter = MetricThreshold(min_relative_change=0.2, greater_is_better=False)
    assert not mlnb.gate("cand", {"rmse": stricter}, vs="base", record=False)
    assert len(gate_rows(store, "cand")) == 1  # record=False wrote nothing


def test_gate_latest_and_best_aliases(store: mlnb.Store) -> None:
    old_best = make_run("r1", {"acc": 0.95, "loss": 0.6})
    make_run("r2", {"acc": 0.80, "loss": 0.2})
    make_run("other-exp", {"acc": 0.99, "loss": 0.01}, experiment="elsewhere")
    latest = make_run("r3", {"acc": 0.85, "loss": 0.4})
    with mlnb.start_run(name="crashed-one", experiment="exp"):
        mlnb.log_metric("acc", 0.99)
    store.set_status(store.resolve_run_id("crashed-one"), "failed", only_from=("finished",))
    cand = make_run("cand", {"acc": 0.90, "loss": 0.3})
    r2 = store.resolve_run_id("r2")

    result = mlnb.gate("cand", ["acc", "loss<1"], vs="latest")
    assert {v.baseline_run_id for v in result.verdicts} == {latest}  # r3: newest, finished
    assert result.passed  # 0.90 >= 0.85, 0.3 <= 0.4

    result = mlnb.gate("cand", ["acc", "loss<1"], vs="best")
    by_key = {v.key: v for v in result.verdicts}
    assert by_key["acc"].baseline_run_id == old_best  # 0.95, not the other experiment's
    assert by_key["loss"].baseline_run_id == r2  # lowest loss
    assert not by_key["acc"].passed and not by_key["loss"].passed
    assert cand not in {v.baseline_run_id for v in result.verdicts}
    cli_out = invoke(store, "gate", "cand", "-m", "acc", "--vs", "best").output
    assert "vs best" in cli_out and "0.95 (r1)" in cli_out


def test_gate_alias_without_a_baseline_checks_thresholds_and_says_so(store: mlnb.Store) -> None:
    make_run("first", {"acc": 0.9})
    result = invoke(store, "gate", "first", "-m", "acc>=0.5", "--vs", "latest", "--min-abs", "1")
    assert result.exit_code == 0, result.output
    assert "note: no other finished run in experiment 'exp'" in result.output


def test_gate_missing_metric_fails_with_a_reason(store: mlnb.Store) -> None:
    make_run("base", {"acc": 0.8})
    make_run("cand", {"loss": 0.1})
    result = invoke(store, "gate", "cand", "-m", "acc>=0.5", "-m", "loss")
    assert result.exit_code == 1
    assert "the run has no metric 'acc' (it has: loss)" in result.output
    result = invoke(store, "gate", "cand", "-m", "loss", "--vs", "base")
    assert result.exit_code == 1 and "has no value of 'loss': cannot compare" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cand", "-m", "acc>>1"), "bad metric expression"),
        (("nosuchrun", "-m", "acc>1"), "no run matches 'nosuchrun'"),
        (("cand", "-m", "acc", "--vs", "nosuchrun"), "no run matches 'nosuchrun'"),
        (("cand", "-m", "acc", "--min-abs", "0.1"), "give vs (--vs)"),
        (("cand", "-m", "acc>=1", "--lower-is-better", "acc"), "lower-is-better"),
        (("cand", "-m", "acc", "--vs", "cand"), "same run"),
    ],
)
def test_gate_usage_errors_exit_2_and_record_nothing(
    store: mlnb.Store, args: tuple[str, ...], message: str
) -> None:
    make_run("cand", {"acc": 0.8})
    result = CliRunner().invoke(cli, ["--store", str(store.root), "gate", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert gate_rows(store, "cand") == []


def test_gate_json_output(store: mlnb.Store) -> None:
    make_run("cand", {"acc": 0.8})
    result = invoke(store, "gate", "cand", "-m", "acc>=0.9", "--format", "json")
    data = json.loads(result.output)
    assert result.exit_code == 1 and data["passed"] is False
    assert data["metrics"][0]["key"] == "acc" and data["metrics"][0]["value"] == 0.8


@pytest.mark.slow
def test_gate_as_a_subprocess_exits_with_its_code(store: mlnb.Store) -> None:
    make_run("base", {"acc": 0.8})
    make_run("cand", {"acc": 0.7})
    base = [sys.executable, "-m", "mlnb", "--store", str(store.root), "gate", "cand"]
    fail = subprocess.run([*base, "-m", "acc", "--vs", "latest"], capture_output=True, text=True)
    assert fail.returncode == 1 and "FAIL: 1 of 1" in fail.stdout
    ok = subprocess.run([*base, "-m", "acc>0.5"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    usage = subprocess.run([*base, "-m", "acc>"], capture_output=True, text=True)
    assert usage.returncode == 2 and "bad metric expression" in usage.stderr


# -- mlnb report ----------------------------------------------------------------------------


@pytest.fixture
def two_runs(store: mlnb.Store) -> tuple[str, str]:
    base = make_run("base", {"acc": [0.5, 0.7, 0.8], "loss": 0.5},
                    params={"lr": 0.1, "model": "tree"}, rows=100)  # fmt: skip
    cand = make_run("cand", {"acc": [0.6, 0.8, 0.9], "loss": 0.4},
                    params={"lr": 0.3, "model": "tree"}, rows=120)  # fmt: skip
    mlnb.gate("cand", ["acc>=0.85"], vs="base")
    return base, cand


def test_report_markdown_has_diffs_deltas_checks_and_png_plots(
    store: mlnb.Store, two_runs: tuple[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out" / "report.md"
    result = invoke(store, "report", "cand", "--vs", "base", "-o", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "## cand (" in text and " vs base (" in text
    assert "| lr | 0.3 | 0.1 |" in text and "| model |" not in text  # only what changed
    assert "| acc | 0.9 | 0.8 | +0.1 | +12.50% |" in text
    assert "| loss | 0.4 | 0.5 | -0.1 | -20.00% |" in text
    assert "| input train: rows | 120 | 100 |" in text  # the data change
    assert re.search(r"\| gate \| acc \| 0\.9 \| >= 0\.85 \| 0\.8 \(\w{8}\) \| PASS \|", text)
    assert "**PASS: every check passed**" in text
    assert "![acc](report_files/acc.png)" in text
    png = out.parent / "report_files" / "acc.png"
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert not (out.parent / "report_files" / "loss.png").exists()  # one point: no plot


def test_report_and_gate_leave_out_job_and_system_metrics_unless_asked(
    store: mlnb.Store, tmp_path: Path
) -> None:
    """Issue 11 item 9: the Markdown report of a job against its baseline listed and
    plotted job/cell_seconds (its only plot) and system/* next to the model's metrics, and
    a gate's reason listed them among the run's metrics."""
    make_run("base", {"acc": 0.8, "job/cell_seconds": [0.1, 0.5], "system/cpu_percent": 10.0})
    make_run("cand", {"acc": 0.9, "job/cell_seconds": [0.2, 0.3], "system/cpu_percent": 30.0})
    out = tmp_path / "r.md"
    assert invoke(store, "report", "cand", "--vs", "base", "-o", str(out)).exit_code == 0
    text = out.read_text()
    assert "| acc | 0.9 | 0.8 | +0.1 | +12.50% |" in text
    assert "job/cell_seconds" not in text and "system/cpu_percent" not in text
    assert "### Plots" not in text and not (tmp_path / "r_files").exists()
    note = "2 system metrics (job/*, system/*) not shown; --system-metrics"
    assert escape_markdown(note) in text  # notes are escaped like every text in Markdown
    data = build_report(store, ["cand"], vs="base")
    assert [m["key"] for m in data["runs"][0]["metrics"]] == ["acc"]

    result = invoke(store, "report", "cand", "--vs", "base", "-o", str(out), "--system-metrics")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "| job/cell_seconds | 0.3 | 0.5 | -0.2 | -40.00% |" in text
    assert "![job/cell_seconds](r_files/job_cell_seconds.png)" in text
    assert "| system/cpu_percent | 30 | 10 |" in text and "not shown" not in text

    result = invoke(store, "gate", "cand", "-m", "f1>=0.5", "--vs", "base")
    assert result.exit_code == 1
    assert "the run has no metric 'f1' (it has: acc)" in result.output
    gated = invoke(store, "gate", "cand", "-m", "job/cell_seconds<1")  # named: gated
    assert gated.exit_code == 0 and "job/cell_seconds" in gated.output


def test_report_defaults_to_the_newest_run_on_stdout(
    store: mlnb.Store, two_runs: tuple[str, str]
) -> None:
    result = invoke(store, "report", "--no-plots")
    assert result.exit_code == 0, result.output
    assert "## cand (" in result.output and "### Params" in result.output
    assert "| lr | 0.3 |" in result.output and "| model | tree |" in result.output
    assert not Path("report_files").exists()


def test_report_says_why_a_failed_job_failed(store: mlnb.Store) -> None:
    run = make_run("broken", {"acc": 0.1})
    store.set_tags(run, {"mlnb.error.name": "ValueError", "mlnb.error.message": "bad model",
                         "mlnb.error.cell": "5"}, check_state=False)  # fmt: skip
    store.set_status(run, "failed", only_from=("finished",))
    result = invoke(store, "report", run, "--no-plots")
    assert "status failed (cell 5: ValueError: bad model)" in result.output


def test_report_html_is_self_contained(
    store: mlnb.Store, two_runs: tuple[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    assert invoke(store, "report", "cand", "--vs", "latest", "--format", "html",
                  "-o", str(out)).exit_code == 0  # fmt: skip
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "+12.50%" in page
    images = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    for ref in ("http://", "https://", "<link", "<script", "href=", "url("):
        assert ref not in page, ref
    assert not (tmp_path / "report_files").exists()


def test_report_json_shape(store: mlnb.Store, two_runs: tuple[str, str], tmp_path: Path) -> None:
    base, cand = two_runs
    out = tmp_path / "r.json"
    refused = invoke(store, "report", "base", "cand", "--vs", "base", "--format", "json",
                     "-o", str(out))  # fmt: skip
    assert refused.exit_code == 1 and "same run" in refused.output and not out.exists()
    result = invoke(store, "report", cand, "--vs", base, "--format", "json", "-o", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["mlnb_report"] == 1 and data["vs"] == base
    (entry,) = data["runs"]
    assert entry["run"]["run_id"] == cand and entry["baseline"]["run_id"] == base
    acc = next(m for m in entry["metrics"] if m["key"] == "acc")
    assert acc["value"] == 0.9 and acc["baseline"] == 0.8
    assert acc["delta"] == pytest.approx(0.1) and acc["relative_delta"] == pytest.approx(0.125)
    assert entry["params"] == [{"key": "lr", "value": 0.3, "baseline": 0.1}]
    assert {"key": "input train: rows", "value": 120, "baseline": 100} in entry["data"]
    assert [c["name"] for c in entry["checks"]] == ["acc"] and entry["checks"][0]["passed"]
    assert Path(entry["plots"]["acc"]).read_bytes().startswith(PNG_MAGIC)


def test_report_several_runs_and_the_step_summary(
    store: mlnb.Store, two_runs: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = invoke(store, "report", "base", "cand", "-o", str(tmp_path / "r.md"))
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "r_files").iterdir())
    assert files == sorted(f"{store.resolve_run_id(n)[:8]}-acc.png" for n in ("base", "cand"))
    text = summary.read_text()
    assert text.startswith("earlier step\n# mlnb report") and "## base (" in text
    assert "## cand (" in text and "![" not in text  # local images cannot show there
    invoke(store, "report", "cand", "--format", "html", "-o", str(tmp_path / "r.html"))
    assert summary.read_text() == text  # only Markdown goes to the summary


def test_report_errors(store: mlnb.Store) -> None:
    assert "no runs" in invoke(store, "report").output
    make_run("a", {"acc": 1.0})
    alone = invoke(store, "report", "a", "--vs", "latest", "--no-plots")
    assert alone.exit_code == 0 and "> no other finished run in experiment 'exp'" in alone.output
    result = invoke(store, "report", "a", "--vs", "best")
    assert result.exit_code == 1 and "needs a metric" in result.output
    assert "no run matches 'zzz'" in invoke(store, "report", "zzz").output


# -- mlnb ci init github --------------------------------------------------------------------


def doc_workflow() -> str:
    text = (DOCS / "ci.md").read_text()
    block = text.split("<!-- workflow:start -->\n", 1)[1].split("<!-- workflow:end -->", 1)[0]
    assert block.startswith("```yaml\n") and block.endswith("```\n")
    return block[len("```yaml\n") : -len("```\n")]


def test_ci_init_writes_the_workflow_of_the_docs() -> None:
    result = CliRunner().invoke(cli, ["ci", "init", "github"])
    assert result.exit_code == 0, result.output
    written = Path(".github/workflows/mlnb.yml").read_text()
    assert written == doc_workflow() == github_workflow()
    flow = yaml.safe_load(written)
    assert flow.get("on", flow.get(True)) == {"push": {"branches": ["main"]},
                                              "pull_request": None}  # fmt: skip
    steps = flow["jobs"]["notebooks"]["steps"]
    commands = "\n".join(s.get("run", "") for s in steps)
    for expected in ("mlnb test notebooks/", "mlnb run notebooks/train.ipynb",
                     "--check 'metrics.accuracy >= 0.8'",
                     "mlnb gate \"$RUN_NAME\" --metric 'accuracy>=0.8' --vs latest",
                     "--format md", "--format html"):  # fmt: skip
        assert expected in commands, expected
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    for action in ("actions/checkout", "actions/setup-python", "actions/cache",
                   "actions/upload-artifact"):  # fmt: skip
        assert action in uses


def test_ci_init_refuses_to_overwrite_without_force() -> None:
    target = Path("ci/flow.yml")
    target.parent.mkdir()
    target.write_text("mine\n")
    args = ["ci", "init", "github", "--path", str(target), "--notebook", "nb/fit model.ipynb",
            "-m", "f1 >= 0.7", "-m", "val loss<0.5", "--vs", "best"]  # fmt: skip
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "--force" in refused.output
    assert target.read_text() == "mine\n"
    assert CliRunner().invoke(cli, [*args, "--force"]).exit_code == 0
    text = target.read_text()
    assert "mlnb test nb/" in text and "'nb/fit model.ipynb'" in text
    assert "--check 'metrics.f1 >= 0.7'" in text and "--check 'metrics.`val loss` < 0.5'" in text
    assert "--metric 'f1 >= 0.7' --metric 'val loss<0.5' --vs best" in text
    yaml.safe_load(text)
    bad = CliRunner().invoke(cli, ["ci", "init", "github", "--path", "x.yml", "-m", "f1>"])
    assert bad.exit_code == 1 and "bad metric expression" in bad.output
    assert not Path("x.yml").exists()


# -- end to end: a job, its checks, a gate and a report ---------------------------------------


@pytest.mark.slow
def test_job_checks_gate_and_report_end_to_end(tmp_path: Path) -> None:
    store_dir = tmp_path / "s"
    nb = str(NOTEBOOKS / "job_train.ipynb")

    def mlnb_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mlnb", "--store", str(store_dir), *args],
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    first = mlnb_cli("run", nb, "--name", "base", "-p", "lr", "0.1")
    assert first.returncode == 0, first.stderr
    second = mlnb_cli("run", nb, "--name", "cand", "-p", "lr", "0.3",
                      "--check", "metrics.acc >= 0.7", "--check", "params.lr > 1")  # fmt: skip
    assert second.returncode == 3, second.stdout + second.stderr
    with mlnb.Store(store_dir) as st:
        checks = st.get_checks("cand", kind="check")
    assert [(c.name, c.passed) for c in checks] == [("metrics.acc >= 0.7", True),
                                                    ("params.lr > 1", False)]  # fmt: skip
    assert checks[0].value == pytest.approx(0.8) and checks[0].threshold == 0.7
    assert checks[0].comparator == ">=" and checks[1].value is None
    assert checks[0].batch == checks[1].batch

    gate = mlnb_cli("gate", "cand", "-m", "acc>=0.7", "-m", "loss", "--lower-is-better",
                    "loss", "--vs", "latest", "--min-rel", "0.1")  # fmt: skip
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "vs latest: base" in gate.stdout and "+33.33%" in gate.stdout  # acc 0.6 -> 0.8

    report = mlnb_cli("report", "cand", "--vs", "base", "-o", str(tmp_path / "r.md"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "r.md").read_text()
    assert "| lr | 0.3 | 0.1 |" in text and "| acc | 0.8 | 0.6 | +0.2 | +33.33% |" in text
    assert "| check | params.lr > 1 |" in text and "| gate | loss |" in text
    link = re.search(r"- \[job/job_train\.ipynb\]\(([^)]+)\) \(executed\)", text)
    assert link and json.loads(Path(link[1]).read_text())["cells"]  # the executed notebook
    assert (tmp_path / "r_files" / "loss.png").read_bytes().startswith(PNG_MAGIC)


def test_unknown_run_for_get_checks(store: mlnb.Store) -> None:
    with pytest.raises(RunNotFoundError):
        store.get_checks("nope")


@pytest.mark.parametrize("bad", [float("inf"), "abc", True, {"acc": float("nan")}])
def test_gate_refuses_non_finite_minimums(store: mlnb.Store, bad: object) -> None:
    make_run("base", {"acc": 0.8})
    make_run("cand", {"acc": 0.9})
    with pytest.raises(InvalidInputError, match="finite number"):
        mlnb.gate("cand", ["acc"], vs="base", min_abs=bad)  # type: ignore[arg-type]


def test_show_json_lists_the_checks(store: mlnb.Store) -> None:
    make_run("cand", {"acc": 0.9})
    mlnb.gate("cand", ["acc>=0.95"])
    data = json.loads(invoke(store, "show", "cand", "--format", "json").output)
    (check,) = data["checks"]
    assert check["kind"] == "gate" and check["passed"] is False and check["value"] == 0.9
