"""mlnb's Jupyter server extension (issue 13): every route of ``{base_url}/mlnb/api/`` on a
real Jupyter server (pytest-jupyter's ``jp_fetch``) over a real store."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from tornado.httpclient import HTTPClientError, HTTPResponse

import mlnb
from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs
from tests.conftest import REPO, run_python

NOTEBOOKS = REPO / "tests" / "notebooks"


@pytest.fixture
def mlnb_store_path(store: mlnb.Store) -> str:
    """What ``c.Mlnb.store`` is set to (a test may parametrize it)."""
    return str(store.root)


@pytest.fixture
def root_via_link() -> bool:
    """Whether the server's root is given through a symbolic link (a test may parametrize)."""
    return False


@pytest.fixture
def jp_root_dir(tmp_path: Path, root_via_link: bool) -> Path:
    real = tmp_path / "root_dir"
    real.mkdir()
    if not root_via_link:
        return real
    link = tmp_path / "linked_root"
    link.symlink_to(real)
    return link


@pytest.fixture
def jp_server_config(mlnb_store_path: str) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"mlnb": True}},
        "Mlnb": {"store": mlnb_store_path},
    }


def make_run(
    store: mlnb.Store,
    name: str,
    *,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    start_time: float | None = None,
    experiment: str | None = None,
) -> str:
    run_id = store.create_run(name=name, experiment=experiment, start_time=start_time)
    store.log_params(run_id, params or {})
    rowid, _ = store_runs.run_rowid(store.file, run_id)
    now = time.time()
    store_metrics.insert_metrics(
        store.file, [(rowid, k, 0, v, now) for k, v in (metrics or {}).items()]
    )
    store.set_status(run_id, "finished")
    return run_id


def strict_json(body: bytes) -> Any:
    """JSON as a browser's JSON.parse reads it: NaN and Infinity are not JSON."""

    def refuse(name: str) -> None:
        raise AssertionError(f"invalid JSON constant {name} in the body")

    return json.loads(body, parse_constant=refuse)


async def get_json(jp_fetch: Any, *path: str, **params: Any) -> Any:
    response = await jp_fetch("mlnb", "api", *path, params=params)
    return strict_json(response.body)


async def error_of(jp_fetch: Any, *path: str, method: str = "GET", **kwargs: Any) -> Any:
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("mlnb", "api", *path, method=method, **kwargs)
    response = caught.value.response
    assert response is not None
    body = strict_json(response.body)
    assert body["error"]["status"] == caught.value.code
    assert "Traceback" not in body["error"]["message"]
    return caught.value.code, body["error"]


# -- version, auth, the extension's wiring ------------------------------------------------


async def test_version_answers_the_package_and_api_versions(
    jp_fetch: Any, store: mlnb.Store, jp_root_dir: Path
) -> None:
    """Issue 13: the frontend compares these with its own to say "pip install -U mlnb"."""
    body = await get_json(jp_fetch, "version")
    assert body["version"] == mlnb.__version__
    assert body["api"] == 1
    assert body["store"] == str(store.root / "mlnb.db")
    assert body["schema"] == store.schema_version()
    assert body["root_dir"] == str(jp_root_dir.resolve())


@pytest.mark.parametrize(
    "path",
    [
        "version",
        "runs",
        "runs/abc",
        "runs/abc/metrics/loss",
        "compare?runs=a",
        "notebooks/params?path=x.ipynb",
        "jobs/abc",
        "artifacts/abc/x.txt",
    ],
)
async def test_every_route_refuses_a_request_without_the_token(
    jp_serverapp: Any, http_server_client: Any, jp_base_url: str, path: str
) -> None:
    """Issue 13: every verb is authenticated (403 without Jupyter's token)."""
    response = await http_server_client.fetch(f"{jp_base_url}mlnb/api/{path}", raise_error=False)
    assert response.code == 403
    assert b"Traceback" not in response.body


async def test_post_jobs_without_the_token_is_refused(
    jp_serverapp: Any, http_server_client: Any, jp_base_url: str
) -> None:
    response = await http_server_client.fetch(
        f"{jp_base_url}mlnb/api/jobs", method="POST", body="{}", raise_error=False
    )
    assert response.code == 403


