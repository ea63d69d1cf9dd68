"""Notebook lineage: finding the notebook, reading its saved cells, judging whether a run
executed them top to bottom, and the executed-cells script."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import nbformat
import pytest

from mlnb.capture import notebook
from mlnb.capture.notebook import (
    ExecutedCell,
    Linearity,
    executed_script,
    find_notebook_path,
    linearity,
    match_cells,
    saved_code_cells,
)
from mlnb.errors import InvalidInputError
from tests.conftest import REPO

SAVED = [
    "import numpy as np",
    "%load_ext mlnb",
    "%track start",
    "data = np.arange(10)",
    "model = data.mean()",
    "print(model)",
]


def run(
    *cells: int | str, saved: Sequence[str] = SAVED, error: str | None = None
) -> list[ExecutedCell]:
    """Executed cells In [1], In [2], ...: an int is that saved cell, a str a source."""
    return [
        ExecutedCell(
            execution_count=number,
            source=saved[cell] if isinstance(cell, int) else cell,
            started=1000.0 + number,
            ended=1000.5 + number,
            error=error,
        )
        for number, cell in enumerate(cells, start=1)
    ]


@pytest.fixture(autouse=True)
def no_jupyter_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests may themselves run inside a Jupyter kernel: start from a clean slate."""
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)


def write_notebook(path: Path, cells: list[tuple[str, str]], *, minor: int = 5) -> Path:
    """A real .ipynb: (cell_type, source) pairs, written by nbformat."""
    makers = {
        "code": nbformat.v4.new_code_cell,
        "markdown": nbformat.v4.new_markdown_cell,
        "raw": nbformat.v4.new_raw_cell,
    }
    nb = nbformat.v4.new_notebook(cells=[makers[kind](source) for kind, source in cells])
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    if minor != 5:  # an older v4 minor: no cell ids, otherwise the same layout
        raw = json.loads(path.read_text())
        raw["nbformat_minor"] = minor
        for cell in raw["cells"]:
            cell.pop("id", None)
        path.write_text(json.dumps(raw))
    return path


# --- linearity ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cells", "verdict", "involved", "reasons"),
    [
        pytest.param((0, 1, 2, 3, 4, 5), "linear", [], [], id="in-order"),
        pytest.param((0, 3, 5), "linear", [], [], id="skip-cells"),
        pytest.param((1, 2, 3), "linear", [], [], id="magic-cells-are-normal-cells"),
        pytest.param((3,), "linear", [], [], id="single-cell"),
        pytest.param((0, 3, 3, 3, 4), "linear", [], [], id="re-run-current-cell"),
        pytest.param(
            (3, 4, 3),
            "out-of-order",
            [3, 4],
            ["cell 3 (In [3]) ran again after cell 4 (In [2])"],
            id="re-run-after-a-later-cell",
        ),
        pytest.param(
            (0, 3, 4, 0, 5),
            "out-of-order",
            [0, 4],
            ["cell 0 (In [4]) ran again after cell 4 (In [3])"],
            id="re-run-earlier-cell",
        ),
        pytest.param(
            (0, 4, 3),
            "out-of-order",
            [3, 4],
            ["cell 3 (In [3]) ran after cell 4 (In [2])"],
            id="earlier-cell-run-late",
        ),
        pytest.param(
            (3, 5, 4, 3),
            "out-of-order",
            [3, 4, 5],
            [
                "cell 4 (In [3]) ran after cell 5 (In [2])",
                "cell 3 (In [4]) ran again after cell 4 (In [3])",
            ],
            id="one-reason-per-backward-jump",
        ),
        pytest.param(
            (0, "data = np.arange(20)", 4),
            "out-of-order",
            [],
            [
                "In [2] ran a source that is not in the saved notebook (edited or deleted "
                "cell): `data = np.arange(20)`"
            ],
            id="edited-source",
        ),
        pytest.param(
            (0, "import pandas as pd\ndf = pd.DataFrame()", 3),
            "out-of-order",
            [],
            [
                "In [2] ran a source that is not in the saved notebook (edited or deleted "
                "cell): `import pandas as pd`"
            ],
            id="deleted-cell",
        ),
        pytest.param(
            ("\n\ndata = np.arange(10)   \n\n", "model = data.mean()\r\n"),
            "linear",
            [],
            [],
            id="trailing-whitespace-and-newlines-ignored",
        ),
        pytest.param((0, "   \n", 3), "linear", [], [], id="blank-cell-ignored"),
    ],
)
def test_linearity_verdicts(
    cells: tuple[int | str, ...], verdict: str, involved: list[int], reasons: list[str]
) -> None:
    result = linearity(run(*cells), SAVED)
    assert result == Linearity(verdict=verdict, reasons=reasons, cells=involved)


