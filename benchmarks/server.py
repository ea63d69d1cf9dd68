"""The server section: the JupyterLab panel's API on a 10,000-run store (issue 13).

    python benchmarks/server.py [--quick] [--out docs/benchmarks.md]
    python benchmarks/run.py --section server

A fresh process of the dev venv builds a store through the store API: 10,000 finished runs
with 20 params and 10 metrics of 100 steps each (10 M points, written with
``Store.insert_metrics`` 100 runs at a time), plus one run whose metric ``loss`` has 100,000
steps. Then a real ``jupyter server`` starts on 127.0.0.1 with the mlnb extension on that
store (by PID, a random token; stopped at the end), and one client on a kept-alive
connection times whole requests (send to the last byte of the body, JSON parsed):
``GET runs`` pages of 50 with six columns (the first page, pages deep in the list through
their cursor, pages sorted by a metric, a filtered page with its total), and the 100,000-point
series down-sampled to 1,000 points. p50/p95 over 200 requests each after 10 warm-up
requests. Budget: p95 under 50 ms for each.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from _common import (
    command_block,
    dev_python,
    fmt_time,
    load_average,
    log,
    machine_sentence,
    percentile,
    run_section_worker,
    section_facts,
    section_main,
    section_worker_env,
    table,
    verdict,
)

NAME = "server"
BUDGET_S = 0.050
FULL = {"runs": 10_000, "params": 20, "metrics": 10, "steps": 100, "long": 100_000, "requests": 200}
QUICK = {"runs": 2_000, "params": 20, "metrics": 10, "steps": 100, "long": 100_000, "requests": 100}
WARMUP = 10
BATCH = 100  # runs whose points go to the store in one insert_metrics call
COLUMNS = "params.p0,params.p1,params.p2,metrics.m0,metrics.m1,metrics.m2"


def _populate(cfg: dict) -> dict:
    import mlnb

    t0 = time.perf_counter()
    store = mlnb.Store(cfg["store"])
    rng = random.Random(13)
    base = 1.7e9
    pending: list[tuple[int, str, int, float, float]] = []
    run_ids = []
    for i in range(cfg["runs"]):
        run_id = store.create_run(name=f"run-{i}", experiment=f"exp{i % 5}", start_time=base + i)
        store.log_params(run_id, {f"p{k}": rng.random() for k in range(cfg["params"])})
        rowid, _ = store.run_rowid(run_id)
        for m in range(cfg["metrics"]):
            level = rng.random()
            pending += [
                (rowid, f"m{m}", s, level + s * 1e-3, base + i + s) for s in range(cfg["steps"])
            ]
        run_ids.append(run_id)
        if len(run_ids) % BATCH == 0:
            store.insert_metrics(pending)
            pending = []
    store.insert_metrics(pending)
    for run_id in run_ids:
        store.set_status(run_id, "finished", end_time=base + 1e6)
    long_run = store.create_run(name="long", experiment="long", start_time=base + cfg["runs"])
    rowid, _ = store.run_rowid(long_run)
    store.insert_metrics(
        [
            (rowid, "loss", s, 1 / (1 + s) + 0.01 * ((s * 7919) % 100) / 100, base + s)
            for s in range(cfg["long"])
        ]
    )
    store.set_status(long_run, "finished", end_time=base + cfg["long"])
    store.close()
    return {
        "seconds": time.perf_counter() - t0,
        "long_run": long_run,
        "bytes": Path(cfg["store"], "mlnb.db").stat().st_size,
    }


def worker(task: str, cfg: dict) -> dict:
    return {"populate": _populate}[task](cfg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(tmp: Path, store: str) -> tuple[subprocess.Popen[bytes], int, str]:
    """A real Jupyter server with the mlnb extension on ``store``; returns it ready."""
    port, token = _free_port(), secrets.token_hex(16)
    config = tmp / "config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "ServerApp": {"jpserver_extensions": {"mlnb": True}},
                "Mlnb": {"store": store},
            }
        )
    )
    root = tmp / "root"
    root.mkdir()
    env = {
        **section_worker_env(),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp / "data"),
    }
    args = [
        dev_python(),
        "-m",
        "jupyter_server",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.log_level=WARN",
    ]
    log_file = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(
        args, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter server exited: {(tmp / 'server.log').read_text()}")
        try:
            status, _ = _get(port, token, "version")
            if status == 200:
                return proc, port, token
        except OSError:
            pass
        time.sleep(0.2)
    _stop(proc)
    raise RuntimeError("jupyter server did not answer within 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and nothing else
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _get(port: int, token: str, path: str, **params: object) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        return _request(conn, token, path, params)
    finally:
        conn.close()


def _request(
    conn: http.client.HTTPConnection, token: str, path: str, params: dict
) -> tuple[int, object]:
    query = f"?{urlencode(params)}" if params else ""
    conn.request("GET", f"/mlnb/api/{path}{query}", headers={"Authorization": f"token {token}"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def _time(
    conn: http.client.HTTPConnection, token: str, requests: list[tuple[str, dict]], check
) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds per request (send to parsed body), after WARMUP untimed ones."""
    for path, params in requests[:WARMUP]:
        _request(conn, token, path, params)
    seconds = []
    for path, params in requests:
        t0 = time.perf_counter()
        status, body = _request(conn, token, path, params)
        seconds.append(time.perf_counter() - t0)
        if status != 200 or not check(body):
            raise RuntimeError(f"GET {path} {params}: {status} {str(body)[:300]}")
    return seconds


