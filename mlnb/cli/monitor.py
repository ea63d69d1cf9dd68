"""``mlnb monitor``: drift of a served model's inputs and predictions, and its live metrics
(docs/monitoring.md)."""

from __future__ import annotations

import click

from mlnb.cli.common import handles_errors, open_store
from mlnb.cli.data import FORMATS, _echo, _per_column
from mlnb.conventions import EXIT_FAILED, EXIT_OK


@click.command("monitor")
@click.argument("model")
@click.option("--window", default="10000", show_default=True, metavar="ROWS|PERIOD",
              help="The newest served rows (10000) or period (30m, 1h, 2d) of the prediction "
              "log.")  # fmt: skip
@click.option("--alias", default="champion", show_default=True,
              help="The version whose training data is the reference.")  # fmt: skip
@click.option("--reference", default=None, metavar="NAME",
              help="The training run's input dataset to compare with (default: train, or "
              "the only one).")  # fmt: skip
@click.option("--threshold", "thresholds", multiple=True, metavar="[COLUMN=]X",
              help="The drift threshold, for every column or one (repeatable).")  # fmt: skip
@click.option("--no-record", is_flag=True, help="Print only; store no checks.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
@handles_errors
def monitor_cmd(
    ctx: click.Context, model: str, window: str, alias: str, reference: str | None,
    thresholds: tuple[str, ...], no_record: bool, fmt: str,
) -> None:  # fmt: skip
    """Compare MODEL's served inputs in the prediction log's --window with the training
    data of MODEL@ALIAS (the statistics of `mlnb data drift`), its predictions with the
    training run's where recorded, and live metrics from feedback with the training run's.
    The verdicts are stored as checks on the model's monitor run (experiment
    `monitoring`); `mlnb retrain --when drift` without --data reads the newest. Exit 1
    when an input column drifted or a live metric degraded."""
    from mlnb.monitoring.monitor import monitor

    store = open_store(ctx)
    result = monitor(model, window=window, alias=alias, reference=reference,
                     thresholds=_per_column(thresholds, "--threshold", float),
                     record=not no_record, store=store)  # fmt: skip
    _echo(result, fmt)
    ctx.exit(EXIT_OK if result.passed else EXIT_FAILED)


__all__ = ["monitor_cmd"]
