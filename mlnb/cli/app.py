"""The ``mlnb`` command line: a thin adapter over the store. Errors print one line and exit
non-zero (1 for an mlnb error, 2 for a usage error); no tracebacks for user mistakes."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from mlnb import __version__
from mlnb.comparison.diff import diff_runs
from mlnb.errors import MlnbError
from mlnb.formatting import escape_markdown
from mlnb.records import ERROR_TAG, JobError, RunRecord, format_duration, iso
from mlnb.store import Store, notices

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("table", "csv", "json", "markdown")
DEFAULT_COLUMNS = ("run_id", "name", "status", "start_time", "duration")
KEPT_COLUMNS = ("run_id", "name", "experiment", "status")  # never left out to fit a terminal
TIMES = ("linearity", "start_time", "duration")  # left out after the params, before metrics
MAX_CELL = 30  # characters of a cell when the table is fitted to a terminal


class MlnbClickError(click.ClickException):
    """An mlnb error shown as one line (``Error: ...``), exit code 1."""


def _open_store(ctx: click.Context, *, create: bool = False) -> Store:
    """The store of ``--store`` / ``$MLNB_STORE`` / the nearest ``.mlnb/``. Only commands
    that start runs pass ``create``: reads never create a store (the error says where
    they looked and that the first run creates one)."""
    try:
        store = Store(ctx.obj.get("store"), create=create)
    except MlnbError as exc:
        raise MlnbClickError(str(exc)) from None
    ctx.call_on_close(store.close)
    return store


def _note(notice: object) -> None:
    """A one-line notice on stderr (stdout stays parseable)."""
    click.echo(f"note: {notice}", err=True)


def handles_errors(fn: F) -> F:
    """Turn MlnbError into a clean one-line error."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MlnbError as exc:
            raise MlnbClickError(str(exc)) from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="mlnb")
@click.option(
    "--store",
    envvar="MLNB_STORE",
    metavar="PATH",
    help="Store folder (default: $MLNB_STORE, else the nearest .mlnb/ upwards).",
)
@click.pass_context
def cli(ctx: click.Context, store: str | None) -> None:
    """mlnb: experiment tracking for Jupyter notebooks, in one local SQLite store."""
    ctx.ensure_object(dict)
    ctx.obj["store"] = store


system_metrics_option = click.option(
    "--system-metrics",
    is_flag=True,
    help="Also show the job/* and system/* metrics (cell timings, CPU, memory).",
)


@cli.command("runs")
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
    store = _open_store(ctx)
    if verbose:
        click.echo(f"store: {store.location}", err=True)
    table = store.search_runs(
        filter_,
        experiment=list(experiment) or None,
        order_by=order_by,
        max_results=limit,
        include_deleted=deleted,
    )
    chosen = _select_columns(table, columns, fmt)
    for notice in notices.key_notices(
        store,
        filter=filter_,
        order_by=order_by,
        columns=chosen if columns else (),
        experiments=list(experiment) or None,
        include_deleted=deleted,
    ):
        _note(notice)
    n = len(table["run_id"])
    rows: Sequence[Sequence[Any]] = list(
        zip(*(table.get(c, [None] * n) for c in chosen), strict=True)
    )
    if fmt == "table" and not rows:
        click.echo(f"(no runs in {store.location})")
        return
    width = _terminal_width()
    if fmt == "table" and not columns and width is not None:
        chosen, rows, dropped = fit_table(chosen, rows, width)
        if dropped:
            shown = ", ".join(dropped[:6]) + (
                f" and {len(dropped) - 6} more" if len(dropped) > 6 else ""
            )
            _note(
                f"{len(dropped)} columns left out to fit {width} characters: {shown} "
                "(choose columns with -c, or set COLUMNS)"
            )
    click.echo(render(chosen, rows, fmt), nl=False)


