"""Sharing runs between people and machines: ``mlnb export`` (runs into one bundle file),
``mlnb import`` (a bundle file into the store), ``mlnb sync`` (two stores). docs/teams.md."""

from __future__ import annotations

import click

from mlnb.cli.common import handles_errors, open_store
from mlnb.conventions import EXIT_FAILED
from mlnb.errors import RunNotFoundError
from mlnb.store import Store
from mlnb.tracking.sharing import export_runs, import_runs, sync


def _runs_or_filter(store: Store, args: tuple[str, ...]) -> tuple[list[str] | None, str | None]:
    """``[FILTER | RUN…]``: arguments that all name runs are runs; a single one that names
    no run is a filter; none is every run."""
    if not args:
        return None, None
    try:
        return [store.resolve_run_id(arg) for arg in args], None
    except RunNotFoundError:
        if len(args) == 1:
            return None, args[0]
        raise


@click.command("export")
@click.argument("what", nargs=-1, metavar="[FILTER | RUN…]")
@click.option(
    "-o",
    "--output",
    "output",
    metavar="FILE",
    help="The bundle file to write (e.g. runs.mlnb); replaced only once complete.",
)
@click.option(
    "--mlflow",
    "mlflow_uri",
    metavar="URI",
    help="Push to this MLflow tracking server instead (as `mlnb mlflow push URI [FILTER]`).",
)
@click.option("--include-deleted", is_flag=True, help="With a filter: deleted runs too.")
@click.pass_context
@handles_errors
def export_cmd(
    ctx: click.Context,
    what: tuple[str, ...],
    output: str | None,
    mlflow_uri: str | None,
    include_deleted: bool,
) -> None:
    """Write runs into one bundle file: the runs named, or those matching FILTER (the query
    language of docs/query.md), or every run. The file holds params, every metric point,
    tags, checks, artifacts (each content once), datasets, environments and lineage. With
    --mlflow URI, push them to an MLflow tracking server instead (docs/teams.md)."""
    if mlflow_uri is not None:
        if output is not None:
            raise click.UsageError("give -o FILE or --mlflow URI, not both")
        from mlnb.interop.mlflow import mlflow_push

        store = open_store(ctx)
        runs, filter_ = _runs_or_filter(store, what)
        click.echo(str(mlflow_push(mlflow_uri, filter_, run_ids=runs, store=store)))
        return
    if output is None:
        raise click.UsageError("say where to write the bundle: -o FILE (or --mlflow URI)")
    store = open_store(ctx)
    runs, filter_ = _runs_or_filter(store, what)
    ids = export_runs(output, runs, filter=filter_, include_deleted=include_deleted, store=store)
    click.echo(f"exported {len(ids)} runs to {output}")


@click.command("import")
@click.argument("bundle", metavar="FILE", required=False)
@click.option("--dry-run", is_flag=True, help="Check everything; say what would be imported.")
@click.option(
    "--mlflow",
    "mlflow_uri",
    metavar="URI",
    help="Pull the ended runs of this MLflow tracking server instead (`mlnb mlflow pull`).",
)
@click.option(
    "--experiment", "-e", metavar="NAME", help="With --mlflow: only this experiment's runs."
)
@click.pass_context
@handles_errors
def import_cmd(
    ctx: click.Context,
    bundle: str | None,
    dry_run: bool,
    mlflow_uri: str | None,
    experiment: str | None,
) -> None:
    """Import a bundle file made by `mlnb export`: new runs are added, known runs gain only
    the points and tags they lack; importing twice changes nothing. A conflict is refused
    and named, with nothing imported. With --mlflow URI, pull runs from an MLflow tracking
    server instead (docs/teams.md)."""
    if mlflow_uri is not None:
        if bundle is not None or dry_run:
            raise click.UsageError("--mlflow URI takes no FILE and no --dry-run")
        from mlnb.interop.mlflow import mlflow_pull

        store = open_store(ctx, create=True)
        click.echo(str(mlflow_pull(mlflow_uri, experiment=experiment, store=store)))
        return
    if experiment is not None:
        raise click.UsageError("--experiment goes with --mlflow URI")
    if bundle is None:
        raise click.UsageError("say which bundle file to import: mlnb import FILE")
    result = import_runs(bundle, dry_run=dry_run, store=open_store(ctx, create=True))
    verb = "would import" if dry_run else "imported"
    click.echo(
        f"{verb} {len(result.added)} new runs, {len(result.updated)} runs gain rows, "
        f"{len(result.unchanged)} unchanged"
    )


@click.command("sync")
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
@click.argument("filter_", metavar="[FILTER]", required=False)
@click.option("--both", is_flag=True, help="Also copy what SRC lacks from DST.")
@click.option("--dry-run", is_flag=True, help="List what would move; move nothing.")
@handles_errors
def sync_cmd(src: str, dst: str, filter_: str | None, both: bool, dry_run: bool) -> None:
    """Copy the runs (and points, tags…) that store DST lacks from store SRC (folders).
    Nothing is overwritten: a run changed on both sides is reported as DIVERGED with what
    differs (exit 1)."""
    result = sync(src, dst, filter_, both=both, dry_run=dry_run)
    for move in result.moves:
        label = "DIVERGED" if move.kind == "diverged" else move.kind
        line = f"{label:<9}{move.run_id}  {move.source} -> {move.target}"
        if move.kind == "diverged":
            line += f"\n         {move.reason}"
        else:
            line += f"  ({move.rows} rows)"
        click.echo(line)
    for reason in result.models_diverged:
        click.echo(f"DIVERGED {reason}")
    moved = len(result.moves) - len(result.diverged)
    verb = "would copy" if dry_run else "copied"
    click.echo(
        f"{verb} {moved} runs and {result.model_rows} registry rows, {result.same} runs "
        f"already in sync, {len(result.diverged) + len(result.models_diverged)} diverged"
    )
    if result.diverged or result.models_diverged:
        click.echo(
            "Error: some runs or aliases diverged (changed on both sides); nothing of them "
            "was overwritten: resolve each by hand, then sync again",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_FAILED)
