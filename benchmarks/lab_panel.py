"""The lab_panel section: the JupyterLab runs panel over 10,000 runs, in Chromium.

    python benchmarks/lab_panel.py [--quick] [--out docs/benchmarks.md]

A fresh process of the dev venv fills a store with 10,000 runs (two params, one metric
each), starts JupyterLab on it (mlnb's server extension on, this tree's built
labextension from ``mlnb/labextension``), and drives Debian's Chromium through Python
Playwright: the time from the click on the panel's sidebar tab to its first run rows in
the DOM (a fresh page each repeat, so each open fetches its first page), then a scroll
from the top to the bottom of the 10,000 rows, 50 rows per animation frame, with the
frame times and the number of rows in the DOM at every frame.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    REPO,
    command_block,
    fmt_time,
    load_average,
    log,
    machine_sentence,
    percentile,
    run_section_worker,
    section_facts,
    section_main,
    table,
    verdict,
)

NAME = "lab_panel"
FIRST_ROWS_BUDGET_S = 0.300
MAX_DOM_ROWS = 100
FULL = {"runs": 10_000, "repeats": 7}
QUICK = {"runs": 2_000, "repeats": 3}
TAB = '.jp-SideBar .lm-TabBar-tab[data-id="mlnb-runs-panel"]'

# In the page: when the tab is pressed, and when the first run row arrives.
WATCH = """() => {
  window.__mlnb = {press: null, rows: null};
  const tab = document.querySelector('TAB_SELECTOR');
  tab.addEventListener('pointerdown', () => { window.__mlnb.press = performance.now(); },
                       {capture: true});
  new MutationObserver(() => {
    if (window.__mlnb.rows === null && document.querySelector('.mlnb-run-row[data-run-id]')) {
      window.__mlnb.rows = performance.now();
    }
  }).observe(document.body, {childList: true, subtree: true});
}""".replace("TAB_SELECTOR", TAB)

# In the page: scroll to the bottom 50 rows per frame; frame times and DOM rows per frame.
SCROLL = """async () => {
  const scroller = document.querySelector('.mlnb-runs-panel .mlnb-runs-scroll');
  const spacer = scroller.querySelector('.mlnb-runs-spacer');
  const frames = [], rows = [];
  let last = performance.now();
  while (scroller.scrollTop + scroller.clientHeight < scroller.scrollHeight - 1) {
    scroller.scrollTop += 50 * 28;
    await new Promise(r => requestAnimationFrame(r));
    const now = performance.now();
    frames.push(now - last);
    last = now;
    rows.push(spacer.children.length);
  }
  const t0 = performance.now();
  while (scroller.querySelector('.mlnb-run-placeholder')) {
    await new Promise(r => setTimeout(r, 20));
  }
  return {frames, rows, settle_ms: performance.now() - t0,
          bottom: [...scroller.querySelectorAll('.mlnb-run-row[data-run-id] .mlnb-run-label')]
                    .pop()?.textContent};
}"""


def _populate(cfg: dict) -> dict:
    import mlnb
    from mlnb.store import metrics as store_metrics
    from mlnb.store import runs as store_runs

    t0 = time.perf_counter()
    with mlnb.Store(cfg["store"]) as store:
        for i in range(cfg["runs"]):
            rid = store.create_run(name=f"r{i}", experiment="bench", start_time=1.6e9 + i)
            store.log_params(rid, {"lr": i % 10 / 10, "model": f"m{i % 3}"})
            rowid, _ = store_runs.run_rowid(store.file, rid)
            store_metrics.insert_metrics(store.file, [(rowid, "acc", 0, (i % 97) / 97, 1.6e9 + i)])
            store.set_status(rid, "finished", end_time=1.6e9 + i + 5)
    return {"seconds": time.perf_counter() - t0}


def _measure(cfg: dict) -> dict:
    sys.path.insert(0, str(REPO))
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e.test_compare_browser import CHROMIUM, QUIET_FLAGS, run_lab

    tmp = Path(cfg["tmp"])
    root = tmp / "root"
    root.mkdir()
    exts = tmp / "jupyter-path" / "labextensions"
    exts.mkdir(parents=True)
    (exts / "mlnb-labextension").symlink_to(REPO / "mlnb" / "labextension")
    (tmp / "config").mkdir()
    (tmp / "config" / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"mlnb": True}}})
    )
    env = {"MLNB_STORE": cfg["store"], "JUPYTER_PATH": str(tmp / "jupyter-path")}
    expect.set_options(timeout=60_000)
    first_rows: list[float] = []
    with run_lab(root, tmp, env=env) as (base, token), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=QUIET_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        for _ in range(cfg["repeats"] + 1):  # the first warms the server and the caches
            page.goto(f"{base}/lab?token={token}")
            expect(page.locator(TAB)).to_be_visible()
            page.evaluate(WATCH)
            page.locator(TAB).click()
            page.wait_for_function("window.__mlnb.rows !== null")
            times = page.evaluate("window.__mlnb")
            first_rows.append((times["rows"] - times["press"]) / 1000)
        scroll = page.evaluate(SCROLL)
        browser.close()
    return {"first_rows_s": first_rows[1:], "first_rows_cold_s": first_rows[0], **scroll}


def worker(task: str, cfg: dict) -> dict:
    return {"populate": _populate, "measure": _measure}[task](cfg)


def measure(quick: bool) -> dict:
    cfg = dict(QUICK if quick else FULL)
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="mlnb-bench-lab-") as tmp:
        cfg["store"] = str(Path(tmp) / "store")
        cfg["tmp"] = tmp
        log(f"lab_panel: writing {cfg['runs']:,} runs")
        populate = run_section_worker(__file__, "populate", cfg, timeout=1800)
        log("lab_panel: JupyterLab and Chromium")
        result = run_section_worker(__file__, "measure", cfg, timeout=600)
    return {
        "quick": quick,
        "config": {k: v for k, v in cfg.items() if k not in ("store", "tmp")},
        "populate": populate,
        "result": result,
        **section_facts(),
        "load": [load_start, load_average()],
    }


def render(res: dict, command: str) -> str:
    r = res["result"]
    cfg = res["config"]
    first = r["first_rows_s"]
    frames = [f / 1000 for f in r["frames"]]
    most = max(r["rows"])
    rows = [
        ["panel opened → first rows in the DOM", fmt_time(statistics.median(first)),
         fmt_time(max(first)), f"< {fmt_time(FIRST_ROWS_BUDGET_S)}",
         verdict(max(first) < FIRST_ROWS_BUDGET_S)],
        ["… the first open after the server started", fmt_time(r["first_rows_cold_s"]), "", "", ""],
        [f"scroll frame (50 rows a frame, {len(frames)} frames)",
         fmt_time(statistics.median(frames)), fmt_time(max(frames)), "", ""],
        ["scroll frame, 95th percentile", fmt_time(percentile(frames, 95)), "", "", ""],
        ["rows in the DOM while scrolling", f"{statistics.median(r['rows']):.0f}", str(most),
         f"≤ {MAX_DOM_ROWS}", verdict(most <= MAX_DOM_ROWS)],
        ["bottom reached → no placeholder left (pages still in flight)",
         fmt_time(r["settle_ms"] / 1000) if r["settle_ms"] >= 1 else "none left",
         "", "", ""],
    ]  # fmt: skip
    out = [
        "## JupyterLab runs panel",
        "",
        f"The runs panel of the labextension over **{cfg['runs']:,} runs**, in headless "
        f"Chromium against a JupyterLab started by the script; opening timed {cfg['repeats']} "
        "times, each on a fresh page (after one warm-up open), from the press on the sidebar "
        "tab to the first run row in the DOM; then one scroll from the top to the bottom, 50 "
        f"rows (1,400 px) per animation frame. The oldest run at the bottom: `{r['bottom']}`.",
        "",
        table(["what", "median", "max", "target", ""], rows),
        "",
        "How: the list is windowed — a spacer as tall as every run, and only the rows in view "
        "(plus 8 above and below) in the DOM; pages of 200 runs come by keyset cursor as the "
        "view reaches them (rows not fetched yet show `…`), and sparklines load for the rows "
        f"in view once scrolling pauses. Writing the {cfg['runs']:,} runs took "
        f"{res['populate']['seconds']:.1f} s.",
        "",
        machine_sentence(res),
        "",
        *command_block(command),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    return section_main(
        __file__, NAME, measure, render, worker, doc=__doc__, quick_help="2,000 runs, 3 opens"
    )


if __name__ == "__main__":
    raise SystemExit(main())
