"""The route table of ``{base_url}/mlnb/api/`` and its handlers: thin, each parses its
request, calls the store, comparison or jobs functions the CLI and the widgets use, and
answers JSON. Every verb needs Jupyter's authentication (``@tornado.web.authenticated``;
POST also Jupyter's XSRF check). Store work runs on the extension's threads, each call in
its own read transaction, so no transaction is held across an ``await``.

:class:`MlnbHandler` maps the ``MlnbError`` family to JSON errors
``{"error": {"type", "message", "status"}}``: 404 for what does not exist, 400 for bad
input (a filter's message with its caret), 409 for a run in the wrong state, 500 otherwise,
never with a traceback.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler
from tornado.ioloop import IOLoop

from mlnb import errors
from mlnb.records import RunRecord
from mlnb.server import views
from mlnb.server.app import SETTINGS_KEY, ServerState, package_version

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
DEFAULT_POINTS = 1_000
MAX_POINTS = 10_000
MAX_COMPARE = 50
CHUNK = 1 << 20  # bytes of an artifact read and sent at a time

STATUS = [  # the first class an error is an instance of gives the status
    (errors.RunNotFoundError, 404),
    (errors.ExperimentNotFoundError, 404),
    (errors.StoreNotFoundError, 404),
    (errors.QuerySyntaxError, 400),
    (errors.InvalidInputError, 400),
    (errors.RunStateError, 409),
]


class RequestError(Exception):
    """A request this API refuses (outside the root, a missing notebook...): status, type,
    message; answered like the ``MlnbError`` family."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


