"""The engine of a headless job: papermill's nbclient engine registered as ``mlnb``, with
what a tracked job adds (the kernel's environment, kernels on Unix sockets in a private
folder, the cell being run, an interrupt on a cell timeout, the two job hooks called in the
kernel around the cells), and what the output notebook tells afterwards (the cells that ran,
their timings, the :class:`JobError` of the cell that stopped the job). papermill, nbformat,
nbclient and jupyter_client are imported inside the functions that need them.
:mod:`mlnb.jobs.runner` creates and records the run around it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from mlnb.conventions import ENV_JOB_PROGRESS, ENV_RUN_ID
from mlnb.jobs.params import (
    RUN_ID_PARAMETER,
    cell_tags,
)
from mlnb.records import NO_MESSAGE, JobError
from mlnb.tracking.job import HOOKS_MODULE, finish_job, start_job

ENGINE_NAME = "mlnb"  # the name papermill knows the engine by


# The kernel side of a job is two hook functions (mlnb.tracking.job), called in the kernel
# outside the notebook's cells and binding no name in its namespace: before the first cell
# (the kernel's own environment and git state) and after the last (queued metrics, the
# notebook's own runs; the kernel is then shut down without its atexit handlers). A hook
# that fails is recorded in the run's `mlnb.warning` tag; the job goes on.
def _hook_call(hook: str) -> str:
    return f"__import__({HOOKS_MODULE!r}, fromlist=[{hook!r}]).{hook}()\n"


PRELUDE = _hook_call(start_job.__name__)
FINALIZE = _hook_call(finish_job.__name__)


class Holder:
    """What the engine shares with run_notebook: the notebook being executed (for a
    partial output after a timeout or a dead kernel) and the cell being run."""

    def __init__(self) -> None:
        self.nb: Any = None
        self.cell: int | None = None
        self.kernel_ready = False  # False while the kernel starts: a failure may be retried
        self.cell_error: Any = None  # nbclient's CellExecutionError: the kernel's own reply
        self.timed_out = False  # a cell ran past the timeout and the kernel was interrupted
        self.hook_problems: list[str] = []  # what the kernel's job hooks could not do
        self.progress = Progress(None, None, 0)


class Progress:
    """A job's progress for whoever started it (the Jupyter server extension): when
    ``$MLNB_JOB_PROGRESS`` names a file, it holds ``{"run_id", "cells_total", "cells_done",
    "current_cell"}`` as JSON, replaced whole (never half-written) before the first cell and
    at each code cell's start and end. ``current_cell`` is the 0-based index of the cell
    running in the executed notebook (with papermill's injected-parameters cell), else null.
    Writing it must never stop a job: a failed write is ignored."""

    def __init__(self, path: str | None, run_id: str | None, total: int) -> None:
        self.path, self.run_id, self.total = path, run_id, total
        self.cells_done = 0
        self.current: int | None = None
        self.write()

    def start(self, index: int) -> None:
        self.current = index
        self.write()

    def done(self) -> None:
        self.cells_done += 1
        self.current = None
        self.write()

    def write(self) -> None:
        if not self.path:
            return
        import json

        state = {"run_id": self.run_id, "cells_total": self.total,
                 "cells_done": self.cells_done, "current_cell": self.current}  # fmt: skip
        with contextlib.suppress(OSError):
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(state, f)
            os.replace(tmp, self.path)


_engine_registered = False
_ipc_folder: tuple[int, str] | None = None  # (pid, folder): a fork makes its own


def ipc_dir() -> str:
    """One private folder per process for the kernels' Unix sockets (jupyter_client removes
    the socket files at kernel shutdown; the folder goes at exit)."""
    global _ipc_folder
    if _ipc_folder is None or _ipc_folder[0] != os.getpid() or not os.path.isdir(_ipc_folder[1]):
        import atexit

        folder = tempfile.mkdtemp(prefix="mlnb-kernels-")
        pid = os.getpid()
        _ipc_folder = (pid, folder)

        def remove() -> None:
            if os.getpid() == pid:  # not from a forked child's exit
                shutil.rmtree(folder, ignore_errors=True)

        atexit.register(remove)
    return _ipc_folder[1]


def register_engine() -> None:
    """papermill's nbclient engine, plus: the kernel's environment, the current cell, the
    notebook kept on failure, and a final flush in the kernel."""
    global _engine_registered
    if _engine_registered:
        return
    from jupyter_client.manager import AsyncKernelManager
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    from nbclient.util import ensure_async
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class Client(PapermillNotebookClient):  # type: ignore[misc]
        holder: Holder

        def execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
            self.holder.cell = cell_index
            code = cell.get("cell_type") == "code"
            if code:
                self.holder.progress.start(cell_index)
            try:
                done = super().execute_cell(cell, cell_index, *args, **kwargs)
            except CellExecutionError as exc:  # papermill keeps ename and evalue only when
                self.holder.cell_error = exc  # the cell has an error output; this has them
                raise
            finally:
                if code:
                    self.holder.progress.done()
            if self.holder.timed_out:  # the cell caught the interrupt: the job stops anyway
                raise CellTimeoutError(f"cell {cell_index} timed out")
            return done

        async def _async_handle_timeout(self, timeout: int, cell: Any = None) -> None:
            """A cell ran past the timeout: interrupt the kernel, as a person would, so
            the cell shows its KeyboardInterrupt where it stopped and the kernel lives on
            for the final flush. A cell still running one timeout later (it ignores
            interrupts) ends the job with CellTimeoutError."""
            if cell is None or self.holder.timed_out:
                raise CellTimeoutError(f"no reply from the kernel within {timeout} s")
            self.holder.timed_out = True
            logger.warning(f"cell timed out after {timeout} s: interrupting the kernel")
            await ensure_async(self.km.interrupt_kernel())

        def papermill_execute_cells(self) -> None:
            self.holder.kernel_ready = True
            language = self.kernel_language()
            hooks = language in ("python", "unknown")  # the hooks are Python
            if hooks:
                self.call_hook(start_job.__name__, PRELUDE)
            else:
                self.holder.hook_problems.append(
                    f"the kernel runs {language}, not Python: the job's environment and git "
                    "state were not recorded"
                )
            super().papermill_execute_cells()
            self.holder.cell = None
            if hooks:
                self.call_hook(finish_job.__name__, FINALIZE)

        def kernel_language(self) -> str:
            """The language the kernel runs, as it says itself (a notebook's metadata may
            name another); ``unknown`` when it does not answer."""
            try:
                info = self.wait_for_reply(self.kc.kernel_info())
                return str(info["content"]["language_info"]["name"]).lower()
            except Exception:
                return "unknown"

        def call_hook(self, hook: str, code: str) -> None:
            """Run one of the job hooks in the kernel; what it raised (or a kernel that
            does not answer) goes into ``holder.hook_problems``, never into the job."""
            try:
                reply = self.wait_for_reply(self.kc.execute(code, silent=True, store_history=False))
            except Exception as exc:
                self.holder.hook_problems.append(f"{hook}() got no answer from the kernel: {exc}")
                return
            problem = hook_problem(hook, reply)
            if problem:
                self.holder.hook_problems.append(problem)

    class IpcKernelManager(AsyncKernelManager):  # type: ignore[misc]
        """Kernels talk over Unix sockets in a private folder, not TCP ports: no port race
        between the kernels of a parallel sweep, and no "running over TCP without
        encryption" warning from ipykernel on every job."""

        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)
            import uuid

            self.ip = os.path.join(ipc_dir(), uuid.uuid4().hex[:12])

    class Engine(NBClientEngine):  # type: ignore[misc]
        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: int = 60,
            execution_timeout: float | None = None,
            mlnb_holder: Holder | None = None,
            mlnb_env: dict[str, str] | None = None,
            **kwargs: Any,
        ) -> Any:
            holder = mlnb_holder or Holder()
            holder.nb = nb_man.nb
            holder.progress = Progress(
                os.environ.get(ENV_JOB_PROGRESS),
                (mlnb_env or {}).get(ENV_RUN_ID),
                sum(c.get("cell_type") == "code" for c in nb_man.nb.cells),
            )
            kwargs = remove_args(["input_path"], **kwargs)
            safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                safe_kwargs,
                timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logger,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
            final_kwargs.setdefault("kernel_manager_class", IpcKernelManager)
            client = Client(nb_man, **final_kwargs)
            client.holder = holder
            return client.execute(**({"env": mlnb_env} if mlnb_env is not None else {}))

    papermill_engines.register(ENGINE_NAME, Engine)
    _engine_registered = True


