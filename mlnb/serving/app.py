"""The Starlette app of ``mlnb serve``: the route table, and the one place that turns the
error family into JSON answers. The only importer of Starlette (and, in
:mod:`mlnb.serving.server`, of uvicorn).

Routes: MLflow's ``POST /invocations``, ``GET /ping`` and ``/health``; the Open Inference
Protocol V2 (``/v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}``,
``.../ready``, ``.../infer``, and the same under ``/versions/{version}``); ``/version``,
``/metrics`` and ``POST /feedback``. A prediction runs in a worker thread under the
request timeout; a request never waits for a model load or a database write.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlnb.errors import MlnbError, PredictionInputError
from mlnb.serving import protocol
from mlnb.serving.holder import ModelHolder, Served
from mlnb.serving.metrics import CONTENT_TYPE, Metrics
from mlnb.serving.predlog import DEFAULT_RATE, PredictionLog

if TYPE_CHECKING:
    import pandas as pd

    from mlnb.store import Store

log = logging.getLogger("mlnb.serve")

MAX_BODY_BYTES = 10 * 1024 * 1024
TIMEOUT_S = 30.0
INLINE_ROWS = 64  # batches up to this size are predicted without a thread hop

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]  # fmt: skip


@dataclass
class Options:
    """How a service behaves (the options of ``mlnb serve``)."""

    log_rate: float = DEFAULT_RATE
    max_body_bytes: int = MAX_BODY_BYTES
    timeout_s: float = TIMEOUT_S
    poll_s: float = 0.5
    trust: bool = False


class Service:
    """The state of one serving process: the model holder, the prediction log, metrics."""

    def __init__(self, store: Store, holder: ModelHolder, options: Options) -> None:
        self.store = store
        self.holder = holder
        self.options = options
        self.predlog: PredictionLog | None = None
        self.metrics = Metrics(self.gauges)
        self.started = time.time()

    def gauges(self) -> dict[str, float]:
        current = self.holder.current
        out = {
            "model_version": float(current.version.version) if current else 0.0,
            "model_swaps": float(self.holder.swaps),
            "model_load_failures": float(self.holder.load_failures),
        }
        if self.predlog is not None:
            out.update(predictions_logged=float(self.predlog.written),
                       predictions_dropped=float(self.predlog.dropped),
                       predictions_queued=float(len(self.predlog.queue)))  # fmt: skip
        return out

    def open(self) -> None:
        if self.holder.current is None:
            self.holder.start()
        if self.options.log_rate > 0 and self.predlog is None:
            self.predlog = PredictionLog(self.store, rate=self.options.log_rate)

    def close(self) -> None:
        if self.predlog is not None:
            self.predlog.close()

    def version_info(self) -> dict[str, Any]:
        current = self.holder.current
        ref = self.holder.ref
        info: dict[str, Any] = {"follows": str(ref), "alias": ref.alias,
                                "last_error": self.holder.last_error}  # fmt: skip
        if current is not None:
            v = current.version
            info.update(model=v.name, version=v.version, run_id=v.run_id, uri=v.uri,
                        format=v.format, flavor=v.flavor, signature=v.signature,
                        loaded_at=current.loaded_at)  # fmt: skip
        if self.predlog is not None:
            info["prediction_log"] = {"rate": self.predlog.rate, "written": self.predlog.written,
                                      "dropped": self.predlog.dropped,
                                      "queued": len(self.predlog.queue),
                                      "last_error": self.predlog.last_error}  # fmt: skip
        return info


# -- errors -----------------------------------------------------------------------------


def mlflow_error(exc: PredictionInputError) -> JSONResponse:
    """MLflow's error shape: ``{"error_code": "BAD_REQUEST", "message": ...}`` (+ field)."""
    return JSONResponse({"error_code": "BAD_REQUEST", "message": str(exc), "field": exc.field},
                        status_code=exc.status)  # fmt: skip


def v2_error(exc: PredictionInputError) -> JSONResponse:
    """The V2 protocol's error shape: ``{"error": ...}`` (+ field)."""
    return JSONResponse({"error": str(exc), "field": exc.field}, status_code=exc.status)


def _plain_error(status: int, message: str, *, v2: bool = False) -> JSONResponse:
    if v2:
        return JSONResponse({"error": message}, status_code=status)
    code = {404: "RESOURCE_DOES_NOT_EXIST", 503: "TEMPORARILY_UNAVAILABLE",
            504: "DEADLINE_EXCEEDED", 413: "BAD_REQUEST"}.get(status, "INTERNAL_ERROR")  # fmt: skip
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


