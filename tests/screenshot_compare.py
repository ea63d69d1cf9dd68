"""Regenerate ``docs/img/compare.png``: the compare widget on the runs ``make quickstart``
makes, in a real JupyterLab in Debian's Chromium.

    make quickstart          # once: fills .mlnb (git-ignored)
    .venv/bin/python -m tests.screenshot_compare [--store .mlnb] [--out docs/img/compare.png]

JupyterLab and Chromium are started and driven as tests/e2e/test_compare_browser.py does
(its helpers are imported from there). The notebook compares every run of the
``quickstart`` experiment; the widget's selection is then set, by clicking the rows'
checkboxes as a user would, to the sweep's forest and sgd children: the runs that log
accuracy and f1 per step (trees, epochs), so the Curves tab shows their curves.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import REPO
from tests.e2e.test_compare_browser import CHROMIUM, QUIET_FLAGS, _notebook, run_lab

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

EXPERIMENT = "quickstart"
SELECTED = ("models-3", "models-4", "models-5", "models-6")  # forest and sgd, seeds 0 and 1
METRICS = ("accuracy", "f1")
PINNED = ("name", "params.model", "params.seed")
VIEWPORT = (1700, 2000)  # the test uses 1400; here the metrics fit beside the pinned columns


def _source(store: Path) -> str:
    return (
        "import mlnb\n"
        f"w = mlnb.compare(\"experiment = '{EXPERIMENT}'\", metrics={list(METRICS)!r},\n"
        f"                 store=mlnb.Store({str(store)!r}))\n"
        f"w.pinned.value = {list(PINNED)!r}  # what each run is, before the table scrolls\n"
        "w"
    )


def _check_store(store: Path) -> None:
    """Fail early, with the fix, when the quickstart has not been run into ``store``."""
    import mlnb

    if not (store / "mlnb.db").exists():
        sys.exit(f"{store} has no store: run `make quickstart` first")
    with mlnb.Store(store) as st:
        names = set(mlnb.runs(f"experiment = '{EXPERIMENT}'", store=st)["name"])
    missing = [n for n in SELECTED if n not in names]
    if missing:
        sys.exit(f"{store}: no runs {', '.join(missing)} in experiment {EXPERIMENT!r}: "
                 "run `make quickstart` first")  # fmt: skip


def _settle(page: Page, plot: Locator, quiet_ms: int = 2000, limit_ms: int = 60_000) -> None:
    """Wait until the curves image has not changed for ``quiet_ms``: the widget draws in
    the background and each click of a checkbox asks for a new frame."""
    last, same, waited = "", 0, 0
    while same < quiet_ms and waited < limit_ms:
        src = plot.get_attribute("src") or ""
        same = same + 250 if src == last else 0
        last = src
        page.wait_for_timeout(250)
        waited += 250


def screenshot(store: Path, out: Path) -> Path:
    from playwright.sync_api import expect, sync_playwright

    if not os.path.exists(CHROMIUM):
        sys.exit(f"{CHROMIUM} is missing: `make chromium` installs it")
    store, out = store.resolve(), out.resolve()
    _check_store(store)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlnb-screenshot-") as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "lab"
        root.mkdir()
        nb = _notebook(store)
        nb["cells"][0]["source"] = _source(store)  # type: ignore[index]
        (root / "compare.ipynb").write_text(json.dumps(nb))
        with run_lab(root, tmp_path) as (base, token):
            expect.set_options(timeout=60_000)
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=CHROMIUM, args=QUIET_FLAGS, headless=True
                )
                try:
                    page = browser.new_page(viewport={"width": VIEWPORT[0], "height": VIEWPORT[1]})
                    page.goto(f"{base}/lab/tree/compare.ipynb?token={token}")
                    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible()
                    page.locator(".jp-Cell .jp-InputArea-editor").first.click()
                    page.keyboard.press("Shift+Enter")
                    widget = page.locator(".mlnb-compare")
                    expect(widget).to_be_visible()
                    rows = widget.locator(".mlnb-compare-table table.mlnb-cmp-table tbody tr")
                    expect(rows.first).to_be_visible()
                    checks = widget.locator(".mlnb-compare-check input[type=checkbox]")
                    names = [
                        rows.nth(i).locator("td").first.inner_text().strip()
                        for i in range(rows.count())
                    ]
                    widget.get_by_role("button", name="clear selection").click()
                    expect(widget).to_contain_text("0 selected")
                    for name in SELECTED:
                        checks.nth(names.index(name)).check()
                    expect(widget).to_contain_text(f"{len(SELECTED)} selected")
                    plot = widget.locator(".mlnb-compare-curves img")
                    expect(plot).to_be_visible()
                    _settle(page, plot)
                    widget.screenshot(path=str(out))
                finally:
                    browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.screenshot_compare",
        description="Screenshot the compare widget on the quickstart's runs in JupyterLab.",
    )
    ap.add_argument("--store", type=Path, default=REPO / ".mlnb",
                    help="the store `make quickstart` filled (default: .mlnb)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "compare.png",
                    help="the PNG to write (default: docs/img/compare.png)")  # fmt: skip
    args = ap.parse_args(argv)
    out = screenshot(args.store, args.out)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
