"""Every example in the docs runs: the fenced code blocks of docs/*.md and README.md are
executed, one pytest item per block (id ``page.md:LINE``, the line of the opening fence).

- ```python blocks of one page run in order in one Jupyter kernel (a doctest session in a
  notebook: ``%track`` magics, widgets and plain Python alike), started in a temporary
  working folder that holds a copy of the docs project (tests/docs_fixture.py: a store with
  the runs, experiments and names the docs use, and the notebooks and files they name).
  ``$MLNB_STORE`` points at that copy.
- ```bash / ```sh / ```shell blocks run with ``bash -e`` in the same folder, with the
  venv's ``mlnb`` first on ``PATH``; ```console blocks run their ``$ `` lines.
- ```sql blocks run against the page's copy of the store, read-only.
- Anything else (```text, ```json, ```yaml, a bare fence) is output or a file's contents,
  and is not run.

A block opts out only with a visible marker on the line before its fence, with a reason:
``<!-- docs-test: skip (why it cannot run here) -->``. Blocks that start job kernels are
marked slow (still run by ``make test``). A block also fails when it prints a warning.

Run one page with ``pytest tests/test_docs_examples.py -k tracking.md``; a block selected
alone first runs the blocks above it on its page, as a reader would have.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests import docs_fixture

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

PYTHON = {"python", "py", "ipython"}
SHELL = {"bash", "sh", "shell", "console"}
SQL = {"sql"}
NOT_RUN = {"", "text", "json", "yaml", "yml", "toml", "ini", "csv", "diff", "html", "markdown"}

MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
SKIP = re.compile(r"^skip\s*\((.*\S.*)\)$")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<lang>[^\s`{]*)")
# blocks that start kernels of their own (jobs, sweeps, reproductions, notebook tests) or
# fit many models: slow, still run in CI
SLOW = re.compile(
    r"\bmlnb (run|sweep|test|reproduce|retrain)\b|run_notebook\(|\bsweep\(|reproduce\(|autolog\("
    r"|retrain\("
)
WARNING = re.compile(r"^.*\b\w*Warning: .*$", re.M)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CELL_LINE = re.compile(r"^Cell In\[\d+\], line (\d+)", re.M)
SHELL_TRAP = "trap 'echo \"docs-test: line $LINENO failed\" >&2' ERR\n"
SHELL_LINE = re.compile(r"^docs-test: line (\d+) failed$", re.M)
BLOCK_TIMEOUT = 300


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language and text, and its marker if any."""

    page: str  # "README.md" or "docs/tracking.md"
    line: int  # the opening fence, 1-based
    lang: str
    code: str
    marker: str | None = None  # the text of a `<!-- docs-test: ... -->` right before it
    marker_line: int | None = None

    @property
    def id(self) -> str:
        return f"{Path(self.page).name}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in PYTHON | SHELL | SQL

    @property
    def skip_reason(self) -> str | None:
        match = SKIP.match(self.marker or "")
        return match.group(1) if match else None