def _terminal_width() -> int | None:
    """``$COLUMNS`` when set, else the terminal's width; None when stdout is not a terminal
    (piped output is not fitted)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def fit_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int
) -> tuple[list[str], list[list[str]], list[str]]:
    """A runs table that fits ``width`` characters: cells as table text cut to
    ``MAX_CELL`` characters with '…'; then params and tags (rightmost first), linearity
    and the times, then metrics (rightmost first) are left out until the lines fit.
    ``KEPT_COLUMNS`` always stay.
    Returns the columns kept, their cells, and the columns left out (in table order)."""
    cells = [
        [_elide(str(_cell(v, c, "table"))) for v, c in zip(row, columns, strict=True)]
        for row in rows
    ]
    widths = {c: max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)}
    keyed = [c for c in columns if c.startswith(("params.", "tags."))]
    metrics = [c for c in columns if c.startswith("metrics.")]
    candidates = [*reversed(keyed), *(c for c in TIMES if c in widths), *reversed(metrics)]
    candidates += [c for c in reversed(columns) if c not in candidates and c not in KEPT_COLUMNS]

    def fits(chosen: list[str]) -> bool:
        return sum(widths[c] for c in chosen) + 2 * (len(chosen) - 1) <= width

    kept = list(columns)
    removed: list[str] = []
    for column in candidates:
        if fits(kept):
            break
        kept.remove(column)
        removed.append(column)
    for column in reversed(removed[:-1]):  # a narrow column may fit in what is left
        if fits([*kept, column]):
            kept = [c for c in columns if c in kept or c == column]
    index = [columns.index(c) for c in kept]
    dropped = [c for c in columns if c not in kept]
    return kept, [[r[i] for i in index] for r in cells], dropped


def _elide(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _select_columns(table: dict[str, list[Any]], spec: str | None, fmt: str) -> list[str]:
    all_columns = list(table)
    if not spec:
        if fmt in ("json", "csv"):
            return all_columns
        notebook = ["linearity"] if any(table["linearity"]) else []  # notebook runs only
        several = len(set(table["experiment"])) > 1
        dynamic = [c for c in all_columns if c.startswith(("params.", "metrics."))]
        base = list(DEFAULT_COLUMNS)
        if several:  # which experiment each run is in, right after its name
            base.insert(base.index("name") + 1, "experiment")
        return [*base, *notebook, *dynamic]
    chosen: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.endswith("*"):
            chosen.extend(c for c in all_columns if c.startswith(item[:-1]) and c not in chosen)
        elif item in all_columns:
            chosen.append(item)
        elif item.startswith(("params.", "metrics.", "tags.")):
            chosen.append(item)  # a key no listed run has: an empty column, not an error
        else:
            raise click.BadParameter(
                f"unknown column {item!r}; known: {', '.join(all_columns)}", param_hint="--columns"
            )
    return chosen


def _cell(value: Any, column: str, fmt: str) -> Any:
    if value is None:
        return "" if fmt != "json" else None
    if column in ("start_time", "end_time") and isinstance(value, float):
        return iso(value) if fmt != "table" else _local_time(value)
    if column == "duration" and isinstance(value, float) and fmt in ("table", "markdown"):
        return format_duration(value)
    if column == "run_id" and fmt in ("table", "markdown"):
        return value[:8]
    if isinstance(value, float):
        if fmt == "json":
            return _json_number(value)
        if fmt in ("table", "markdown"):
            return f"{value:.6g}"
        return repr(value)
    if isinstance(value, (dict, list)) and fmt != "json":
        return json.dumps(value, sort_keys=True)
    return value


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """Rows as a text table, CSV, JSON (NaN/±inf as strings) or Markdown (every cell and
    header escaped, so names, params and tags show as text)."""
    cells = [[_cell(v, c, fmt) for v, c in zip(row, columns, strict=True)] for row in rows]
    if fmt == "json":
        return json.dumps([dict(zip(columns, r, strict=True)) for r in cells], indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(cells)
        return buf.getvalue()
    text = [[str(c) for c in r] for r in cells]
    if fmt == "markdown":
        head = [escape_markdown(c) for c in columns]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(escape_markdown(t) for t in r) + " |" for r in text]
        return "\n".join(lines) + "\n"
    if not rows:
        return "(no runs)\n"
    widths = [max(len(c), *(len(r[i]) for r in text)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(t.ljust(w) for t, w in zip(r, widths, strict=True)).rstrip() for r in text]
    return "\n".join(lines) + "\n"


def _json_number(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _json_default(value: Any) -> Any:
    return str(value)


def _json_clean(value: Any) -> Any:
    if isinstance(value, float):
        return _json_number(value)
    if isinstance(value, dict):
        return {k: _json_clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_clean(v) for v in value]
    return value


def _local_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@cli.command("show")
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
    store = _open_store(ctx)
    if run is None:
        found = store.search_runs(filter_, experiment=experiment, order_by=order_by, max_results=1)
        if not found["run_id"]:
            for notice in notices.key_notices(
                store, filter=filter_, order_by=order_by, experiments=experiment
            ):
                _note(notice)
            asked = [
                f"{o} {v!r}" for o, v in (("--filter", filter_), ("--experiment", experiment)) if v
            ]
            scope = " and ".join(asked) if asked else "no filter (the store has no runs yet)"
            raise MlnbClickError(f"no run matches {scope} in {store.location}")
        run = found["run_id"][0]
    record = store.get_run(run)
    if fmt == "json":
        click.echo(json.dumps(_json_clean(record.to_dict()), indent=2, default=_json_default))
    else:
        click.echo(format_run(record))


def format_run(rec: RunRecord) -> str:
    """A run as readable text (what ``mlnb show`` prints)."""
    lines = [
        f"run {rec.run_id}",
        f"  name        {rec.name}",
        f"  experiment  {rec.experiment}",
        f"  status      {rec.status}{'  (deleted)' if rec.deleted else ''}",
        f"  started     {_local_time(rec.start_time)}",
    ]
    if rec.duration is not None:
        lines.append(f"  duration    {format_duration(rec.duration)}")
    if rec.parent_run_id:
        lines.append(f"  parent      {rec.parent_run_id}")
    lines.append(f"  source      {rec.source or '(interactive)'}")
    if rec.linearity:
        reasons = "; ".join((rec.linearity_detail or {}).get("reasons") or [])
        lines.append(f"  linearity   {rec.linearity}" + (f" ({reasons})" if reasons else ""))
    lines.append(f"  host        {rec.host}  pid {rec.pid}  user {rec.user}")
    error = JobError.from_tags(rec.tags) if rec.status != "finished" else None
    if error is not None:
        lines += ["error:", _indent(str(error), "  ")]
    tags = rec.tags
    if error is not None:  # shown above, not again as tags (the traceback has many lines)
        tags = {k: v for k, v in tags.items() if not k.startswith(f"{ERROR_TAG}.")}
    for title, mapping in (("params", rec.params), ("metrics", rec.metrics), ("tags", tags)):
        if not mapping:
            continue
        lines.append(f"{title}:")
        width = max(len(k) for k in mapping)
        for key, value in mapping.items():
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            if title == "metrics":
                shown += f"  (step {rec.metric_steps.get(key, 0)})"
            lines.append(f"  {key.ljust(width)}  {shown}")
    lines.extend(_provenance_lines(rec))
    if rec.checks:
        lines.append("checks:")
        for chk in rec.checks:
            mark = "PASS" if chk.passed else "FAIL"
            value = "" if chk.value is None else f"  value {chk.value:.6g}"
            base = ""
            if chk.baseline_run_id:
                base = f"  vs {chk.baseline_run_id[:8]}"
            lines.append(f"  {_local_time(chk.created_at)}  {chk.kind:<5} {mark}  {chk.name}"
                         f"{value}{base}")  # fmt: skip
            if chk.message and not chk.passed:
                lines.append(f"      {chk.message}")
    if rec.artifacts:
        lines.append("artifacts:")
        for art in rec.artifacts:
            lines.append(f"  {art.path}  {art.size} bytes  {art.kind}  {art.hash[:12]}")
    return "\n".join(lines)


def _provenance_lines(rec: RunRecord) -> list[str]:
    lines = []
    if rec.environment is not None:
        env = rec.environment
        python = env.get("python") or {}
        platform = (env.get("os") or {}).get("platform", "?")
        packages = len(env.get("packages") or {})
        lines.append("environment:")
        lines.append(
            f"  python {python.get('version', '?')} ({python.get('implementation', '?')}) on "
            f"{platform}; {packages} packages  [{(rec.environment_hash or '')[:12]}]"
        )
    if rec.git is not None:
        git = rec.git
        commit = (git.get("commit") or "no commits yet")[:12]
        state = "dirty" if git.get("dirty") else "clean"
        extra = ""
        if git.get("diff_bytes"):
            cut = ", truncated" if git.get("diff_truncated") else ""
            extra = f"; diff {git['diff_bytes']} bytes{cut} (artifact mlnb/git.diff)"
        if git.get("untracked_count"):
            extra += f"; {git['untracked_count']} untracked"
        lines.append("git:")
        lines.append(f"  {commit} on {git.get('branch') or '(detached)'}, {state}{extra}")
        if git.get("remote"):
            lines.append(f"  remote {git['remote']}")
    if rec.datasets:
        lines.append("data:")
        width = max(len(d.name) for d in rec.datasets)
        for d in rec.datasets:
            shape = ""
            if d.rows is not None:
                shape = f"{d.rows} rows" + (f" x {d.columns} cols" if d.columns is not None else "")
            elif d.size_bytes is not None:
                shape = f"{d.size_bytes} bytes"
            sampled = " (sampled)" if d.sampled else ""
            lines.append(
                f"  {d.role:<6} {d.name.ljust(width)}  {d.kind:<9} {shape}{sampled}  {d.hash}"
            )
    return lines


@cli.command("diff")
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
    store = _open_store(ctx)
    result = diff_runs(
        store.get_run(run_a), store.get_run(run_b), all=show_all, system_metrics=system_metrics
    )
    if fmt == "json":
        click.echo(json.dumps(_json_clean(result.to_dict()), indent=2, default=_json_default))
    else:
        click.echo(str(result))


@cli.command("delete")
@click.argument("runs", nargs=-1, required=True)
@click.pass_context
@handles_errors
def delete_cmd(ctx: click.Context, runs: tuple[str, ...]) -> None:
    """Delete runs (hidden from listings; `mlnb restore` brings them back)."""
    store = _open_store(ctx)
    ids = [store.resolve_run_id(r) for r in runs]  # all or nothing: resolve first
    for run_id in ids:
        store.delete_run(run_id)
        click.echo(f"deleted {run_id}")


@cli.command("restore")
@click.argument("runs", nargs=-1, required=True)
@click.pass_context
@handles_errors
def restore_cmd(ctx: click.Context, runs: tuple[str, ...]) -> None:
    """Restore deleted runs."""
    store = _open_store(ctx)
    ids = [store.resolve_run_id(r) for r in runs]
    for run_id in ids:
        store.restore_run(run_id)
        click.echo(f"restored {run_id}")


@cli.command("gc")
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
    result = _open_store(ctx).gc(purge_deleted=purge_deleted, dry_run=dry_run, force=force)
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {result['files_removed']} artifact files ({result['bytes_freed']} bytes)"
        + (f", {result['runs_purged']} deleted runs" if purge_deleted else "")
    )


@cli.command("store")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
@handles_errors
def store_cmd(ctx: click.Context, fmt: str) -> None:
    """Where the store is, its schema version, row counts and size."""
    info = _open_store(ctx).info()
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"path            {info['path']}")
    click.echo(f"schema version  {info['schema_version']}")
    for table, count in info["counts"].items():
        click.echo(f"{table:<16}{count}")
    click.echo(f"database bytes  {info['database_bytes']}")
    click.echo(f"artifact bytes  {info['artifact_bytes']}")


# -- headless jobs ----------------------------------------------------------------------


def kernel_options(cwd_help: str) -> Callable[[F], F]:
    """The options of every command that starts a kernel for a notebook (run, sweep,
    reproduce): --kernel, --cwd, --cell-timeout, --start-timeout."""
    options = [
        click.option("--kernel", help="Kernel name (default: the notebook's)."),
        click.option("--cwd", type=click.Path(file_okay=False), help=cwd_help),
        click.option("--cell-timeout", type=float, help="Seconds a cell may run."),
        click.option("--start-timeout", type=float, default=60.0, show_default=True),
    ]

    def decorate(fn: F) -> F:
        for option in reversed(options):  # click lists options in decorator order
            fn = option(fn)
        return fn

    return decorate


def params_options(fn: F) -> F:
    """How run and sweep check the parameters against the notebook's parameters cell:
    --strict-params, --allow-unknown-params."""
    fn = click.option(
        "--allow-unknown-params", is_flag=True,
        help="Inject names the parameters cell lacks anyway (as papermill does); they are "
        "recorded as tags mlnb.unknown_param.NAME, not as params.",
    )(fn)  # fmt: skip
    fn = click.option(
        "--strict-params", is_flag=True,
        help="Also refuse values whose type differs from the default's.",
    )(fn)  # fmt: skip
    return fn


def _indent(text: str, prefix: str) -> str:
    """Every line of ``text`` after ``prefix``."""
    return "\n".join(prefix + line for line in text.splitlines())


def _tag_map(items: Sequence[str]) -> dict[str, str]:
    """``--tag K=V`` options as a dict (a usage error names the bad one)."""
    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected K=V, got {item!r}", param_hint="--tag")
        tags[key] = value
    return tags


def _job_parameters(
    pairs: Sequence[tuple[str, str]], yaml_text: str | None, yaml_file: str | None
) -> dict[str, Any]:
    """Parameters from ``-f FILE``, then ``-y YAML``, then ``-p NAME VALUE`` (later wins);
    YAML is read within mlnb's limits (:mod:`mlnb.jobs.yamlinput`): over one is a usage error."""
    from mlnb.jobs.grid import parse_value
    from mlnb.jobs.yamlinput import load_yaml, read_yaml_file

    params: dict[str, Any] = {}
    for source, text in (("--parameters-file", yaml_file), ("-y", yaml_text)):
        if text is None:
            continue
        try:
            if source == "--parameters-file":
                loaded = read_yaml_file(text, what="parameters file") or {}
            else:
                loaded = load_yaml(text, source="-y") or {}
        except MlnbError as exc:
            raise click.BadParameter(f"cannot read parameters: {exc}", param_hint=source) from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("parameters must be a mapping of names to values",
                                     param_hint=source)  # fmt: skip
        params.update(loaded)
    for name, value in pairs:
        params[name] = parse_value(value)
    return params


