"""``%track`` and ``%%track``: tracking from a notebook in one line, and automatic lineage.

``%load_ext mlnb`` registers the magic and two IPython events: while a run is active,
every executed cell (source, execution count, times, whether it raised) is appended to the
run's lineage; when the run ends, its linearity verdict is computed against the notebook
as saved on disk, and the saved notebook and the executed sources (as a ``.py``) are stored
as artifacts. This module is the only importer of IPython's magic machinery; the logic
lives in ``tracking``, ``store`` and ``capture.notebook``. User mistakes raise
``UsageError`` (one line, no traceback).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import numbers
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser

from mlnb.conventions import NOTE_TAG
from mlnb.errors import MlnbError
from mlnb.records import TERMINAL_STATUSES, run_html
from mlnb.tracking import active as tracking_active
from mlnb.tracking import fluent as tracking

SUBCOMMANDS = (
    "start", "params", "param", "metric", "data", "artifact", "figure", "tag", "note",
    "end", "show", "list", "autolog", "live", "compare",
)  # fmt: skip
CELL_SUBCOMMANDS = ("params", "run")
MAX_PARAM_ITEMS = 100


class _HelpShown(Exception):
    """argparse printed help (``-h``); nothing else to do."""


class _Parser(MagicArgumentParser):
    """argparse that raises UsageError on mistakes and returns after ``-h``."""

    def exit(self, status: int = 0, message: str | None = None) -> Any:  # type: ignore[override]
        if message:
            raise UsageError(message.strip())
        raise _HelpShown

    def print_help(self, file: Any = None) -> None:
        print(self.format_help())


def _kv(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, _literal(raw)


def _pair(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` with the value as typed (read by the subcommand)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, raw


def _literal(raw: str) -> Any:
    """``0.01`` → 0.01, ``[1, 2]`` → [1, 2], ``adam`` → 'adam' (Python literals, else text)."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return raw


