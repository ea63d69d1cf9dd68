"""The serving section: ``mlnb serve`` beside ``mlflow models serve --env-manager local``.

    python benchmarks/serving.py [--quick] [--out docs/benchmarks.md]

One model (scikit-learn LogisticRegression on 10 float features, fitted on the same
generated data by both tools), one payload (a 1-row ``dataframe_split``), both servers on
127.0.0.1 with one worker, one after the other. The load generator is a small asyncio
client on httpx in this process; its own CPU share is reported (the machine has 2 cores,
shared). Measured:

- closed-loop saturation throughput (16 clients, no pause; target: mlnb ≥ 3× MLflow);
- open-loop p99 latency at 100 and 200 requests/s (requests sent on a fixed schedule,
  latency counted from the scheduled time; targets ≤ 10 ms and ≤ 15 ms);
- the cost of the prediction log at the default rate (0.1) against no log, two servers
  measured in alternation (target ≤ 10 % of throughput);
- time from an alias move to the new version answering (target < 2 s);
- cold start: from the command to the first 200 on its health route (target < 2 s).

MLflow runs from the bench venv (``.bench-venv``, see ``_common.ensure_venv``); every
server is started here and stopped by its process group. Bounded: the whole section takes
about 3 minutes (``--quick``: about 1.5).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _common import (
    REPO,
    command_block,
    dev_python,
    fmt_rate,
    fmt_time,
    load_average,
    log,
    percentile,
    section_facts,
    section_main,
    table,
    verdict,
)

NAME = "serving"
# MLflow's venv: the one the other sections use (created by ensure_venv in the main tree)
BENCH_VENV = Path(os.environ.get("MLNB_BENCH_VENV", REPO.parent / "main" / ".bench-venv"))
if not (BENCH_VENV / "bin" / "python").exists():
    BENCH_VENV = REPO / ".bench-venv"
FEATURES = [f"f{i}" for i in range(10)]
PAYLOAD = {"dataframe_split": {"columns": FEATURES, "data": [[0.1 * i for i in range(10)]]}}
BODY = json.dumps(PAYLOAD).encode()
CLIENTS = 16
LATE_S = 3.0
COLD_STARTS = {
    "mlnb": 3,
    "mlflow": 2,
}  # MLflow takes ~14 s to start here  # an open-loop request not answered by then is late

FIT = """
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
rng = np.random.default_rng(0)
X = pd.DataFrame(rng.normal(size=(2000, 10)), columns=[f"f{i}" for i in range(10)])
y = (X["f0"] + X["f1"] - X["f2"] > 0).astype(int)
def fit(C=1.0):
    return LogisticRegression(C=C, max_iter=1000).fit(X, y)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the processes of group ``pgid`` (the
    server and, for MLflow, the uvicorn child its command starts): what a request costs
    the server, whatever else runs on the machine."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # pgrp
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def setup(work: Path) -> dict:
    """A store with ``bench`` v1 and v2 (``champion`` → 1), and the same model saved by
    MLflow (fitted in the bench venv on the same data)."""
    script = (
        FIT
        + f"""
import sys
sys.path.insert(0, {str(REPO)!r})
import mlnb
store = mlnb.Store({str(work / "store")!r})
with mlnb.start_run("fit", store=store, capture=False):
    mlnb.log_data(X, name="train")
    one = mlnb.register_model("bench", fit(), store=store)
    two = mlnb.register_model("bench", fit(C=0.01), store=store)
mlnb.set_model_alias("bench", "champion", one.version, store=store)
store.close()
"""
    )
    subprocess.run([dev_python(), "-c", script], check=True, env=_dev_env(), timeout=300)
    save = (
        FIT
        + f"""
import mlflow.sklearn
mlflow.sklearn.save_model(fit(), {str(work / "mlflow-model")!r}, input_example=X.head(2))
"""
    )
    subprocess.run([str(BENCH_VENV / "bin" / "python"), "-c", save], check=True,
                   env=_mlflow_env(), timeout=300, capture_output=True)  # fmt: skip
    return {"store": str(work / "store"), "mlflow_model": str(work / "mlflow-model")}


def _dev_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLNB_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
    return env


def _mlflow_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLNB_", "MLFLOW_"))}
    for key in ("VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(key, None)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", PYTHONWARNINGS="ignore",
               PATH=f"{BENCH_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}")  # fmt: skip
    return env