@cli.command("run")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.argument("output", required=False, type=click.Path(dir_okay=False))
@click.option("-p", "--parameter", "pairs", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A parameter (repeatable); values read as in papermill.")  # fmt: skip
@click.option("-y", "--parameters-yaml", "yaml_text", metavar="YAML", help="Parameters as YAML.")
@click.option("-f", "--parameters-file", "yaml_file", metavar="FILE", help="Parameters file.")
@click.option("--name", help="Run name (default: the notebook's name).")
@click.option("-e", "--experiment", help="Experiment name.")
@click.option("-t", "--tag", "tags", multiple=True, metavar="K=V", help="Tag (repeatable).")
@kernel_options("Working directory of the kernel.")
@click.option("--log-output", is_flag=True, help="Print the notebook's output as it runs.")
@params_options
@click.option(
    "--check",
    "checks",
    multiple=True,
    metavar="EXPR",
    help='A gate on the finished run, e.g. "metrics.acc >= 0.9" (repeatable).',
)
@click.pass_context
@handles_errors
def run_cmd(
    ctx: click.Context,
    notebook: str,
    output: str | None,
    pairs: tuple[tuple[str, str], ...],
    yaml_text: str | None,
    yaml_file: str | None,
    name: str | None,
    experiment: str | None,
    tags: tuple[str, ...],
    kernel: str | None,
    cwd: str | None,
    cell_timeout: float | None,
    start_timeout: float,
    log_output: bool,
    strict_params: bool,
    allow_unknown_params: bool,
    checks: tuple[str, ...],
) -> None:
    """Run NOTEBOOK headless (papermill) as one tracked run; write it to OUTPUT.

    A parameter that NOTEBOOK's parameters cell does not assign is refused (exit 2), unless
    --allow-unknown-params. A failure prints the cell, its first line, the exception and the
    last frames of the traceback.

    Exit codes: 0 ok, 1 a cell raised, 2 usage or parameter error, 3 a --check failed,
    124 a cell timed out, 138 the kernel died.
    """
    from mlnb.store.query import compile_filter

    for expr in checks:  # a bad gate is a usage error, found before anything runs
        try:
            compile_filter(expr)
        except MlnbError as exc:
            raise click.BadParameter(str(exc), param_hint="--check") from None
    tag_map = _tag_map(tags)
    parameters = _job_parameters(pairs, yaml_text, yaml_file)  # before papermill is imported

    from mlnb.jobs.runner import run_notebook

    store = _open_store(ctx, create=True)
    try:
        result = run_notebook(
            notebook, output, parameters=parameters, name=name, experiment=experiment,
            tags=tag_map, kernel=kernel, cwd=cwd, cell_timeout=cell_timeout,
            start_timeout=start_timeout, log_output=log_output, strict_params=strict_params,
            allow_unknown_params=allow_unknown_params,
            store=store,
        )  # fmt: skip
    except MlnbError as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(2)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"run {result.run_id}  {result.status}  ({result.duration:.1f} s)")
    if result.error is not None:
        click.echo(_indent(str(result.error), "  "), err=True)
    code = result.exit_code
    if code == 0 and checks:
        from mlnb.checks.gates import record_checks

        records = record_checks(store, result.run_id, checks)
        for rec in records:
            click.echo(f"  check {'passed' if rec.passed else 'FAILED'}: {rec.name}")
        code = 3 if any(not r.passed for r in records) else 0
    ctx.exit(code)


