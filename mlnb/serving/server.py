"""Running the service: ``serve()`` (what ``mlnb serve`` calls) loads the model, then runs
the Starlette app under uvicorn until SIGTERM or Ctrl-C.

uvicorn does the HTTP: on SIGTERM it stops accepting connections, lets requests in flight
finish (up to ``GRACE_S``), then runs the app's shutdown, which stops following the alias
and writes the queued prediction log. ``workers > 1`` runs that many processes (uvicorn's
supervisor), each loading the model and following the alias on its own; they find their
settings in ``$MLNB_SERVE_CONFIG``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mlnb.conventions import ENV_SERVE_CONFIG
from mlnb.errors import MlnbError
from mlnb.registry.models import parse_model_uri
from mlnb.serving.app import Options, Service, build_app
from mlnb.serving.holder import ModelHolder

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from mlnb.store import Store

GRACE_S = 30  # how long a SIGTERM waits for requests in flight
KEEP_ALIVE_S = 5
UVICORN_BACKLOG = 2048  # uvicorn's own default, kept when mlnb binds the socket

log = logging.getLogger("mlnb.serve")


def make_service(store: Store, uri: str, options: Options) -> Service:
    """A service for the model ``uri`` names (not loaded yet)."""
    holder = ModelHolder(store, parse_model_uri(uri), trust=options.trust, poll_s=options.poll_s)
    return Service(store, holder, options)


def app_from_environment() -> Starlette:
    """The app of one worker process of ``--workers K`` (uvicorn's factory)."""
    from mlnb.store import Store

    config = json.loads(os.environ[ENV_SERVE_CONFIG])
    store = Store(config["store"])
    service = make_service(store, config["uri"], Options(**config["options"]))
    _log_to_stderr()
    return build_app(service)


def _log_to_stderr() -> None:
    logger = logging.getLogger("mlnb.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s mlnb serve: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def serve(
    store: Store,
    uri: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    options: Options | None = None,
    monitor_every: float | None = None,
    announce: Any = None,
) -> None:
    """Serve the model ``uri`` names on ``host:port`` until SIGTERM / Ctrl-C. The model is
    loaded before the port opens (a model that cannot load is an error, not a server
    answering 503). ``announce(text)`` is told when it is ready. ``monitor_every``: run
    ``mlnb monitor`` on the model every that many seconds (:func:`monitoring`)."""
    options = options or Options()
    _log_to_stderr()
    sock = listening_socket(host, port)  # a taken port is an error before the model loads
    try:
        service = make_service(store, uri, options)
        served = service.holder.start()  # raises when the model cannot be loaded
    except BaseException:
        sock.close()
        raise
    follows = " (following the alias)" if service.holder.follows else ""
    line = (f"serving {served.version.uri}{follows} on http://{host}:{port} "
            f"(prediction log rate {options.log_rate:g})")  # fmt: skip
    common: dict[str, Any] = dict(
        host=host, port=port, log_level="warning", access_log=False, lifespan="on",
        timeout_graceful_shutdown=GRACE_S, timeout_keep_alive=KEEP_ALIVE_S,
        server_header=False,
    )  # fmt: skip
    alias = parse_model_uri(uri).alias or "champion"
    stop_monitor = monitoring(store, served.version.name, alias, monitor_every)
    try:
        _run(service, common, line, uri, store, workers, options, announce, sock)
    finally:
        sock.close()
        stop_monitor()


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (as uvicorn binds: address reuse on), or an error
    that says the port is taken, before anything else starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=UVICORN_BACKLOG)
    except OSError as exc:
        raise MlnbError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port, "
            "or stop what listens there"
        ) from None


def _run(service: Service, common: dict[str, Any], line: str, uri: str, store: Store,
         workers: int, options: Options, announce: Any,
         sock: socket.socket) -> None:  # fmt: skip
    import uvicorn

    if workers > 1:  # uvicorn's supervisor binds the port itself: free it for it
        sock.close()
        os.environ[ENV_SERVE_CONFIG] = json.dumps(
            {"store": str(store.root), "uri": uri, "options": dataclasses.asdict(options)}
        )
        if announce:
            announce(line + f", {workers} workers")
        uvicorn.run("mlnb.serving.server:app_from_environment", factory=True, workers=workers,
                    **common)  # fmt: skip
        return
    config = uvicorn.Config(build_app(service), **common)
    server = uvicorn.Server(config)
    if announce:
        announce(line)
    with _stopped_by_signal_exits_cleanly():
        server.run(sockets=[sock])


def monitoring(store: Store, model: str, alias: str, every: float | None) -> Any:
    """Run :func:`mlnb.monitoring.monitor.monitor` on ``model`` (against the training data
    of ``model@alias``: the alias served, else ``champion``) every ``every`` seconds in
    a daemon thread of this process (with ``--workers K``, the supervisor: the monitor
    reads the store, not the workers). A failed monitor (e.g. nothing served yet) is
    logged and tried again next time. Returns the function that stops it."""
    if not every:
        return lambda: None
    from mlnb.errors import MlnbError
    from mlnb.monitoring.monitor import monitor

    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                result = monitor(model, alias=alias, store=store)
                log.info("monitor %s: %s", model, result.reason)
            except MlnbError as exc:
                log.info("monitor %s: %s", model, exc)
            except Exception:  # the service keeps serving; the next round tries again
                log.exception("monitor %s failed", model)

    thread = threading.Thread(target=loop, name="mlnb-monitor", daemon=True)
    thread.start()

    def stopped() -> None:
        stop.set()
        thread.join(timeout=5)

    return stopped


@contextlib.contextmanager
def _stopped_by_signal_exits_cleanly() -> Iterator[None]:
    """uvicorn handles SIGTERM and SIGINT (a graceful stop), then raises the signal again
    with the handlers it found: with these, a stop it drained ends the command with 0."""
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