def mlnb_cmd(setup_: dict, port: int, rate: float) -> tuple[list[str], dict[str, str], str]:
    cmd = [dev_python(), "-m", "mlnb", "--store", setup_["store"], "serve", "bench@champion",
           "--port", str(port), "--log-rate", str(rate)]  # fmt: skip
    return cmd, _dev_env(), "/health"


def mlflow_cmd(setup_: dict, port: int) -> tuple[list[str], dict[str, str], str]:
    cmd = [str(BENCH_VENV / "bin" / "mlflow"), "models", "serve", "-m", setup_["mlflow_model"],
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]  # fmt: skip
    return cmd, _mlflow_env(), "/health"


@contextlib.contextmanager
def server(spec: tuple[list[str], dict[str, str], str], port: int) -> Iterator[dict]:
    """Start a server (its own process group), wait for its health route; yields the base
    URL and the seconds it took to become ready; stops the group on exit."""
    import httpx

    cmd, env, health = spec
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited: {proc.stderr.read().decode()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + health, timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(cmd[:4])} did not become ready in 60 s")
            time.sleep(0.01)
        yield {"base": base, "ready_s": time.perf_counter() - started, "pid": proc.pid}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


async def _closed(base: str, seconds: float, clients: int) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        stop = time.perf_counter() + seconds

        async def one() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = await http.post("/invocations", content=BODY, headers=headers)
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors += 1

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(clients)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"rps": len(latencies) / wall, "n": len(latencies), "errors": errors,
            "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "client_cpu": cpu / wall}  # fmt: skip


