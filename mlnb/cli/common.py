"""What every ``mlnb`` command shares: the store it reads, one-line errors, notes on stderr."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from mlnb.errors import MlnbError
from mlnb.store import Store

F = TypeVar("F", bound=Callable[..., Any])


class MlnbClickError(click.ClickException):
    """An mlnb error shown as one line (``Error: ...``), exit code 1."""


def open_store(ctx: click.Context, *, create: bool = False) -> Store:
    """The store of ``--store`` / ``$MLNB_STORE`` / the nearest ``.mlnb/``. Only commands
    that start runs pass ``create``: reads never create a store (the error says where
    they looked and that the first run creates one)."""
    try:
        store = Store(ctx.obj.get("store"), create=create)
    except MlnbError as exc:
        raise MlnbClickError(str(exc)) from None
    ctx.call_on_close(store.close)
    return store


def note_on_stderr(notice: object) -> None:
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


system_metrics_option = click.option(
    "--system-metrics",
    is_flag=True,
    help="Also show the job/* and system/* metrics (cell timings, CPU, memory).",
)


def indent(text: str, prefix: str) -> str:
    """Every line of ``text`` after ``prefix``."""
    return "\n".join(prefix + line for line in text.splitlines())
