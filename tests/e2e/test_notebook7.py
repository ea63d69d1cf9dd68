"""mlnb's extension in Notebook 7 (issue 13: "works in Notebook 7 as well as Lab 4"): a real
`jupyter notebook` (Notebook 7) with mlnb's server extension and this tree's build, driven
in Debian's Chromium. The same pages are loaded once with the extension disabled, so the
console errors Notebook makes by itself are told apart from ours."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import mlnb
from tests.conftest import REPO
from tests.e2e.test_compare_browser import CHROMIUM, QUIET_FLAGS, run_lab

pytest.importorskip("notebook", reason="Notebook 7 is in the test extras")
pytestmark = pytest.mark.slow

BUILD = REPO / "mlnb" / "labextension"
TIMEOUT_MS = 60_000
NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "id": "p", "metadata": {
            "tags": ["parameters"]}, "outputs": [], "source": "lr = 0.1"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}  # fmt: skip


def _serve(tmp: Path, *, enabled: bool) -> Iterator[tuple[str, str, Path]]:
    root = tmp / "root"
    root.mkdir()
    with mlnb.Store(root / ".mlnb") as store:
        run = store.create_run(name="nb7-run", experiment="nb7")
        store.log_params(run, {"lr": 0.1})
        store.set_status(run, "finished")
    (root / "params.ipynb").write_text(json.dumps(NOTEBOOK))
    exts = tmp / "jupyter-path" / "labextensions"
    exts.mkdir(parents=True)
    (exts / "mlnb-labextension").symlink_to(BUILD, target_is_directory=True)
    config = tmp / "config"
    (config / "labconfig").mkdir(parents=True)
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"mlnb": True}}})
    )
    disabled = {} if enabled else {"mlnb-labextension": True}
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": disabled})
    )
    env = {"MLNB_STORE": str(root / ".mlnb"), "JUPYTER_PATH": str(tmp / "jupyter-path")}
    args = ("--JupyterNotebookApp.expose_app_in_browser=True",)
    with run_lab(root, tmp, env=env, args=args, app="notebook") as (base, token):
        yield base, token, root


def _console_errors(base: str, token: str, paths: list[str]) -> dict[str, list[str]]:
    """Console errors and uncaught exceptions of each page, once it has settled."""
    from playwright.sync_api import sync_playwright

    out: dict[str, list[str]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=QUIET_FLAGS)
        try:
            for path in paths:
                page = browser.new_page()
                errors: list[str] = []
                page.on(
                    "console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None
                )  # type: ignore[misc]
                page.on("pageerror", lambda exc, e=errors: e.append(f"uncaught: {exc}"))  # type: ignore[misc]
                page.goto(f"{base}/{path}?token={token}")
                page.wait_for_function("() => window.jupyterapp !== undefined", timeout=TIMEOUT_MS)
                page.wait_for_timeout(2_000)
                out[path] = errors
                page.close()
        finally:
            browser.close()
    return out


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs it")
    if not (BUILD / "package.json").exists():
        pytest.fail(f"{BUILD} is missing: build the extension with `make labextension`")
    yield from _serve(tmp_path_factory.mktemp("nb7"), enabled=True)


def test_notebook7_loads_the_extension_and_adds_no_console_error(
    notebook7: tuple[str, str, Path], tmp_path: Path
) -> None:
    """On Notebook 7's file browser and notebook pages the extension's commands exist and
    the console shows no error beyond those Notebook shows without the extension. Before
    the fix, requiring the notebook tracker loaded the document manager on the file
    browser page, where it failed on its settings."""
    base, token, _ = notebook7
    pages = ["tree", "notebooks/params.ipynb"]
    with_ext = _console_errors(base, token, pages)
    for server in _serve(tmp_path, enabled=False):
        without = _console_errors(server[0], server[1], pages)
    for path in pages:
        extra = [e for e in with_ext[path] if e not in without[path]]
        assert extra == [], f"{path}: console errors only with mlnb's extension: {extra}"


def test_notebook7_notebook_page_has_run_with_parameters_and_the_runs_panel(
    notebook7: tuple[str, str, Path],
) -> None:
    """A notebook page of Notebook 7 shows "Run with parameters…" on its toolbar, and the
    runs panel opens beside the notebook and lists the store's runs."""
    from playwright.sync_api import expect, sync_playwright

    base, token, _ = notebook7
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=QUIET_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/notebooks/params.ipynb?token={token}")
            expect(page.locator(".mlnb-run-with-parameters").first).to_be_visible()
            page.evaluate("() => window.jupyterapp.commands.execute('mlnb:open-runs-panel')")
            panel = page.locator("#mlnb-runs-panel")
            expect(panel).to_be_visible()
            panel.locator(".mlnb-runs-scope").select_option("all")
            expect(panel.get_by_text("nb7-run")).to_be_visible()
        finally:
            browser.close()
