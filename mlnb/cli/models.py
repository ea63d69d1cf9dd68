"""The model registry's commands (``mlnb model ...``) and ``mlnb retrain``."""

from __future__ import annotations

import json
import sys

import click

from mlnb.cli.common import handles_errors, note_on_stderr, open_store
from mlnb.cli.views import json_clean, local_time
from mlnb.conventions import EXIT_BUSY
from mlnb.errors import RetrainBusyError
from mlnb.records import AliasEvent, ModelVersion, iso

FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")


def _json(value: object) -> None:
    click.echo(json.dumps(json_clean(value), indent=2, default=str))


def _version_dict(v: ModelVersion) -> dict[str, object]:
    return {
        "name": v.name, "version": v.version, "aliases": list(v.aliases), "run_id": v.run_id,
        "format": v.format, "flavor": v.flavor, "artifact": v.artifact_path,
        "hash": v.artifact_hash, "size": v.size, "signature": v.signature,
        "description": v.description, "user": v.user, "created_at": iso(v.created_at),
        "uri": v.uri,
    }  # fmt: skip


def _event_dict(e: AliasEvent) -> dict[str, object]:
    return {
        "alias": e.alias, "version": e.version, "previous_version": e.previous_version,
        "user": e.user, "host": e.host, "reason": e.reason, "check_batch": e.check_batch,
        "at": iso(e.created_at),
    }  # fmt: skip


def _event_line(e: AliasEvent) -> str:
    before = "-" if e.previous_version is None else str(e.previous_version)
    after = "(removed)" if e.version is None else str(e.version)
    who = f"{e.user or '?'}@{e.host or '?'}"
    when = local_time(e.created_at)
    return f"{when}  {e.alias:<12} {before:>3} → {after:<4} {who}  {e.reason or ''}".rstrip()


@click.group("model")
def model_group() -> None:
    """The model registry: versions, aliases with their history, lineage, promotion."""


@model_group.command("register")
@click.argument("run")
@click.option("--name", "name", required=True, help="The registered model's name.")
@click.option("--artifact", "artifact", required=True, metavar="PATH",
              help="The model file (.skops, .pkl, .joblib, or any file).")  # fmt: skip
@click.option("--format", "file_format", type=click.Choice(["skops", "pickle", "joblib", "file"]),
              default=None, help="The file's format (default: by its suffix).")  # fmt: skip
@click.option("--description", default=None, help="A note kept with the version.")
@click.pass_context
@handles_errors
def register_cmd(
    ctx: click.Context,
    run: str,
    name: str,
    artifact: str,
    file_format: str | None,
    description: str | None,
) -> None:
    """Register the model file PATH, produced by RUN, as the next version of NAME."""
    from mlnb.registry.models import register_model

    store = open_store(ctx)
    v = register_model(name, artifact, run=run, format=file_format, description=description,
                       store=store)  # fmt: skip
    click.echo(f"registered {v.name}/{v.version} ({v.format}) from run {run}: {v.uri}")


@model_group.command("ls")
@click.argument("name", required=False)
@FORMAT
@click.pass_context
@handles_errors
def ls_cmd(ctx: click.Context, name: str | None, fmt: str) -> None:
    """List registered models, or the versions of NAME (newest first)."""
    from mlnb.registry.models import models, versions

    store = open_store(ctx)
    if name is None:
        rows = models(store=store)
        if fmt == "json":
            return _json(rows)
        if not rows:
            click.echo("no registered models (mlnb.register_model or `mlnb model register`)")
        for m in rows:
            aliases = "  ".join(f"@{a}={v}" for a, v in sorted(m["aliases"].items()))
            click.echo(f"{m['name']:<24} {m['versions']:>3} versions  latest {m['latest_version']}"
                       f"  {aliases}".rstrip())  # fmt: skip
        return None
    found = versions(name, store=store)
    if fmt == "json":
        return _json([_version_dict(v) for v in found])
    for v in found:
        tags = " ".join(f"@{a}" for a in v.aliases)
        run = (v.run_id or "-")[:8]
        click.echo(f"{v.name}/{v.version:<4} {local_time(v.created_at)}  run {run}  "
                   f"{v.format:<7} {tags}".rstrip())  # fmt: skip
    return None


