"""``mlnb schema infer|check|export`` and ``mlnb data drift``: data validation and drift,
thin over the ``checks`` functions. Exit codes: 0 pass, 1 fail (a rule, drift, an integrity
check; for ``export``, an optional package not installed), 2 a usage error (a schema that
does not parse, an unknown run or column)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from mlnb.cli.common import MlnbClickError, open_store
from mlnb.cli.views import json_clean
from mlnb.conventions import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from mlnb.errors import MissingExtraError, MlnbError

FORMATS = click.Choice(["table", "json", "md"])


def _guarded(ctx: click.Context, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; an mlnb error is a usage error here: one line, exit 2."""
    try:
        return fn()
    except MlnbError as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(EXIT_USAGE)


def _echo(result: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(json_clean(result.to_dict()), indent=2))
    elif fmt == "md":
        click.echo(result.to_markdown(), nl=False)
    else:
        click.echo(str(result))


def _store_or_none(ctx: click.Context, needed: bool) -> Any:
    return open_store(ctx) if needed else None


def _is_run(text: str | None) -> bool:
    """Whether a DATA argument names a run (not an existing file)."""
    from pathlib import Path

    return text is not None and not Path(text).is_file()


# ---------------------------------------------------------------- mlnb schema


@click.group("schema")
def schema_group() -> None:
    """Data schemas: infer one from data or a run, check data against it, export it to
    pandera (docs/validation.md)."""


@schema_group.command("infer")
@click.argument("data", required=False)
@click.option("--from", "from_run", metavar="RUN[:NAME]",
              help="Infer from a run's stored profile instead of a data file.")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write "
              "(default: stdout).")  # fmt: skip
@click.pass_context
def infer_cmd(
    ctx: click.Context, data: str | None, from_run: str | None, output: str | None
) -> None:
    """Write the schema DATA (a .csv/.parquet/.json/.feather file) satisfies today: dtype,
    nullable, min/max, categories (at most 100), string length, uniqueness."""
    from mlnb.checks.schema import infer

    if (data is None) == (from_run is None):
        raise click.UsageError("give DATA (a data file) or --from RUN[:NAME], not both")
    source = data if data is not None else from_run
    store = _store_or_none(ctx, _is_run(source))
    schema = _guarded(ctx, lambda: infer(source, store=store))
    if output:
        schema.write(output)
        click.echo(f"wrote {output}: {len(schema.columns)} columns", err=True)
    else:
        click.echo(schema.to_yaml(), nl=False)


@schema_group.command("check")
@click.argument("data")
@click.argument("schema_file", metavar="SCHEMA", required=False)
@click.option("--from", "from_run", metavar="RUN[:NAME]",
              help="Check against the schema inferred from a run's stored profile.")  # fmt: skip
@click.option("--run", metavar="RUN", help="Record the verdicts as checks on this run.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def check_cmd(ctx: click.Context, data: str, schema_file: str | None, from_run: str | None,
              run: str | None, fmt: str) -> None:  # fmt: skip
    """Check DATA (a data file) against SCHEMA (a YAML file) or --from RUN[:NAME]. Every
    failure is reported with counts and example values. Exit 1 when a rule fails."""
    from mlnb.checks.schema import validate

    if (schema_file is None) == (from_run is None):
        raise click.UsageError("give SCHEMA (a YAML file) or --from RUN[:NAME], not both")
    schema = schema_file if schema_file is not None else from_run
    assert schema is not None
    store = _store_or_none(ctx, from_run is not None or run is not None)
    result = _guarded(
        ctx, lambda: validate(data, schema, run=run, record=run is not None, store=store)
    )
    _echo(result, fmt)
    ctx.exit(EXIT_OK if result.passed else EXIT_FAILED)


@schema_group.command("export")
@click.argument("schema_file", metavar="SCHEMA")
@click.option("--format", "fmt", type=click.Choice(["pandera"]), required=True,
              help="pandera: its YAML, read by pandera.pandas.DataFrameSchema.from_yaml "
              "(needs pip install 'mlnb[pandera]').")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write "
              "(default: stdout).")  # fmt: skip
