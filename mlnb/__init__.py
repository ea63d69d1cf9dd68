"""mlnb: experiment tracking for people who train models in Jupyter.

The public surface is what ``__all__`` lists; a test keeps the two in step. Importing mlnb
costs a few milliseconds: each name is loaded from its module on first use (PEP 562), and
pandas, matplotlib, IPython, ipywidgets, papermill and jupyter_server load only when a
function needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlnb.capture.fingerprints import Fingerprint, hasher_kinds, register_hasher
    from mlnb.checks.drift import drift
    from mlnb.checks.gates import MetricThreshold, gate
    from mlnb.checks.schema import Schema, validate
    from mlnb.comparison.diff import diff
    from mlnb.errors import MlnbError, MlnbWarning
    from mlnb.interop.buffer import set_store
    from mlnb.interop.mlflow import mlflow_pull, mlflow_push
    from mlnb.jobs.params import notebook_parameters
    from mlnb.jobs.promote import promote
    from mlnb.jobs.reports import report
    from mlnb.jobs.reproduce import reproduce
    from mlnb.jobs.retrain import retrain
    from mlnb.jobs.runner import run_notebook
    from mlnb.jobs.sweeps import sweep
    from mlnb.monitoring.monitor import monitor
    from mlnb.notebook.liveplot import live
    from mlnb.notebook.widgets import compare
    from mlnb.registry.lineage import model_lineage
    from mlnb.registry.models import (
        delete_model_alias,
        get_model_version,
        load_model,
        model_history,
        register_model,
        set_model_alias,
    )
    from mlnb.serving.feedback import log_feedback
    from mlnb.store import Store
    from mlnb.store.query import RunScope
    from mlnb.store.transfer import export_run, import_run
    from mlnb.tracking.autolog import autolog
    from mlnb.tracking.fluent import (
        ActiveRun,
        active_run,
        end_run,
        flush,
        get_store,
        log_artifact,
        log_data,
        log_figure,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        set_tag,
        set_tags,
        start_run,
        use_run,
    )
    from mlnb.tracking.reading import delete_run, get_run, restore_run, runs
    from mlnb.tracking.sharing import export_runs, import_runs, sync

__version__ = "0.1.0.dev0"

_LAZY = {
    "autolog": "mlnb.tracking.autolog",
    "MlnbError": "mlnb.errors",
    "MlnbWarning": "mlnb.errors",
    "live": "mlnb.notebook.liveplot",
    "gate": "mlnb.checks.gates",
    "MetricThreshold": "mlnb.checks.gates",
    "drift": "mlnb.checks.drift",
    **dict.fromkeys(("Schema", "validate"), "mlnb.checks.schema"),
    "RunScope": "mlnb.store.query",
    **dict.fromkeys(
        ("Fingerprint", "hasher_kinds", "register_hasher"), "mlnb.capture.fingerprints"
    ),
    "notebook_parameters": "mlnb.jobs.params",
    **dict.fromkeys(("mlflow_pull", "mlflow_push"), "mlnb.interop.mlflow"),
    # set_store also takes "mlflow+http://…" (a local buffer pushed to an MLflow server)
    "set_store": "mlnb.interop.buffer",
    **dict.fromkeys(("export_run", "import_run"), "mlnb.store.transfer"),
    "report": "mlnb.jobs.reports",
    "promote": "mlnb.jobs.promote",
    "retrain": "mlnb.jobs.retrain",
    "monitor": "mlnb.monitoring.monitor",
    "model_lineage": "mlnb.registry.lineage",
    **dict.fromkeys(
        (
            "delete_model_alias",
            "get_model_version",
            "load_model",
            "model_history",
            "register_model",
            "set_model_alias",
        ),
        "mlnb.registry.models",
    ),
    "reproduce": "mlnb.jobs.reproduce",
    "log_feedback": "mlnb.serving.feedback",
    "run_notebook": "mlnb.jobs.runner",
    "Store": "mlnb.store.core",
    "compare": "mlnb.notebook.widgets",
    "sweep": "mlnb.jobs.sweeps",
    "diff": "mlnb.comparison.diff",
    **dict.fromkeys(("delete_run", "get_run", "restore_run", "runs"), "mlnb.tracking.reading"),
    **dict.fromkeys(("export_runs", "import_runs", "sync"), "mlnb.tracking.sharing"),
    **dict.fromkeys(
        (
            "ActiveRun",
            "active_run",
            "end_run",
            "flush",
            "get_store",
            "log_artifact",
            "log_data",
            "log_figure",
            "log_metric",
            "log_metrics",
            "log_param",
            "log_params",
            "set_tag",
            "set_tags",
            "start_run",
            "use_run",
        ),
        "mlnb.tracking.fluent",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlnb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext mlnb``: register the ``%track`` magics and notebook lineage."""
    from mlnb.notebook.magics import load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext mlnb``: stop recording lineage."""
    from mlnb.notebook.magics import unload

    unload(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension lives in this package (read by
    ``jupyter labextension develop .``; a wheel installs it into share/jupyter)."""
    return [{"src": "labextension", "dest": "mlnb-labextension"}]


__all__ = [
    "ActiveRun",
    "Fingerprint",
    "MetricThreshold",
    "MlnbError",
    "MlnbWarning",
    "RunScope",
    "Schema",
    "Store",
    "__version__",
    "active_run",
    "autolog",
    "compare",
    "delete_model_alias",
    "delete_run",
    "diff",
    "drift",
    "end_run",
    "export_run",
    "export_runs",
    "flush",
    "gate",
    "get_model_version",
    "get_run",
    "get_store",
    "hasher_kinds",
    "import_run",
    "import_runs",
    "live",
    "load_ipython_extension",
    "load_model",
    "log_artifact",
    "log_data",
    "log_feedback",
    "log_figure",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "mlflow_pull",
    "mlflow_push",
    "model_history",
    "model_lineage",
    "monitor",
    "notebook_parameters",
    "promote",
    "register_hasher",
    "register_model",
    "report",
    "reproduce",
    "restore_run",
    "retrain",
    "run_notebook",
    "runs",
    "set_model_alias",
    "set_store",
    "set_tag",
    "set_tags",
    "start_run",
    "sweep",
    "sync",
    "unload_ipython_extension",
    "use_run",
    "validate",
]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Where Jupyter finds mlnb's server extension (enabled as ``mlnb`` on install)."""
    return [{"module": "mlnb.server"}]