async def _open(base: str, rate: float, seconds: float) -> dict:
    """Requests on a fixed schedule (``rate`` per second); latency from the scheduled time,
    so a server that falls behind is charged for the wait (no coordinated omission). A
    request not answered within ``LATE_S`` counts as late (an infinite latency), so a
    server that cannot keep up costs ``LATE_S`` here, not minutes."""
    import httpx

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    headers = {"content-type": "application/json"}
    count = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=LATE_S) as http:

        async def one(at: float) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            try:
                r = await http.post("/invocations", content=BODY, headers=headers)
            except httpx.TimeoutException:
                return  # late
            except httpx.HTTPError:
                errors += 1
                return
            if r.status_code == 200:
                latencies.append(time.perf_counter() - at)
            else:
                errors += 1

        start = time.perf_counter() + 0.05
        cpu, wall = time.process_time(), time.perf_counter()
        tasks = [asyncio.ensure_future(one(start + i / rate)) for i in range(count)]
        await asyncio.wait(tasks, timeout=seconds + LATE_S + 1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    late = count - len(latencies) - errors
    charged = latencies + [float("inf")] * late
    return {"rate": rate, "sent": count, "n": len(latencies), "errors": errors, "late": late,
            "p50": percentile(charged, 50), "p99": percentile(charged, 99),
            "max": max(charged) if charged else float("nan"),
            "client_cpu": cpu / wall}  # fmt: skip


def closed(base: str, seconds: float) -> dict:
    asyncio.run(_closed(base, min(1.0, seconds / 4), 4))  # warm up
    return asyncio.run(_closed(base, seconds, CLIENTS))


def open_loop(base: str, rate: float, seconds: float) -> dict:
    return asyncio.run(_open(base, rate, seconds))


def alias_moves(setup_: dict, base: str, moves: int) -> list[float]:
    """Seconds from ``set_model_alias`` to the first answer from the new version (a
    client asks every 5 ms)."""
    import httpx

    sys.path.insert(0, str(REPO))
    import mlnb

    store = mlnb.Store(setup_["store"])
    out = []
    with httpx.Client(base_url=base, timeout=10) as http:
        for i in range(moves):
            target = 2 if i % 2 == 0 else 1
            moved = time.perf_counter()
            mlnb.set_model_alias("bench", "champion", target, store=store, reason="benchmark")
            while True:
                r = http.post("/invocations", content=BODY,
                              headers={"content-type": "application/json"})  # fmt: skip
                if r.headers.get("x-mlnb-model-version") == str(target):
                    break
                if time.perf_counter() - moved > 30:
                    raise RuntimeError("the alias move was not followed in 30 s")
                time.sleep(0.005)
            out.append(time.perf_counter() - moved)
            time.sleep(0.3)
    store.close()
    return out


def logging_cost(setup_: dict, seconds: float, rounds: int) -> dict:
    """Closed-loop throughput with no log and with the default rate, in alternation."""
    from mlnb.serving.predlog import DEFAULT_RATE

    off_port, on_port = free_port(), free_port()
    with server(mlnb_cmd(setup_, off_port, 0.0), off_port) as off, \
            server(mlnb_cmd(setup_, on_port, DEFAULT_RATE), on_port) as on:  # fmt: skip
        closed(off["base"], 2)
        closed(on["base"], 2)
        without, with_log = [], []
        for _ in range(rounds):
            without.append(asyncio.run(_closed(off["base"], seconds, CLIENTS))["rps"])
            with_log.append(asyncio.run(_closed(on["base"], seconds, CLIENTS))["rps"])
        import httpx

        logged = httpx.get(on["base"] + "/version").json()["prediction_log"]
    return {"rate": DEFAULT_RATE, "without": without, "with": with_log, "logged": logged}


def measure(quick: bool) -> dict:
    seconds = 3.0 if quick else 6.0
    work = Path(tempfile.mkdtemp(prefix="mlnb-bench-serving-"))
    facts = section_facts()
    load_start = load_average()
    log("serving: fitting and registering the model (mlnb) and saving it (MLflow)")
    s = setup(work)
    results: dict = {"facts": facts, "load_start": load_start, "seconds": seconds}
    makers = {"mlnb": lambda p: mlnb_cmd(s, p, 0.0), "mlflow": lambda p: mlflow_cmd(s, p)}
    for who, make in makers.items():
        cold = []
        for _ in range(COLD_STARTS[who] - 1):  # the measured server's start is one more
            port = free_port()
            with server(make(port), port) as srv:
                cold.append(srv["ready_s"])
        port = free_port()
        log(f"serving: {who}: closed loop, then open loop at 100 and 200 requests/s")
        with server(make(port), port) as srv:
            cold.append(srv["ready_s"])
            asyncio.run(_closed(srv["base"], 1.0, 4))  # warm up
            cpu = group_cpu(srv["pid"])
            entry = {"cold": cold, "closed": asyncio.run(_closed(srv["base"], seconds, CLIENTS))}
            entry["closed"]["server_cpu_per_request"] = (group_cpu(srv["pid"]) - cpu) / max(
                1, entry["closed"]["n"]
            )
            entry["open"] = [open_loop(srv["base"], rate, seconds) for rate in (100, 200)]
            if who == "mlnb":
                entry["alias"] = alias_moves(s, srv["base"], 4 if quick else 6)
        results[who] = entry
    log("serving: the prediction log's cost (alternating servers)")
    results["logging"] = logging_cost(s, seconds / 2, 2 if quick else 3)
    results["load_end"] = load_average()
    return results


def _late(seconds: float) -> str:
    return f"> {LATE_S:g} s" if seconds == float("inf") else fmt_time(seconds)


def _open_cell(o: dict) -> str:
    return (f"{_late(o['p50'])} / {_late(o['p99'])} ({_late(o['max'])}); "
            f"{o['late']:,} of {o['sent']:,}")  # fmt: skip


def render(res: dict, command: str) -> str:
    m, f = res["mlnb"], res["mlflow"]
    ratio = m["closed"]["rps"] / f["closed"]["rps"]
    lg = res["logging"]
    off, on = statistics.median(lg["without"]), statistics.median(lg["with"])
    cost = (off - on) / off
    alias = statistics.median(m["alias"])
    cold_m, cold_f = statistics.median(m["cold"]), statistics.median(f["cold"])
    targets = {100: 0.010, 200: 0.015}
    cpu_m = m["closed"]["server_cpu_per_request"]
    cpu_f = f["closed"]["server_cpu_per_request"]
    rows = [
        ["server CPU per request at saturation (all its processes; independent of the "
         "machine's other load)", fmt_time(cpu_m), fmt_time(cpu_f),
         f"{verdict(cpu_f / cpu_m >= 3)} ({cpu_f / cpu_m:.1f}× less: requests per "
         "CPU-second)"],
        [f"closed loop, {CLIENTS} clients: throughput (requests/s)",
         fmt_rate(m["closed"]["rps"]), fmt_rate(f["closed"]["rps"]),
         f"{verdict(ratio >= 3)} ({ratio:.1f}× MLflow; target ≥ 3×)"],
        ["… p50 / p99 at saturation",
         f"{fmt_time(m['closed']['p50'])} / {fmt_time(m['closed']['p99'])}",
         f"{fmt_time(f['closed']['p50'])} / {fmt_time(f['closed']['p99'])}", ""],
    ]  # fmt: skip
    for mo, fo in zip(m["open"], f["open"], strict=True):
        rate = int(mo["rate"])
        rows.append([
            f"open loop, {rate} requests/s: p50 / p99 (max); late (> {LATE_S:g} s) of sent",
            _open_cell(mo), _open_cell(fo),
            f"{verdict(mo['p99'] <= targets[rate])} (mlnb p99 ≤ {targets[rate] * 1000:.0f} ms)",
        ])  # fmt: skip
    rows += [
        [f"prediction log at the default rate ({lg['rate']:g}): throughput without / with",
         f"{fmt_rate(off)} / {fmt_rate(on)} ({cost:+.1%} cost)", "—",
         f"{verdict(cost <= 0.10)} (≤ 10 %)"],
        [f"alias move → the new version answering (median of {len(m['alias'])}; max)",
         f"{fmt_time(alias)} ({fmt_time(max(m['alias']))})", "— (no alias following)",
         f"{verdict(alias < 2)} (< 2 s)"],
        [f"cold start: command → first 200 on /health (median of {len(m['cold'])})",
         fmt_time(cold_m), fmt_time(cold_f), f"{verdict(cold_m < 2)} (mlnb < 2 s)"],
        ["load generator's own CPU (closed loop; open loop 200/s), share of one core",
         f"{m['closed']['client_cpu']:.0%}; {m['open'][1]['client_cpu']:.0%}",
         f"{f['closed']['client_cpu']:.0%}; {f['open'][1]['client_cpu']:.0%}", ""],
        ["requests answered with an error or refused (all measurements)",
         str(m["closed"]["errors"] + sum(o["errors"] for o in m["open"])),
         str(f["closed"]["errors"] + sum(o["errors"] for o in f["open"])), ""],
    ]  # fmt: skip
    facts = res["facts"]
    return "\n".join([
        "## Serving: `mlnb serve` beside `mlflow models serve`",
        "",
        "One scikit-learn LogisticRegression (10 float features, fitted by both tools on the "
        "same data), one payload (a 1-row `dataframe_split`), each server on 127.0.0.1 with "
        "one worker (`mlnb serve bench@champion --log-rate 0`; `mlflow models serve "
        "--env-manager local -w 1`), one after the other. The load generator is an asyncio "
        "client on httpx in the benchmark's process, on the same 2-core machine (shared "
        "with other work: load average "
        f"{res['load_start']} at start, {res['load_end']} at end); its CPU share is shown. "
        "With a load average above the number of cores, a server gets a fraction of a core "
        "and the absolute figures mostly measure that contention; the ratio between the two "
        "servers (same machine, same client) and the log's cost (measured in alternation) "
        "hold better. "
        f"Closed loop: {CLIENTS} clients for {res['seconds']:g} s. Open loop: requests sent "
        f"on a fixed schedule for {res['seconds']:g} s, latency counted from the scheduled "
        f"time; a request not answered within {LATE_S:g} s is late (its latency counts as "
        "infinite). The log's cost: two mlnb servers (no log; the default rate) measured in "
        f"alternation, {len(lg['without'])} rounds of {res['seconds'] / 2:g} s each, medians "
        f"({lg['logged']['written']:,} predictions written, {lg['logged']['dropped']} "
        "dropped). Alias moves: `mlnb.set_model_alias` in the benchmark's process while a "
        "client asks every 5 ms.",
        "",
        table(["what", "mlnb", "MLflow 3.17", "target"], rows),
        "",
        f"Python {facts['python']}; {facts['source']}; {facts['cores']} cores; {facts['date']}.",
        "",
        *command_block(command),
        "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return section_main(__file__, NAME, measure, render, doc=__doc__,
                        quick_help="shorter measurements (~1.5 minutes)", argv=argv)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
