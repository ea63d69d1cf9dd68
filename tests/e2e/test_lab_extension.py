"""The JupyterLab extension in a real browser: one JupyterLab started here (by PID, fresh
config, workspace and settings folders) with mlnb's server extension enabled and this
tree's built labextension (`mlnb/labextension`, linked through `JUPYTER_PATH`), a store
with a few runs, an XSS-named run and 10,000 older "bulk" runs, driven in Debian's
Chromium through Python Playwright. Screenshots go to test-artifacts/ (git-ignored); with
MLNB_UPDATE_SCREENSHOTS=1 to docs/img/ (lab-panel-{light,dark}.png, lab-compare-light.png),
the images docs/jupyterlab.md and the README show.

Build the extension first (`make labextension`, or `pip install -e .`); the test says so
when it is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import mlnb
from mlnb.records import CheckRecord
from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs
from tests.conftest import REPO
from tests.e2e.test_compare_browser import CHROMIUM, QUIET_FLAGS, run_lab

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.slow

BUILD = REPO / "mlnb" / "labextension"
# the docs' images are refreshed on request only, so a test run leaves the tree clean
IMG = REPO / ("docs/img" if os.environ.get("MLNB_UPDATE_SCREENSHOTS") else "test-artifacts")
XSS = "<img src=x onerror=alert(1)>"
BULK = 10_000
MAX_ROWS = 100  # the windowed list never holds more rows in the DOM
TIMEOUT_MS = 60_000

NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "id": "params",
         "metadata": {"tags": ["parameters"]}, "outputs": [],
         "source": "lr = 0.1\nepochs = 3\nmodel = 'svc'"},
        {"cell_type": "code", "execution_count": None, "id": "train", "metadata": {},
         "outputs": [],
         "source": "import mlnb\nfor step in range(epochs):\n"
                   "    mlnb.log_metric('loss', 1 / (1 + lr * (step + 1)), step=step)"},
        {"cell_type": "code", "execution_count": None, "id": "score", "metadata": {},
         "outputs": [], "source": "mlnb.log_metric('accuracy', 0.5 + lr)"},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}  # fmt: skip

LIVE = """
import time, mlnb
with mlnb.start_run("live-run", experiment="lab"):
    mlnb.log_param("lr", 0.5)
    for step in range(8):
        mlnb.log_metric("loss", 1 / (step + 1), step=step)
        mlnb.flush()
        time.sleep(0.75)
