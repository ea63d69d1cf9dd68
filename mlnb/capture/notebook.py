"""Notebook lineage: which notebook a kernel belongs to, what that notebook holds on disk,
and whether the cells a run executed follow it from top to bottom.

:func:`find_notebook_path` asks, in order, ``$MLNB_NOTEBOOK``, VS Code's
``__vsc_ipynb_file__``, ``$JPY_SESSION_NAME``, the command line of the process that started
the kernel (``jupyter nbconvert --execute``, papermill, ``jupyter execute``) and the Jupyter
server's sessions API; it never raises and never waits more than about a second.
:func:`saved_code_cells` reads the code cells of the saved ``.ipynb``. :func:`linearity` and
:func:`executed_script` are pure: they compare the cells recorded by the ``%track`` magics
(:class:`ExecutedCell`) with those sources and render them as a script;
:func:`executed_cells` reads the same records from a notebook papermill or nbclient
executed. The rules are in ``docs/lineage.md``.

Only the standard library is imported here; ``ipykernel``, ``jupyter_core``, ``IPython``,
``psutil`` and (for notebooks older than format 4) ``nbformat`` are imported inside the
functions that need them.
"""

from __future__ import annotations

import bisect
import datetime as dt
import http.client
import json
import os
import re
import ssl
import sys
import time
import urllib.request
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlnb.conventions import ENV_NOTEBOOK
from mlnb.errors import InvalidInputError

__all__ = [
    "SESSIONS_TIMEOUT_S",
    "ExecutedCell",
    "Linearity",
    "executed_cells",
    "executed_script",
    "find_notebook_path",
    "linearity",
    "match_cells",
    "saved_code_cells",
]

SESSIONS_TIMEOUT_S = 1.0

# Cell magics whose body is Python that runs once as written: their first line becomes a
# comment and the body stays code. The body of any other cell magic (%%bash, %%writefile,
# %%html, %%sql, ...) is not Python to run, so the whole cell becomes a comment.
PYTHON_BODY_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun"})

_MAX_RESPONSE_BYTES = 16 << 20
# Programs that execute the notebooks named on their command line, each in a kernel of its
# own (script name, or `python -m` module): a kernel they start finds its notebook there.
_EXECUTOR_SCRIPTS = {"jupyter-nbconvert": "nbconvert", "jupyter-execute": "nbclient",
                     "papermill": "papermill"}  # fmt: skip
_EXECUTOR_MODULES = frozenset({"nbconvert", "nbclient", "papermill"})
_OUTPUT_OPTIONS = frozenset({"--output", "-o", "--output-dir"})  # their value is no input
_CONNECTION_FILE = re.compile(r"kernel-(.+)\.json")
_CELL_MAGIC = re.compile(r"%%([\w.-]+)")
# Lines only IPython understands: %magic, !shell, ?help / help?, `x = %magic`, `x = !cmd`.
_IPYTHON_LINE = re.compile(
    r"""(?x)
    [%!?]                                 # escaped command or help at the start
    | [\w.]+ \s* \?{1,2} \s* $            # obj? and obj??
    | [\w.,\[\]()\s*]+? = \s* [%!]        # assignment from a magic or a shell command
    """
)
_SCRIPT_HEADER = (
    "# Cells executed while the run was active, in execution order (recorded by mlnb).\n"
    "# Lines only IPython understands (%magic, !shell, ?help) are kept as comments."
)


@dataclass(frozen=True)
class ExecutedCell:
    """One cell the kernel executed while a run was active.

    ``execution_count`` is the ``In [n]`` number (``None`` when the cell was run without
    storing history); ``source`` is the raw cell text as the front end sent it
    (``info.raw_cell``); ``started`` and ``ended`` are Unix times (``ended`` is ``None`` for
    a cell still running when the run ended); ``error`` is the class name of the exception
    the cell raised, else ``None``.
    """

    execution_count: int | None
    source: str
    started: float
    ended: float | None
    error: str | None


