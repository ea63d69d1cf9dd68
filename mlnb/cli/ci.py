"""The CI commands: gate, report, ci init."""

from __future__ import annotations

import json

import click

from mlnb.cli.common import handles_errors, open_store, system_metrics_option
from mlnb.cli.views import json_clean
from mlnb.conventions import EXIT_USAGE
from mlnb.errors import MlnbError


def _number_options(values: tuple[str, ...], option: str) -> float | dict[str, float] | None:
    """``--min-abs 0.01`` (every metric) or ``--min-abs acc=0.01`` (one), repeatable."""
    if not values:
        return None
    per_key: dict[str, float] = {}
    for item in values:
        key, sep, text = item.rpartition("=")
        try:
            number = float(text)
        except ValueError:
            raise click.BadParameter(
                f"expected X or KEY=X, got {item!r}", param_hint=option
            ) from None
        per_key[key.strip() if sep else "*"] = number
    if list(per_key) == ["*"]:
        return per_key["*"]
    return per_key


@click.command("gate")
@click.argument("run")
@click.option(
    "-m",
    "--metric",
    "metrics",
    multiple=True,
    required=True,
    metavar="EXPR",
    help="KEY OP NUMBER (e.g. 'acc>=0.9', 'loss<0.3') or just KEY (repeatable).",
)
@click.option("--vs", metavar="RUN", help="Baseline: a run (id, prefix, name), 'latest' or 'best'.")
@click.option(
    "--min-abs",
    "min_abs",
    multiple=True,
    metavar="[KEY=]X",
    help="Improvement over the baseline, absolute (per KEY or for all).",
)
@click.option(
    "--min-rel",
    "min_rel",
    multiple=True,
    metavar="[KEY=]X",
    help="Improvement over the baseline, relative (0.01 = 1%).",
)
@click.option(
    "--lower-is-better",
    "lower",
    multiple=True,
    metavar="KEY",
    help="KEY improves downwards (default: the comparator's, else the name's: loss, rmse…"
    " lower; else higher).",
)
@click.option(
    "--higher-is-better",
    "higher",
    multiple=True,
    metavar="KEY",
    help="KEY improves upwards (where the name says lower, e.g. a custom 'loss_drop').",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def gate_cmd(
    ctx: click.Context,
    run: str,
    metrics: tuple[str, ...],
    vs: str | None,
    min_abs: tuple[str, ...],
    min_rel: tuple[str, ...],
    lower: tuple[str, ...],
    higher: tuple[str, ...],
    fmt: str,
) -> None:
    """Pass or fail RUN on metric thresholds and on improvement over a baseline (--vs).

    MLflow MetricThreshold semantics; the verdicts are stored on the run (checks table).
    Exit codes: 0 pass, 1 fail (a threshold, an improvement, or a missing metric), 2 usage
    error (bad expression, unknown run). See docs/ci.md.
    """
    from mlnb.checks.gates import gate

    try:
        result = gate(
            run, list(metrics), vs=vs, min_abs=_number_options(min_abs, "--min-abs"),
            min_rel=_number_options(min_rel, "--min-rel"), lower_is_better=lower,
            higher_is_better=higher,
            store=open_store(ctx),
        )  # fmt: skip
    except MlnbError as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    if fmt == "json":
        click.echo(json.dumps(json_clean(result.to_dict()), indent=2))
    else:
        click.echo(str(result))
    ctx.exit(result.exit_code)


@click.command("report")
@click.argument("runs", nargs=-1)
@click.option("--vs", metavar="RUN", help="Compare each run with this run (or 'latest').")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md",
              show_default=True)  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="File to write (default: stdout); plots go to <name>_files/.")  # fmt: skip
@click.option("--no-plots", is_flag=True, help="Skip the metric plots.")
@system_metrics_option
@click.pass_context
@handles_errors
def report_cmd(
    ctx: click.Context,
    runs: tuple[str, ...],
    vs: str | None,
    fmt: str,
    output: str | None,
    no_plots: bool,
    system_metrics: bool,
) -> None:
    """Report RUNS (default: the newest run): params, metrics with Δ and %Δ, data and
    environment changes, checks and gates, metric plots, notebooks.

    Markdown is also appended to $GITHUB_STEP_SUMMARY when that is set (GitHub Actions).
    """
    from mlnb.jobs.reports import report

    text = report(runs, vs=vs, format=fmt, output=output, plots=not no_plots,
                  system_metrics=system_metrics, store=open_store(ctx))  # fmt: skip
    if output is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"wrote {output}", err=True)


@click.group("ci")
def ci_group() -> None:
    """Continuous integration: set up a workflow that runs, gates and reports notebooks."""


@ci_group.command("init")
@click.argument("provider", type=click.Choice(["github"]))
@click.option("--path", default=None, metavar="FILE",
              help="Where to write it (default: .github/workflows/mlnb.yml).")  # fmt: skip
@click.option("--notebook", default="notebooks/train.ipynb", show_default=True,
              help="The training notebook the workflow runs and gates.")  # fmt: skip
@click.option("-m", "--metric", "metrics", multiple=True, metavar="EXPR",
              help="Gated metric (repeatable; default: 'accuracy>=0.8').")  # fmt: skip
@click.option("--vs", default="latest", show_default=True, help="The gate's baseline.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--retrain", is_flag=True,
              help="Instead: a nightly `mlnb retrain` workflow (continuous training).")  # fmt: skip
@click.option("--model", default=None, metavar="NAME", help="--retrain: the model (default churn).")
@click.option("--data", "data", multiple=True, metavar="NAME=PATH",
              help="--retrain: the data (default train=data/train.csv; repeatable).")  # fmt: skip
@click.option("--when", "when", type=click.Choice(["data-changed", "drift", "always"]),
              default="drift", show_default=True, help="--retrain: when to train.")  # fmt: skip
@click.option("--gate", "gate", multiple=True, metavar="EXPR",
              help="--retrain: the promotion gate (default 'auc>=+0.0'; repeatable).")  # fmt: skip
@handles_errors
def ci_init_cmd(
    provider: str,
    path: str | None,
    notebook: str,
    metrics: tuple[str, ...],
    vs: str,
    force: bool,
    retrain: bool,
    model: str | None,
    data: tuple[str, ...],
    when: str,
    gate: tuple[str, ...],
) -> None:
    """Write a CI workflow (GitHub Actions): install, `mlnb test`, `mlnb run --check`,
    `mlnb gate --vs`, `mlnb report` to the job summary, upload the report. With
    --retrain, a scheduled workflow that runs `mlnb retrain` instead."""
    from mlnb.jobs import workflows

    options = None
    if retrain:
        options = {
            "notebook": notebook if notebook != workflows.DEFAULT_NOTEBOOK
            else workflows.RETRAIN_NOTEBOOK,
            "model": model or workflows.RETRAIN_MODEL,
            "data": data or workflows.RETRAIN_DATA,
            "when": when,
            "gate": gate or workflows.RETRAIN_GATE,
        }  # fmt: skip
    elif model or data or gate:
        raise click.UsageError("--model, --data and --gate go with --retrain")
    default = workflows.RETRAIN_PATH if retrain else workflows.DEFAULT_PATH
    target = workflows.write_github_workflow(
        path or default, notebook=notebook, metrics=metrics or workflows.DEFAULT_METRICS,
        vs=vs, force=force, retrain=options,
    )  # fmt: skip
    click.echo(f"wrote {target}")