"""


@dataclass
class Lab:
    base: str
    token: str
    root: Path
    store: Path
    ids: dict[str, str] = field(default_factory=dict)


def _populate(path: Path) -> dict[str, str]:
    """Bulk runs (oldest), two `train` runs with curves (one out of order), and a run whose
    name and param are an XSS attempt. Returns name → run id of the named ones."""
    ids: dict[str, str] = {}
    with mlnb.Store(path) as store:
        for i in range(BULK):
            rid = store.create_run(name=f"bulk-{i}", experiment="bulk", start_time=1.6e9 + i)
            store.log_params(rid, {"lr": i % 10 / 10})
            rowid, _ = store_runs.run_rowid(store.file, rid)
            store_metrics.insert_metrics(store.file, [(rowid, "loss", 0, 1 / (1 + i), 1.6e9 + i)])
            store.set_status(rid, "finished", end_time=1.6e9 + i + 5)
        for i, (name, lr, model) in enumerate(
            (("train-a", 0.1, "svc"), ("train-b", 0.01, "tree"), (XSS, 0.3, XSS))
        ):
            start = 1.7e9 + 100 * i
            rid = store.create_run(name=name, experiment="lab", start_time=start)
            ids[name] = rid
            store.log_params(rid, {"lr": lr, "model": model})
            rowid, _ = store_runs.run_rowid(store.file, rid)
            points = []
            for step in range(30):
                loss = (1 + 0.3 * i) / (1 + step * (0.2 + lr))
                points += [(rowid, "loss", step, loss, start + step),
                           (rowid, "accuracy", step, 1 - loss / 2, start + step)]  # fmt: skip
            store_metrics.insert_metrics(store.file, points)
            if name == "train-b":
                cells = ["import mlnb", "x = 1", "print(x)"]
                store.record_cells(rid, [
                    {"execution_count": n + 1, "source": src, "started": start + n,
                     "ended": start + n + 0.5, "error": None}
                    for n, src in enumerate([cells[0], cells[2], cells[1]])
                ])  # fmt: skip
                store.set_notebook(
                    rid,
                    notebook="train.ipynb",
                    linearity="out-of-order",
                    detail={"verdict": "out-of-order", "cells": [1, 2],
                            "reasons": ["cell 1 ([3]) ran after cell 2 ([2])"]},
                )  # fmt: skip
                store.log_checks(rid, [  # a drift check that failed: a badge in the panel
                    CheckRecord(kind="validation", name="drift:age", passed=False,
                                details={"check": "drift"}),
                ])  # fmt: skip
            store.set_status(rid, "finished", end_time=start + 60)
    return ids


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One JupyterLab for the module: mlnb's server extension on, this tree's build."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs it")
    if not (BUILD / "package.json").exists():
        pytest.fail(f"{BUILD} is missing: build the extension with `make labextension`")
    tmp = tmp_path_factory.mktemp("lab-ext")
    root = tmp / "root"
    root.mkdir()
    store = root / ".mlnb"
    ids = _populate(store)
    (root / "params.ipynb").write_text(json.dumps(NOTEBOOK))
    # the build, found before any copy installed in the venv (first in JUPYTER_PATH wins)
    exts = tmp / "jupyter-path" / "labextensions"
    exts.mkdir(parents=True)
    (exts / "mlnb-labextension").symlink_to(BUILD, target_is_directory=True)
    config = tmp / "config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"mlnb": True}}})
    )
    env = {"MLNB_STORE": str(store), "JUPYTER_PATH": str(tmp / "jupyter-path")}
    with run_lab(root, tmp, env=env, args=("--LabApp.expose_app_in_browser=True",)) as (
        base,
        token,
    ):
        try:
            with urllib.request.urlopen(f"{base}/mlnb/api/version?token={token}", timeout=10):
                pass
        except OSError as exc:
            log = (tmp / "lab.log").read_text()[-3000:]
            pytest.fail(f"mlnb's server extension does not answer ({exc}):\n{log}")
        yield Lab(base, token, root, store, ids)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=QUIET_FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Session:
    page: Page
    errors: list[str]
    dialogs: list[str]

    def alerts(self) -> list[str]:
        return list(self.page.evaluate("window.__mlnbAlerts || []"))


@pytest.fixture
def session(browser: Browser) -> Iterator[Session]:
    """A fresh browser context (its own localStorage) whose console errors, uncaught
    exceptions, dialogs and `window.alert` calls are recorded."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script(
        "window.__mlnbAlerts = [];"
        "for (const f of ['alert', 'confirm', 'prompt'])"
        "  window[f] = (m) => { window.__mlnbAlerts.push(f + ':' + m); };"
    )
    page = context.new_page()
    s = Session(page, [], [])
    page.on("console", lambda m: s.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: s.errors.append(f"uncaught: {exc}"))

    def on_dialog(d: object) -> None:
        s.dialogs.append(d.message)  # type: ignore[attr-defined]
        d.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", on_dialog)
    try:
        yield s
    finally:
        context.close()


def open_panel(lab: Lab, page: Page, path: str = "lab") -> Locator:
    """Open JupyterLab and the runs panel listing all runs; the panel's locator."""
    from playwright.sync_api import expect

    page.goto(f"{lab.base}/{path}?token={lab.token}")
    tab = page.locator('.jp-SideBar .lm-TabBar-tab[data-id="mlnb-runs-panel"]')
    expect(tab).to_be_visible()
    tab.click()
    panel = page.locator(".mlnb-runs-panel")
    expect(panel).to_be_visible()
    panel.locator(".mlnb-runs-scope").select_option("all")  # not the restored notebook's
    return panel


def pin(panel: Locator, columns: str) -> None:
    """Pin these columns (`params.x, metrics.y`) and wait until the rows show them."""
    from playwright.sync_api import expect

    box = panel.locator(".mlnb-runs-columns")
    box.fill(columns)
    box.press("Enter")
    keys = [c.strip() for c in columns.split(",")]
    for kind in ("param", "metric"):
        count = sum(k.startswith(kind) for k in keys)
        expect(panel.locator(f".mlnb-runs-header .mlnb-col-{kind}")).to_have_count(count)
        if count:
            first = panel.locator(".mlnb-run-row[data-run-id]").first
            expect(first.locator(f".mlnb-run-{kind}")).to_have_count(count)


def row(panel: Locator, name: str) -> Locator:
    return panel.locator(".mlnb-run-row[data-run-id]").filter(
        has=panel.page.locator(".mlnb-run-label", has_text=name)
    )