@cli.command("reproduce")
@click.argument("run")
@click.option("--rtol", type=float, default=1e-6, show_default=True,
              help="Relative tolerance for metrics.")  # fmt: skip
@click.option("--atol", type=float, default=0.0, show_default=True,
              help="Absolute tolerance for metrics.")  # fmt: skip
@click.option("--skip-metric", "skip", multiple=True, metavar="GLOB",
              help="Metric keys not to compare, e.g. 'time/*' (repeatable).")  # fmt: skip
@click.option("--ignore", multiple=True,
              type=click.Choice(["metrics", "data", "environment", "code"]),
              help="Report these differences but do not fail on them (repeatable).")  # fmt: skip
@kernel_options("Working directory (default: the original notebook's folder).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Executed notebook path.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.pass_context
@handles_errors
def reproduce_cmd(
    ctx: click.Context,
    run: str,
    rtol: float,
    atol: float,
    skip: tuple[str, ...],
    ignore: tuple[str, ...],
    kernel: str | None,
    cwd: str | None,
    cell_timeout: float | None,
    start_timeout: float,
    output: str | None,
    as_json: bool,
) -> None:
    """Re-execute RUN's stored notebook with its parameters and verify the outcome.

    Compares metrics (within tolerance), data fingerprints, environment and code (git)
    with RUN, links the new run to it and prints a verdict. Exit codes: 0 reproduced;
    16 + the sum of what differs (metrics 1, data 2, environment 4, code 8: 17 = metrics
    only); 1, 124, 138 when the notebook did not run through (as `mlnb run`); 2 usage error.
    """
    from mlnb.jobs.reproduce import reproduce

    store = _open_store(ctx)
    try:
        result = reproduce(
            run, rtol=rtol, atol=atol, skip_metrics=skip, ignore=ignore, kernel=kernel,
            cwd=cwd, cell_timeout=cell_timeout, start_timeout=start_timeout, output=output,
            store=store,
        )  # fmt: skip
    except MlnbError as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(2)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else str(result))
    ctx.exit(result.exit_code)