@dataclass(frozen=True)
class Linearity:
    """The verdict of :func:`linearity`.

    ``verdict`` is ``"linear"``, ``"out-of-order"`` or ``"unknown"`` (nothing saved to
    compare with). ``reasons`` are sentences saying what broke the order, one per event, in
    execution order. ``cells`` are the 0-based code-cell indices of the notebook that the
    reasons name (markdown and raw cells are not counted), sorted.
    """

    verdict: str
    reasons: list[str]
    cells: list[int]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: ``{"verdict": ..., "reasons": [...], "cells": [...]}``."""
        return {"verdict": self.verdict, "reasons": list(self.reasons), "cells": list(self.cells)}


# --- where is the notebook ------------------------------------------------------------------


def find_notebook_path(user_ns: Mapping[str, Any] | None = None) -> Path | None:
    """The path of the notebook the current kernel belongs to, or ``None``.

    Tried in order, the first answer wins:

    1. ``$MLNB_NOTEBOOK`` (set by mlnb's headless runner), taken as given;
    2. ``__vsc_ipynb_file__`` in ``user_ns`` (VS Code sets it), if that file exists;
    3. ``$JPY_SESSION_NAME`` (Jupyter Server 2 sets it for kernels started for a notebook):
       an absolute path, or a path relative to the server's root, if that file exists;
    4. the command line of the process that started this kernel, when that process is an
       executor (``jupyter nbconvert --execute``, papermill, ``jupyter execute``) naming one
       existing notebook (see :func:`_notebook_from_argv`);
    5. the sessions API of the Jupyter servers running on this machine, asked on loopback
       only, for the session that holds this kernel (at most :data:`SESSIONS_TIMEOUT_S`
       seconds in all), if that file exists.

    ``user_ns`` defaults to the namespace of the running IPython shell, if any. Returns
    ``None`` in plain IPython, in a script, or when no source answers; never raises.
    """
    try:
        namespace = _shell_namespace() if user_ns is None else user_ns
    except Exception:  # a broken shell must not break the caller
        namespace = {}
    sources = (_from_mlnb_env, _from_vscode, _from_session_name, _from_executor, _from_sessions_api)
    for source in sources:
        try:
            path = source(namespace)
        except Exception:  # a source that fails is skipped: this function never raises
            continue
        if path is not None:
            return path
    return None


def _shell_namespace() -> Mapping[str, Any]:
    if "IPython" not in sys.modules:  # never import IPython just to look
        return {}
    from IPython import get_ipython

    shell = get_ipython()
    return {} if shell is None else shell.user_ns


def _existing_file(path: Path) -> Path | None:
    return Path(os.path.abspath(path)) if path.is_file() else None


def _from_mlnb_env(user_ns: Mapping[str, Any]) -> Path | None:
    value = os.environ.get(ENV_NOTEBOOK, "")
    return Path(os.path.abspath(os.path.expanduser(value))) if value else None


def _from_vscode(user_ns: Mapping[str, Any]) -> Path | None:
    value = user_ns.get("__vsc_ipynb_file__")
    if isinstance(value, (str, os.PathLike)) and os.fspath(value):
        return _existing_file(Path(value))
    return None


def _from_session_name(user_ns: Mapping[str, Any]) -> Path | None:
    value = os.environ.get("JPY_SESSION_NAME", "")
    return _resolve_session_name(value, Path.cwd()) if value else None


def _resolve_session_name(value: str, cwd: Path) -> Path | None:
    """``$JPY_SESSION_NAME`` as an existing file.

    Jupyter Server sets it to ``os.path.join(<notebook's folder>, name)`` (absolute) when the
    client names the session, as JupyterLab and Notebook 7 do, and to the session's API path
    (relative to the server's root) when it does not. The kernel does not know the root, but
    it starts in the notebook's folder: a relative ``a/b/nb.ipynb`` is ``cwd / nb.ipynb``
    when ``cwd`` ends with ``a/b``.
    """
    path = Path(value)
    if path.is_absolute():
        return _existing_file(path)
    found = _existing_file(cwd / path)
    parent = path.parent.parts
    if found is None and parent and cwd.parts[-len(parent) :] == parent:
        found = _existing_file(cwd / path.name)
    return found


def _from_executor(user_ns: Mapping[str, Any]) -> Path | None:
    """The notebook named by the command line of this kernel's parent process, when that
    process executes notebooks (nbconvert, papermill, nbclient's ``jupyter execute``)."""
    if _current_kernel_app() is None:  # not a kernel: the parent is not its executor
        return None
    import psutil

    parent = psutil.Process().parent()
    if parent is None:
        return None
    with parent.oneshot():
        argv, cwd = parent.cmdline(), parent.cwd()
    return _notebook_from_argv(argv, cwd=Path(cwd), kernel_cwd=Path.cwd())


def _notebook_from_argv(argv: Sequence[str], *, cwd: Path, kernel_cwd: Path) -> Path | None:
    """The notebook an executor's command line ``argv`` (run in ``cwd``) names, or None.

    The executor is recognised by its script (``jupyter-nbconvert``, ``papermill``,
    ``jupyter-execute``) or ``python -m`` module among the first arguments; anything else
    (a server, a script) is not one. The candidates are its arguments that end in
    ``.ipynb``, are not an option's output (``--output``, ``-o``, ``--output-dir``) and
    name existing files. papermill's is its first (the input; the second is its output);
    otherwise one candidate is the notebook, and several are told apart by the kernel's
    working directory, which nbconvert sets to the notebook's folder. No single answer:
    None.
    """
    program: str | None = None
    rest: Sequence[str] = ()
    for i, arg in enumerate(argv[:3]):
        name = Path(arg).name.removesuffix(".exe")
        if name in _EXECUTOR_SCRIPTS:
            program, rest = _EXECUTOR_SCRIPTS[name], argv[i + 1 :]
            break
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1] in _EXECUTOR_MODULES:
            program, rest = argv[i + 1], argv[i + 2 :]
            break
    if program is None:
        return None
    named: list[str] = []
    for previous, arg in zip(["", *rest], rest, strict=False):
        if arg.endswith(".ipynb") and not arg.startswith("-") and previous not in _OUTPUT_OPTIONS:
            named.append(arg)
    if program == "papermill":
        named = named[:1]
    found = [p for p in (_existing_file(cwd / os.path.expanduser(n)) for n in named) if p]
    if len(found) > 1:
        found = [p for p in found if p.parent == Path(os.path.abspath(kernel_cwd))]
    return found[0] if len(found) == 1 else None


def _from_sessions_api(user_ns: Mapping[str, Any]) -> Path | None:
    kernel = _current_kernel()
    if kernel is None:
        return None
    kernel_id, connection_dir = kernel
    servers = _running_servers([connection_dir, *_default_runtime_dirs()])
    return _notebook_from_sessions(kernel_id, servers, timeout=SESSIONS_TIMEOUT_S)


def _current_kernel_app() -> Any:
    """The running ipykernel application of this process, or None (never imports it)."""
    if "ipykernel.kernelapp" not in sys.modules:  # not a kernel: never import ipykernel
        return None
    from ipykernel.kernelapp import IPKernelApp

    return IPKernelApp.instance() if IPKernelApp.initialized() else None


def _current_kernel() -> tuple[str, Path] | None:
    """The id of the kernel this process runs, and the folder of its connection file."""
    if _current_kernel_app() is None:
        return None
    from ipykernel.connect import get_connection_file

    connection_file = Path(get_connection_file())
    match = _CONNECTION_FILE.fullmatch(connection_file.name)  # jupyter_server's naming
    return None if match is None else (match.group(1), connection_file.parent)


def _default_runtime_dirs() -> list[Path]:
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        return []
    return [Path(jupyter_runtime_dir())]


def _running_servers(runtime_dirs: Iterable[Path]) -> list[dict[str, Any]]:
    """The ``jpserver-*.json`` files (what ``jupyter server list`` reads) of live servers.

    Read with the standard library rather than ``jupyter_server.serverapp``, which takes
    seconds to import and need not be installed in the kernel's environment. Stale files
    are skipped, never deleted.
    """
    servers: list[dict[str, Any]] = []
    seen: set[Path] = set()
    for folder in runtime_dirs:
        try:
            files = sorted(folder.glob("jpserver-*.json"))
        except OSError:
            continue
        for file in files:
            if file in seen:
                continue
            seen.add(file)
            try:
                info = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # unreadable, or being written right now
                continue
            if isinstance(info, dict) and _pid_alive(info.get("pid")):
                servers.append(info)
    return servers


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there; let the request tell
        return True
    try:
        os.kill(pid, 0)
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _notebook_from_sessions(
    kernel_id: str, servers: Iterable[Mapping[str, Any]], *, timeout: float
) -> Path | None:
    """Ask each server's ``GET api/sessions`` for the session holding ``kernel_id``, within
    ``timeout`` seconds in all; the notebook is the server's root joined with the session's
    path, if that file exists."""
    deadline = time.monotonic() + timeout
    for info in servers:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        url = _sessions_url(info)
        root = info.get("root_dir") or info.get("notebook_dir")
        if url is None or not isinstance(root, str):
            continue
        try:
            sessions = _get_json(url, token=str(info.get("token") or ""), timeout=remaining)
        except (OSError, ValueError, http.client.HTTPException):
            continue
        path = _session_notebook(sessions, kernel_id, Path(root))
        if path is not None:
            return path
    return None


def _sessions_url(info: Mapping[str, Any]) -> str | None:
    """``api/sessions`` of a server, always on the loopback interface (the token is never
    sent elsewhere); ``None`` for a server on a Unix socket."""
    port = info.get("port")
    if info.get("sock") or not isinstance(port, int) or not 0 < port < 65536:
        return None
    host = "[::1]" if str(info.get("hostname", "")).strip("[]") == "::1" else "127.0.0.1"
    scheme = "https" if info.get("secure") else "http"
    base = "/" + str(info.get("base_url") or "").strip("/") + "/"
    return f"{scheme}://{host}:{port}{base.replace('//', '/')}api/sessions"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could carry the token off loopback: treat it as a failure."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _get_json(url: str, *, token: str, timeout: float) -> Any:
    headers = {"Authorization": f"token {token}"} if token else {}
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}), _NoRedirect()]
    if url.startswith("https:"):
        # Loopback only, where a server's certificate is usually self-signed.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    with opener.open(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
        return json.loads(response.read(_MAX_RESPONSE_BYTES))