def test_lab_panel_lists_runs_and_updates_live(lab: Lab, session: Session) -> None:
    """Issue 13: the panel lists the store's runs (status badges, pinned params and metrics
    with sparklines, the version handshake quiet) and follows a run that a separate
    process is logging, from running to finished, without a reload."""
    from playwright.sync_api import expect

    panel = open_panel(lab, session.page)
    expect(row(panel, "train-a")).to_be_visible()
    expect(panel.locator(".mlnb-runs-count")).to_have_text(f"{BULK + 3} runs")
    pin(panel, "params.lr, metrics.loss")
    expect(row(panel, "train-a").locator(".mlnb-run-param")).to_have_text("0.1")
    expect(row(panel, "train-a").locator(".mlnb-sparkline path")).to_have_count(1)
    expect(row(panel, "train-b").locator(".mlnb-linearity")).to_have_text("out-of-order")
    # issue 14 item 7: the newest checks' verdicts as badges
    expect(row(panel, "train-b").locator(".mlnb-check-fail")).to_have_text("drift \u2717")
    expect(row(panel, "train-a").locator(".mlnb-check")).to_have_count(0)
    expect(panel.locator(".mlnb-version-warning")).to_be_hidden()
    env = {**os.environ, "MLNB_STORE": str(lab.store)}
    proc = subprocess.Popen([sys.executable, "-c", LIVE], env=env)
    try:
        live = row(panel, "live-run")
        expect(live.locator(".mlnb-status")).to_have_text("running")
        expect(live.locator(".mlnb-run-metric-value")).not_to_have_text("1")  # a later step
        assert proc.wait(timeout=60) == 0
        expect(live.locator(".mlnb-status")).to_have_text("finished")
        expect(live.locator(".mlnb-run-metric-value")).to_have_text("0.125")  # 1 / 8
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    expect(panel.locator(".mlnb-runs-count")).to_have_text(f"{BULK + 4} runs")
    assert session.errors == []