def test_linearity_empty_run_is_linear() -> None:
    assert linearity([], SAVED) == Linearity("linear", [], [])
    assert linearity([], None) == Linearity("linear", [], [])


def test_linearity_without_saved_notebook_is_unknown() -> None:
    result = linearity(run("x = 1", "x = 1"), None)
    assert result.verdict == "unknown"
    assert result.reasons == ["there is no saved notebook to compare with"]
    assert result.cells == []


def test_linearity_counts_a_cell_that_raised() -> None:
    assert linearity(run(0, 3, 4, error="ValueError"), SAVED).verdict == "linear"
    assert linearity(run(4, 3, error="ValueError"), SAVED).verdict == "out-of-order"


def test_linearity_names_a_cell_without_execution_count() -> None:
    cells = [ExecutedCell(None, "y = 2", 0.0, 1.0, None)]
    assert linearity(cells, SAVED).reasons[0].startswith("In [ ] ran a source that is not")


def test_linearity_long_source_excerpt_is_cut() -> None:
    reason = linearity(run("x = '" + "a" * 200 + "'"), SAVED).reasons[0]
    assert reason.endswith("…`")
    assert len(reason) < 160


DUPLICATES = ["a = 1", "b = a", "a = 1", "c = b"]


@pytest.mark.parametrize(
    ("cells", "matched", "verdict"),
    [
        pytest.param((0, 1, 2, 3), [0, 1, 2, 3], "linear", id="each-occurrence-in-turn"),
        pytest.param((0, 0), [0, 0], "linear", id="repeat-is-a-re-run-of-the-current-cell"),
        pytest.param((1, 0), [1, 2], "linear", id="next-occurrence-after-position"),
        pytest.param((0, 1, 2, 3, 0), [0, 1, 2, 3, 0], "out-of-order", id="else-first-occurrence"),
    ],
)
def test_linearity_duplicate_sources(
    cells: tuple[int, ...], matched: list[int], verdict: str
) -> None:
    executed = run(*cells, saved=DUPLICATES)
    assert match_cells(executed, DUPLICATES) == matched
    assert linearity(executed, DUPLICATES).verdict == verdict


def test_match_cells_without_saved_notebook_matches_nothing() -> None:
    assert match_cells(run("a = 1", "b"), None) == [None, None]


def test_linearity_to_dict_is_json() -> None:
    result = linearity(run(4, 3), SAVED)
    assert json.loads(json.dumps(result.to_dict())) == {
        "verdict": "out-of-order",
        "reasons": ["cell 3 (In [2]) ran after cell 4 (In [1])"],
        "cells": [3, 4],
    }


# --- executed_script ------------------------------------------------------------------------


def test_executed_script_headers_name_cells_and_errors() -> None:
    executed = [
        ExecutedCell(3, "%track start", 1.0, 2.0, None),
        ExecutedCell(4, "data = np.arange(10)\n", 2.0, 3.0, "ValueError"),
        ExecutedCell(5, "x = 1", 3.0, 4.0, None),
        ExecutedCell(6, "model = data.mean()", 4.0, None, None),
    ]
    script = executed_script(executed, SAVED)
    assert "# In [3]  (notebook cell 2)\n# %track start\n" in script
    assert "# In [4]  (notebook cell 3)  raised ValueError\ndata = np.arange(10)\n" in script
    assert "# In [5]  (not in the saved notebook)\nx = 1\n" in script
    assert "# In [6]  (notebook cell 4)  (still running when the run ended)\n" in script
    assert script.index("In [3]") < script.index("In [4]") < script.index("In [5]")