def strip_comment(line: str) -> str:
    """The line without a trailing ``# comment``: a ``#`` at the start or after whitespace,
    outside quotes, starts one, as on a Python line (``%track end  # done``)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="%track",
        description="Track this notebook's runs: params, metrics, data, artifacts, lineage.",
        add_help=True,
    )
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=_Parser)
    p = sub.add_parser("start", help="start a run (finishes the active one)", add_help=True)
    p.add_argument("name", nargs="?", help="run name (default: the notebook's name)")
    p.add_argument("--experiment", "-e", help="experiment name")
    p.add_argument("--tag", "-t", action="append", type=_kv, default=[], metavar="K=V")
    p.add_argument("--nested", action="store_true", help="a child of the active run")
    p = sub.add_parser("params", help="log variables as params, by name", add_help=True)
    p.add_argument("names", nargs="+", metavar="VAR")
    p = sub.add_parser("param", help="log params given as KEY=VALUE (literals)", add_help=True)
    p.add_argument("pairs", nargs="+", type=_pair, metavar="K=V")
    p = sub.add_parser(
        "metric", help="log metrics: KEY=NUMBER, KEY=EXPRESSION or a variable name",
        add_help=True,
    )  # fmt: skip
    p.add_argument("items", nargs="+", metavar="K=V|VAR")
    p.add_argument("--step", type=int, help="step (default: the next step of each key)")
    p = sub.add_parser("data", help="fingerprint a dataset (variable or path)", add_help=True)
    p.add_argument("target", metavar="VAR|PATH")
    p.add_argument("--name", help="dataset name (default: the variable or file name)")
    p.add_argument("--role", choices=("input", "output"), default="input")
    p.add_argument("--no-profile", action="store_true", help="skip the statistical profile")
    p = sub.add_parser("artifact", help="store a file or folder with the run", add_help=True)
    p.add_argument("path")
    p.add_argument("--name", help="name in the run (default: the file name)")
    p = sub.add_parser("figure", help="store the current matplotlib figure", add_help=True)
    p.add_argument("--name", default="figure.png", help="file name (default: figure.png)")
    p = sub.add_parser("tag", help="set tags KEY=VALUE", add_help=True)
    p.add_argument("pairs", nargs="+", type=_kv, metavar="K=V")
    p = sub.add_parser("note", help="set the run's note (its description)", add_help=True)
    p.add_argument("text", nargs="+")
    p = sub.add_parser("end", help="end the active run", add_help=True)
    p.add_argument(
        "--status", choices=sorted(TERMINAL_STATUSES), default="finished", help="final status"
    )
    sub.add_parser("show", help="summary of the active (or last) run", add_help=True)
    p = sub.add_parser("list", help="recent runs of this notebook", add_help=True)
    p.add_argument("-n", "--limit", type=int, default=20)
    p = sub.add_parser("autolog", help="turn autologging on or off", add_help=True)
    p.add_argument("framework", choices=("sklearn",))
    p.add_argument("state", choices=("on", "off"), nargs="?", default="on")
    p = sub.add_parser("live", help="a live plot of metrics while a loop logs them", add_help=True)
    p.add_argument("keys", nargs="*", metavar="KEY")
    p.add_argument("--every", type=float, default=0.5, help="seconds between redraws")
    p = sub.add_parser("compare", help="compare runs in a widget", add_help=True)
    p.add_argument("filter", nargs="*", help="a filter in the query language")
    return parser


_parser: _Parser | None = None


def parser() -> _Parser:
    """The ``%track`` argument parser (built on first use)."""
    global _parser
    if _parser is None:
        _parser = _build_parser()
    return _parser


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    try:
        yield
    except MlnbError as exc:
        raise UsageError(str(exc)) from None


def _is_param_value(value: Any) -> bool:
    scalar = (str, bool, numbers.Number, type(None))
    if isinstance(value, scalar) and not isinstance(value, complex):
        return True
    if isinstance(value, (list, tuple)) and len(value) <= MAX_PARAM_ITEMS:
        return all(isinstance(v, scalar) for v in value)
    if isinstance(value, dict) and len(value) <= MAX_PARAM_ITEMS:
        return all(isinstance(k, str) and isinstance(v, scalar) for k, v in value.items())
    return False


@magics_class
class TrackMagics(Magics):
    """The ``%track`` line magic and ``%%track`` cell magic."""

    def __init__(self, shell: Any, lineage: Lineage) -> None:
        super().__init__(shell)
        self.lineage = lineage
        self.last_run_id: str | None = None

    @line_cell_magic
    def track(self, line: str, cell: str | None = None) -> Any:
        """Track runs from this notebook. ``%track -h`` lists the subcommands and
        ``%track SUBCOMMAND -h`` explains one; docs/magics.md has examples.

        Line magic: ``%track start [NAME]``, ``%track params lr depth``,
        ``%track metric acc=0.93``, ``%track data train_df``, ``%track end`` ...
        Cell magic: ``%%track params`` logs every scalar the cell assigns as a param;
        ``%%track run [NAME]`` makes the cell one whole run.
        """
        line = strip_comment(line)
        if cell is not None:
            return self._cell(line, cell)
        words = line.split(maxsplit=1)
        if words and words[0] == "compare" and not {"-h", "--help"} & set(line.split()):
            with _usage_errors():
                return self._compare_line(words[1] if len(words) > 1 else "")
        try:
            args = parser().parse_argstring(line)
        except _HelpShown:
            return None
        if args.command is None:
            raise UsageError(f"%track needs a subcommand: {', '.join(SUBCOMMANDS)}")
        with _usage_errors():
            return getattr(self, f"_{args.command}")(args)

    # -- helpers ----------------------------------------------------------------------

    @property
    def ip(self) -> Any:
        """The shell (typed loosely: IPython's own annotations allow None)."""
        return self.shell

    def _ns(self) -> dict[str, Any]:
        ns: dict[str, Any] = self.ip.user_ns
        return ns

    def _var(self, name: str) -> Any:
        ns = self._ns()
        if name not in ns:
            raise UsageError(f"name {name!r} is not defined in the notebook")
        return ns[name]

    def _run(self) -> tracking.ActiveRun:
        """The active run, or a new one named after the notebook (first logging call)."""
        run = tracking.active_run()
        if run is None or run.ended:
            run = self._start_run(None, experiment=None, tags={}, nested=False)
        return run

    def _start_run(
        self, name: str | None, *, experiment: str | None, tags: dict[str, Any], nested: bool
    ) -> tracking.ActiveRun:
        notebook = self.lineage.notebook()
        # a job's run (mlnb run) keeps the name its runner gave it unless one is asked for
        default = Path(notebook).stem if notebook and not tracking.pending_job_run() else None
        run = tracking.start_run(
            name or default,
            experiment=experiment,
            tags=tags,
            nested=nested,
            source=notebook,
        )
        if notebook:
            run.store.set_notebook(run.run_id, notebook=notebook)
        self.last_run_id = run.run_id
        return run

    # -- subcommands ------------------------------------------------------------------

    def _start(self, args: argparse.Namespace) -> None:
        run = self._start_run(
            args.name, experiment=args.experiment, tags=dict(args.tag), nested=args.nested
        )
        rec = run.store.get_run(run.run_id)
        print(f"mlnb: run {rec.name} ({run.run_id[:8]}) started in experiment {rec.experiment}")

    def _params(self, args: argparse.Namespace) -> None:
        self._run().log_params({name: self._var(name) for name in args.names})

    def _param(self, args: argparse.Namespace) -> None:
        """Values are literals, else text (``opt=adam``); a bare name that is also a
        variable of the notebook is refused: it would log the name, not the value."""
        values = {}
        for key, raw in args.pairs:
            value = _literal(raw)
            if value == raw and raw.isidentifier() and raw in self._ns():
                raise UsageError(
                    f"{key}={raw}: {raw!r} is a variable of the notebook, and %track param "
                    f"logs values as written (here the text {raw!r}). To log its value, "
                    f"write `%track params {raw}` (under its own name) or "
                    f"`%track param {key}=${raw}` (IPython puts the value in); to log the "
                    f"text, quote it: {key}=\"'{raw}'\""
                )
            values[key] = value
        self._run().log_params(values)

    def _metric(self, args: argparse.Namespace) -> None:
        """``KEY=VALUE``: a number, else a name or expression evaluated in the notebook
        (``accuracy=acc``, ``best=max(scores)``); a bare ``VAR`` logs that variable."""
        values = {}
        for item in args.items:
            key, sep, raw = item.partition("=")
            values[key] = self._metric_value(key, raw) if sep else self._var(item)
        self._run().log_metrics(values, step=args.step)

    def _metric_value(self, key: str, raw: str) -> Any:
        try:
            return ast.literal_eval(raw)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
        try:
            # the user's own line, in the user's own namespace (as %time evaluates it)
            return eval(raw, self.ip.user_global_ns, self._ns())
        except Exception as exc:
            why = f"{exc} in the notebook" if isinstance(exc, NameError) else repr(exc)
            raise UsageError(
                f"{key}={raw}: {why}; a metric must be a number: write "
                f"{key}=0.93, {key}=VARIABLE or {key}=EXPRESSION (e.g. {key}=max(scores); "
                f"quote an expression with spaces or quotes: \"{key}=scores['acc']\")"
            ) from None

    def _data(self, args: argparse.Namespace) -> Any:
        ns = self._ns()
        if args.target in ns:
            obj, name = ns[args.target], args.name or args.target
        else:
            obj, name = args.target, args.name
        return self._run().log_data(obj, name, role=args.role, profile=not args.no_profile)

    def _artifact(self, args: argparse.Namespace) -> None:
        self._run().log_artifact(args.path, args.name)

    def _figure(self, args: argparse.Namespace) -> None:
        self._run().log_figure(None, args.name)

    def _tag(self, args: argparse.Namespace) -> None:
        self._run().set_tags(dict(args.pairs))

    def _note(self, args: argparse.Namespace) -> None:
        self._run().set_tags({NOTE_TAG: " ".join(args.text)})

    def _end(self, args: argparse.Namespace) -> None:
        run = tracking.active_run()
        if run is None:
            raise UsageError("no active run to end")
        tracking.end_run(args.status)
        print(f"mlnb: run {run.run_id[:8]} {args.status}")

    def _show(self, args: argparse.Namespace) -> Any:
        from IPython.display import HTML

        run = tracking.active_run()
        run_id = run.run_id if run is not None else self.last_run_id
        if run_id is None:
            raise UsageError("no run yet in this notebook: start one with %track start")
        store = run.store if run is not None else tracking.get_store()
        tracking.flush(store)
        rec = store.get_run(run_id)
        verdict = rec.linearity_detail
        if run is not None:  # still running: judge the cells executed so far
            verdict = self.lineage.verdict(store, run_id).to_dict()
        return HTML(run_html(rec, verdict))

    def _list(self, args: argparse.Namespace) -> Any:
        """The runs of this notebook: tracked from it (``%track``) or started in it by the
        Python API (which records it as the run's source), newest first."""
        from mlnb.conventions import ENV_NOTEBOOK
        from mlnb.store.query import quote_string
        from mlnb.tracking.reading import runs

        notebook = self.lineage.notebook()
        if notebook is None:
            raise UsageError(
                "%track list shows the runs of this notebook, but mlnb cannot tell which "
                f"notebook this kernel runs: set {ENV_NOTEBOOK}=path/to/notebook.ipynb in the "
                "kernel's environment, or use mlnb.runs() to list every run"
            )
        path = quote_string(notebook)
        frame = runs(filter=f"notebook = {path} or source = {path}", max_results=args.limit)
        cols = [c for c in frame.columns if c.startswith(("params.", "metrics."))]
        base = ["run_id", "name", "status", "linearity", "start_time", "duration"]
        return frame[base + cols]

    def _autolog(self, args: argparse.Namespace) -> None:
        from mlnb.tracking.autolog import autolog

        autolog(args.framework, disable=args.state == "off")
        print(f"mlnb: {args.framework} autologging {args.state}")

    def _live(self, args: argparse.Namespace) -> Any:
        from mlnb.notebook.liveplot import live

        return live(*args.keys, every=args.every)  # follows the run that logs next

    def _compare(self, args: argparse.Namespace) -> Any:
        from mlnb.notebook.widgets import compare

        return compare(" ".join(args.filter) or None)

    def _compare_line(self, text: str) -> Any:
        """``%track compare FILTER``: the rest of the line is the filter, quotes and all
        (argparse would strip the quotes of ``params.model = 'svc'``)."""
        from mlnb.notebook.widgets import compare

        return compare(text.strip() or None)

    # -- cell magics ------------------------------------------------------------------

    def _cell(self, line: str, cell: str) -> Any:
        words = line.split(maxsplit=1)
        if not words or words[0] not in CELL_SUBCOMMANDS:
            raise UsageError(f"%%track needs one of: {', '.join(CELL_SUBCOMMANDS)}")
        if words[0] == "params":
            return self._cell_params(cell)
        return self._cell_run(words[1].strip() if len(words) > 1 else None, cell)

    def _cell_params(self, cell: str) -> None:
        ns = self._ns()
        before = {k: id(v) for k, v in ns.items()}
        result = self.ip.run_cell(cell)
        if not result.success:
            return
        hidden = set(getattr(self.ip, "user_ns_hidden", {}))
        bound = {
            k: v
            for k, v in ns.items()
            if not k.startswith("_")
            and k not in hidden
            and before.get(k) != id(v)
            and _is_param_value(v)
        }
        if bound:
            with _usage_errors():
                self._run().log_params(bound)

    def _cell_run(self, name: str | None, cell: str) -> None:
        with _usage_errors():
            run = self._start_run(name, experiment=None, tags={}, nested=False)
        result = self.ip.run_cell(cell)
        status = tracking.status_after(result.error_in_exec or result.error_before_exec)
        with _usage_errors():
            tracking.end_run(status, run=run)


# A cell that comes less than this long after the last lineage write is buffered and
# written with the next ones by a background thread (at most this much later): cells run
# back to back pay one transaction per batch, not one each. `flush()`, the end of the run
# and `mlnb.flush()` write what is buffered.
LINEAGE_BATCH_S = 0.25


class Lineage:
    """Records executed cells of active runs (IPython events) and, at run end, the
    linearity verdict and the notebook artifacts."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.depth = 0
        self.started = 0.0
        self.source = ""
        self.run_at_pre: tracking.ActiveRun | None = None
        self._notebook: str | None = None
        self._notebook_known = False
        self._pending: list[tuple[tracking.ActiveRun, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()  # one writer at a time keeps the cells in order
        self._last_write = 0.0
        self._thread: threading.Thread | None = None
        self._closed = False

    def flush(self) -> None:
        """Write the buffered cells now."""
        with self._write_lock:
            with self._cond:
                pending, self._pending = self._pending, []
            self._last_write = time.monotonic()
            by_run: dict[tuple[int, str], tuple[tracking.ActiveRun, list[dict[str, Any]]]] = {}
            for run, cell in pending:
                by_run.setdefault((id(run.store), run.run_id), (run, []))[1].append(cell)
            for run, cells in by_run.values():
                if run.store.closed:
                    continue
                try:
                    run.store.record_cells(run.run_id, cells)
                except Exception as exc:  # lineage must never break the notebook
                    print(f"mlnb: could not record {len(cells)} cell(s): {exc}", file=sys.stderr)

    def close(self) -> None:
        """Write what is buffered and stop the writer thread (``%unload_ext``)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.flush()

    def _writer(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._closed)
                if self._closed:
                    return
                self._cond.wait(LINEAGE_BATCH_S)  # gather what comes meanwhile
            self.flush()

    def notebook(self) -> str | None:
        """The notebook's path (looked up once per kernel)."""
        if not self._notebook_known:
            from mlnb.capture.notebook import find_notebook_path

            path = find_notebook_path(self.shell.user_ns)
            self._notebook = str(path) if path else None
            self._notebook_known = True
        return self._notebook

    def pre_run_cell(self, info: Any) -> None:
        self.depth += 1
        if self.depth > 1:  # a cell run by a cell magic: the outer cell is what ran
            return
        self.started = time.time()
        self.source = info.raw_cell
        self.run_at_pre = tracking.active_run()

    def post_run_cell(self, result: Any) -> None:
        self.depth = max(0, self.depth - 1)
        if self.depth > 0:
            return
        run = tracking.active_run() or self.run_at_pre
        self.run_at_pre = None
        if run is None or run.store.closed:
            return
        error = result.error_in_exec or result.error_before_exec
        cell = {
            "execution_count": result.execution_count,
            "source": self.source,
            "started": self.started,
            "ended": time.time(),
            "error": None if error is None else type(error).__name__,
        }
        with self._cond:
            self._pending.append((run, cell))
            quiet = time.monotonic() - self._last_write >= LINEAGE_BATCH_S
            if not (quiet or run.ended) and self._thread is None:
                self._thread = threading.Thread(
                    target=self._writer, name="mlnb-lineage", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        if quiet or run.ended:  # a cell after a pause (the usual case) is written at once
            self.flush()

    def executed(self, store: Any, run_id: str) -> list[Any]:
        from mlnb.capture.notebook import ExecutedCell

        self.flush()

        return [
            ExecutedCell(
                execution_count=c["execution_count"],
                source=c["source"],
                started=c["started"],
                ended=c["ended"],
                error=c["error"],
            )
            for c in store.cells(run_id)
        ]

    def _saved(self, path: str | None) -> list[str] | None:
        from mlnb.capture.notebook import saved_code_cells

        if not path or not os.path.exists(path):
            return None
        with contextlib.suppress(MlnbError):
            return saved_code_cells(Path(path))
        return None

    def verdict(self, store: Any, run_id: str) -> Any:
        """The linearity of the run's cells so far against the saved notebook."""
        from mlnb.capture.notebook import linearity

        return linearity(self.executed(store, run_id), self._saved(self.notebook()))

    def on_run_end(self, run: tracking.ActiveRun, status: str) -> None:
        """Store the verdict, the saved notebook and the executed sources as a .py."""
        from mlnb.capture.notebook import executed_script, linearity

        executed = self.executed(run.store, run.run_id)
        if not executed:
            return
        path = run.store.get_run(run.run_id).notebook or self.notebook()
        saved = self._saved(path)
        verdict = linearity(executed, saved)
        run.store.set_notebook(
            run.run_id, notebook=path, linearity=verdict.verdict, detail=verdict.to_dict()
        )
        if path and saved is not None:
            run.log_artifact(path, f"notebook/{Path(path).name}")
        script = executed_script(executed, saved)
        run.log_artifact(script.encode(), "notebook/executed.py")


_loaded: dict[int, tuple[Any, Lineage]] = {}


def load(shell: Any) -> None:
    """Register ``%track``/``%%track`` and the lineage events (``%load_ext mlnb``)."""
    if id(shell) in _loaded:
        return
    lineage = Lineage(shell)
    shell.register_magics(TrackMagics(shell, lineage))
    shell.events.register("pre_run_cell", lineage.pre_run_cell)
    shell.events.register("post_run_cell", lineage.post_run_cell)
    tracking_active.add_end_hook(lineage.on_run_end)
    tracking_active.add_flush_hook(lineage.flush)
    _loaded[id(shell)] = (shell, lineage)


def unload(shell: Any) -> None:
    """Remove the events and hooks (``%unload_ext mlnb``); the magic stays registered
    in IPython's table, as IPython offers no way to remove it."""
    entry = _loaded.pop(id(shell), None)
    if entry is None:
        return
    _, lineage = entry
    shell.events.unregister("pre_run_cell", lineage.pre_run_cell)
    shell.events.unregister("post_run_cell", lineage.post_run_cell)
    tracking_active.remove_end_hook(lineage.on_run_end)
    tracking_active.remove_flush_hook(lineage.flush)
    lineage.close()
