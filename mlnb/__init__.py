"""mlnb: experiment tracking for people who train models in Jupyter.

The public surface is what ``__all__`` lists; a test keeps the two in step. Importing mlnb
is cheap: pandas, matplotlib, IPython, ipywidgets, papermill and jupyter_server load only
when a function needs them.
"""

from mlnb.errors import MlnbError
from mlnb.search import delete_run, diff, get_run, restore_run, runs
from mlnb.store import Store
from mlnb.tracking import (
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
    set_store,
    set_tag,
    set_tags,
    start_run,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "ActiveRun",
    "MlnbError",
    "Store",
    "__version__",
    "active_run",
    "delete_run",
    "diff",
    "end_run",
    "flush",
    "get_run",
    "get_store",
    "log_artifact",
    "log_data",
    "log_figure",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "restore_run",
    "runs",
    "set_store",
    "set_tag",
    "set_tags",
    "start_run",
]