def test_executed_script_without_saved_notebook_has_no_cell_numbers() -> None:
    script = executed_script(run("x = 1"))
    assert "# In [1]\nx = 1\n" in script
    assert "notebook" not in script.split("\n", 2)[2]


def test_executed_script_runs_the_cells_in_execution_order() -> None:
    script = executed_script(run("x = 1", "%time x += 1", "!echo hi", "x *= 10", "files = !ls"))
    namespace: dict[str, Any] = {}
    exec(compile(script, "executed.py", "exec"), namespace)
    assert namespace["x"] == 10
    assert "# %time x += 1\n" in script
    assert "# !echo hi\n" in script
    assert "# files = !ls\n" in script


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("%%time\ny = 2\n", "# %%time\ny = 2", id="python-body-cell-magic-kept"),
        pytest.param("%%capture out\ny = 2", "# %%capture out\ny = 2", id="capture-with-argument"),
        pytest.param(
            "%%writefile train.py\nimport sys\nsys.exit(1)",
            "# (%%writefile cell; kept as a comment)\n# %%writefile train.py\n"
            "# import sys\n# sys.exit(1)",
            id="writefile-body-never-runs",
        ),
        pytest.param(
            "%%bash\nls -la", "# (%%bash cell; kept as a comment)\n# %%bash\n# ls -la", id="bash"
        ),
        pytest.param(
            "for i in range(2):\n    %time f(i)",
            "for i in range(2):\n    pass  # %time f(i)",
            id="indented-magic-keeps-block",
        ),
        pytest.param("np.arange?\nnp??", "# np.arange?\n# np??", id="help"),
        pytest.param(
            'q = """\n%(name)s\n"""', 'q = """\n%(name)s\n"""', id="percent-in-string-untouched"
        ),
        pytest.param(
            "def f(:\n\n  pass",
            "# (not valid Python; kept as a comment)\n# def f(:\n#\n#   pass",
            id="invalid-python",
        ),
        pytest.param(
            "await coro()",
            "# (not valid Python; kept as a comment)\n# await coro()",
            id="top-level-await",
        ),
    ],
)
def test_executed_script_converts_ipython_syntax(source: str, expected: str) -> None:
    script = executed_script(run(source))
    assert f"# In [1]\n{expected}\n" in script
    compile(script, "executed.py", "exec")


def test_executed_script_of_nothing_is_a_valid_script() -> None:
    script = executed_script([])
    assert script.startswith("# Cells executed while the run was active")
    compile(script, "executed.py", "exec")


def test_executed_script_marks_blank_cells() -> None:
    assert "# In [1]  (blank cell)\n" in executed_script(run("\n  \n"), SAVED)


# --- saved_code_cells -----------------------------------------------------------------------


@pytest.mark.parametrize("minor", [0, 1, 2, 3, 4, 5])
def test_saved_code_cells_reads_code_cells_in_order(tmp_path: Path, minor: int) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            ("markdown", "# Title"),
            ("code", "import numpy as np\nx = np.arange(3)\n"),
            ("raw", "raw text"),
            ("code", ""),
            ("code", "%track start"),
        ],
        minor=minor,
    )
    assert isinstance(json.loads(path.read_text())["cells"][1]["source"], list)  # on-disk form
    assert saved_code_cells(path) == ["import numpy as np\nx = np.arange(3)\n", "", "%track start"]