@cli.command("sweep")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("-g", "--grid", "grid_args", multiple=True, metavar="NAME=V1,V2",
              help="Values to sweep (repeatable): lr=0.01,0.1, layers=[[64],[64,32]], "
              "or a range for --random: lr=loguniform(1e-4,1e-1).")  # fmt: skip
@click.option("--mode", type=click.Choice(["product", "zip"]), default="product",
              show_default=True, help="Every combination, or i-th values together.")  # fmt: skip
@click.option("--from-file", "grid_file", metavar="YAML",
              help="Grid file: {lr: [..], depth: [..]}, or a list of points.")  # fmt: skip
@click.option("--random", "random_n", type=click.IntRange(min=1), metavar="N",
              help="Run N points sampled from the grid (or drawn from ranges).")  # fmt: skip
@click.option("--seed", type=int, help="Seed for --random (default: drawn, recorded).")
@click.option("-j", "--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Children run at once.")  # fmt: skip
@click.option("--fail-fast", is_flag=True, help="Stop at the first child that fails.")
@click.option("--sort", metavar="EXPR", help='Order of the final table, e.g. "metrics.acc desc".')
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local",
              show_default=True, help="Local worker processes, or a Dask cluster.")  # fmt: skip
@click.option("--scheduler", metavar="ADDR", help="Dask scheduler, e.g. tcp://host:8786.")
@click.option("-p", "--parameter", "pairs", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A parameter fixed for every child (repeatable).")  # fmt: skip
@click.option("--name", help="Name of the sweep (children: NAME-1, NAME-2, ...).")
@click.option("-e", "--experiment", help="Experiment name.")
@click.option("-t", "--tag", "tags", multiple=True, metavar="K=V", help="Tag (repeatable).")
@kernel_options("Working directory of the kernels.")
@params_options
@click.option("--check", "checks", multiple=True, metavar="EXPR",
              help='A gate on each finished child, e.g. "metrics.acc >= 0.9".')  # fmt: skip
@click.pass_context
@handles_errors
def sweep_cmd(
    ctx: click.Context,
    notebook: str,
    grid_args: tuple[str, ...],
    mode: str,
    grid_file: str | None,
    random_n: int | None,
    seed: int | None,
    workers: int,
    fail_fast: bool,
    sort: str | None,
    executor: str,
    scheduler: str | None,
    pairs: tuple[tuple[str, str], ...],
    name: str | None,
    experiment: str | None,
    tags: tuple[str, ...],
    kernel: str | None,
    cwd: str | None,
    cell_timeout: float | None,
    start_timeout: float,
    strict_params: bool,
    allow_unknown_params: bool,
    checks: tuple[str, ...],
) -> None:
    """Run NOTEBOOK once per point of a parameter grid: a parent run and one child each.

    Exit codes: 0 every child finished, 1 some child failed, 2 usage error (nothing run),
    3 a --check failed, 130 interrupted (Ctrl-C: unfinished children are marked killed).
    """
    from mlnb.errors import SweepFailedError
    from mlnb.jobs.grid import load_grid_file, parse_grid_arg
    from mlnb.jobs.sweeps import sweep

    try:
        grid: Any = load_grid_file(grid_file) if grid_file else {}
        if grid_args and isinstance(grid, list):
            raise MlnbError("-g cannot be combined with a grid file that lists points")
        for text in grid_args:
            key, values = parse_grid_arg(text)
            grid[key] = values
        tag_map = _tag_map(tags)
        store = _open_store(ctx, create=True)
        result = sweep(
            notebook, grid, mode=mode, random=random_n, seed=seed, workers=workers,
            fail_fast=fail_fast, sort=sort, executor=executor, scheduler=scheduler,
            parameters=_job_parameters(pairs, None, None), name=name, experiment=experiment,
            tags=tag_map, kernel=kernel, cwd=cwd, cell_timeout=cell_timeout,
            start_timeout=start_timeout, strict_params=strict_params,
            allow_unknown_params=allow_unknown_params, checks=checks, store=store,
        )  # fmt: skip
    except SweepFailedError as exc:  # every child failed: the table says how (exit 1)
        result = exc.result
    except MlnbError as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(2)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: the sweep and its unfinished children are marked killed",
                   err=True)  # fmt: skip
        ctx.exit(130)
    metric = sort.split()[0] if sort and sort.split()[0].startswith("metrics.") else None
    columns = ["run_id", "name", "status", *(f"params.{k}" for k in result.swept)]
    columns += [metric] if metric else []
    rows = []
    for child in result.children:
        rec = store.get_run(child.run_id)
        row = {"run_id": rec.run_id, "name": rec.name, "status": rec.status,
               **{f"params.{k}": v for k, v in child.params.items()}}  # fmt: skip
        if metric:
            row[metric] = rec.metrics.get(metric.split(".", 1)[1])
        rows.append([row.get(c) for c in columns])
    click.echo(render(columns, rows, "table"), nl=False)
    if sort:  # a --sort key no child has sorted nothing: say so, and what is there
        for notice in notices.key_notices(
            store, order_by=sort, run_ids=[c.run_id for c in result.children]
        ):
            _note(notice)
    for child in result.children:  # why each failed child failed, as `mlnb run` says it
        if child.error is not None:
            lines = str(child.error).splitlines()
            click.echo(f"  {child.run_id[:8]} {child.status}: {lines[0]}", err=True)
            if lines[1:]:
                click.echo(_indent("\n".join(lines[1:]), "  "), err=True)
        elif child.failed_checks:
            click.echo(f"  {child.run_id[:8]} failed checks: {', '.join(child.failed_checks)}",
                       err=True)  # fmt: skip
    bad = sum(c.status != "finished" for c in result.children)
    checked = sum(bool(c.failed_checks) for c in result.children)
    click.echo(
        f"sweep {result.run_id}  {result.status}  ({result.duration:.1f} s): "
        f"{len(result.children) - bad} finished, {bad} not finished"
        + (f", {checked} failed a check" if checks else "")
    )
    ctx.exit(result.exit_code)


