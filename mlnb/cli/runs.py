"""The commands over runs in the store: runs, show, diff, delete, restore, gc, store."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from mlnb.cli.common import (
    MlnbClickError,
    handles_errors,
    note_on_stderr,
    open_store,
    system_metrics_option,
)
from mlnb.cli.views import (
    FORMATS,
    fit_table,
    format_run,
    json_clean,
    json_default,
    render,
    select_columns,
    terminal_width,
)
from mlnb.comparison.diff import diff_runs
from mlnb.store import notices


@click.command("runs")
@click.option("-f", "--filter", "filter_", metavar="EXPR", help='Query, e.g. "metrics.acc > 0.9".')
@click.option("-e", "--experiment", metavar="NAME", multiple=True, help="Only these experiments.")
@click.option("-o", "--order-by", metavar="EXPR", help='e.g. "metrics.acc desc" (default: newest).')
@click.option(
    "-c",
    "--columns",
    metavar="COLS",
    help="Comma-separated columns; 'params.*' style wildcards work (default: a useful set).",
)
@click.option("-n", "--limit", type=click.IntRange(min=0), help="At most this many runs.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--deleted", is_flag=True, help="Include deleted runs.")
@click.option("-v", "--verbose", is_flag=True, help="Say which store was read (on stderr).")
@click.pass_context
@handles_errors
def runs_cmd(
    ctx: click.Context,
    filter_: str | None,
    experiment: tuple[str, ...],
    order_by: str | None,
    columns: str | None,
    limit: int | None,
    fmt: str,
    deleted: bool,
    verbose: bool,
) -> None:
    """List runs as a table, CSV, JSON or Markdown.

    The default table shows the experiment when the runs come from several, and fits the
    terminal (or $COLUMNS): long values are cut with '…', and params, then times, then
    metrics are left out, with a note on stderr naming them. Piped output is not fitted
    unless $COLUMNS is set. A filter, sort or column key that no run in scope has gets a
    note on stderr with the closest keys.
    """
    store = open_store(ctx)
    if verbose:
        click.echo(f"store: {store.location}", err=True)
    table = store.search_runs(
        filter_,
        experiment=list(experiment) or None,
        order_by=order_by,
        max_results=limit,
        include_deleted=deleted,
    )
    chosen = select_columns(table, columns, fmt)
    for notice in notices.key_notices(
        store,
        filter=filter_,
        order_by=order_by,
        columns=chosen if columns else (),
        experiments=list(experiment) or None,
        include_deleted=deleted,
    ):
        note_on_stderr(notice)
    n = len(table["run_id"])
    rows: Sequence[Sequence[Any]] = list(
        zip(*(table.get(c, [None] * n) for c in chosen), strict=True)
    )
    if fmt == "table" and not rows:
        click.echo(f"(no runs in {store.location})")
        return
    width = terminal_width()
    if fmt == "table" and not columns and width is not None:
        chosen, rows, dropped = fit_table(chosen, rows, width)
        if dropped:
            shown = ", ".join(dropped[:6]) + (
                f" and {len(dropped) - 6} more" if len(dropped) > 6 else ""
            )
            note_on_stderr(
                f"{len(dropped)} columns left out to fit {width} characters: {shown} "
                "(choose columns with -c, or set COLUMNS)"
            )
    click.echo(render(chosen, rows, fmt), nl=False)


@click.command("show")
@click.argument("run", required=False)
@click.option("-e", "--experiment", metavar="NAME", help="Without RUN: pick from this experiment.")
@click.option(
    "-f", "--filter", "filter_", metavar="EXPR", help="Without RUN: pick the first match."
)
@click.option("-o", "--order-by", metavar="EXPR", help='Without RUN: e.g. "metrics.acc desc".')
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
@handles_errors
def show_cmd(
    ctx: click.Context,
    run: str | None,
    experiment: str | None,
    filter_: str | None,
    order_by: str | None,
    fmt: str,
) -> None:
    """Show one run: attributes, params, metrics, tags, artifacts.

    RUN is an id, a unique id prefix or a unique name. Without RUN, the first run that
    --filter/--experiment/--order-by select is shown (default: the newest run), so
    `mlnb show -o "metrics.acc desc"` shows the best run.
    """
    store = open_store(ctx)
    if run is None:
        found = store.search_runs(filter_, experiment=experiment, order_by=order_by, max_results=1)
        if not found["run_id"]:
            for notice in notices.key_notices(
                store, filter=filter_, order_by=order_by, experiments=experiment
            ):
                note_on_stderr(notice)
            asked = [
                f"{o} {v!r}" for o, v in (("--filter", filter_), ("--experiment", experiment)) if v
            ]
            scope = " and ".join(asked) if asked else "no filter (the store has no runs yet)"
            raise MlnbClickError(f"no run matches {scope} in {store.location}")
        run = found["run_id"][0]
    record = store.get_run(run)
    from mlnb.registry.models import versions_of_run

    registered = versions_of_run(store, record.run_id)
    if fmt == "json":
        shown = record.to_dict()
        shown["models"] = [
            {"name": v.name, "version": v.version, "aliases": list(v.aliases), "uri": v.uri}
            for v in registered
        ]
        click.echo(json.dumps(json_clean(shown), indent=2, default=json_default))
    else:
        text = format_run(record)
        if registered:
            text += "\nmodels:\n" + "\n".join(
                f"  {v.name}/{v.version}  {v.format}" + "".join(f"  @{a}" for a in v.aliases)
                for v in registered
            )
        click.echo(text)


@click.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--all", "show_all", is_flag=True, help="Show every value, not only differences.")
@system_metrics_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
@handles_errors
def diff_cmd(
    ctx: click.Context, run_a: str, run_b: str, show_all: bool, system_metrics: bool, fmt: str
) -> None:
    """Explain how RUN_B differs from RUN_A (only differences unless --all)."""
    store = open_store(ctx)
    result = diff_runs(
        store.get_run(run_a), store.get_run(run_b), all=show_all, system_metrics=system_metrics
    )
    if fmt == "json":
        click.echo(json.dumps(json_clean(result.to_dict()), indent=2, default=json_default))
    else:
        click.echo(str(result))


@click.command("delete")
@click.argument("runs", nargs=-1, required=True)
@click.pass_context
@handles_errors
def delete_cmd(ctx: click.Context, runs: tuple[str, ...]) -> None:
    """Delete runs (hidden from listings; `mlnb restore` brings them back)."""
    store = open_store(ctx)
    ids = [store.resolve_run_id(r) for r in runs]  # all or nothing: resolve first
    for run_id in ids:
        store.delete_run(run_id)
        click.echo(f"deleted {run_id}")


@click.command("restore")
@click.argument("runs", nargs=-1, required=True)
@click.pass_context
@handles_errors
def restore_cmd(ctx: click.Context, runs: tuple[str, ...]) -> None:
    """Restore deleted runs."""
    store = open_store(ctx)
    ids = [store.resolve_run_id(r) for r in runs]
    for run_id in ids:
        store.restore_run(run_id)
        click.echo(f"restored {run_id}")


@click.command("gc")
@click.option("--purge-deleted", is_flag=True, help="Also erase deleted runs for good.")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option(
    "--force",
    is_flag=True,
    help="Purge deleted runs even while their process still runs (it then gets "
    "RunNotFoundError at its next flush).",
)
@click.pass_context
@handles_errors
def gc_cmd(ctx: click.Context, purge_deleted: bool, dry_run: bool, force: bool) -> None:
    """Remove artifact files that no run refers to (older than an hour)."""
    result = open_store(ctx).gc(purge_deleted=purge_deleted, dry_run=dry_run, force=force)
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {result['files_removed']} artifact files ({result['bytes_freed']} bytes)"
        + (f", {result['runs_purged']} deleted runs" if purge_deleted else "")
    )


@click.command("store")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
@handles_errors
def store_cmd(ctx: click.Context, fmt: str) -> None:
    """Where the store is, its schema version, row counts and size."""
    info = open_store(ctx).info()
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"path            {info['path']}")
    click.echo(f"schema version  {info['schema_version']}")
    for table, count in info["counts"].items():
        click.echo(f"{table:<16}{count}")
    click.echo(f"database bytes  {info['database_bytes']}")
    click.echo(f"artifact bytes  {info['artifact_bytes']}")