def test_saved_code_cells_upgrades_nbformat_3(tmp_path: Path) -> None:
    v3 = nbformat.v3
    nb = v3.new_notebook(
        worksheets=[
            v3.new_worksheet(
                cells=[v3.new_text_cell("markdown", "hi"), v3.new_code_cell(input="a = 1\nb = 2")]
            )
        ]
    )
    path = tmp_path / "old.ipynb"
    path.write_text(v3.writes_json(nb))
    assert saved_code_cells(path) == ["a = 1\nb = 2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"{not json", "is not a Jupyter notebook: invalid JSON", id="invalid-json"),
        pytest.param(b"[1, 2]", "has no nbformat version", id="json-list"),
        pytest.param(b'{"cells": []}', "has no nbformat version", id="no-version"),
        pytest.param(b'{"nbformat": 5, "cells": []}', "uses nbformat 5", id="future-format"),
        pytest.param(b'{"nbformat": 4}', "has no list of cells", id="no-cells"),
        pytest.param(
            b'{"nbformat": 4, "cells": [{"cell_type": "code", "source": 3}]}',
            "cell 0 has no text source",
            id="bad-source",
        ),
        pytest.param(b"\xff\xfe\x00x", "cannot read the notebook", id="not-utf8"),
        pytest.param(b"# %%\nx = 1\n", "invalid JSON", id="jupytext-script"),
    ],
)
def test_saved_code_cells_rejects_invalid_files(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=message) as caught:
        saved_code_cells(path)
    assert str(path) in str(caught.value)


def test_saved_code_cells_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.ipynb"
    with pytest.raises(InvalidInputError, match="no such file") as caught:
        saved_code_cells(path)
    assert str(path) in str(caught.value)


def test_saved_code_cells_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read the notebook"):
        saved_code_cells(tmp_path)


# --- find_notebook_path ---------------------------------------------------------------------


def test_find_notebook_path_is_none_outside_jupyter() -> None:
    assert find_notebook_path() is None
    assert find_notebook_path({}) is None


def test_find_notebook_path_mlnb_env_is_taken_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLNB_NOTEBOOK", "runs/nb.ipynb")  # need not exist yet
    assert find_notebook_path({}) == Path.cwd() / "runs" / "nb.ipynb"


def test_find_notebook_path_mlnb_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = write_notebook(tmp_path / "other.ipynb", [])
    monkeypatch.setenv("MLNB_NOTEBOOK", str(tmp_path / "mine.ipynb"))
    monkeypatch.setenv("JPY_SESSION_NAME", str(other))
    assert find_notebook_path({"__vsc_ipynb_file__": str(other)}) == tmp_path / "mine.ipynb"


def test_find_notebook_path_vscode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_notebook(tmp_path / "vs.ipynb", [])
    monkeypatch.setenv("JPY_SESSION_NAME", str(write_notebook(tmp_path / "jpy.ipynb", [])))
    assert find_notebook_path({"__vsc_ipynb_file__": str(path)}) == path


@pytest.mark.parametrize("value", ["/nowhere/Untitled-1.ipynb", 42, None, ""])
def test_find_notebook_path_vscode_unusable_values_fall_through(value: object) -> None:
    assert find_notebook_path({"__vsc_ipynb_file__": value}) is None


def test_find_notebook_path_session_name_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # JupyterLab and Notebook 7 name the session: the server joins the notebook's folder
    path = write_notebook(tmp_path / "lab" / "nb.ipynb", [])
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))
    assert find_notebook_path({}) == path


@pytest.mark.parametrize("api_path", ["nb.ipynb", "sub/dir/nb.ipynb"])
def test_find_notebook_path_session_name_relative_to_server_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api_path: str
) -> None:
    # a client that sends no session name: the server's API path, and the kernel starts in
    # the notebook's folder
    root = tmp_path / "root"
    path = write_notebook(root / api_path, [])
    monkeypatch.chdir(path.parent)
    monkeypatch.setenv("JPY_SESSION_NAME", api_path)
    assert find_notebook_path({}) == path


def test_find_notebook_path_session_name_relative_needs_matching_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_notebook(tmp_path / "elsewhere" / "nb.ipynb", [])
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setenv("JPY_SESSION_NAME", "sub/nb.ipynb")
    assert find_notebook_path({}) is None


def test_find_notebook_path_stale_session_name_falls_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the notebook was renamed after the kernel started: the variable is not updated
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "old-name.ipynb"))
    assert find_notebook_path({}) is None


def test_find_notebook_path_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(notebook, "_current_kernel", broken)
    monkeypatch.setattr(notebook, "_shell_namespace", broken)
    assert find_notebook_path() is None


def test_find_notebook_path_asks_sessions_api_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [])
    asked: list[str] = []

    def fake_api(namespace: object) -> Path:
        asked.append("api")
        return path

    monkeypatch.setattr(notebook, "_from_sessions_api", fake_api)
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))
    assert find_notebook_path({}) == path
    assert asked == []


