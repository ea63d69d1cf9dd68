"""The commands that run notebooks headless: run, reproduce, sweep, params, test."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from mlnb.cli.common import (
    F,
    MlnbClickError,
    handles_errors,
    indent,
    note_on_stderr,
    open_store,
)
from mlnb.cli.views import FORMATS, render
from mlnb.conventions import (
    EXIT_CHECK_FAILED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
)
from mlnb.errors import MlnbError
from mlnb.store import notices


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


@click.command("run")
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

    store = open_store(ctx, create=True)
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
        ctx.exit(EXIT_USAGE)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"run {result.run_id}  {result.status}  ({result.duration:.1f} s)")
    if result.error is not None:
        click.echo(indent(str(result.error), "  "), err=True)
    code = result.exit_code
    if code == 0 and checks:
        from mlnb.checks.gates import record_checks

        records = record_checks(store, result.run_id, checks)
        for rec in records:
            click.echo(f"  check {'passed' if rec.passed else 'FAILED'}: {rec.name}")
        code = EXIT_CHECK_FAILED if any(not r.passed for r in records) else EXIT_OK
    ctx.exit(code)


@click.command("reproduce")
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

    store = open_store(ctx)
    try:
        result = reproduce(
            run, rtol=rtol, atol=atol, skip_metrics=skip, ignore=ignore, kernel=kernel,
            cwd=cwd, cell_timeout=cell_timeout, start_timeout=start_timeout, output=output,
            store=store,
        )  # fmt: skip
    except MlnbError as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else str(result))
    ctx.exit(result.exit_code)


@click.command("sweep")
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
        store = open_store(ctx, create=True)
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
        ctx.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: the sweep and its unfinished children are marked killed",
                   err=True)  # fmt: skip
        ctx.exit(EXIT_INTERRUPTED)
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
            note_on_stderr(notice)
    for child in result.children:  # why each failed child failed, as `mlnb run` says it
        if child.error is not None:
            lines = str(child.error).splitlines()
            click.echo(f"  {child.run_id[:8]} {child.status}: {lines[0]}", err=True)
            if lines[1:]:
                click.echo(indent("\n".join(lines[1:]), "  "), err=True)
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


@click.command("params")
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


@click.command("test")
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
    store = str(open_store(ctx, create=True).root) if keep else None
    results = run_notebook_tests(paths, workers=workers, cell_timeout=cell_timeout, store=store)
    if not results:
        raise MlnbClickError(f"no notebooks found in {', '.join(paths)}")
    for res in results:
        mark = "PASS" if res.passed else "FAIL"
        line = f"{mark}  {res.path}  ({res.duration:.1f} s)"
        if res.error is not None:
            line += "\n" + indent(str(res.error), "      ")
        click.echo(line)
    failed = sum(not r.passed for r in results)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    ctx.exit(EXIT_FAILED if failed else EXIT_OK)