@cli.command("params")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.pass_context
@handles_errors
def params_cmd(ctx: click.Context, notebook: str, fmt: str) -> None:
    """List NOTEBOOK's parameters (its cell tagged `parameters`): name, type, default, help."""
    from mlnb.jobs.params import notebook_parameters

    found = notebook_parameters(notebook)
    rows = [[p.name, p.type, repr(p.default), p.help or ""] for p in found]
    if not rows and fmt == "table":
        click.echo("(no parameters cell)")
        return
    click.echo(render(["name", "type", "default", "help"], rows, fmt), nl=False)


@cli.command("test")
@click.argument("paths", nargs=-1)
@click.option("-n", "--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Notebooks run at once (one kernel each).")  # fmt: skip
@click.option("--cell-timeout", type=float, default=600.0, show_default=True)
@click.option("--keep", is_flag=True, help="Record the runs in the store (default: discard).")
@click.pass_context
@handles_errors
def test_cmd(
    ctx: click.Context, paths: tuple[str, ...], workers: int, cell_timeout: float, keep: bool
) -> None:
    """Execute notebooks as tests (default: notebooks/); report pass or fail per notebook.

    Each runs in a fresh kernel with $MLNB_TEST=1 (so it can shrink its work); the exit
    code is 1 when any notebook fails.
    """
    from mlnb.jobs.runner import run_notebook_tests

    if not paths:
        paths = ("notebooks",) if Path("notebooks").is_dir() else (".",)
    store = str(_open_store(ctx, create=True).root) if keep else None
    results = run_notebook_tests(paths, workers=workers, cell_timeout=cell_timeout, store=store)
    if not results:
        raise MlnbClickError(f"no notebooks found in {', '.join(paths)}")
    for res in results:
        mark = "PASS" if res.passed else "FAIL"
        line = f"{mark}  {res.path}  ({res.duration:.1f} s)"
        if res.error is not None:
            line += "\n" + _indent(str(res.error), "      ")
        click.echo(line)
    failed = sum(not r.passed for r in results)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    ctx.exit(1 if failed else 0)


