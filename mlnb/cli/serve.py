"""``mlnb serve``: a prediction service for a registered model (docs/serving.md)."""

from __future__ import annotations

import click

from mlnb.cli.common import MlnbClickError, handles_errors, open_store


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    value = text.strip().lower().removesuffix("b")
    scale = units.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in units else value
    try:
        return int(float(number) * scale)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a size (e.g. 10MB, 512k)") from None


@click.command("serve")
@click.argument("model")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")  # fmt: skip
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (each loads the model and follows the alias).")  # fmt: skip
@click.option("--log-rate", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Share of requests written to the prediction log (0: none).")  # fmt: skip
@click.option("--max-body", default="10MB", show_default=True, metavar="SIZE",
              help="Largest request body taken; larger ones get a 413.")  # fmt: skip
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(0.01),
              help="Seconds a prediction may take before the request gets a 504.")  # fmt: skip
@click.option("--monitor-every", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
              help="Run `mlnb monitor` on the model every SECONDS.")  # fmt: skip
@click.option("--trust", is_flag=True,
              help="Load pickle/joblib model files (they run code on load).")  # fmt: skip
@click.pass_context
@handles_errors
def serve_cmd(
    ctx: click.Context,
    model: str,
    host: str,
    port: int,
    workers: int,
    log_rate: float,
    max_body: str,
    timeout: float,
    monitor_every: float | None,
    trust: bool,
) -> None:
    """Serve MODEL (NAME@ALIAS, NAME/VERSION or NAME) over HTTP: MLflow's /invocations and
    the Open Inference Protocol V2. An alias is followed: when it moves, the new version is
    loaded in the background and swapped in without a restart. Stop with SIGTERM or
    Ctrl-C (requests in flight finish, the prediction log is written)."""
    try:
        from mlnb.serving.app import Options
        from mlnb.serving.server import serve
    except ImportError as exc:
        raise MlnbClickError(
            f"mlnb serve needs Starlette and uvicorn ({exc}): pip install 'mlnb[serve]'"
        ) from None
    store = open_store(ctx)
    options = Options(log_rate=log_rate, max_body_bytes=_size(max_body), timeout_s=timeout,
                      trust=trust)  # fmt: skip
    serve(store, model, host=host, port=port, workers=workers, options=options,
          monitor_every=monitor_every,
          announce=lambda text: click.echo(text, err=True))  # fmt: skip