# --- the sessions API, piece by piece -------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "url"),
    [
        (
            {"port": 8888, "hostname": "localhost", "base_url": "/"},
            "http://127.0.0.1:8888/api/sessions",
        ),
        (
            {"port": 8888, "hostname": "0.0.0.0", "base_url": "/lab/x/"},
            "http://127.0.0.1:8888/lab/x/api/sessions",
        ),
        (
            {"port": 8888, "hostname": "example.org", "base_url": ""},
            "http://127.0.0.1:8888/api/sessions",
        ),
        (
            {"port": 9, "hostname": "::1", "base_url": "/", "secure": True},
            "https://[::1]:9/api/sessions",
        ),
        ({"port": 0, "sock": "/tmp/jupyter.sock", "base_url": "/"}, None),
        ({"port": "8888"}, None),
    ],
)
def test_sessions_url_is_always_loopback(info: dict[str, Any], url: str | None) -> None:
    assert notebook._sessions_url(info) == url


def test_session_notebook_matches_kernel_id(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "sub" / "nb.ipynb", [])
    sessions = [
        {"path": "console-1", "type": "console", "kernel": {"id": "k1"}},
        {"path": "other.ipynb", "type": "notebook", "kernel": {"id": "k2"}},
        {"path": "/sub/nb.ipynb", "type": "notebook", "kernel": {"id": "k1"}},
    ]
    assert notebook._session_notebook(sessions, "k1", tmp_path) == path
    assert notebook._session_notebook(sessions, "k2", tmp_path) is None  # no such file
    assert notebook._session_notebook({"not": "a list"}, "k1", tmp_path) is None
    old_style = [{"notebook": {"path": "sub/nb.ipynb"}, "kernel": {"id": "k3"}}]
    assert notebook._session_notebook(old_style, "k3", tmp_path) == path


def test_running_servers_skips_dead_and_broken_files(tmp_path: Path) -> None:
    (tmp_path / "jpserver-1.json").write_text(json.dumps({"pid": os.getpid(), "port": 1}))
    (tmp_path / "jpserver-2.json").write_text("{half written")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (tmp_path / "jpserver-3.json").write_text(json.dumps({"pid": int(dead.stdout), "port": 3}))
    servers = notebook._running_servers([tmp_path, tmp_path, tmp_path / "missing"])
    assert servers == [{"pid": os.getpid(), "port": 1}]
    assert (tmp_path / "jpserver-3.json").exists()  # never deleted


def test_sessions_api_never_hangs_on_a_silent_server(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        info = {"port": silent.getsockname()[1], "root_dir": str(tmp_path), "token": "t"}
        start = time.monotonic()
        assert notebook._notebook_from_sessions("k", [info, info, info], timeout=0.3) is None
        assert time.monotonic() - start < 1.0


def test_sessions_api_skipped_outside_a_kernel() -> None:
    assert notebook._current_kernel() is None


# --- end to end: a real Jupyter server and kernels ------------------------------------------


class Server:
    """A `jupyter server` subprocess on loopback, with its own runtime dir and token."""

    def __init__(self, root: Path, runtime: Path, log: Path) -> None:
        self.root, self.runtime, self.token = root, runtime, secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if k not in ("JPY_SESSION_NAME",)}
        env["JUPYTER_RUNTIME_DIR"] = str(runtime)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyter_server",
                    "--ServerApp.ip=127.0.0.1",
                    "--ServerApp.port=0",
                    "--ServerApp.port_retries=0",
                    f"--IdentityProvider.token={self.token}",
                    f"--ServerApp.root_dir={root}",
                    "--allow-root",
                    "--no-browser",
                    "--ServerApp.open_browser=False",
                ],
                cwd=root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        info_file = runtime / f"jpserver-{self.proc.pid}.json"
        deadline = time.monotonic() + 60
        while not info_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"jupyter server did not start:\n{log.read_text()}")
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written in one go, but let it land
        self.port = json.loads(info_file.read_text())["port"]

    def call(self, method: str, path: str, body: object = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=60) as response:
            text = response.read()
        return json.loads(text) if text else None

    def run_in_kernel(self, kernel_id: str, code: str) -> str:
        """Run ``code`` in the kernel; its stdout (an error fails the test)."""
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient(
            connection_file=str(self.runtime / f"kernel-{kernel_id}.json")
        )
        client.load_connection_file()
        client.start_channels()
        out: list[str] = []
        try:
            client.wait_for_ready(timeout=60)

            def on_output(msg: dict[str, Any]) -> None:
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    out.append("\n".join(msg["content"]["traceback"]))

            reply = client.execute_interactive(code, output_hook=on_output, timeout=60)
        finally:
            client.stop_channels()
        assert reply["content"]["status"] == "ok", "".join(out)
        return "".join(out)

    def stop(self) -> None:
        try:
            for session in self.call("GET", "api/sessions"):
                self.call("DELETE", f"api/sessions/{session['id']}")
        except Exception:
            pass  # stopping the server below shuts its kernels down too
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def jupyter_server(tmp_path: Path) -> Iterator[Server]:
    root, runtime = tmp_path / "root", tmp_path / "runtime"
    root.mkdir()
    runtime.mkdir()
    server = Server(root, runtime, tmp_path / "server.log")
    try:
        yield server
    finally:
        server.stop()


