"""``mlnb mlflow push`` and ``mlnb mlflow pull``: runs and registered models to and from an
MLflow tracking server (mlnb.interop.mlflow; needs ``pip install 'mlnb[mlflow]'``)."""

from __future__ import annotations

import click

from mlnb.cli.common import handles_errors, open_store


@click.group("mlflow")
def mlflow_group() -> None:
    """Runs and registered models to and from an MLflow tracking server (docs/teams.md)."""


@mlflow_group.command("push")
@click.argument("uri")
@click.argument("filter", required=False)
@click.pass_context
@handles_errors
def push_cmd(ctx: click.Context, uri: str, filter: str | None) -> None:
    """Push the runs matching FILTER (default: every run) to the MLflow server at URI,
    with the model versions they produced and their aliases. Only what the server lacks
    is sent: pushing again changes nothing, and an interrupted push is completed."""
    from mlnb.interop.mlflow import mlflow_push

    click.echo(str(mlflow_push(uri, filter, store=open_store(ctx))))


@mlflow_group.command("pull")
@click.argument("uri")
@click.option("--experiment", "-e", metavar="NAME", help="Only this experiment's runs.")
@click.pass_context
@handles_errors
def pull_cmd(ctx: click.Context, uri: str, experiment: str | None) -> None:
    """Pull the ended runs of the MLflow server at URI into the store (with the model
    versions whose file came with them, and their aliases). Run ids stay stable: pulling
    again adds only what the server gained."""
    from mlnb.interop.mlflow import mlflow_pull

    click.echo(str(mlflow_pull(uri, experiment=experiment, store=open_store(ctx, create=True))))