@model_group.command("show")
@click.argument("uri")
@FORMAT
@click.pass_context
@handles_errors
def show_cmd(ctx: click.Context, uri: str, fmt: str) -> None:
    """Show one version: NAME@ALIAS, NAME/VERSION or NAME (the newest)."""
    from mlnb.registry.models import get_model_version

    v = get_model_version(uri, store=open_store(ctx))
    if fmt == "json":
        return _json(_version_dict(v))
    d = _version_dict(v)
    for key in ("uri", "aliases", "run_id", "format", "flavor", "artifact", "hash", "size",
                "user", "created_at", "description"):  # fmt: skip
        value = d[key]
        if value not in (None, [], ""):
            shown = " ".join(f"@{a}" for a in v.aliases) if key == "aliases" else value
            click.echo(f"{key:<12} {shown}")
    sig = v.signature or {}
    for col in sig.get("inputs") or []:
        click.echo(f"input        {col['name']}: {col['dtype']}")
    if sig.get("outputs"):
        click.echo(f"output       {json.dumps(sig['outputs'])}")
    return None


@model_group.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=int, required=False)
@click.option("--delete", is_flag=True, help="Remove the alias (kept in its history).")
@click.option("--reason", default=None, help="Why (kept in the alias history).")
@click.pass_context
@handles_errors
def alias_cmd(
    ctx: click.Context, name: str, alias: str, version: int | None, delete: bool,
    reason: str | None,
) -> None:  # fmt: skip
    """Point NAME@ALIAS at VERSION (no gate; see `mlnb model promote`), or --delete it."""
    from mlnb.registry.models import delete_model_alias, set_model_alias

    store = open_store(ctx)
    if delete == (version is not None):
        raise click.UsageError("give VERSION, or --delete (not both)")
    if delete:
        event = delete_model_alias(name, alias, reason=reason, store=store)
    else:
        assert version is not None
        event = set_model_alias(name, alias, version, reason=reason, store=store)
    before = "unset" if event.previous_version is None else f"version {event.previous_version}"
    after = "removed" if event.version is None else f"version {event.version}"
    click.echo(f"{name}@{alias}: {before} → {after}")


@model_group.command("history")
@click.argument("name")
@click.option("--alias", default=None, help="Only this alias.")
@click.option("--at", "at", default=None, metavar="WHEN",
              help="What each alias pointed at then (an ISO date: its end, or time).")  # fmt: skip
@FORMAT
@click.pass_context
@handles_errors
def history_cmd(ctx: click.Context, name: str, alias: str | None, at: str | None, fmt: str) -> None:
    """Every move of NAME's aliases, oldest first (who, when, from which version, why).

    `mlnb model history churn --alias champion --at 2026-03-03` answers "which version
    served on 3 March": the last line is the move in force at the end of that day."""
    from mlnb.registry.models import model_history

    events = model_history(name, alias=alias, at=at, store=open_store(ctx))
    if fmt == "json":
        return _json([_event_dict(e) for e in events])
    if not events:
        click.echo(f"{name} has no alias moves" + (f" before {at}" if at else ""))
    for e in events:
        click.echo(_event_line(e))
    if at and events:
        current: dict[str, int | None] = {}
        for e in events:
            current[e.alias] = e.version
        shown = ", ".join(f"@{a} = {'(none)' if v is None else v}" for a, v in current.items())
        click.echo(f"at {at}: {shown}")
    return None


@model_group.command("lineage")
@click.argument("uri")
@FORMAT
@click.pass_context
@handles_errors
def lineage_cmd(ctx: click.Context, uri: str, fmt: str) -> None:
    """Where a version came from: run, notebook, params, data, environment, git commit."""
    from mlnb.registry.lineage import model_lineage

    found = model_lineage(uri, store=open_store(ctx))
    if fmt == "json":
        return _json(found.to_dict())
    click.echo(str(found))
    return None


@model_group.command("promote")
@click.argument("name")
@click.option("--from", "source", default="challenger", show_default=True, metavar="ALIAS|N",
              help="The candidate: an alias or a version number.")  # fmt: skip
@click.option("--to", "to", default="champion", show_default=True, metavar="ALIAS")
@click.option("--gate", "gate", multiple=True, metavar="EXPR",
              help="'auc>=0.8' (absolute) or 'auc>=+0.0', 'auc>=+1%', 'loss<=-0.01' (against "
              "the version --to points at); repeatable.")  # fmt: skip