@click.pass_context
def export_cmd(ctx: click.Context, schema_file: str, fmt: str, output: str | None) -> None:
    """Write SCHEMA (a YAML file) in another tool's format. A rule with `mostly` below 1
    only warns in pandera, or is left out (docs/validation.md). Exit 1 when pandera is not
    installed, 2 when SCHEMA does not parse."""
    from mlnb.checks.schema import Schema

    def export() -> str:
        try:
            return str(Schema.read(schema_file).to_pandera().to_yaml())
        except MissingExtraError as exc:  # not a usage error: exit 1
            raise MlnbClickError(str(exc)) from None

    text = _guarded(ctx, export)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        click.echo(f"wrote {output}: pandera DataFrameSchema YAML", err=True)
    else:
        click.echo(text, nl=False)


# ---------------------------------------------------------------- mlnb data


@click.group("data")
def data_group() -> None:
    """Data over time: drift of current data from a reference (docs/drift.md)."""


def _per_column(values: tuple[str, ...], option: str, cast: Callable[[str], Any]) -> Any:
    """``--method psi`` (every column) or ``--method age=ks`` (one), repeatable."""
    if not values:
        return None
    out: dict[str, Any] = {}
    for text in values:
        col, sep, value = text.rpartition("=")
        try:
            out[col if sep else "*"] = cast(value)
        except ValueError:
            raise click.BadParameter(f"{text!r} is not [COLUMN=]VALUE", param_hint=option) from None
    return out


@data_group.command("drift")
@click.option("--ref", required=True, metavar="RUN[:NAME]|DATA",
              help="The reference: a run's stored profile or a data file.")  # fmt: skip
@click.option("--cur", required=True, metavar="RUN[:NAME]|DATA",
              help="The current data: a data file or a run's stored profile.")  # fmt: skip
@click.option(
    "--method",
    "methods",
    multiple=True,
    metavar="[COLUMN=]METHOD",
    help="psi, js, chi2, ks or wasserstein, for every column or one (repeatable).",
)
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="[COLUMN=]X",
    help="The drift threshold, for every column or one (repeatable).",
)
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="NAME",
    help="Compare only these columns (repeatable; default: all in common).",
)
@click.option("--row-tolerance", type=float, default=0.1, show_default=True,
              help="The row count may differ from the reference's by this share.")  # fmt: skip
@click.option(
    "--drift-share",
    type=float,
    default=0.5,
    show_default=True,
    help="The dataset drifts when at least this share of its columns drift.",
)
@click.option("--run", metavar="RUN", help="Record the verdicts as checks on this run.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def drift_cmd(ctx: click.Context, ref: str, cur: str, methods: tuple[str, ...],
              thresholds: tuple[str, ...], columns: tuple[str, ...], row_tolerance: float,
              drift_share: float, run: str | None, fmt: str) -> None:  # fmt: skip
    """Compare --cur with --ref, column by column, and check its integrity (rows, columns,
    dtypes, missing shares, unseen categories). Either side may be a stored profile: no
    raw reference data is needed. Exit 1 when the dataset drifts or an integrity check
    fails."""
    from mlnb.checks.drift import drift

    method_map = _per_column(methods, "--method", str)
    threshold_map = _per_column(thresholds, "--threshold", float)
    store = _store_or_none(ctx, _is_run(ref) or _is_run(cur) or run is not None)
    result = _guarded(
        ctx,
        lambda: drift(
            ref,
            cur,
            methods=method_map,
            thresholds=threshold_map,
            columns=list(columns) or None,
            row_tolerance=row_tolerance,
            drift_share=drift_share,
            run=run,
            record=run is not None,
            store=store,
        ),
    )
    _echo(result, fmt)
    ctx.exit(EXIT_OK if result.passed else EXIT_FAILED)