def parse_blocks(text: str, page: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, each with the ``docs-test`` marker on
    the last non-blank line before its fence."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        above = next((n for n in range(i - 1, -1, -1) if lines[n].strip()), None)
        marker = MARKER.match(lines[above]) if above is not None else None
        body: list[str] = []
        j = i + 1
        closing = re.compile(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$")
        while j < len(lines) and not closing.match(lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        code = "\n".join(body) + "\n"
        lang = opening["lang"].lower()
        if marker and above is not None:
            blocks.append(Block(page, i + 1, lang, code, marker[1], above + 1))
        else:
            blocks.append(Block(page, i + 1, lang, code))
        i = j + 1
    return blocks


def all_blocks() -> list[Block]:
    return [
        b
        for p in PAGES
        for b in parse_blocks(p.read_text(encoding="utf-8"), str(p.relative_to(REPO)))
    ]


BLOCKS = all_blocks()


def console_commands(code: str) -> str:
    """The commands of a console transcript: ``$ `` lines and their ``\\`` continuations."""
    commands: list[str] = []
    continued = False
    for line in code.splitlines():
        if continued or line.startswith("$ "):
            commands.append(line if continued else line[2:])
            continued = line.rstrip().endswith("\\")
    return "\n".join(commands) + "\n"


def example_params() -> list[Any]:
    params = []
    for block in BLOCKS:
        if not block.runs:
            continue
        marks = []
        if block.skip_reason:
            marks.append(pytest.mark.skip(reason=f"docs-test: skip ({block.skip_reason})"))
        if SLOW.search(block.code):
            marks.append(pytest.mark.slow)
        params.append(pytest.param(block, id=block.id, marks=marks))
    return params


# -- the pages' sessions -------------------------------------------------------------------


class IpcKernelManager(AsyncKernelManager):  # type: ignore[misc]
    """A kernel on Unix sockets in a short private folder (as mlnb's jobs use): no TCP port
    race with other tests' kernels, no "running over TCP without encryption" warning."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("transport", "ipc")
        super().__init__(**kwargs)
        self.ip = str(Path(tempfile.mkdtemp(prefix="mlnb-docs-")) / "kernel")

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(Path(self.ip).parent, ignore_errors=True)


@dataclass
class PageSession:
    """A page's working folder, its kernel (started on the first Python block) and which
    of its blocks have run."""

    page: str
    folder: Path
    env: dict[str, str]
    blocks: list[Block]
    done: dict[int, str | None] = field(default_factory=dict)  # line -> error, None if ok
    client: NotebookClient | None = None
    cells: dict[int, int] = field(default_factory=dict)  # a Python block's line -> cell index
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def run(self, block: Block) -> None:
        """Run ``block``, after the blocks above it that have not run yet; an earlier
        block's failure fails this one too (it would have stopped a reader)."""
        for earlier in self.blocks:
            if earlier.line >= block.line:
                break
            if earlier.line not in self.done:
                self.done[earlier.line] = self._attempt(earlier)
            if self.done[earlier.line] is not None:
                pytest.fail(
                    f"an earlier example of this page failed first: {earlier.id}",
                    pytrace=False,
                )
        error = self._attempt(block)
        self.done[block.line] = error
        if error is not None:
            where = block.line
            if block.lang in PYTHON and (frames := CELL_LINE.findall(error)):
                where += int(frames[-1])  # the kernel's "Cell In[3], line 6" of the failure
            elif block.lang in SHELL - {"console"} and (lines := SHELL_LINE.findall(error)):
                where += int(lines[-1]) - 1  # the ERR trap's line, counting its own
            pytest.fail(f"{block.page}:{where}: the example failed\n{error}", pytrace=False)

    def _attempt(self, block: Block) -> str | None:
        if block.skip_reason:
            return None
        try:
            if block.lang in PYTHON:
                return self._python(block)
            if block.lang in SQL:
                return self._sql(block)
            return self._shell(block)
        except Exception as exc:  # the harness itself, e.g. a kernel that would not start
            return f"{type(exc).__name__}: {exc}"

    def _kernel(self) -> NotebookClient:
        if self.client is None:
            nb = nbformat.v4.new_notebook()
            nb.cells = [nbformat.v4.new_code_cell(docs_fixture.PRELUDE)]
            for b in self.blocks:
                if b.lang in PYTHON and not b.skip_reason:
                    self.cells[b.line] = len(nb.cells)
                    nb.cells.append(nbformat.v4.new_code_cell(b.code.rstrip("\n")))
            nbformat.write(nb, Path(self.env["MLNB_NOTEBOOK"]))
            self.client = NotebookClient(
                nb,
                timeout=BLOCK_TIMEOUT,
                kernel_name="python3",
                kernel_manager_class=IpcKernelManager,
                resources={"metadata": {"path": str(self.folder)}},
            )
            self.stack.enter_context(self.client.setup_kernel(env=self.env))
            error = self._execute(0)
            if error is not None:
                raise RuntimeError(f"the docs prelude (tests/docs_fixture.py) failed:\n{error}")
        return self.client

    def _execute(self, index: int) -> str | None:
        assert self.client is not None
        cell = self.client.nb.cells[index]
        try:
            self.client.execute_cell(cell, index)
        except CellExecutionError as exc:
            return ANSI.sub("", str(exc))
        printed = "".join(
            o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream"
        )
        warnings = WARNING.findall(printed)
        if warnings:
            return "the example printed a warning:\n" + "\n".join(warnings)
        return None

    def _python(self, block: Block) -> str | None:
        self._kernel()
        return self._execute(self.cells[block.line])

    def _shell(self, block: Block) -> str | None:
        code = console_commands(block.code) if block.lang == "console" else block.code
        proc = subprocess.run(
            ["bash", "-e", "-c", SHELL_TRAP + code],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
        )
        if proc.returncode != 0:
            return f"exit status {proc.returncode}\n{proc.stdout}{proc.stderr}"
        warnings = WARNING.findall(proc.stderr)
        if warnings:
            return "the example printed a warning:\n" + "\n".join(warnings)
        return None

    def _sql(self, block: Block) -> str | None:
        db = Path(self.env["MLNB_STORE"]) / "mlnb.db"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            statement = ""
            for line in block.code.splitlines(keepends=True):
                statement += line
                if sqlite3.complete_statement(statement):
                    conn.execute(statement).fetchall()
                    statement = ""
        return None

    def close(self) -> None:
        self.stack.close()


class Sessions:
    """One session at a time (one kernel), a new one for each page."""

    def __init__(self, project: Path, root: Path) -> None:
        self.project, self.root = project, root
        self.current: PageSession | None = None

    def for_page(self, page: str) -> PageSession:
        if self.current is not None and self.current.page == page:
            return self.current
        self.close()
        folder = self.root / Path(page).stem
        if folder.exists():  # the page ran before in this session (e.g. with -k): start over
            shutil.rmtree(folder)
        shutil.copytree(self.project, folder, symlinks=True)
        self.current = PageSession(
            page,
            folder,
            page_env(folder, Path(page).stem),
            [b for b in BLOCKS if b.page == page and b.runs],
        )
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


def page_env(folder: Path, stem: str) -> dict[str, str]:
    """The environment of a page's kernel and shell blocks: no MLNB_* from outside, the
    page's store, its notebook, and the venv's scripts (``mlnb``, ``python``) first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLNB_")}
    env["MLNB_STORE"] = str(folder / ".mlnb")
    env["MLNB_NOTEBOOK"] = str(folder / f"{stem}.ipynb")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # this checkout's mlnb, and tests.docs_fixture for the prelude
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("CI", None)
    env.pop("GITHUB_STEP_SUMMARY", None)
    return env


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sessions]:
    project = docs_fixture.build(tmp_path_factory.mktemp("docs-project"))
    sessions = Sessions(project, tmp_path_factory.mktemp("docs-pages"))
    yield sessions
    sessions.close()


@pytest.mark.parametrize("block", example_params())
def test_docs_example_runs(block: Block, sessions: Sessions) -> None:
    sessions.for_page(block.page).run(block)


# -- the harness itself --------------------------------------------------------------------


def test_docs_blocks_have_known_languages_and_markers() -> None:
    """A typo in a fence's language (```pyhton) or a marker (a skip without a reason)
    would silently keep an example from running."""
    for block in BLOCKS:
        assert block.lang in PYTHON | SHELL | SQL | NOT_RUN, (
            f"{block.page}:{block.line}: unknown language {block.lang!r}"
        )
        if block.marker is not None:
            assert block.skip_reason, (
                f"{block.page}:{block.line}: a marker is `docs-test: skip (reason)`, "
                f"got {block.marker!r}"
            )
            assert block.runs, f"{block.page}:{block.line}: a ```{block.lang} block never runs"
    attached = {(b.page, b.marker_line) for b in BLOCKS}
    for page in PAGES:
        name = str(page.relative_to(REPO))
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if MARKER.match(line):
                assert (name, n) in attached, f"{name}:{n}: a docs-test marker with no block"


def test_parse_blocks_reads_fences_markers_and_console_prompts() -> None:
    text = (
        "intro\n\n```python\nx = 1\n```\n\n<!-- docs-test: skip (needs a GPU) -->\n"
        "```bash\nnvidia-smi\n```\n\n````text\n```python\nnot a block\n```\n````\n"
        "```console\n$ mlnb runs \\\n    -n 2\noutput line\n$ mlnb show x\n```\n"
    )
    blocks = parse_blocks(text, "docs/x.md")
    assert [(b.line, b.lang, b.skip_reason) for b in blocks] == [
        (3, "python", None),
        (8, "bash", "needs a GPU"),
        (12, "text", None),
        (17, "console", None),
    ]
    assert blocks[0].code == "x = 1\n" and blocks[0].id == "x.md:3"
    assert console_commands(blocks[3].code) == "mlnb runs \\\n    -n 2\nmlnb show x\n"


@pytest.mark.slow
def test_page_session_fails_at_the_line_that_failed_and_stops_the_page(tmp_path: Path) -> None:
    """A failing example names its page and line, in Python (from the kernel's traceback)
    and in the shell; the examples after it on the page fail as stopped by it."""
    page = "docs/fake.md"
    text = (
        "# Fake\n\n```python\nx = 1\n```\n\n```bash\ntest -f fake.ipynb\n```\n\n"
        "```python\ny = x + 1\n1 / 0\n```\n\n```bash\necho fine\n```\n\n"
        "```bash\nfalse\necho never\n```\n"
    )
    blocks = parse_blocks(text, page)
    session = PageSession(page, tmp_path, page_env(tmp_path, "fake"), blocks)
    try:
        session.run(blocks[0])
        session.run(blocks[1])  # the shell runs in the page's folder, beside its notebook
        with pytest.raises(pytest.fail.Exception, match=r"^docs/fake.md:13: the example failed"):
            session.run(blocks[2])
        with pytest.raises(pytest.fail.Exception, match="failed first: fake.md:11"):
            session.run(blocks[3])
    finally:
        session.close()
    alone = PageSession(page, tmp_path, page_env(tmp_path, "fake"), blocks[4:])
    with pytest.raises(pytest.fail.Exception, match=r"(?s)fake.md:21: .*exit status 1"):
        alone.run(blocks[4])