def test_lab_panel_filter_shows_server_error_inline(lab: Lab, session: Session) -> None:
    """Issue 13: the filter box speaks mlnb's query language; a bad filter shows the
    server's caret message in the panel and a good one filters."""
    from playwright.sync_api import expect

    panel = open_panel(lab, session.page)
    expect(row(panel, "train-a")).to_be_visible()
    box = panel.locator(".mlnb-runs-filter")
    box.fill("metrics.loss >")
    box.press("Enter")
    error = panel.locator(".mlnb-runs-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("^")
    box.fill("params.model = 'tree'")
    box.press("Enter")
    expect(error).to_be_hidden()
    expect(panel.locator(".mlnb-runs-count")).to_have_text("1 run")
    expect(panel.locator(".mlnb-run-row[data-run-id]")).to_have_count(1)
    expect(row(panel, "train-b")).to_be_visible()
    # 400s are expected answers here, shown inline: the browser logs the failed request
    assert [e for e in session.errors if "400" not in e] == []


def test_lab_run_details_open_on_click(lab: Lab, session: Session) -> None:
    """Issue 13: a click on a run opens its details: params, metric charts, the lineage
    verdict naming the out-of-order cells."""
    from playwright.sync_api import expect

    panel = open_panel(lab, session.page)
    row(panel, "train-b").locator(".mlnb-run-label").click()
    details = session.page.locator(".mlnb-run-details")
    expect(details).to_be_visible()
    expect(details.locator(".mlnb-details-name")).to_have_text("train-b")
    expect(details.locator(".mlnb-section-params")).to_contain_text("tree")
    expect(details.locator(".mlnb-section-metrics svg.mlnb-chart")).to_have_count(2)
    expect(details.locator(".mlnb-section-metrics path.mlnb-chart-line").first).to_be_visible()
    lineage = details.locator(".mlnb-section-lineage")
    expect(lineage).to_contain_text("out-of-order")
    expect(lineage).to_contain_text("cell 1")
    assert session.errors == []


def test_lab_compare_draws_curves_and_parallel_coordinates(lab: Lab, session: Session) -> None:
    """Issue 13: ticking runs and pressing Compare opens a tab with the metric curves of
    both runs overlaid, parallel coordinates of the params that vary, and the params
    that differ."""
    from playwright.sync_api import expect

    panel = open_panel(lab, session.page)
    for name in ("train-a", "train-b"):
        row(panel, name).locator(".mlnb-run-select").check()
    panel.locator(".mlnb-runs-compare").click()
    view = session.page.locator(".mlnb-compare-view")
    expect(view).to_be_visible()
    curves = view.locator(".mlnb-compare-curves svg.mlnb-chart")
    expect(curves.first).to_be_visible()
    expect(curves.first.locator("path.mlnb-chart-line")).to_have_count(2)
    expect(view.locator(".mlnb-parallel polyline")).to_have_count(2)
    expect(view.locator(".mlnb-compare-params")).to_contain_text("model")
    expect(view.locator(".mlnb-compare-metrics .mlnb-delta").first).to_be_visible()
    assert session.errors == []


def test_lab_xss_run_name_executes_nothing(lab: Lab, session: Session) -> None:
    """Issue 13 (security): a run named, and a param valued, `<img src=x
    onerror=alert(1)>` show as those characters in the panel, the details and compare;
    no element is made of them and no alert or dialog fires."""
    from playwright.sync_api import expect

    page = session.page
    panel = open_panel(lab, page)
    pin(panel, "params.model, metrics.loss")
    xss = row(panel, XSS)
    expect(xss.locator(".mlnb-run-label")).to_have_text(XSS)
    expect(xss.locator(".mlnb-run-param")).to_have_text(XSS)
    xss.locator(".mlnb-run-label").click()
    details = page.locator(".mlnb-run-details")
    expect(details.locator(".mlnb-details-name")).to_have_text(XSS)
    expect(details.locator(".mlnb-section-params")).to_contain_text(XSS)
    xss.locator(".mlnb-run-select").check()
    row(panel, "train-a").locator(".mlnb-run-select").check()
    panel.locator(".mlnb-runs-compare").click()
    expect(page.locator(".mlnb-compare-view .mlnb-compare-params")).to_contain_text(XSS)
    page.wait_for_timeout(500)  # an onerror handler would have fired by now
    assert page.locator("img[src='x']").count() == 0
    assert session.alerts() == [] and session.dialogs == []
    assert session.errors == []


def test_lab_panel_windows_10000_runs(lab: Lab, session: Session) -> None:
    """Issue 13: the list is windowed: scrolling through 10,000 runs (paged by cursor as
    it goes) never puts more than ~100 rows in the DOM, and reaches the oldest run."""
    from playwright.sync_api import expect

    page = session.page
    panel = open_panel(lab, page)
    panel.locator(".mlnb-runs-scope").select_option("experiment")
    panel.locator(".mlnb-runs-experiment").fill("bulk")
    panel.locator(".mlnb-runs-experiment").press("Enter")
    expect(panel.locator(".mlnb-runs-count")).to_have_text(f"{BULK} runs")
    expect(row(panel, f"bulk-{BULK - 1}")).to_be_visible()
    page.evaluate(
        """() => {
          const spacer = document.querySelector('.mlnb-runs-panel .mlnb-runs-spacer');
          window.__mlnbMaxRows = spacer.children.length;
          new MutationObserver(() => {
            window.__mlnbMaxRows = Math.max(window.__mlnbMaxRows, spacer.children.length);
          }).observe(spacer, {childList: true});
        }"""
    )
    scroller = panel.locator(".mlnb-runs-scroll")
    height = scroller.evaluate("el => el.scrollHeight")
    assert height >= BULK * 28 * 0.99, height  # the spacer stands for every run
    for fraction in (0.05, 0.2, 0.5, 0.8, 1.0):
        scroller.evaluate(f"el => {{ el.scrollTop = el.scrollHeight * {fraction}; }}")
        page.wait_for_timeout(100)
    expect(row(panel, "bulk-0")).to_be_visible()  # every page up to the last was fetched
    scroller.evaluate("el => { el.scrollTop = el.scrollHeight / 3; }")
    expect(panel.locator(".mlnb-run-placeholder")).to_have_count(0)
    most = page.evaluate("window.__mlnbMaxRows")
    assert 10 < most <= MAX_ROWS, most
    assert session.errors == []


def test_lab_run_with_parameters_runs_the_notebook(lab: Lab, session: Session) -> None:
    """Issue 13: "Run with parameters…" on the notebook toolbar shows a form from the
    parameters cell, refuses a bad value with a message, runs the notebook as a job with
    per-cell progress, and its run appears in the panel with the values given."""
    from playwright.sync_api import expect

    page = session.page
    panel = open_panel(lab, page, "lab/tree/params.ipynb")
    button = page.locator(".jp-NotebookPanel-toolbar .mlnb-run-with-parameters")
    expect(button).to_be_visible()
    button.click()
    dialog = page.locator(".jp-Dialog")
    lr = dialog.locator("input[data-param='lr']")
    expect(lr).to_have_value("0.1")
    expect(dialog.locator("input[data-param='epochs']")).to_have_value("3")
    lr.fill("fast")
    dialog.locator(".jp-mod-accept").click()
    expect(dialog.locator(".mlnb-params-errors")).to_contain_text("lr must be a number")
    dialog.locator("input[data-param='lr']").fill("0.25")
    dialog.locator("input[data-param='epochs']").fill("4")
    dialog.locator(".jp-mod-accept").click()
    expect(dialog).to_have_count(0)
    job = panel.locator(".mlnb-job")
    expect(job).to_be_visible()
    expect(job).to_have_class("mlnb-job mlnb-job-finished", timeout=120_000)
    expect(job.locator(".mlnb-job-label")).to_contain_text("4/4 cells")  # + injected
    pin(panel, "params.lr, params.epochs, metrics.accuracy")
    ran = panel.locator(".mlnb-run-row[data-run-id]").filter(
        has=page.locator(".mlnb-run-param", has_text="0.25")
    )
    expect(ran.first).to_be_visible()
    expect(ran.first.locator(".mlnb-run-metric-value")).to_have_text("0.75")
    # the job's run, and its executed notebook opened in JupyterLab (a copy of the artifact)
    job.locator(".mlnb-job-open").click()
    details = page.locator(".mlnb-run-details")
    expect(details.locator(".mlnb-section-params")).to_contain_text("0.25")
    details.locator(".mlnb-open-output").click()
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="params.ipynb").filter(
        has_not_text="(run)"
    )
    expect(tab).to_have_count(2)  # the notebook and the copy of its executed run
    copies = list((lab.root / "mlnb-outputs").glob("*params.ipynb"))
    assert len(copies) == 1, copies
    executed = json.loads(copies[0].read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    assert session.errors == []


def test_lab_panel_screenshots_light_and_dark(lab: Lab, session: Session) -> None:
    """The panel with a run's details beside it, in JupyterLab's light and dark themes
    (docs/img/lab-panel-light.png, docs/img/lab-panel-dark.png for docs/jupyterlab.md);
    the panel's background follows the theme."""
    from playwright.sync_api import expect

    page = session.page
    panel = open_panel(lab, page)
    # a wider sidebar, so the pinned columns show (dragging the handle, as a user would)
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(560, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    pin(panel, "params.lr, params.model, metrics.loss")
    expect(row(panel, "train-a").locator(".mlnb-sparkline path")).to_have_count(1)
    row(panel, "train-a").locator(".mlnb-run-select").check()
    row(panel, "train-b").locator(".mlnb-run-select").check()
    row(panel, "train-a").locator(".mlnb-run-label").click()
    expect(page.locator(".mlnb-run-details svg.mlnb-chart").first).to_be_visible()
    page.wait_for_timeout(300)
    backgrounds = {}
    IMG.mkdir(parents=True, exist_ok=True)
    for theme, name in (("JupyterLab Light", "light"), ("JupyterLab Dark", "dark")):
        page.evaluate(
            "theme => window.jupyterapp.commands.execute('apputils:change-theme', {theme})", theme
        )
        expect(page.locator("body")).to_have_attribute(
            "data-jp-theme-name", theme, timeout=TIMEOUT_MS
        )
        page.wait_for_timeout(500)
        backgrounds[name] = panel.evaluate("el => getComputedStyle(el).backgroundColor")
        page.screenshot(path=str(IMG / f"lab-panel-{name}.png"))
        if name == "light":
            panel.locator(".mlnb-runs-compare").click()
            curves = page.locator(".mlnb-compare-view .mlnb-compare-curves svg")
            expect(curves.first).to_be_visible()
            page.wait_for_timeout(300)
            page.screenshot(path=str(IMG / "lab-compare-light.png"))
            row(panel, "train-a").locator(".mlnb-run-label").click()
    page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme',"
        " {theme: 'JupyterLab Light'})"
    )
    assert backgrounds["light"] != backgrounds["dark"], backgrounds
    assert session.errors == []


def test_lab_version_mismatch_says_what_to_run(lab: Lab, session: Session) -> None:
    """Issue 13: when the server's mlnb is another version than the frontend's (a server
    not restarted after an upgrade), the panel says what to run instead of failing
    silently. The browser is handed a version answer from another release."""
    from playwright.sync_api import Route, expect

    real = json.loads(
        urllib.request.urlopen(f"{lab.base}/mlnb/api/version?token={lab.token}").read()
    )

    def older(route: Route) -> None:
        route.fulfill(json={**real, "version": "0.0.1"})

    session.page.route("**/mlnb/api/version*", older)
    panel = open_panel(lab, session.page)
    warning = panel.locator(".mlnb-version-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("the server has 0.0.1")
    expect(warning).to_contain_text("pip install -U mlnb")
    expect(warning).to_contain_text("restart the Jupyter server")
    expect(row(panel, "train-a")).to_be_visible()  # the panel still works
    assert session.errors == []