def test_the_extension_is_enabled_by_the_config_file_the_wheel_installs() -> None:
    """Issue 13: installing mlnb enables ``mlnb`` in jupyter_server_config.d, and Jupyter
    finds the extension's loader through ``mlnb``."""
    config = json.loads((REPO / "jupyter-config/server-config/mlnb.json").read_text())
    assert config == {"ServerApp": {"jpserver_extensions": {"mlnb": True}}}
    pyproject = (REPO / "pyproject.toml").read_text()
    shared = pyproject.split("[tool.hatch.build.targets.wheel.shared-data]", 1)[1]
    assert '"jupyter-config/server-config" = "etc/jupyter/jupyter_server_config.d"' in shared
    points = mlnb._jupyter_server_extension_points()
    assert points == [{"module": "mlnb.server"}]
    from mlnb import server

    assert callable(server._load_jupyter_server_extension)


def test_importing_the_server_package_loads_no_web_framework() -> None:
    """Issue 13: Jupyter imports mlnb.server to list extensions; tornado and
    jupyter_server load only when the extension is loaded."""
    proc = run_python(
        "import sys, mlnb.server; "
        "print(sorted(m for m in ('tornado', 'jupyter_server', 'pandas') if m in sys.modules))"
    )
    assert proc.stdout.strip() == "[]"


# -- GET runs ------------------------------------------------------------------------------


async def test_runs_pages_with_a_cursor_without_repeats_or_skips_while_runs_are_written(
    jp_fetch: Any, store: mlnb.Store
) -> None:
    """Issue 13: keyset paging: runs written between pages (newer, so at the top) neither
    repeat nor shift the rows of the pages after the first."""
    base = time.time() - 1_000
    first = [make_run(store, f"r{i}", start_time=base + i) for i in range(23)]
    expected = list(reversed(first))  # newest first
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        body = await get_json(jp_fetch, "runs", **params)
        seen += [r["run_id"] for r in body["runs"]]
        make_run(store, f"new{pages}")  # written while the client pages
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert pages == 5
    assert body["total"] == 23 + pages - 1


async def test_runs_filter_order_scope_and_total(jp_fetch: Any, store: mlnb.Store) -> None:
    for i in range(6):
        make_run(
            store,
            f"r{i}",
            params={"lr": 0.1 * i},
            metrics={"acc": i / 10},
            experiment="a" if i % 2 else "b",
        )
    body = await get_json(
        jp_fetch,
        "runs",
        filter="metrics.acc >= 0.2",
        order="metrics.acc asc",
        limit=3,
        columns="metrics.acc",
    )
    assert [r["name"] for r in body["runs"]] == ["r2", "r3", "r4"]
    assert body["total"] == 4
    assert body["next_cursor"] is not None
    body = await get_json(jp_fetch, "runs", scope="experiment", experiment="a")
    assert sorted(r["name"] for r in body["runs"]) == ["r1", "r3", "r5"]
    assert body["total"] == 3


async def test_runs_returns_only_the_columns_asked_for(jp_fetch: Any, store: mlnb.Store) -> None:
    make_run(store, "one", params={"lr": 0.5, "depth": 3}, metrics={"acc": 0.9, "loss": 0.1})
    store.set_tags(store.run_ids()[0], {"team": "x", "other": "y"}, check_state=False)
    body = await get_json(jp_fetch, "runs", columns="params.lr,metrics.acc,tags.team")
    (row,) = body["runs"]
    assert row["params"] == {"lr": "0.5"}
    assert row["metrics"] == {"acc": 0.9}
    assert row["tags"] == {"team": "x"}
    assert row["name"] == "one" and row["status"] == "finished"
    bare = (await get_json(jp_fetch, "runs"))["runs"][0]
    assert bare["params"] == {} and bare["metrics"] == {} and bare["tags"] == {}
    code, error = await error_of(jp_fetch, "runs", params={"columns": "lr"})
    assert code == 400 and "params.NAME" in error["message"]