# -- the request path -------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with a 413 as soon as it passes ``limit`` bytes (by its declared
    length, else while it streams in)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise protocol.bad(f"the request body is {int(declared):,} bytes; this service takes "
                           f"at most {limit:,} (mlnb serve --max-body)", "body", 413)  # fmt: skip
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise protocol.bad(f"the request body is over {limit:,} bytes, the most this "
                               "service takes (mlnb serve --max-body)", "body", 413)  # fmt: skip
        chunks.append(chunk)
    return b"".join(chunks)


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given and protocol.REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


async def predict(service: Service, served: Served, frame: pd.DataFrame, params: Any) -> list[Any]:
    """The model's predictions for ``frame``: a batch of more than ``INLINE_ROWS`` rows in
    a worker thread under the timeout (the event loop goes on serving meanwhile); a
    smaller one on the event loop itself, where a thread hop would cost more than the
    prediction (measured: ~100 µs against ~300 µs for a 1-row LogisticRegression)."""
    import anyio

    def run() -> list[Any]:
        try:
            if params and served.takes_params:
                out = served.model.predict(frame, params=params)
            else:
                out = served.model.predict(frame)
        except Exception as exc:
            raise protocol.bad(
                f"the model could not predict these inputs ({type(exc).__name__}: "
                f"{str(exc)[:300]})", None, 422,
            ) from None  # fmt: skip
        return protocol.plain(out)

    if len(frame) <= INLINE_ROWS:
        return run()  # a thread hop costs more than predicting a few rows
    with anyio.fail_after(service.options.timeout_s):
        return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)


def _log(service: Service, served: Served, request_id: str, frame: pd.DataFrame,
         predictions: list[Any], started: float) -> None:  # fmt: skip
    service.holder.last_inputs = frame
    predlog = service.predlog
    if predlog is not None and predlog.sampled():
        v = served.version
        predlog.add(request_id, v.name, v.version, service.holder.ref.alias,
                    [str(c) for c in frame.columns], frame.to_numpy().tolist(), predictions,
                    (time.perf_counter() - started) * 1000)  # fmt: skip


