"""Issue 10 item 10: output that carries someone else's text shows it as text.

Run names, experiment names, params, tags and metric keys come from notebooks, colleagues
and imported bundles. Each report, listing and page mlnb writes is rendered here the way its
reader renders it — Markdown by mistune with raw HTML passed through (as many Markdown
viewers do), HTML by an HTML parser — and searched for anything live: a script, an event
handler, a link that is not ours, an image that is not ours, a table row too many.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import mistune
import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner

import mlnb
from mlnb.cli.app import cli
from mlnb.formatting import escape_html, escape_markdown, escape_mathtext
from tests.reliability.conftest import integrity_ok

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
LINK = "[x](javascript:alert(3))"
ROWS = "a\n| injected | row |\n\n# heading"
INLINE = "*b* _i_ `c` ~~s~~ $m$ \\ &lt; <b>&amp;"
MATH = "acc $\\frac{$ x"  # mathtext that does not parse: matplotlib raised at savefig
HOSTILE = [SCRIPT, IMG, LINK, ROWS, INLINE]
NAMES = [SCRIPT, f"{IMG}{LINK} {MATH}"]  # run names


@pytest.fixture
def hostile_runs(store: mlnb.Store) -> list[str]:
    """Two finished runs whose every user-supplied string is hostile (the newer one is
    reported against the older)."""
    ids = []
    for i, name in enumerate(NAMES):
        with mlnb.start_run(name=name, experiment=IMG) as run:
            mlnb.log_params({"p": f"{LINK}{i}", "q": f"{ROWS}{i}", "html": f"{INLINE}{i}"})
            mlnb.set_tags({"t": ROWS, "u": SCRIPT})
            for step in range(3):
                mlnb.log_metric("acc", 0.5 + 0.1 * step + i / 10, step=step)
                mlnb.log_metric(MATH, 1.0 - 0.2 * step, step=step)
                mlnb.log_metric(f"loss {IMG}", 2.0 - step, step=step)
        ids.append(run.run_id)
    mlnb.flush()
    return ids


def invoke(store: mlnb.Store, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--store", str(store.root), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def markdown_as_a_viewer_shows_it(text: str) -> BeautifulSoup:
    render = mistune.create_markdown(escape=False, plugins=["table", "strikethrough", "url"])
    return BeautifulSoup(str(render(text)), "html.parser")


def assert_nothing_live(page: BeautifulSoup, *, images: str | None = None) -> None:
    """No script, no event handler, no link, and no image but ours (``images`` prefix)."""
    assert page.find_all("script") == []
    for tag in page.find_all(True):
        handlers = [a for a in tag.attrs if a.lower().startswith("on")]
        assert handlers == [], tag
    assert [a.get("href") for a in page.find_all("a")] == []
    for img in page.find_all("img"):
        assert images is not None and img["src"].startswith(images), img


def assert_tables_keep_their_shape(page: BeautifulSoup) -> None:
    for table in page.find_all("table"):
        width = len(table.find("tr").find_all(["th", "td"]))
        assert all(len(tr.find_all(["th", "td"])) == width for tr in table.find_all("tr"))


def shown(page: BeautifulSoup) -> str:
    return " ".join(page.get_text().split())


def test_report_markdown_and_step_summary_show_hostile_text_as_text(
    store: mlnb.Store,
    hostile_runs: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 10 item 10: `mlnb report --format md` and $GITHUB_STEP_SUMMARY copied names,
    params and tags verbatim (<script> ran in a viewer; a newline in a tag broke the table);
    a metric key with `$` made the plot raise."""
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = tmp_path / "report.md"
    invoke(store, "report", hostile_runs[1], "--vs", hostile_runs[0], "-o", str(out))
    report = out.read_text()
    for text in (report, summary.read_text()):
        page = markdown_as_a_viewer_shows_it(text)
        assert_nothing_live(page, images="report_files/")
        assert_tables_keep_their_shape(page)
        for value in [*NAMES, IMG, LINK, ROWS, INLINE, MATH]:
            assert " ".join(value.split()) in shown(page), value
    assert len(list((tmp_path / "report_files").glob("*.png"))) == 3  # the $ key plotted too
    assert integrity_ok(store.db_path)


def test_runs_markdown_shows_hostile_text_as_text(
    store: mlnb.Store, hostile_runs: list[str]
) -> None:
    """Issue 10 item 10: `mlnb runs --format markdown` escaped only `|`."""
    text = invoke(store, "runs", "--format", "markdown", "-c", "name,experiment,params.*,tags.*")
    page = markdown_as_a_viewer_shows_it(text)
    assert_nothing_live(page)
    assert_tables_keep_their_shape(page)
    assert len(page.find_all("tr")) == 1 + len(hostile_runs)
    for value in [*NAMES, IMG, LINK, ROWS, INLINE]:
        assert " ".join(value.split()) in shown(page), value
    assert integrity_ok(store.db_path)


def test_report_html_and_compare_snapshot_show_hostile_text_as_text(
    store: mlnb.Store, hostile_runs: list[str], tmp_path: Path
) -> None:
    """Issue 10 item 10: the HTML report and the compare snapshot escape what they show, and
    draw metric keys and run names with `$` as text (matplotlib raised on them)."""
    invoke(store, "report", hostile_runs[1], "--vs", hostile_runs[0], "--format", "html",
           "-o", str(tmp_path / "report.html"))  # fmt: skip
    snapshot = mlnb.compare(store=store, widget=False).to_html(tmp_path / "compare.html")
    for path in (tmp_path / "report.html", snapshot):
        page = BeautifulSoup(path.read_text(), "html.parser")
        assert_nothing_live(page, images="data:image/png;base64,")
        for value in [*NAMES, IMG, LINK, INLINE, MATH]:
            assert " ".join(value.split()) in shown(page), (path.name, value)
    assert integrity_ok(store.db_path)


@pytest.mark.parametrize("text", [*HOSTILE, MATH, "", "plain_name-1.5", "a|b", "x" * 300])
def test_escape_functions_leave_nothing_to_interpret(text: str) -> None:
    """Issue 10 item 10: one escaping function per format, each total and round-tripping."""
    md = escape_markdown(text)
    assert "\n" not in md and "\r" not in md and "<" not in md
    assert re.search(r"(?<!\\)\|", md) is None  # every | escaped: table cells hold
    page = markdown_as_a_viewer_shows_it(f"| h |\n|---|\n| {md} |\n")
    assert_nothing_live(page)
    assert shown(page) == " ".join(f"h {text}".split())
    html = escape_html(text)
    assert BeautifulSoup(f"<p title='{html}'>{html}</p>", "html.parser").p.get_text() == text
    from matplotlib.figure import Figure

    fig = Figure()
    title = fig.subplots().set_title(escape_mathtext(text))
    fig.savefig(io.BytesIO(), format="png")  # raises on mathtext that does not parse
    assert title._preprocess_math(title.get_text()) == (text, False)  # drawn as plain text


def test_live_plot_draws_a_key_with_dollars_as_text(store: mlnb.Store) -> None:
    """Issue 10 item 10: `mlnb.live` titled each axes with the metric key as mathtext."""
    from mlnb.notebook.liveplot import LivePlot

    with mlnb.start_run(capture=False) as run:
        for step in range(3):
            run.log_metric(MATH, float(step), step=step)
    plot = LivePlot([MATH], run=run)  # a finished run: drawn once, here
    assert plot.frames == 1 and plot.error is None
    assert plot.png.startswith(b"\x89PNG")
    assert integrity_ok(store.db_path)
