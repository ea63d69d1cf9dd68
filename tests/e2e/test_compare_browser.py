"""The compare widget in a real browser: JupyterLab started here (by PID, with fresh
workspace and settings folders), a notebook that calls ``mlnb.compare()`` on a store with
a few runs, run in Debian's Chromium through Python Playwright. The screenshot is kept in
``test-artifacts/compare.png`` (git-ignored)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import mlnb
from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs
from tests.conftest import REPO

CHROMIUM = "/usr/bin/chromium"
QUIET_FLAGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"
RUNS = (("train", "svc", 0.1), ("train", "svc", 0.01), ("run-tree", "tree", 0.5))

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _populate(path: Path) -> None:
    """Three finished runs with a few steps of loss and accuracy each, two of them named
    `train`; the tree run also logs f1 (so a filter to the others drops a metric); each
    logs test_accuracy once."""
    with mlnb.Store(path) as store:
        for i, (name, model, lr) in enumerate(RUNS):
            rid = store.create_run(name=name, experiment="browser", start_time=1.7e9 + 100 * i)
            store.log_params(rid, {"model": model, "lr": lr, "depth": 3 + i})
            rowid, _ = store_runs.run_rowid(store.file, rid)
            points = []
            for step in range(20):
                loss = (1.0 + i * 0.3) / (1 + step * (0.3 + 0.1 * i))
                t = 1.7e9 + 100 * i + step
                points.append((rowid, "loss", step, loss, t))
                points.append((rowid, "accuracy", step, 1 - loss / 2, t))
                if model == "tree":
                    points.append((rowid, "f1", step, 1 - loss / 3, t))
            points.append((rowid, "test_accuracy", 0, 0.9 + 0.01 * i, 1.7e9 + 100 * i + 30))
            store_metrics.insert_metrics(store.file, points)
            store.set_status(rid, "finished", end_time=1.7e9 + 100 * i + 42 + i)


def _notebook(store_dir: Path) -> dict[str, object]:
    source = f"import mlnb\nw = mlnb.compare(store=mlnb.Store({str(store_dir)!r}))\nw"
    return {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "compare",
                   "metadata": {}, "outputs": [], "source": source}],
        "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)",
                                    "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A JupyterLab server on a free port, stopped by PID; yields (base url, token)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs it")
    root = tmp_path / "lab"
    root.mkdir()
    _populate(root / "store")
    (root / "compare.ipynb").write_text(json.dumps(_notebook(root / "store")))
    with run_lab(root, tmp_path) as server:
        yield server


APP_CLASS = {"jupyterlab": "LabApp", "notebook": "JupyterNotebookApp"}


@contextlib.contextmanager
def run_lab(
    root: Path,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    app: str = "jupyterlab",
) -> Iterator[tuple[str, str]]:
    """JupyterLab serving ``root`` on a free port (its config, runtime, workspace and
    settings folders and its log in ``tmp_path``), stopped by PID; yields (base url,
    token). ``env`` adds environment variables (after the ``MLNB_*`` ones are removed),
    ``args`` command-line options; ``app="notebook"`` serves Notebook 7 instead. Used by
    the ``lab`` fixture, tests/e2e/ and tests/screenshot_compare.py."""
    settings = tmp_path / "settings"
    notify = settings / "@jupyterlab" / "apputils-extension"
    notify.mkdir(parents=True)
    (notify / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    token = secrets.token_hex(16)
    port = _free_port()
    log = (tmp_path / "lab.log").open("w")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLNB_")}
    environ["JUPYTER_CONFIG_DIR"] = str(tmp_path / "config")
    environ["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    environ.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", app, "--no-browser", "--allow-root",
         "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}",
         f"--{APP_CLASS[app]}.workspaces_dir={tmp_path / 'workspaces'}",
         f"--{APP_CLASS[app]}.user_settings_dir={settings}", *args],
        cwd=root, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError(
                        "JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:]
                    ) from None
                time.sleep(0.3)
        yield base, token
    finally:
        _delete_sessions(base, token)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _delete_sessions(base: str, token: str) -> None:
    try:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as r:
            sessions = json.loads(r.read())
        for s in sessions:
            req = urllib.request.Request(
                f"{base}/api/sessions/{s['id']}?token={token}", method="DELETE"
            )
            urllib.request.urlopen(req, timeout=10).close()
    except OSError:
        pass


def test_compare_widget_renders_table_and_plot_in_jupyterlab(
    lab: tuple[str, str], tmp_path: Path
) -> None:
    """The widget in JupyterLab: table, curves, filter (and its errors), sort, diff and
    relations. Issue 11 item 10: two runs named `train` are told apart (name + short id),
    and the browser console stays free of errors — a filter that dropped a metric from the
    metrics list logged `Error setting state: Cannot set properties of undefined (setting
    'selected')` (the SelectMultiple got its new options before its new selection)."""
    from playwright.sync_api import ConsoleMessage, expect, sync_playwright

    base, token = lab
    with mlnb.Store(tmp_path / "lab" / "store") as store:
        ids = store.search_runs(order_by="start_time asc")["run_id"]
    labels = [f"{name} ({rid[:8]})" for (name, _, _), rid in zip(RUNS, ids, strict=True)]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "compare.png"
    shot.unlink(missing_ok=True)
    expect.set_options(timeout=60_000)
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=QUIET_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.on("console", on_console)
            page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
            page.goto(f"{base}/lab/tree/compare.ipynb?token={token}")
            expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible()
            page.locator(".jp-Cell .jp-InputArea-editor").first.click()
            page.keyboard.press("Shift+Enter")
            widget = page.locator(".mlnb-compare")
            expect(widget).to_be_visible()
            rows = widget.locator(".mlnb-compare-table table.mlnb-cmp-table tbody tr")
            expect(rows).to_have_count(3)
            expect(rows.first).to_contain_text("run-tree")
            expect(widget.locator(".mlnb-cmp-badge").first).to_have_text("finished")
            plot = widget.locator(".mlnb-compare-curves img")
            expect(plot).to_be_visible()
            size = plot.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert size[0] > 300 and size[1] > 150
            checks = widget.locator(".mlnb-compare-check input[type=checkbox]")
            expect(checks).to_have_count(25)
            expect(checks.first).to_be_checked()  # the three runs start selected
            for label in labels:  # the two `train` runs are two runs
                expect(widget.locator(".mlnb-compare-selection")).to_contain_text(label)
            metrics = widget.locator(".mlnb-compare-metrics select option")
            expect(metrics).to_have_count(4)  # accuracy, f1, loss, test_accuracy
            widget.locator(".mlnb-compare-filter input").fill("params.model = 'svc'")
            widget.locator(".mlnb-compare-filter input").press("Enter")
            expect(rows).to_have_count(2)
            expect(metrics).to_have_count(3)  # f1 is gone: fewer options than were selected
            widget.locator(".mlnb-compare-filter input").fill("metrics.accuracy >")
            widget.locator(".mlnb-compare-filter input").press("Enter")
            expect(widget.locator(".mlnb-compare-error")).to_contain_text("expected")
            expect(rows).to_have_count(2)  # a bad filter leaves the table as it was
            widget.locator(".mlnb-compare-filter input").fill("")
            widget.locator(".mlnb-compare-filter input").press("Enter")
            expect(rows).to_have_count(3)
            expect(metrics).to_have_count(4)
            # sort by name, descending then ascending
            widget.locator(".mlnb-compare-sort select").select_option("name")
            expect(rows.first).to_contain_text("train")
            widget.locator(".mlnb-compare-descending input").uncheck()
            expect(rows.first).to_contain_text("run-tree")
            # the diff tab shows only what differs between the selected runs
            widget.locator(".lm-TabBar-tab", has_text="Diff").click()
            diff = widget.locator(".mlnb-compare-diff")
            expect(diff).to_contain_text("model")
            expect(diff).to_contain_text("tree")
            widget.locator(".lm-TabBar-tab", has_text="Relations").click()
            expect(widget.locator(".mlnb-compare-parallel img")).to_be_visible()
            widget.locator(".lm-TabBar-tab", has_text="Curves").click()
            expect(plot).to_be_visible()
            page.wait_for_timeout(500)  # the last frame settles
            widget.screenshot(path=str(shot))
        finally:
            browser.close()
    assert errors == []
    assert shot.stat().st_size > 10_000  # docs/img/compare.png: tests/screenshot_compare.py