# -- CI: gates, reports, workflows ----------------------------------------------------------


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


@cli.command("gate")
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
    help="KEY improves downwards (default: higher is better, or the comparator's).",
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
    fmt: str,
) -> None:
    """Pass or fail RUN on metric thresholds and on improvement over a baseline (--vs).

    MLflow MetricThreshold semantics; the verdicts are stored on the run (checks table).
    Exit codes: 0 pass, 1 fail (a threshold, an improvement, or a missing metric), 2 usage
    error (bad expression, unknown run). See docs/ci.md.
    """
    from mlnb.checks.gates import EXIT_USAGE, gate

    try:
        result = gate(
            run, list(metrics), vs=vs, min_abs=_number_options(min_abs, "--min-abs"),
            min_rel=_number_options(min_rel, "--min-rel"), lower_is_better=lower,
            store=_open_store(ctx),
        )  # fmt: skip
    except MlnbError as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    if fmt == "json":
        click.echo(json.dumps(_json_clean(result.to_dict()), indent=2))
    else:
        click.echo(str(result))
    ctx.exit(result.exit_code)


@cli.command("report")
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
                  system_metrics=system_metrics, store=_open_store(ctx))  # fmt: skip
    if output is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"wrote {output}", err=True)


@cli.group("ci")
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
@handles_errors
def ci_init_cmd(
    provider: str,
    path: str | None,
    notebook: str,
    metrics: tuple[str, ...],
    vs: str,
    force: bool,
) -> None:
    """Write a CI workflow (GitHub Actions): install, `mlnb test`, `mlnb run --check`,
    `mlnb gate --vs`, `mlnb report` to the job summary, upload the report."""
    from mlnb.jobs.workflows import DEFAULT_METRICS, DEFAULT_PATH, write_github_workflow

    target = write_github_workflow(
        path or DEFAULT_PATH, notebook=notebook, metrics=metrics or DEFAULT_METRICS, vs=vs,
        force=force,
    )  # fmt: skip
    click.echo(f"wrote {target}")


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="mlnb")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