async def test_runs_scope_notebook_matches_paths_relative_to_the_root(
    jp_fetch: Any, store: mlnb.Store, jp_root_dir: Path
) -> None:
    inside = make_run(store, "inside")
    make_run(store, "elsewhere")
    store.set_notebook(inside, notebook=str(jp_root_dir / "sub" / "train.ipynb"))
    body = await get_json(jp_fetch, "runs", scope="notebook", notebook="sub/train.ipynb")
    assert [r["run_id"] for r in body["runs"]] == [inside]
    assert body["runs"][0]["notebook"] == "sub/train.ipynb"


@pytest.mark.parametrize("root_via_link", [True])
async def test_runs_scope_notebook_with_a_root_given_through_a_symlink(
    jp_fetch: Any, store: mlnb.Store, jp_root_dir: Path, root_via_link: bool
) -> None:
    """Issue 13: a kernel records its notebook's absolute path unresolved (under the root as
    the server was given it); "this notebook" still finds its runs."""
    assert jp_root_dir.is_symlink()
    inside = make_run(store, "inside")
    store.set_notebook(inside, notebook=os.path.join(jp_root_dir, "train.ipynb"))
    body = await get_json(jp_fetch, "runs", scope="notebook", notebook="train.ipynb")
    assert [r["run_id"] for r in body["runs"]] == [inside]
    assert body["runs"][0]["notebook"] == "train.ipynb"


async def test_runs_with_a_bad_filter_is_a_400_with_the_caret_message(
    jp_fetch: Any, store: mlnb.Store
) -> None:
    """Issue 13: a filter that does not parse answers 400 and the message points at it."""
    make_run(store, "one")
    code, error = await error_of(jp_fetch, "runs", params={"filter": "metrics.acc >> 1"})
    assert code == 400
    assert error["type"] == "QuerySyntaxError"
    assert "metrics.acc >> 1" in error["message"] and "^" in error["message"]
    code, error = await error_of(jp_fetch, "runs", params={"order": "metrics.acc sideways"})
    assert code == 400
    code, error = await error_of(jp_fetch, "runs", params={"limit": "0"})
    assert code == 400


@pytest.mark.parametrize("mlnb_store_path", ["missing-store"])
async def test_runs_without_a_store_is_an_empty_list_and_creates_none(
    jp_fetch: Any, jp_root_dir: Path, tmp_path: Path, mlnb_store_path: str
) -> None:
    """Issue 13: readers never create a store; the panel shows "no runs yet"."""
    body = await get_json(jp_fetch, "runs")
    assert body == {"runs": [], "next_cursor": None, "total": 0}
    code, error = await error_of(jp_fetch, "runs", "abc")
    assert code == 404 and error["type"] == "StoreNotFoundError"
    code, error = await error_of(jp_fetch, "runs", params={"filter": "metrics.acc >"})
    assert code == 400
    assert not (Path.cwd() / "missing-store").exists()
    assert not list(tmp_path.rglob("missing-store"))


# -- GET runs/{id} and its metrics --------------------------------------------------------


async def test_run_details_has_what_the_details_view_shows(
    jp_fetch: Any, store: mlnb.Store
) -> None:
    run_id = make_run(
        store, "detailed", params={"lr": 0.1, "layers": [64, 32]}, metrics={"acc": 0.9}
    )
    store.log_artifact(run_id, b"weights", name="model/weights.bin", check_state=False)
    store.set_notebook(
        run_id,
        notebook="/somewhere/nb.ipynb",
        linearity="out-of-order",
        detail={"verdict": "out-of-order", "reasons": ["cell 2 ran after cell 3"], "cells": [2, 3]},
    )
    body = await get_json(jp_fetch, "runs", run_id[:10])
    assert body["run"]["run_id"] == run_id and body["run"]["name"] == "detailed"
    assert body["params"] == {"lr": "0.1", "layers": "[64, 32]"}
    assert body["metrics"]["acc"]["value"] == 0.9 and body["metrics"]["acc"]["step"] == 0
    (artifact,) = body["artifacts"]
    assert artifact["name"] == "model/weights.bin" and artifact["size"] == 7
    assert artifact["url"] == f"artifacts/{run_id}/model/weights.bin"
    assert body["lineage"]["verdict"] == "out-of-order"
    assert body["lineage"]["out_of_order_cells"] == [2, 3]
    assert body["datasets"] == [] and body["checks"] == []
    assert body["output_notebook"] is None