def _cursors(conn: http.client.HTTPConnection, token: str, order: str | None, n: int) -> list[str]:
    """Cursors of pages deep in the list (past 80 % of the runs), found by walking it."""
    ids: list[str] = []
    cursor = None
    while True:
        params = {
            "limit": 500,
            **({"cursor": cursor} if cursor else {}),
            **({"order": order} if order else {}),
        }
        _, body = _request(conn, token, "runs", params)
        ids += [r["run_id"] for r in body["runs"]]  # type: ignore[index]
        cursor = body["next_cursor"]  # type: ignore[index]
        if cursor is None:
            break
    deep = ids[int(len(ids) * 0.8) : -60]
    rng = random.Random(7)
    return [rng.choice(deep) for _ in range(n)]


def measure(quick: bool, profile_dir: Path | None = None) -> dict:
    """Raw results; ``profile_dir`` is accepted for run.py's interface and unused."""
    cfg = dict(QUICK if quick else FULL)
    load_start = load_average()
    n = cfg["requests"]
    with tempfile.TemporaryDirectory(prefix="mlnb-bench-server-") as tmp_name:
        tmp = Path(tmp_name)
        cfg["store"] = str(tmp / "store")
        log(
            f"server: writing {cfg['runs']:,} runs × {cfg['params']} params × "
            f"{cfg['metrics']} metrics × {cfg['steps']} steps"
        )
        populate = run_section_worker(__file__, "populate", cfg, timeout=900)
        log(f"server: store written in {populate['seconds']:.1f} s; starting jupyter server")
        t0 = time.perf_counter()
        proc, port, token = _start_server(tmp, cfg["store"])
        startup = time.perf_counter() - t0
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            page = {"limit": 50, "columns": COLUMNS}
            by_metric = "metrics.m0 desc"
            deep = _cursors(conn, token, None, n)
            deep_sorted = _cursors(conn, token, by_metric, n)
            full_page = lambda body: len(body["runs"]) == 50  # noqa: E731
            scenarios = {
                "first": [("runs", page)] * n,
                "deep": [("runs", {**page, "cursor": c}) for c in deep],
                "sorted_deep": [
                    ("runs", {**page, "order": by_metric, "cursor": c}) for c in deep_sorted
                ],
                "filtered": [("runs", {**page, "filter": "metrics.m0 > 0.5 and params.p1 < 0.5"})]
                * n,
                "history": [(f"runs/{populate['long_run']}/metrics/loss", {"max_points": 1000})]
                * n,
            }
            checks = {name: full_page for name in scenarios}
            checks["history"] = lambda b: b["count"] == cfg["long"] and len(b["points"]) <= 1000
            log("server: timing requests")
            results = {
                name: _time(conn, token, reqs, checks[name]) for name, reqs in scenarios.items()
            }
            _, total = _request(conn, token, "runs", {"limit": 1})
            conn.close()
        finally:
            _stop(proc)
    return {
        "quick": quick,
        "config": {k: v for k, v in cfg.items() if k != "store"},
        "populate": populate,
        "startup_s": startup,
        "total": total["total"],  # type: ignore[index]
        "results": results,
        **section_facts(),
        "load": [load_start, load_average()],
    }


LABELS = {
    "first": "`GET runs` first page (newest first)",
    "deep": "`GET runs` a page past 80 % of the runs, by `cursor`",
    "sorted_deep": "`GET runs` sorted by `metrics.m0 desc`, deep, by `cursor`",
    "filtered": "`GET runs` with `filter=metrics.m0 > 0.5 and params.p1 < 0.5` (and its `total`)",
    "history": "`GET runs/{id}/metrics/loss?max_points=1000` (100,000 points)",
}


def render(res: dict, command: str) -> str:
    cfg = res["config"]
    rows = []
    ok = True
    for name, seconds in res["results"].items():
        p95 = percentile(seconds, 95)
        within = p95 < BUDGET_S
        ok = ok and within
        rows.append(
            [
                LABELS[name],
                fmt_time(percentile(seconds, 50)),
                fmt_time(p95),
                fmt_time(max(seconds)),
                verdict(within),
            ]
        )
    points = cfg["runs"] * cfg["metrics"] * cfg["steps"] + cfg["long"]
    out = [
        "## The JupyterLab panel's API (issue 13)",
        "",
        f"A store of **{cfg['runs']:,} runs × {cfg['params']} params × {cfg['metrics']} metrics "
        f"× {cfg['steps']} steps** plus one run with a {cfg['long']:,}-step metric "
        f"({points:,} points, {res['populate']['bytes'] / 1024**2:,.0f} MiB, written through "
        f"the store API in {res['populate']['seconds']:.1f} s), served by a real "
        f"`jupyter server` with the mlnb extension on 127.0.0.1 (ready in "
        f"{res['startup_s']:.1f} s). One client on a kept-alive connection times each request "
        "from sending it to its parsed JSON body; pages hold 50 runs with six columns "
        f"(`{COLUMNS}`) and the `total` of the filter ({res['total']:,} runs unfiltered). "
        f"{cfg['requests']} requests each after {WARMUP} warm-up ones.",
        "",
        table(["request", "p50", "p95", "max", "p95 < 50 ms"], rows),
        "",
        f"Budget: {verdict(ok)}. Pages are keyset-paged (`Store.run_ids` with `after=`), so a "
        "deep page costs what the first one does; the series is down-sampled in SQL "
        "(`Store.downsampled_history`).",
        "",
        machine_sentence(res),
        "",
        *command_block(command),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    return section_main(
        __file__,
        NAME,
        measure,
        render,
        worker,
        doc=__doc__,
        quick_help="2,000 runs, 100 requests each",
        argv=argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