def hook_problem(hook: str, reply: Any) -> str | None:
    """What a job hook's execute reply says went wrong, for the run's ``mlnb.warning``."""
    content = reply.get("content", {}) if isinstance(reply, dict) else {}
    if content.get("status") != "error":
        return None
    ename, evalue = str(content.get("ename", "Error")), plain(str(content.get("evalue", "")))
    if ename == "CaptureError":  # mlnb's own message says what was not recorded
        return f"{hook}() in the kernel: {evalue}"
    return (
        f"{hook}() failed in the kernel ({ename}: {evalue}); is mlnb installed in the "
        "kernel's environment? What the kernel records about the run may be missing"
    )


@contextlib.contextmanager
def quiet_papermill(injected: bool) -> Iterator[None]:
    """papermill logs "Passed unknown parameter: mlnb_run_id" for every job whose notebook
    does not declare it, and, when the notebook has no ``parameters`` cell, "Input notebook
    does not contain a cell with tag 'parameters'" — noise unless the user ``injected``
    values of their own (``mlnb test`` passes none)."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.endswith(f"unknown parameter: {RUN_ID_PARAMETER}"):
            return False
        return injected or "does not contain a cell with tag 'parameters'" not in text

    log = logging.getLogger("papermill")
    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def wants_progress_bar() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


_ERROR_MARKER = "papermill-error-cell-tag"  # the cells papermill adds after a failure


def executed_cells(output_nb: Any) -> list[Any]:
    """The executed notebook's cells as they were run: without the two markdown cells
    papermill adds after a failure (the indices it reports and nbclient's predate them)."""
    return [c for c in output_nb.cells if _ERROR_MARKER not in cell_tags(c)]


def input_index(index: int | None, nb: Any, output_nb: Any) -> int | None:
    """The index in the input notebook ``nb`` (as the file holds it) of cell ``index`` of
    the executed notebook (as run: see :func:`executed_cells`), which papermill ran
    without the input's own error-marker cells (a papermill output used as input) and with
    one cell more, the one it injected; None for that injected cell."""
    if index is None or output_nb is None:
        return index
    positions = [i for i, c in enumerate(nb.cells) if _ERROR_MARKER not in cell_tags(c)]
    cells = executed_cells(output_nb)
    own = index
    if len(cells) != len(positions):  # else the input had an injected cell, now replaced
        tags = (cell_tags(c) for c in cells)
        injected = next((i for i, t in enumerate(tags) if "injected-parameters" in t), None)
        if injected == index:
            return None
        if injected is not None and index > injected:
            own = index - 1
    return positions[own] if 0 <= own < len(positions) else None


def cell_timings(output_nb: Any, nb: Any) -> list[tuple[int, float]]:
    out = []
    for i, cell in enumerate(executed_cells(output_nb)):
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if cell.get("cell_type") == "code" and isinstance(duration, (int, float)):
            src = input_index(i, nb, output_nb)
            if src is not None:
                out.append((src, float(duration)))
    return out


def plain(text: str) -> str:
    """``text`` without terminal colours."""
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


MAX_FRAMES = 3
MAX_TRACEBACK_CHARS = 3000


def last_frames(traceback: Sequence[str], name: str) -> str:
    """The last frames of a kernel's traceback, as plain text: for IPython's, each frame's
    location and its ``---->`` line; for any other, its last lines."""
    entries = [plain(t).rstrip() for t in traceback if t and t.strip()]
    frames = []
    for entry in entries:
        lines = entry.splitlines()
        if not lines or set(lines[0]) <= {"-"} or "Traceback (most recent call last)" in entry:
            continue
        if len(lines) == 1 and lines[0].startswith(f"{name}:"):
            continue  # the exception's own line: the headline says it
        arrows = [ln for ln in lines[1:] if ln.lstrip().startswith("---->")]
        frames.append("\n".join([lines[0], *arrows]) if arrows else "\n".join(lines[-6:]))
    text = "\n".join(frames[-MAX_FRAMES:])
    return text if len(text) <= MAX_TRACEBACK_CHARS else "..." + text[-MAX_TRACEBACK_CHARS:]


def first_line(source: Any) -> str:
    text = "".join(source) if isinstance(source, list) else str(source or "")
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= 120 else line[:119] + "…"


def stderr_of(cell: Any) -> str:
    """The last line a cell wrote to stderr (IPython prints a UsageError there)."""
    for output in reversed(cell.get("outputs", []) if cell is not None else []):
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            text = "".join(output.get("text", ""))
            lines = [ln for ln in plain(text).splitlines() if ln.strip()]
            if lines:
                return lines[-1].strip()
    return ""


def job_error(
    name: str,
    message: str,
    traceback: Sequence[str],
    index: int | None,
    nb: Any,
    output_nb: Any,
) -> JobError:
    """A JobError for cell ``index`` of the executed notebook, with the input cell's index
    and first line, the last frames, and a message that is never empty."""
    cell = input_index(index, nb, output_nb)
    executed = None
    if index is not None and output_nb is not None:
        cells = executed_cells(output_nb)
        executed = cells[index] if 0 <= index < len(cells) else None
    source = first_line(nb.cells[cell].source) if cell is not None and cell < len(nb.cells) else ""
    if not message:
        said = stderr_of(executed)
        prefix = f"{name}: "
        message = said[len(prefix) :] if said.startswith(prefix) else said
    return JobError(name, message or NO_MESSAGE, cell, source, last_frames(traceback, name))


def mark_stopped(output_nb: Any, index: int | None, error: JobError) -> None:
    """Show in the executed notebook where the job stopped when nothing else does (a cell
    past its timeout that ignored the interrupt, a dead kernel): an error output on the
    cell, as a failing cell has."""
    if output_nb is None or index is None:
        return
    cells = executed_cells(output_nb)
    if not 0 <= index < len(cells) or cells[index].get("cell_type") != "code":
        return
    cell = cells[index]
    if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
        return
    import nbformat

    new_output: Any = nbformat.v4.new_output
    text = f"{error.name}: {error.message} (mlnb stopped the job here)"
    cell.setdefault("outputs", []).append(
        new_output("error", ename=error.name, evalue=error.message, traceback=[text])
    )


_START_FAILURES = (
    "kernel died before replying",
    "didn't respond",
    "address already in use",
    "timed out",
    "timeout",
)


def kernel_start_failed(exc: BaseException, holder: Holder) -> bool:
    """A failure while the kernel started (no cell ran): worth starting it again."""
    if holder.kernel_ready or not isinstance(exc, Exception):
        return False
    text = f"{type(exc).__name__}: {exc}".lower()
    return isinstance(exc, (RuntimeError, TimeoutError, OSError)) or any(
        s in text for s in _START_FAILURES
    )