async def test_unknown_run_is_a_404(jp_fetch: Any, store: mlnb.Store) -> None:
    make_run(store, "one")
    for path in (
        ("runs", "f" * 32),
        ("runs", "f" * 32, "metrics", "acc"),
        ("artifacts", "f" * 32, "x.txt"),
    ):
        code, error = await error_of(jp_fetch, *path)
        assert code == 404 and error["type"] == "RunNotFoundError", path


async def test_non_finite_values_are_strings_so_the_json_stays_valid(
    jp_fetch: Any, store: mlnb.Store
) -> None:
    """Issue 13: NaN and ±inf reach the browser as "NaN", "Infinity", "-Infinity"."""
    run_id = make_run(store, "odd", metrics={"nan": math.nan, "up": math.inf, "down": -math.inf})
    body = await get_json(jp_fetch, "runs", columns="metrics.nan,metrics.up,metrics.down")
    assert body["runs"][0]["metrics"] == {"nan": "NaN", "up": "Infinity", "down": "-Infinity"}
    detail = await get_json(jp_fetch, "runs", run_id)
    assert detail["metrics"]["nan"]["value"] == "NaN"
    history = await get_json(jp_fetch, "runs", run_id, "metrics", "up")
    assert history["points"][0][1] == "Infinity"


async def test_metric_history_is_downsampled_in_sql(jp_fetch: Any, store: mlnb.Store) -> None:
    """Issue 13: a long series comes back as at most max_points points, first and last
    kept, with the true count."""
    run_id = make_run(store, "long")
    rowid, _ = store_runs.run_rowid(store.file, run_id)
    store_metrics.insert_metrics(
        store.file, [(rowid, "loss", s, 1.0 / (s + 1), 1e9 + s) for s in range(5_000)]
    )
    body = await get_json(jp_fetch, "runs", run_id, "metrics", "loss", max_points=100)
    assert body["key"] == "loss" and body["count"] == 5_000
    assert 50 <= len(body["points"]) <= 100
    assert body["points"][0] == [0, 1.0, 1e9]
    assert body["points"][-1][0] == 4_999
    full = await get_json(jp_fetch, "runs", run_id, "metrics", "loss", max_points=10_000)
    assert len(full["points"]) == 5_000
    code, _ = await error_of(
        jp_fetch, "runs", run_id, "metrics", "loss", params={"max_points": "2"}
    )
    assert code == 400


# -- GET compare ---------------------------------------------------------------------------


async def test_compare_answers_diff_many_by_run_id(jp_fetch: Any, store: mlnb.Store) -> None:
    a = make_run(store, "a", params={"lr": 0.1, "depth": 3}, metrics={"acc": 0.8})
    b = make_run(store, "b", params={"lr": 0.2, "depth": 3}, metrics={"acc": 0.9})
    body = await get_json(jp_fetch, "compare", runs=f"{a},{b}", baseline=a)
    assert body["runs"] == [{"run_id": a, "name": "a"}, {"run_id": b, "name": "b"}]
    assert body["baseline"] == a
    assert body["varying_params"] == ["lr"]
    (lr,) = body["sections"]["params"]
    assert lr == {
        "key": "lr",
        "values": {a: 0.1, b: 0.2},
        "same": False,
        "delta": {b: pytest.approx(0.1)},
    }
    acc = next(r for r in body["sections"]["metrics"] if r["key"] == "acc")
    assert acc["best"] == b and acc["delta"][b] == pytest.approx(0.1)
    every = await get_json(jp_fetch, "compare", runs=f"{a},{b}", all="1")
    assert {r["key"] for r in every["sections"]["params"]} == {"lr", "depth"}
    code, error = await error_of(jp_fetch, "compare", params={"runs": f"{a}", "baseline": b})
    assert code == 400 and "not one of the runs" in error["message"]
    code, _ = await error_of(jp_fetch, "compare", params={"runs": "nope"})
    assert code == 404