PROBE = """
import json, os, time
from mlnb.capture.notebook import find_notebook_path, saved_code_cells
start = time.monotonic()
path = find_notebook_path()
print(json.dumps({"JPY_SESSION_NAME": os.environ.get("JPY_SESSION_NAME"), "cwd": os.getcwd(),
                  "path": str(path), "cells": saved_code_cells(path) if path else None,
                  "seconds": time.monotonic() - start}))
"""


@pytest.mark.slow
def test_find_notebook_path_in_real_jupyter_server_kernels(jupyter_server: Server) -> None:
    root = jupyter_server.root
    write_notebook(root / "nb.ipynb", [("code", "x = 1")])
    write_notebook(root / "sub" / "nb2.ipynb", [("markdown", "hi"), ("code", "y = 2")])

    # A client that names no session: JPY_SESSION_NAME is the API path, relative to the root.
    plain = jupyter_server.call(
        "POST",
        "api/sessions",
        {"path": "nb.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
    )
    # JupyterLab's way: a placeholder path in the notebook's folder and the file name as the
    # session name, then a PATCH to the real path. JPY_SESSION_NAME is then absolute.
    lab = jupyter_server.call(
        "POST",
        "api/sessions",
        {
            "path": f"sub/{uuid.uuid4()}",
            "name": "nb2.ipynb",
            "type": "notebook",
            "kernel": {"name": "python3"},
        },
    )
    jupyter_server.call("PATCH", f"api/sessions/{lab['id']}", {"path": "sub/nb2.ipynb"})

    seen = json.loads(jupyter_server.run_in_kernel(plain["kernel"]["id"], PROBE))
    assert seen["JPY_SESSION_NAME"] == "nb.ipynb"
    assert seen["path"] == str(root / "nb.ipynb")
    assert seen["cells"] == ["x = 1"]

    seen = json.loads(jupyter_server.run_in_kernel(lab["kernel"]["id"], PROBE))
    assert seen["JPY_SESSION_NAME"] == str(root / "sub" / "nb2.ipynb")
    assert seen["cwd"] == str(root / "sub")
    assert seen["path"] == str(root / "sub" / "nb2.ipynb")
    assert seen["cells"] == ["y = 2"]

    # Renamed after the kernel started: JPY_SESSION_NAME is stale (the server cannot change
    # a running kernel's environment), so the sessions API answers.
    (root / "nb.ipynb").rename(root / "renamed.ipynb")
    jupyter_server.call("PATCH", f"api/sessions/{plain['id']}", {"path": "renamed.ipynb"})
    seen = json.loads(jupyter_server.run_in_kernel(plain["kernel"]["id"], PROBE))
    assert seen["JPY_SESSION_NAME"] == "nb.ipynb"
    assert seen["path"] == str(root / "renamed.ipynb")
    assert seen["cells"] == ["x = 1"]
    assert seen["seconds"] < notebook.SESSIONS_TIMEOUT_S + 0.5


def test_sessions_api_skipped_when_ipykernel_is_imported_but_not_running() -> None:
    # regression: importing ipykernel (as nbclient-based tests may) does not make a kernel
    import ipykernel.kernelapp  # noqa: F401

    assert notebook._current_kernel() is None


# --- jobs and executors: papermill, nbconvert ------------------------------------------------

NOTEBOOKS = REPO / "tests" / "notebooks"


def test_executed_cells_reads_an_executed_notebook_in_order() -> None:
    """Issue 11 item 5: what a headless run executed is read from its output notebook
    (papermill's metadata, else nbclient's execution counts), in notebook order."""
    pm = {"start_time": "2026-01-02T03:04:05.5", "end_time": "2026-01-02T03:04:06.5"}
    error = nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="", traceback=[])
    cells = [
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("lr = 0.1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("lr = 0.5", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("x = 1 / 0", execution_count=3, outputs=[error]),
        nbformat.v4.new_code_cell("never = True"),
        nbformat.v4.new_code_cell("   "),
    ]  # fmt: skip
    for cell, status in zip(cells[1:], ["completed", "completed", "failed", "pending", "pending"],
                            strict=True):  # fmt: skip
        cell.metadata["papermill"] = {**pm, "status": status}
    cells[1].execution_count, cells[2].execution_count = 1, 2
    nb = nbformat.v4.new_notebook(cells=cells)
    ran = notebook.executed_cells(nb)
    assert [(c.execution_count, c.source, c.error) for c in ran] == [
        (1, "lr = 0.1", None), (2, "lr = 0.5", None), (3, "x = 1 / 0", "ZeroDivisionError")
    ]  # fmt: skip
    assert ran[0].started == 1767323045.5 and ran[0].ended == 1767323046.5  # papermill: UTC
    own = notebook.executed_cells(nb, skip_tags=("injected-parameters",))
    assert [c.source for c in own] == ["lr = 0.1", "x = 1 / 0"]
    # nbclient without papermill: the execution count says a cell ran
    plain = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("a = 1", execution_count=1,
                                  metadata={"execution": {
                                      "iopub.execute_input": "2026-01-02T03:04:05.000Z",
                                      "shell.execute_reply": "2026-01-02T03:04:05.250Z"}}),
        nbformat.v4.new_code_cell("b = 2"),
    ])  # fmt: skip
    [only] = notebook.executed_cells(plain)
    assert (only.source, only.started, only.ended) == ("a = 1", 1767323045.0, 1767323045.25)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["python", "/v/bin/jupyter-nbconvert", "--to", "notebook", "--execute", "nb.ipynb"],
            "nb.ipynb",
        ),
        (
            [
                "python",
                "/v/bin/jupyter-nbconvert",
                "--execute",
                "--output",
                "old.ipynb",
                "nb.ipynb",
            ],
            "nb.ipynb",
        ),
        (
            ["/v/bin/python", "/v/bin/papermill", "nb.ipynb", "old.ipynb", "-p", "a", "1"],
            "nb.ipynb",
        ),
        (["python", "-m", "papermill", "old.ipynb", "out.ipynb"], "old.ipynb"),
        (["python", "/v/bin/jupyter-execute", "nb.ipynb"], "nb.ipynb"),
        (["python", "-m", "nbconvert", "--execute", "nb.ipynb", "sub/other.ipynb"], "nb.ipynb"),
        (["python", "/v/bin/jupyter-nbconvert", "--execute", "nb.ipynb", "old.ipynb"], None),
        (["python", "/v/bin/jupyter-lab", "nb.ipynb"], None),  # a server: not an executor
        (["python", "train.py", "nb.ipynb"], None),
        (["python", "/v/bin/jupyter-nbconvert", "--execute", "missing.ipynb"], None),
    ],
)
def test_notebook_from_an_executors_command_line(
    tmp_path: Path, argv: list[str], expected: str | None
) -> None:
    """Issue 11 item 5: a kernel started by `jupyter nbconvert --execute`, papermill or
    `jupyter execute` finds its notebook on its parent's command line; several candidates
    are told apart by the kernel's folder (the notebook's), else there is no answer."""
    for name in ("nb.ipynb", "old.ipynb", "sub/other.ipynb"):
        write_notebook(tmp_path / name, [])
    found = notebook._notebook_from_argv(argv, cwd=tmp_path, kernel_cwd=tmp_path)
    assert found == (None if expected is None else tmp_path / expected)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sweep_step", "job_train", "job_fail"])