def _session_notebook(sessions: Any, kernel_id: str, root: Path) -> Path | None:
    """The existing file of a session of ``kernel_id``, notebook sessions first."""
    if not isinstance(sessions, list):
        return None
    found: list[tuple[bool, Path]] = []
    for session in sessions:
        if not isinstance(session, dict):
            continue
        kernel = session.get("kernel")
        if not isinstance(kernel, dict) or kernel.get("id") != kernel_id:
            continue
        api_path = session.get("path")
        if not isinstance(api_path, str):  # servers before 1.0 nested it under "notebook"
            api_path = (session.get("notebook") or {}).get("path")
        if isinstance(api_path, str) and api_path.strip("/"):
            path = _existing_file(root.joinpath(*api_path.strip("/").split("/")))
            if path is not None:
                found.append((session.get("type") != "notebook", path))
    return min(found)[1] if found else None


# --- what the notebook holds ----------------------------------------------------------------


def saved_code_cells(path: str | os.PathLike[str]) -> list[str]:
    """The sources of the code cells of the notebook saved at ``path``, in notebook order.

    Reads nbformat 4 (any minor version) with the standard library, and older formats
    through ``nbformat``'s converter. Raises :class:`~mlnb.errors.InvalidInputError`, naming
    the path, when the file is missing, unreadable, not JSON or not a notebook.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(
            f"cannot read the notebook {file}: no such file (save the notebook, or check "
            f"${ENV_NOTEBOOK})"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"cannot read the notebook {file}: {error}") from error
    try:
        notebook = json.loads(text)
    except ValueError as error:
        raise InvalidInputError(
            f"{file} is not a Jupyter notebook: invalid JSON ({error})"
        ) from None
    major = notebook.get("nbformat") if isinstance(notebook, dict) else None
    if not isinstance(major, int) or isinstance(major, bool):
        raise InvalidInputError(f"{file} is not a Jupyter notebook: it has no nbformat version")
    if major > 4:
        raise InvalidInputError(f"{file} uses nbformat {major}; mlnb reads nbformat 4 and older")
    if major < 4:
        notebook = _upgrade(text, file)
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        raise InvalidInputError(f"{file} is not a valid notebook: it has no list of cells")
    sources: list[str] = []
    for number, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise InvalidInputError(f"{file} is not a valid notebook: cell {number} is not a dict")
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise InvalidInputError(
                f"{file} is not a valid notebook: cell {number} has no text source"
            )
        sources.append(source)
    return sources


def _upgrade(text: str, file: Path) -> dict[str, Any]:
    """A notebook of format 1–3 converted to format 4, by nbformat (imported only here)."""
    from nbformat import converter, reader

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            notebook = converter.convert(reader.reads(text), 4)  # type: ignore[no-untyped-call]
    except Exception as error:  # nbformat raises a variety of errors on odd old files
        raise InvalidInputError(f"{file} is not a readable notebook: {error}") from error
    return dict(notebook)


def executed_cells(
    notebook: Mapping[str, Any], *, skip_tags: Collection[str] = ()
) -> list[ExecutedCell]:
    """The code cells a notebook executed headless ran, in notebook order (the order a
    headless run executes them), from the executed notebook itself (papermill's or
    nbclient's output, as a dict or ``NotebookNode``).

    A cell ran when papermill's ``metadata.papermill.status`` is not ``pending`` (a
    ``running`` cell never ended: the kernel died, or it timed out), or, without papermill,
    when it has an execution count. Times come from papermill's ``start_time`` /
    ``end_time`` (UTC) or nbclient's ``metadata.execution``, else 0; ``error`` is the
    ``ename`` of the cell's error output. Blank cells, which kernels do not execute, and
    cells with a tag in ``skip_tags`` (papermill's ``injected-parameters``) are left out.
    """
    cells: list[ExecutedCell] = []
    for cell in notebook.get("cells") or []:
        if not isinstance(cell, Mapping) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source") or ""
        source = "".join(source) if isinstance(source, list) else str(source)
        metadata = cell.get("metadata") or {}
        if not source.strip() or set(metadata.get("tags") or ()) & set(skip_tags):
            continue
        papermill = metadata.get("papermill") or {}
        execution = metadata.get("execution") or {}
        status = papermill.get("status")
        count = cell.get("execution_count")
        if status == "pending" or (status is None and count is None):
            continue
        started = _utc_time(papermill.get("start_time") or execution.get("iopub.execute_input"))
        ended = _utc_time(papermill.get("end_time") or execution.get("shell.execute_reply"))
        errors = [
            o.get("ename") for o in cell.get("outputs") or [] if o.get("output_type") == "error"
        ]
        cells.append(
            ExecutedCell(
                execution_count=count if isinstance(count, int) else None,
                source=source,
                started=started or 0.0,
                ended=None if status == "running" else (ended or started or 0.0),
                error=str(errors[0]) if errors else None,
            )
        )
    return cells


def _utc_time(text: object) -> float | None:
    """An ISO time from a notebook's metadata as a Unix time; without a zone it is UTC
    (papermill writes ``datetime.utcnow()``)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


# --- does the run follow the notebook -------------------------------------------------------


def normalize_source(source: str) -> str:
    """The form sources are compared in: line endings as ``\\n``, trailing whitespace
    removed from every line, blank lines removed at the start and end."""
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def match_cells(executed: Sequence[ExecutedCell], saved: Sequence[str] | None) -> list[int | None]:
    """For each executed cell, the index of the saved code cell it ran, or ``None``.

    Sources are compared after :func:`normalize_source`. When a source occurs several times
    in the notebook, the executed cell is matched with the first occurrence at or after the
    cell matched before it, else with the first occurrence. Blank sources, and sources not
    in the notebook, match nothing; without a saved notebook nothing matches.
    """
    if saved is None:
        return [None] * len(executed)
    occurrences: dict[str, list[int]] = {}
    for index, source in enumerate(saved):
        key = normalize_source(source)
        if key:
            occurrences.setdefault(key, []).append(index)
    matches: list[int | None] = []
    position = 0
    for cell in executed:
        found = occurrences.get(normalize_source(cell.source))
        if not found:
            matches.append(None)
            continue
        after = bisect.bisect_left(found, position)
        index = found[after] if after < len(found) else found[0]
        matches.append(index)
        position = index
    return matches


def linearity(executed: Sequence[ExecutedCell], saved: Sequence[str] | None) -> Linearity:
    """Whether ``executed`` ran the saved notebook's code cells ``saved`` from top to bottom.

    ``linear`` when every executed source is a cell of the notebook (see :func:`match_cells`)
    and each executed cell is the cell matched before it or a later one: skipping cells is
    fine, and so is running the current cell again, but running an earlier cell after a
    later one, or a source the saved notebook does not hold (an edited or deleted cell), is
    ``out-of-order``. Cells that raised count like any other; blank cells are ignored. An
    empty ``executed`` is ``linear``; otherwise ``saved=None`` gives ``unknown``.
    """
    if not executed:
        return Linearity("linear", [], [])
    if saved is None:
        return Linearity("unknown", ["there is no saved notebook to compare with"], [])
    reasons: list[str] = []
    involved: set[int] = set()
    ran: set[int] = set()
    previous: tuple[int, ExecutedCell] | None = None
    for cell, index in zip(executed, match_cells(executed, saved), strict=True):
        if not normalize_source(cell.source):
            continue
        if index is None:
            reasons.append(
                f"{_prompt(cell)} ran a source that is not in the saved notebook "
                f"(edited or deleted cell): `{_excerpt(cell.source)}`"
            )
            continue
        if previous is not None and index < previous[0]:
            again = "again " if index in ran else ""
            reasons.append(
                f"cell {index} ({_prompt(cell)}) ran {again}after cell {previous[0]} "
                f"({_prompt(previous[1])})"
            )
            involved.update((index, previous[0]))
        ran.add(index)
        previous = (index, cell)
    return Linearity("out-of-order" if reasons else "linear", reasons, sorted(involved))


def _prompt(cell: ExecutedCell) -> str:
    return f"In [{' ' if cell.execution_count is None else cell.execution_count}]"


def _excerpt(source: str, width: int = 60) -> str:
    line = next((line.strip() for line in source.splitlines() if line.strip()), "")
    return line if len(line) <= width else line[: width - 1] + "…"


# --- the executed script --------------------------------------------------------------------


def executed_script(executed: Sequence[ExecutedCell], saved: Sequence[str] | None = None) -> str:
    """The executed sources, in execution order, as the text of a runnable ``.py`` file.

    Each cell is preceded by a header such as ``# In [3]  (notebook cell 2)  raised
    ValueError`` (the notebook cell only when ``saved`` is given; see :func:`match_cells`).
    Lines only IPython understands become comments (``# %track start``); so does a whole
    cell magic other than ``%%time``, ``%%timeit``, ``%%capture`` and ``%%prun``, and a cell
    that is still not valid Python. The result always compiles.
    """
    parts = [_SCRIPT_HEADER]
    for cell, index in zip(executed, match_cells(executed, saved), strict=True):
        body = _as_python(cell.source)
        parts.append(_cell_header(cell, index, saved is not None) + ("\n" + body if body else ""))
    return "\n\n\n".join(parts) + "\n"


def _cell_header(cell: ExecutedCell, index: int | None, compared: bool) -> str:
    header = f"# {_prompt(cell)}"
    if not normalize_source(cell.source):
        header += "  (blank cell)"
    elif index is not None:
        header += f"  (notebook cell {index})"
    elif compared:
        header += "  (not in the saved notebook)"
    if cell.error:
        header += f"  raised {cell.error}"
    elif cell.ended is None:
        header += "  (still running when the run ended)"
    return header


def _as_python(source: str) -> str:
    """``source`` as Python: unchanged when it compiles, else with IPython-only lines as
    comments, else (or for a cell magic whose body is not Python) all commented."""
    lines = normalize_source(source).split("\n")
    code = "\n".join(lines)
    if not code or _compiles(code):
        return code
    first = lines[0].strip()
    magic = _CELL_MAGIC.match(first)
    if magic is None or magic.group(1) in PYTHON_BODY_CELL_MAGICS:
        converted = "\n".join(_comment_ipython_line(line) for line in lines)
        if _compiles(converted):
            return converted
        reason = "# (not valid Python; kept as a comment)"
    else:
        reason = f"# (%%{magic.group(1)} cell; kept as a comment)"
    return "\n".join([reason, *("# " + line if line else "#" for line in lines)])


def _comment_ipython_line(line: str) -> str:
    stripped = line.lstrip()
    if not stripped or not _IPYTHON_LINE.match(stripped):
        return line
    indent = line[: len(line) - len(stripped)]
    # an indented magic may be the only statement of its block: keep the block valid
    return f"{indent}pass  # {stripped}" if indent else f"# {stripped}"


def _compiles(code: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escape sequences
            compile(code, "<cell>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError):
        return False
    return True
