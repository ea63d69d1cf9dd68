"""The ``mlnb`` command line: a thin adapter over the store. Errors print one line and exit
non-zero (1 for an mlnb error, 2 for a usage error); no tracebacks for user mistakes.

This module is the click group and its global options; the commands live by group in
:mod:`mlnb.cli.runs`, :mod:`mlnb.cli.jobs`, :mod:`mlnb.cli.ci`, :mod:`mlnb.cli.data`,
:mod:`mlnb.cli.models`, :mod:`mlnb.cli.teams`, :mod:`mlnb.cli.mlflowcmd`,
:mod:`mlnb.cli.serve` and :mod:`mlnb.cli.monitor`, and print through :mod:`mlnb.cli.views`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from mlnb import __version__
from mlnb.cli import ci, data, jobs, mlflowcmd, models, monitor, runs, serve, teams
from mlnb.cli.common import MlnbClickError
from mlnb.conventions import ENV_STORE


class _Group(click.Group):
    """The ``mlnb`` group: a file a command cannot read or write (``-o`` into a missing
    folder, a read-only file) is a one-line error, exit 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if exc.filename is None:  # not about a file: not ours to word
                raise
            raise MlnbClickError(f"{exc.strerror or exc}: {exc.filename}") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="mlnb")
@click.option(
    "--store",
    envvar=ENV_STORE,
    metavar="PATH",
    help="Store folder (default: $MLNB_STORE, else the nearest .mlnb/ upwards).",
)
@click.pass_context
def cli(ctx: click.Context, store: str | None) -> None:
    """mlnb: experiment tracking for Jupyter notebooks, in one local SQLite store."""
    ctx.ensure_object(dict)
    ctx.obj["store"] = store


for _command in (
    runs.runs_cmd,
    runs.show_cmd,
    runs.diff_cmd,
    runs.delete_cmd,
    runs.restore_cmd,
    runs.gc_cmd,
    runs.store_cmd,
    jobs.run_cmd,
    jobs.reproduce_cmd,
    jobs.sweep_cmd,
    jobs.params_cmd,
    jobs.test_cmd,
    ci.gate_cmd,
    ci.report_cmd,
    ci.ci_group,
    models.model_group,
    models.retrain_cmd,
    serve.serve_cmd,
    monitor.monitor_cmd,
    data.schema_group,
    data.data_group,
    mlflowcmd.mlflow_group,
    teams.export_cmd,
    teams.import_cmd,
    teams.sync_cmd,
):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="mlnb")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