@click.option("--previous", is_flag=True,
              help="Roll --to back to the version it pointed at before its last move.")  # fmt: skip
@click.option("--reason", default=None, help="Why (kept in the alias history).")
@FORMAT
@click.pass_context
@handles_errors
def promote_cmd(
    ctx: click.Context, name: str, source: str, to: str, gate: tuple[str, ...],
    previous: bool, reason: str | None, fmt: str,
) -> None:  # fmt: skip
    """Move NAME@TO to the --from version if it passes --gate against the current one.

    The verdict is stored in the candidate run's checks; the alias moves in the same
    transaction as its history row. With no version at TO yet, the first promotion passes
    on the absolute thresholds alone. Exit 0 when it passed, 1 when the gate failed."""
    store = open_store(ctx)
    if previous:
        from mlnb.registry.models import rollback_alias

        event = rollback_alias(name, to, reason=reason, store=store)
        click.echo(f"{name}@{to}: version {event.previous_version} → version {event.version}")
        return
    from mlnb.jobs.promote import promote

    result = promote(name, source=source, to=to, gate=gate, reason=reason, store=store)
    if fmt == "json":
        _json(result.to_dict())
    else:
        click.echo(str(result))
    ctx.exit(result.exit_code)


def _data_option(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise click.BadParameter(f"expected NAME=PATH, got {item!r}", param_hint="--data")
        out[name.strip()] = path
    return out


@click.command("retrain")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--model", "model", required=True, help="The registered model to retrain.")
@click.option("--data", "data", multiple=True, metavar="NAME=PATH",
              help="A data file, passed as the parameter NAME and compared with the champion's "
              "dataset NAME (repeatable).")  # fmt: skip
@click.option("--when", "when", type=click.Choice(["data-changed", "drift", "always"]),
              default="data-changed", show_default=True)  # fmt: skip
@click.option("--drift-threshold", type=float, default=None, metavar="X",
              help="The per-column drift threshold (default: the method's, PSI 0.25).")  # fmt: skip
@click.option("--from-monitor", is_flag=True,
              help="--when drift: the newest `mlnb monitor MODEL` verdict on the served inputs "
              "decides (implied without --data); --data only feeds the notebook.")  # fmt: skip
@click.option("--gate", "gate", multiple=True, metavar="EXPR",
              help="As in `mlnb model promote`, against the champion (repeatable).")  # fmt: skip
@click.option("--promote", "promote", default=None, metavar="ALIAS",
              help="Promote the new version to ALIAS if it passes the gate.")  # fmt: skip
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Another notebook parameter (a string).")  # fmt: skip
@click.option("-e", "--experiment", default=None, help="The experiment of the new run.")
@click.option("--no-wait", is_flag=True,
              help="Exit 75 at once if another retrain of the model is running.")  # fmt: skip
@FORMAT
@click.pass_context
@handles_errors
def retrain_cmd(
    ctx: click.Context, notebook: str, model: str, data: tuple[str, ...], when: str,
    drift_threshold: float | None, from_monitor: bool, gate: tuple[str, ...],
    promote: str | None,
    params: tuple[str, ...], experiment: str | None, no_wait: bool, fmt: str,
) -> None:  # fmt: skip
    """Retrain MODEL with NOTEBOOK when its data changed or drifted, then gate and promote.

    With nothing to retrain on it prints "no change", runs nothing and exits 0. Otherwise
    the notebook runs headless (the data paths as parameters) and must register a version
    of MODEL; it is then gated against the champion and promoted with --promote. Exit
    codes: 0, 1 (gate failed or a cell raised), 75 (--no-wait and another retrain runs)."""
    from mlnb.jobs.retrain import retrain

    store = open_store(ctx, create=True)
    try:
        result = retrain(
            notebook, model=model, data=_data_option(data), when=when,
            drift_threshold=drift_threshold, from_monitor=from_monitor, gate=gate,
            promote=promote,
            parameters=_data_option(params) if params else None, experiment=experiment,
            wait=not no_wait, on_wait=note_on_stderr, progress_bar=False, store=store,
        )  # fmt: skip
    except RetrainBusyError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_BUSY)
    if fmt == "json":
        _json(result.to_dict())
    else:
        click.echo(str(result))
    if result.exit_code:
        ctx.exit(result.exit_code)


__all__ = ["model_group", "retrain_cmd"]
