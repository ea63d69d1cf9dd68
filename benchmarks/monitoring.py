"""The monitoring section: ``mlnb monitor`` over the last 10,000 served rows.

    python benchmarks/monitoring.py [--quick] [--out docs/benchmarks.md]

A store with one registered model whose training run logged a 10,000-row profile (8
numeric and 2 categorical columns), and a prediction log of the model holding 20,000
served rows (the older half as in training, the newer half with two columns moved), as
the service writes it. Measured in this process, best of the repeats:

- ``mlnb.monitor(NAME, window=10000)``: read the newest 10,000 rows from the log, build
  the frame, compare every column with the training profile, store the verdicts as
  checks (target < 100 ms); with one row per request (10,000 requests to decode) and with
  20 rows per request (500 requests);
- the parts: reading the log (``served_inputs``) and the comparison alone.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import (
    command_block,
    fmt_time,
    load_average,
    log,
    machine_sentence,
    section_facts,
    section_main,
    table,
    verdict,
)

NAME = "monitoring"
TITLE = "## Monitoring (`mlnb monitor`)"
ROWS = 10_000
TARGET_S = 0.1
NUMERIC = [f"x{i}" for i in range(8)]
CATEGORIES = ["plan", "region"]


def _frame(n: int, seed: int, shift: float = 0.0) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {c: rng.normal(0, 1, n) for c in NUMERIC}
    data["x0"] = data["x0"] + shift
    data["x1"] = data["x1"] * (1 + shift)
    data["plan"] = rng.choice(["a", "b", "c"], n)
    data["region"] = rng.choice(["north", "south", "east", "west"], n)
    return pd.DataFrame(data)


def _store(folder: Path, per_request: int) -> Any:
    import mlnb
    from mlnb.store.predictions import Prediction, insert_predictions

    st = mlnb.Store(folder / f"store-{per_request}")
    (folder / "model.bin").write_bytes(b"weights")
    with mlnb.start_run("train", store=st, capture=False) as run:
        run.log_data(_frame(ROWS, 0), name="train")
        mlnb.register_model("bench", folder / "model.bin", store=st)
    mlnb.set_model_alias("bench", "champion", 1, store=st)
    cols = NUMERIC + CATEGORIES
    now = time.time()
    for half, shift in ((0, 0.0), (1, 1.0)):
        rows = _frame(ROWS, 1 + half, shift)[cols].values.tolist()
        batch = [Prediction(uuid.uuid4().hex, "bench", 1, "champion", cols,
                            rows[i : i + per_request], [0] * per_request, 1.0,
                            now - 100 + half * 50 + i * 1e-4)
                 for i in range(0, len(rows), per_request)]  # fmt: skip
        insert_predictions(st.file, batch)
    return st


def _best(fn: Any, repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _case(folder: Path, per_request: int, repeats: int) -> dict[str, Any]:
    import pandas as pd

    import mlnb
    from mlnb.checks.drift import compare
    from mlnb.checks.sources import Source
    from mlnb.store.predictions import served_rows

    log(f"monitoring: {ROWS:,} served rows, {per_request} per request")
    st = _store(folder, per_request)
    full, result = _best(lambda: mlnb.monitor("bench", window=ROWS, store=st), repeats)
    dry, _ = _best(lambda: mlnb.monitor("bench", window=ROWS, store=st, record=False), repeats)
    read, served = _best(lambda: served_rows(st.file, "bench", max_rows=ROWS), repeats)
    frame = pd.DataFrame(served.rows, columns=served.columns)
    profile = st.get_run("train").datasets[0].profile
    ref, cur = Source("train", stored=profile), Source("served", frame=frame)
    cmp, _ = _best(lambda: compare(ref, cur), repeats)
    st.close()
    return {"monitor": full, "no_record": dry, "read": read, "compare": cmp,
            "rows": result.rows, "drifted": result.drifted,
            "columns": len(result.inputs.columns)}  # fmt: skip


def measure(quick: bool) -> dict:
    facts = section_facts()
    start_load = load_average()
    repeats = 3 if quick else 7
    res: dict[str, Any] = {**facts, "quick": quick, "repeats": repeats, "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for per_request in (1, 20):
            res["cases"][per_request] = _case(Path(tmp), per_request, repeats)
    res["load"] = (start_load, load_average())
    return res


def render(res: dict, command: str) -> str:
    rows = []
    for per_request, c in res["cases"].items():
        label = f"{per_request} row{'s' if per_request > 1 else ''} per request"
        rows += [
            [f"`mlnb.monitor(NAME, window=10000)`, {label} (checks stored)", fmt_time(c["monitor"]),
             f"{verdict(c['monitor'] < TARGET_S)} (< 100 ms)"],
            ["… the same, `record=False`", fmt_time(c["no_record"]), ""],
            [f"… reading the log (the newest {ROWS:,} rows: {ROWS // per_request:,} requests)",
             fmt_time(c["read"]), ""],
            [f"… the comparison alone ({c['columns']} columns)", fmt_time(c["compare"]), ""],
        ]  # fmt: skip
    any_case = next(iter(res["cases"].values()))
    out = [
        TITLE,
        "",
        machine_sentence(res),
        "",
        *command_block(command),
        "",
        table(["", f"time (best of {res['repeats']})", "target"], rows),
        "",
        f"The training profile is of {ROWS:,} rows × {len(NUMERIC)} numeric and "
        f"{len(CATEGORIES)} categorical columns; the window holds the newest {ROWS:,} of "
        f"{2 * ROWS:,} logged rows, with `x0` shifted by 1 σ and `x1` twice as wide "
        f"(drifted: {', '.join(any_case['drifted']) or 'none'}). Reading the log decodes one "
        "JSON text per request (a chunk of requests at a time), so its cost grows with the "
        "number of requests more than with rows; the comparison reads the training profile, "
        "not the training data.",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    return section_main(__file__, NAME, measure, render, doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