def test_a_job_records_linear_and_the_executed_script_without_track_end(
    store: Any, name: str
) -> None:
    """Issue 11 item 5: a papermill job runs its notebook top to bottom, but without a
    `%track end` it recorded no linearity and no executed.py (and a notebook without the
    magics never could)."""
    from mlnb.jobs.runner import run_notebook

    path = NOTEBOOKS / f"{name}.ipynb"
    params = {"score": 0.25} if name == "sweep_step" else {}
    result = run_notebook(path, parameters=params, store=store)
    rec = store.get_run(result.run_id)
    assert rec.linearity == "linear", rec.linearity_detail
    assert rec.notebook == str(path)
    script = Path(rec.artifact_path("notebook/executed.py")).read_text()
    compile(script, "executed.py", "exec")
    saved = saved_code_cells(path)
    assert saved[-1].strip() in script or name == "job_fail"  # the last cell ran
    if name == "sweep_step":
        assert "score = 0.25" in script and "(not in the saved notebook)" in script  # injected
    if name == "job_fail":
        assert result.exit_code == 1 and "raised ZeroDivisionError" in script
        assert "never = True" not in script  # the cell after the failure did not run


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["nbconvert", "papermill"])
def test_a_notebook_run_by_nbconvert_or_papermill_knows_its_notebook(
    tmp_path: Path, executor: str
) -> None:
    """Issue 11 item 5: a notebook executed by `jupyter nbconvert --execute` (or bare
    papermill) with `%track start` recorded linearity `unknown`: the kernel could not tell
    which notebook it ran. The executor's command line names it."""
    from mlnb.store import Store

    path = tmp_path / "project" / "linear.ipynb"
    path.parent.mkdir()
    path.write_bytes((NOTEBOOKS / "linear.ipynb").read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLNB_", "JPY_"))}
    env["MLNB_STORE"] = str(tmp_path / "store")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    bin_dir = Path(sys.executable).parent
    if executor == "nbconvert":
        argv = [str(bin_dir / "jupyter-nbconvert"), "--to", "notebook", "--execute",
                "linear.ipynb", "--output", "out.ipynb"]  # fmt: skip
    else:
        argv = [str(bin_dir / "papermill"), "linear.ipynb", "out.ipynb", "--cwd", "."]
    proc = subprocess.run(argv, cwd=path.parent, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Store(tmp_path / "store") as st:
        [run_id] = st.search_runs()["run_id"]
        rec = st.get_run(run_id)
    assert rec.notebook == str(path)
    assert rec.linearity == "linear", rec.linearity_detail


def test_executed_script_example_in_docs_is_what_it_writes() -> None:
    """Issue 11 item 18: docs/lineage.md shows an executed.py as output (its example is
    not run); it must stay what executed_script writes for the notebook it describes."""
    from tests.test_docs_examples import REPO, parse_blocks

    page = REPO / "docs" / "lineage.md"
    (shown,) = [
        b.code
        for b in parse_blocks(page.read_text(encoding="utf-8"), "docs/lineage.md")
        if b.code.startswith("# Cells executed while the run was active")
    ]
    saved = [
        "import numpy as np",
        "%track start",
        'data = load("train.csv")',
        "for fold in range(5):\n    %time fit(data, fold)",
        "%track end",
    ]
    executed = [
        ExecutedCell(3, saved[1], 1.0, 2.0, None),
        ExecutedCell(4, saved[2], 2.0, 3.0, "FileNotFoundError"),
        ExecutedCell(5, 'data = load("data/train.csv")', 3.0, 4.0, None),
        ExecutedCell(6, saved[3], 4.0, 5.0, None),
        ExecutedCell(7, saved[4], 5.0, None, None),
    ]
    assert executed_script(executed, saved) == shown