# -- GET notebooks/params ------------------------------------------------------------------


async def test_notebook_params_reads_the_parameters_cell(jp_fetch: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "sub").mkdir()
    shutil.copy(NOTEBOOKS / "job_train.ipynb", jp_root_dir / "sub" / "train.ipynb")
    body = await get_json(jp_fetch, "notebooks", "params", path="sub/train.ipynb")
    assert body["has_parameters_cell"] is True
    by_name = {p["name"]: p for p in body["parameters"]}
    assert by_name["lr"] == {
        "name": "lr",
        "type": "float",
        "default": 0.1,
        "help": "learning rate",
        "source": "0.1",
    }
    assert by_name["layers"]["default"] == [64, 32]
    code, _ = await error_of(jp_fetch, "notebooks", "params", params={"path": "nope.ipynb"})
    assert code == 404


@pytest.mark.parametrize("where", ["dotdot", "absolute", "symlink"])
async def test_notebooks_outside_the_root_are_refused(
    jp_fetch: Any, jp_root_dir: Path, tmp_path: Path, where: str
) -> None:
    """Issue 13: the API reads and runs only notebooks inside the server's root (symlinks
    resolved): a path out of it is a 403, for reading parameters and for jobs."""
    outside = tmp_path / "outside.ipynb"
    shutil.copy(NOTEBOOKS / "job_train.ipynb", outside)
    if where == "symlink":
        (jp_root_dir / "link.ipynb").symlink_to(outside)
    path = {"dotdot": "../outside.ipynb", "absolute": str(outside), "symlink": "link.ipynb"}[where]
    code, error = await error_of(jp_fetch, "notebooks", "params", params={"path": path})
    assert code == 403 and "outside the server's root" in error["message"]
    code, error = await error_of(jp_fetch, "jobs", method="POST", body=json.dumps({"path": path}))
    assert code == 403 and error["type"] == "Forbidden"


# -- POST jobs, GET jobs/{id} --------------------------------------------------------------