class MlnbHandler(APIHandler):  # type: ignore[misc]
    """The base of every mlnb handler: the extension's state, JSON answers, and the one
    place errors become status codes."""

    @property
    def state(self) -> ServerState:
        state: ServerState = self.settings[SETTINGS_KEY]
        return state

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` (store or file work) on the extension's threads."""
        return await IOLoop.current().run_in_executor(self.state.executor, fn, *args)

    def answer(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(views.to_json(body))

    async def respond(self, fn: Callable[[], Any], status: int = 200) -> None:
        """Answer ``fn()``'s result (run on the threads) as JSON, or its error."""
        try:
            body = await self.call(fn)
        except Exception as exc:
            self.fail(exc)
            return
        self.answer(body, status)

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, RequestError):
            status, kind = exc.status, exc.kind
        elif isinstance(exc, errors.MlnbError):
            status = next((s for cls, s in STATUS if isinstance(exc, cls)), 500)
            kind = type(exc).__name__
        else:
            self.log.error(
                "mlnb: %s %s failed", self.request.method, self.request.path, exc_info=exc
            )
            status, kind = 500, "InternalError"
            exc = RuntimeError("mlnb's server extension failed; the server's log says why")
        self.answer({"error": {"type": kind, "message": str(exc), "status": status}}, status)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors raised outside :meth:`respond` (authentication, XSRF, a bad URL): the
        same JSON shape, without a traceback."""
        reason = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            reason = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(
            views.to_json(
                {"error": {"type": "HTTPError", "message": reason, "status": status_code}}
            )
        )

    # -- request arguments ----------------------------------------------------------------

    def text_arg(self, name: str, default: str | None = None) -> str | None:
        value = self.get_query_argument(name, None)
        return default if value is None or not value.strip() else value.strip()

    def int_arg(self, name: str, default: int, low: int, high: int) -> int:
        text = self.get_query_argument(name, None)
        if text is None or not text.strip():
            return default
        try:
            value = int(text)
        except ValueError:
            raise RequestError(
                400, "BadRequest", f"{name} must be an integer, got {text!r}"
            ) from None
        if not low <= value <= high:
            raise RequestError(400, "BadRequest", f"{name} must be {low}..{high}, got {value}")
        return value

    def inside_root(self, path: str | None, what: str) -> Path:
        """``path`` (relative to the server's root) resolved, symlinks followed; a path
        that leads outside the root is refused (403), a missing file is 404."""
        if not path:
            raise RequestError(400, "BadRequest", f"{what}: a path is required")
        root = self.state.root_dir
        target = (root / path).resolve()
        if not target.is_relative_to(root):
            raise RequestError(403, "Forbidden", f"{what}: {path!r} is outside the server's root")
        if not target.is_file():
            raise RequestError(404, "NotFound", f"{what}: no notebook at {path!r}")
        return target


class VersionHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        def version() -> dict[str, Any]:
            st = self.state.store_or_none()
            return {
                "version": package_version(),
                "api": self.state.api_version,
                "store": str(self.state.db_file),
                "store_exists": st is not None,
                "schema": None if st is None else st.schema_version(),
                "root_dir": str(self.state.root_dir),
            }

        await self.respond(version)


class RunsHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        try:
            request = self.runs_request()
            # the page and the total are two scans: on two threads, each its own read
            page, total = await asyncio.gather(
                self.call(lambda: self.runs_page(**request)),
                self.call(lambda: self.runs_total(**request)),
            )
        except Exception as exc:
            self.fail(exc)
            return
        self.answer({**page, "total": total})

    def runs_request(self) -> dict[str, Any]:
        from mlnb.store.query import RunScope

        scope_name = self.text_arg("scope", "all")
        if scope_name == "notebook":
            rel = self.text_arg("notebook")
            if not rel:
                raise RequestError(400, "BadRequest", "scope=notebook needs notebook=PATH")
            absolute = [os.path.abspath(root / rel) for root in self.state.roots]
            paths = sorted({rel, *absolute, os.path.realpath(absolute[0])})
            scope = RunScope(notebooks=paths)
        elif scope_name == "experiment":
            name = self.text_arg("experiment")
            if not name:
                raise RequestError(400, "BadRequest", "scope=experiment needs experiment=NAME")
            scope = RunScope(experiments=[name])
        elif scope_name == "all":
            scope = RunScope()
        else:
            raise RequestError(
                400, "BadRequest", f"scope must be all, notebook or experiment, not {scope_name!r}"
            )
        columns = [c.strip() for c in (self.text_arg("columns") or "").split(",") if c.strip()]
        return {
            "now": time.time(),  # one clock for the page and the total (`duration` filters)
            "filter": self.text_arg("filter"),
            "order": self.text_arg("order"),
            "scope": scope,
            "limit": self.int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
            "cursor": self.text_arg("cursor"),
            "columns": columns,
        }

    def runs_page(
        self,
        *,
        filter: str | None,
        order: str | None,
        scope: Any,
        limit: int,
        cursor: str | None,
        columns: list[str],
        now: float,
    ) -> dict[str, Any]:
        from mlnb.store import pages

        pages.split_columns(columns)  # a bad column is a 400 even on an empty store
        st = self.state.store_or_none()
        if st is None:
            from mlnb.store.query import compile_filter, compile_order_keys

            compile_filter(filter)  # a bad filter is a 400 even on an empty store
            compile_order_keys(order)
            return {"runs": [], "next_cursor": None}
        st.reap_crashed()
        ids = st.run_ids(
            filter, order_by=order, scope=scope, after=cursor, limit=limit + 1, now=now
        )
        rows = pages.page_rows(st, ids[:limit], columns=columns)
        return {
            "runs": views.run_rows(rows, self.state.roots),
            "next_cursor": ids[limit - 1] if len(ids) > limit else None,
        }

    def runs_total(self, *, filter: str | None, scope: Any, now: float, **_: Any) -> int:
        """How many runs the filter and scope match (0 while there is no store)."""
        from mlnb.store import pages

        st = self.state.store_or_none()
        return 0 if st is None else pages.count_runs(st, filter, scope=scope, now=now)


class RunHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        def detail() -> dict[str, Any]:
            from mlnb.store import pages

            st = self.state.store()
            rec = st.get_run(run_id)
            metrics = pages.latest_metric_points(st, rec.run_id)
            return views.run_detail(rec, metrics, self.state.roots)

        await self.respond(detail)


class MetricHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self, run_id: str, key: str) -> None:
        try:
            max_points = self.int_arg("max_points", DEFAULT_POINTS, 4, MAX_POINTS)
        except RequestError as exc:
            self.fail(exc)
            return

        def history() -> dict[str, Any]:
            sampled = self.state.store().downsampled_history(run_id, key, max_points=max_points)
            return {"key": key, "points": sampled.points, "count": sampled.count}

        await self.respond(history)


class CompareHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        refs = [r.strip() for r in (self.text_arg("runs") or "").split(",") if r.strip()]
        baseline = self.text_arg("baseline")
        show_all = self.text_arg("all", "0") in ("1", "true", "yes")
        if not refs or len(refs) > MAX_COMPARE:
            self.fail(
                RequestError(
                    400, "BadRequest", f"runs must name 1 to {MAX_COMPARE} runs, comma-separated"
                )
            )
            return

        def compare() -> dict[str, Any]:
            from mlnb.comparison.multidiff import diff_many

            st = self.state.store()
            records: list[RunRecord] = []
            for ref in refs:
                rec = st.get_run(ref)
                if rec.run_id not in {r.run_id for r in records}:
                    records.append(rec)
            index = None
            if baseline is not None:
                base_id = st.resolve_run_id(baseline)
                ids = [r.run_id for r in records]
                if base_id not in ids:
                    raise RequestError(
                        400, "BadRequest", f"baseline {baseline!r} is not one of the runs compared"
                    )
                index = ids.index(base_id)
            return views.compare_view(diff_many(records, baseline=index, all=show_all))

        await self.respond(compare)


class NotebookParamsHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        path = self.text_arg("path")

        def parameters() -> dict[str, Any]:
            from mlnb.jobs.params import has_parameters_cell, parameters_of, read_notebook

            nb = read_notebook(self.inside_root(path, "notebook parameters"))
            return {
                "path": path,
                "parameters": [
                    {
                        "name": p.name,
                        "type": p.type,
                        "default": p.default,
                        "help": p.help,
                        "source": p.source,
                    }
                    for p in parameters_of(nb)
                ],
                "has_parameters_cell": has_parameters_cell(nb),
            }

        await self.respond(parameters)


class JobsHandler(MlnbHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            self.fail(RequestError(400, "BadRequest", f"the body is not JSON: {exc}"))
            return

        def start() -> dict[str, Any]:
            from mlnb.jobs.params import (
                check_parameters,
                has_parameters_cell,
                read_notebook,
                readable_parameters,
            )

            if not isinstance(body, dict):
                raise RequestError(400, "BadRequest", "the body must be a JSON object")
            path = body.get("path")
            if not isinstance(path, str):
                raise RequestError(400, "BadRequest", "path must be a notebook's path")
            notebook = self.inside_root(path, "jobs")
            if notebook.suffix != ".ipynb":
                raise RequestError(400, "BadRequest", f"{path!r} is not a notebook (.ipynb)")
            parameters = body.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise RequestError(400, "BadRequest", "parameters must be an object")
            # refused here as `mlnb run` would refuse them: a 400 now, not a failed job later
            nb = read_notebook(notebook)
            check_parameters(
                parameters,
                readable_parameters(nb),
                where=notebook,
                has_cell=has_parameters_cell(nb),
            )
            job = self.state.jobs.start(
                notebook,
                shown_path=path,
                parameters=parameters,
                experiment=body.get("experiment"),
            )
            return {"job_id": job.job_id, "status": "starting"}

        await self.respond(start, status=202)


class JobHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        def status() -> dict[str, Any]:
            job = self.state.jobs.get(job_id)
            if job is None:
                raise RequestError(
                    404,
                    "NotFound",
                    f"no job {job_id!r} (jobs are forgotten when the server restarts)",
                )
            report = self.state.jobs.status(job)
            st = self.state.store_or_none() if report["run_id"] else None
            if st is not None and report["status"] in ("finished", "failed"):
                try:
                    rec = st.get_run(report["run_id"])
                except errors.RunNotFoundError:
                    return report
                for a in rec.artifacts:
                    if a.path.startswith(views.JOB_OUTPUT_PREFIX) and a.path.endswith(".ipynb"):
                        report["output_path"] = views.artifact_url(rec.run_id, a.path)
            return report

        await self.respond(status)


class ArtifactHandler(MlnbHandler):
    @tornado.web.authenticated
    async def get(self, run_id: str, name: str) -> None:
        raw = self.request.path.lower()
        if "%2f" in raw or "%5c" in raw or "%00" in raw:
            self.fail(RequestError(400, "BadRequest", "encoded slashes are not allowed"))
            return
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or "\x00" in name or ".." in parts:
            self.fail(RequestError(400, "BadRequest", f"not an artifact name: {name!r}"))
            return

        def locate() -> tuple[Path, str]:
            st = self.state.store()
            rec = st.get_run(run_id)
            found = next((a for a in rec.artifacts if a.path == name), None)
            if found is None:
                raise RequestError(
                    404, "NotFound", f"run {rec.run_id[:8]} has no artifact {name!r}"
                )
            path = st.artifact_file(found.hash)
            real = Path(os.path.realpath(path))
            if path.is_symlink() or not real.is_relative_to(os.path.realpath(st.artifacts_dir)):
                raise RequestError(
                    404, "NotFound", f"artifact {name!r} is not in the store's artifacts folder"
                )
            if not real.is_file():
                raise RequestError(404, "NotFound", f"artifact {name!r}: its file is missing")
            return real, found.path

        try:
            path, shown = await self.call(locate)
            file = await self.call(path.open, "rb")
        except Exception as exc:
            self.fail(exc)
            return
        kind = mimetypes.guess_type(shown)[0] or "application/octet-stream"
        self.set_header("Content-Type", kind)  # before the first flush sends the headers
        self.set_header("X-Content-Type-Options", "nosniff")
        if self.get_query_argument("download", "0") in ("1", "true"):
            filename = shown.rsplit("/", 1)[-1].replace('"', "")
            self.set_header("Content-Disposition", f'attachment; filename="{filename}"')
        try:  # in chunks: a model file need not fit in memory
            while chunk := await self.call(file.read, CHUNK):
                self.write(chunk)
                await self.flush()
        finally:
            file.close()
        # the API's CSP (default-src 'none') stays: an HTML artifact runs no script here
        self.finish(set_content_type=kind)


RUN = r"(?P<run_id>[^/]+)"
ROUTES: list[tuple[str, type[MlnbHandler]]] = [
    ("version", VersionHandler),
    ("runs", RunsHandler),
    (f"runs/{RUN}", RunHandler),
    (f"runs/{RUN}/metrics/(?P<key>.+)", MetricHandler),
    ("compare", CompareHandler),
    ("notebooks/params", NotebookParamsHandler),
    ("jobs", JobsHandler),
    ("jobs/(?P<job_id>[^/]+)", JobHandler),
    (f"artifacts/{RUN}/(?P<name>.+)", ArtifactHandler),
]