def build_app(service: Service) -> Starlette:
    """The ASGI app of a service (its lifespan opens and closes the service)."""

    def current() -> Served:
        served = service.holder.current
        if served is None:
            raise protocol.bad("no model is loaded yet", None, 503)
        return served

    async def invocations(request: Request) -> Response:
        started = time.perf_counter()
        try:
            served = current()
            body = await read_body(request, service.options.max_body_bytes)
            frame, params = protocol.mlflow_frame(
                body, request.headers.get("content-type", "application/json"), served.signature
            )
            predictions = await predict(service, served, frame, params)
        except PredictionInputError as exc:
            return mlflow_error(exc)
        except TimeoutError:
            return _timed_out(service)
        request_id = _request_id(request)
        _log(service, served, request_id, frame, predictions, started)
        return JSONResponse({"predictions": predictions}, headers=_headers(served, request_id))

    async def v2_infer(request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["name"]
        try:
            served = current()
            _same_model(served, name, request.path_params.get("version"))
            body = await read_body(request, service.options.max_body_bytes)
            frame, given_id, _ = protocol.v2_frame(body, served.signature)
            predictions = await predict(service, served, frame, None)
        except PredictionInputError as exc:
            return v2_error(exc)
        except TimeoutError:
            return _timed_out(service, v2=True)
        request_id = given_id or _request_id(request)
        _log(service, served, request_id, frame, predictions, started)
        return JSONResponse(
            {"model_name": served.version.name, "model_version": str(served.version.version),
             "id": request_id, "outputs": protocol.v2_outputs(predictions)},
            headers=_headers(served, request_id),
        )  # fmt: skip

    def _same_model(served: Served, name: str, version: str | None) -> None:
        if name != served.version.name:
            raise protocol.bad(f"this service serves model {served.version.name!r}, not "
                               f"{name!r}", "name", 404)  # fmt: skip
        if version is not None and version != str(served.version.version):
            raise protocol.bad(f"this service serves version {served.version.version} of "
                               f"{name!r} now, not {version!r}", "version", 404)  # fmt: skip

    async def v2_model(request: Request) -> Response:
        try:
            served = current()
            _same_model(served, request.path_params["name"], request.path_params.get("version"))
        except PredictionInputError as exc:
            return v2_error(exc)
        v = served.version
        classes = (v.signature or {}).get("outputs") or {}
        out_type = protocol.v2_datatype(
            type(classes.get("classes", [0.0])[0]).__name__ if classes.get("classes") else "float"
        )  # fmt: skip
        return JSONResponse({
            "name": v.name, "versions": [str(v.version)], "platform": v.flavor or v.format,
            "inputs": served.signature.v2_inputs(),
            "outputs": [{"name": "predict", "datatype": out_type, "shape": [-1]}],
        })  # fmt: skip

    async def v2_model_ready(request: Request) -> Response:
        try:
            served = current()
            _same_model(served, request.path_params["name"], request.path_params.get("version"))
        except PredictionInputError as exc:
            return v2_error(exc)
        return JSONResponse({"name": served.version.name, "ready": True})

    async def ready(request: Request) -> Response:
        if service.holder.current is None:
            return JSONResponse({"status": "loading", "ready": False}, status_code=503)
        return JSONResponse({"status": "ok", "ready": True, "live": True})

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def v2_server(request: Request) -> Response:
        from mlnb import __version__

        return JSONResponse({"name": "mlnb", "version": __version__, "extensions": []})

    async def version(request: Request) -> Response:
        return JSONResponse(service.version_info())

    async def metrics(request: Request) -> Response:
        if not service.metrics.available:
            return _plain_error(501, "metrics need prometheus-client: pip install 'mlnb[serve]'")
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    async def feedback(request: Request) -> Response:
        import anyio

        from mlnb.serving.feedback import check_feedback, record_feedback

        try:
            body = await read_body(request, service.options.max_body_bytes)
            items = check_feedback(protocol.parse_json(body))
        except PredictionInputError as exc:
            return mlflow_error(exc)
        await anyio.to_thread.run_sync(record_feedback, service.store, items)
        return JSONResponse({"recorded": len(items)})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        import anyio

        await anyio.to_thread.run_sync(service.open)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(service.holder.follow)
                yield
                tasks.cancel_scope.cancel()
        finally:
            await anyio.to_thread.run_sync(service.close)

    versioned = "/v2/models/{name}/versions/{version}"
    routes = [
        Route("/invocations", invocations, methods=["POST"]),
        Route("/ping", ready, methods=["GET"]),
        Route("/health", ready, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/feedback", feedback, methods=["POST"]),
        Route("/v2", v2_server, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/models/{name}", v2_model, methods=["GET"]),
        Route("/v2/models/{name}/ready", v2_model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
        Route(versioned, v2_model, methods=["GET"]),
        Route(versioned + "/ready", v2_model_ready, methods=["GET"]),
        Route(versioned + "/infer", v2_infer, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={Exception: _internal_error})  # fmt: skip
    app.add_middleware(_Measured, service=service)
    return app


def _timed_out(service: Service, *, v2: bool = False) -> JSONResponse:
    message = (f"the prediction took longer than {service.options.timeout_s:g} s "
               "(mlnb serve --timeout)")  # fmt: skip
    return _plain_error(504, message, v2=v2)


def _headers(served: Served, request_id: str) -> dict[str, str]:
    return {"x-request-id": request_id, "x-mlnb-model-version": str(served.version.version)}


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug or a store failure: a JSON 500 with the error's kind, never a traceback (the
    traceback goes to the service's log)."""
    log.error("error answering %s %s", request.method, request.url.path, exc_info=exc)
    message = str(exc) if isinstance(exc, MlnbError) else type(exc).__name__
    v2 = request.url.path.startswith("/v2")
    return _plain_error(500, f"internal error: {message}", v2=v2)


class _Measured:
    """Counts each answer by route and status, and times it (pure ASGI: no per-request
    task, unlike Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.metrics = service.metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.metrics.available:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = scope.get("path", "")
            route = _route_label(path)
            self.metrics.observe(route, status, time.perf_counter() - started)


def _route_label(path: str) -> str:
    if path.startswith("/v2/models/"):
        return "/v2/models/infer" if path.endswith("/infer") else "/v2/models"
    if path in ("/invocations", "/ping", "/health", "/version", "/metrics", "/feedback", "/v2",
                "/v2/health/live", "/v2/health/ready"):  # fmt: skip
        return path
    return "other"