async def wait_for_job(jp_fetch: Any, job_id: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Every state the job reported until it ended."""
    states = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = await get_json(jp_fetch, "jobs", job_id)
        states.append(state)
        if state["status"] in ("finished", "failed"):
            return states
        await asyncio.sleep(0.1)
    raise AssertionError(f"job did not end within {timeout} s: {states[-1]}")


@pytest.mark.slow
async def test_post_jobs_runs_a_notebook_to_a_finished_run_with_progress(
    jp_fetch: Any, store: mlnb.Store, jp_root_dir: Path
) -> None:
    """Issue 13: a job from the panel is `mlnb run` writing to the server's store; the
    job's state shows the run id, then the cell running, then every cell done."""
    shutil.copy(NOTEBOOKS / "job_sleep.ipynb", jp_root_dir / "sleepy.ipynb")
    response = await jp_fetch(
        "mlnb",
        "api",
        "jobs",
        method="POST",
        body=json.dumps(
            {"path": "sleepy.ipynb", "parameters": {"seconds": 1.5}, "experiment": "lab"}
        ),
    )
    assert response.code == 202
    job_id = strict_json(response.body)["job_id"]
    states = await wait_for_job(jp_fetch, job_id)
    final = states[-1]
    assert final["status"] == "finished", final
    assert final["cells_total"] == 4  # three cells and papermill's injected parameters
    assert final["cells_done"] == 4 and final["current_cell"] is None
    running = [s for s in states if s["status"] == "running" and s["current_cell"] is not None]
    assert running and running[0]["run_id"] == final["run_id"]
    assert any(s["current_cell"] == 2 and s["cells_done"] == 2 for s in running)
    folders = Path(tempfile.gettempdir()).glob(f"mlnb-server-job-{job_id[:8]}-*")
    assert list(folders) == []  # the job's progress file and log went with it
    assert (await get_json(jp_fetch, "jobs", job_id))["cells_done"] == 4  # the report stays
    rec = store.get_run(final["run_id"])
    assert rec.status == "finished" and rec.experiment == "lab"
    assert rec.params["seconds"] == 1.5
    assert final["output_path"] == f"artifacts/{rec.run_id}/job/sleepy.ipynb"
    output = await jp_fetch("mlnb", "api", *final["output_path"].split("/"))
    cells = json.loads(output.body)["cells"]
    assert "".join(cells[2]["source"]) == "import time\ntime.sleep(seconds)"


@pytest.mark.slow
async def test_a_failing_job_says_why(jp_fetch: Any, store: mlnb.Store, jp_root_dir: Path) -> None:
    shutil.copy(NOTEBOOKS / "job_fail.ipynb", jp_root_dir / "fail.ipynb")
    response = await jp_fetch(
        "mlnb", "api", "jobs", method="POST", body=json.dumps({"path": "fail.ipynb"})
    )
    final = (await wait_for_job(jp_fetch, strict_json(response.body)["job_id"]))[-1]
    assert final["status"] == "failed"
    assert "ZeroDivisionError" in final["error"]
    assert store.get_run(final["run_id"]).status == "failed"


async def test_post_jobs_checks_its_body(jp_fetch: Any, jp_root_dir: Path) -> None:
    shutil.copy(NOTEBOOKS / "job_sleep.ipynb", jp_root_dir / "sleepy.ipynb")
    (jp_root_dir / "notes.txt").write_text("not a notebook")
    for body, status in (
        ("not json", 400),
        (json.dumps([1]), 400),
        (json.dumps({"path": "missing.ipynb"}), 404),
        (json.dumps({"path": "notes.txt"}), 400),
        (json.dumps({"path": "sleepy.ipynb", "parameters": [1]}), 400),
    ):
        code, _ = await error_of(jp_fetch, "jobs", method="POST", body=body)
        assert code == status, body
    code, error = await error_of(
        jp_fetch,
        "jobs",
        method="POST",
        body=json.dumps({"path": "sleepy.ipynb", "parameters": {"second": 1}}),
    )
    assert code == 400 and error["type"] == "InvalidInputError"
    assert "'seconds'" in error["message"]  # the close name the parameters cell assigns
    for job_id in ("0123abcd", "not-a-job"):
        code, error = await error_of(jp_fetch, "jobs", job_id)
        assert code == 404 and error["type"] == "NotFound"


async def test_post_jobs_needs_the_xsrf_token_when_logged_in_by_cookie(
    jp_serverapp: Any, http_server_client: Any, jp_base_url: str
) -> None:
    """Issue 13: a browser session (cookie, no token header) must send the XSRF token on
    POST, so another site cannot start jobs."""
    login = f"{jp_base_url}login"
    page = await http_server_client.fetch(login, raise_error=False)
    cookies = _cookies(page)
    token = jp_serverapp.identity_provider.token
    form = urlencode({"password": token, "_xsrf": cookies["_xsrf"]})
    logged = await http_server_client.fetch(
        login,
        method="POST",
        body=form,
        headers={"Cookie": _cookie_header(cookies)},
        follow_redirects=False,
        raise_error=False,
    )
    assert logged.code == 302
    cookies.update(_cookies(logged))
    url = f"{jp_base_url}mlnb/api/jobs"
    body = json.dumps({"path": "../elsewhere.ipynb"})
    headers = {"Cookie": _cookie_header(cookies)}
    without = await http_server_client.fetch(
        url, method="POST", body=body, headers=headers, raise_error=False
    )
    assert without.code == 403
    assert "_xsrf" in strict_json(without.body)["error"]["message"]
    headers["X-XSRFToken"] = cookies["_xsrf"]
    with_token = await http_server_client.fetch(
        url, method="POST", body=body, headers=headers, raise_error=False
    )
    assert with_token.code == 403  # past the XSRF check: refused by the root rule
    assert strict_json(with_token.body)["error"]["type"] == "Forbidden"
    listed = await http_server_client.fetch(
        f"{jp_base_url}mlnb/api/version", headers={"Cookie": _cookie_header(cookies)}
    )
    assert listed.code == 200


def _cookies(response: HTTPResponse) -> dict[str, str]:
    found = {}
    for header in response.headers.get_list("Set-Cookie"):
        name, _, rest = header.partition("=")
        found[name.strip()] = rest.split(";", 1)[0]
    return found


def _cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


# -- GET artifacts/{run}/{name} ------------------------------------------------------------


async def test_artifact_bytes_come_from_the_store(jp_fetch: Any, store: mlnb.Store) -> None:
    run_id = make_run(store, "art")
    store.log_artifact(run_id, b"hello", name="notes/readme.txt", check_state=False)
    response = await jp_fetch("mlnb", "api", "artifacts", run_id, "notes", "readme.txt")
    assert response.body == b"hello"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "Content-Disposition" not in response.headers
    response = await jp_fetch(
        "mlnb", "api", "artifacts", run_id, "notes", "readme.txt", params={"download": "1"}
    )
    assert response.headers["Content-Disposition"] == 'attachment; filename="readme.txt"'


@pytest.mark.parametrize(
    ("tail", "status"),
    [
        ("notes/../notes/readme.txt", 400),
        ("..%2F..%2Fetc%2Fpasswd", 400),
        ("notes%2Freadme.txt", 400),
        ("/etc/passwd", 400),
        ("notes\\readme.txt", 400),
        ("notes/missing.txt", 404),
    ],
)
async def test_artifact_route_refuses_traversal(
    jp_serverapp: Any,
    http_server_client: Any,
    jp_auth_header: dict[str, str],
    jp_base_url: str,
    store: mlnb.Store,
    tail: str,
    status: int,
) -> None:
    """Issue 13: only the store's own files, by their recorded names: `..`, encoded
    slashes and absolute names are refused."""
    run_id = make_run(store, "art")
    store.log_artifact(run_id, b"hello", name="notes/readme.txt", check_state=False)
    response = await http_server_client.fetch(
        f"{jp_base_url}mlnb/api/artifacts/{run_id}/{tail}",
        headers=jp_auth_header,
        raise_error=False,
    )
    assert response.code == status
    assert b"root:" not in response.body and b"hello" not in response.body


async def test_artifact_route_refuses_a_symlink_out_of_the_store(
    jp_fetch: Any, store: mlnb.Store, tmp_path: Path
) -> None:
    """Issue 13: a content file replaced by a symlink to a file elsewhere is not served."""
    run_id = make_run(store, "art")
    (art,) = store.log_artifact(run_id, b"hello", name="readme.txt", check_state=False)
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    content = store.artifact_file(art.hash)
    os.chmod(content, 0o644)
    content.unlink()
    content.symlink_to(secret)
    code, error = await error_of(jp_fetch, "artifacts", run_id, "readme.txt")
    assert code == 404 and "artifacts folder" in error["message"]


async def test_runs_rows_carry_the_verdict_of_each_check_family(
    jp_fetch: Any, store: mlnb.Store
) -> None:
    """Issue 14 item 7: the panel shows drift and validation as badges, so each row of
    ``GET runs`` carries one verdict per family of the run's newest checks."""
    from mlnb.records import CheckRecord

    checked = make_run(store, "checked")
    make_run(store, "plain")
    store.log_checks(checked, [
        CheckRecord(kind="validation", name="drift:age", passed=False, details={"check": "drift"}),
        CheckRecord(kind="validation", name="drift:fee", passed=True, details={"check": "drift"}),
    ])  # fmt: skip
    store.log_checks(checked, [
        CheckRecord(kind="validation", name="schema:age:min", passed=True,
                    details={"check": "schema"}),
    ])  # fmt: skip
    rows = {r["name"]: r for r in (await get_json(jp_fetch, "runs"))["runs"]}
    assert rows["checked"]["checks"] == {"drift": "FAIL (1 of 2)", "schema": "PASS"}
    assert rows["plain"]["checks"] == {}
