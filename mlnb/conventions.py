"""Rules that more than one layer follows, defined once (MLflow keeps its reserved tag
names in one module for the same reason): the canonical JSON text that environment hashes
and param values are computed from, which way a metric improves, and which params of a
sweep's parent run describe the sweep rather than a model.

Standard library only, and no import of mlnb, so every layer can import it.
"""

from __future__ import annotations

import enum
import json
import math
import re
from typing import Any, Final, Literal

__all__ = [
    "ENV_CAPTURE",
    "ENV_JOB_EXPERIMENT",
    "ENV_JOB_PROGRESS",
    "ENV_NOTEBOOK",
    "ENV_RUN_ID",
    "ENV_STORE",
    "ENV_SYSTEM_METRICS",
    "ENV_TEST",
    "ERROR_MESSAGE_TAG",
    "ERROR_NAME_TAG",
    "ERROR_TAG",
    "EXIT_BUSY",
    "EXIT_CHECK_FAILED",
    "EXIT_CODES",
    "EXIT_DEAD_KERNEL",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_REPRODUCED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "JOB_TAG",
    "KERNEL_START_ERROR_TAG",
    "KERNEL_START_RETRIES_TAG",
    "MISSING",
    "MLFLOW_RUN_TAG",
    "MONITOR_TAG",
    "NOTEBOOK_HASH_TAG",
    "NOTE_TAG",
    "REPRODUCE_OF_TAG",
    "REPRODUCE_VERDICT_TAG",
    "RETRAIN_REASON_TAG",
    "RETRIES_TAG",
    "RETRY_REASON_TAG",
    "SOURCE_RUN_TAG",
    "SOURCE_TAG_PREFIX",
    "SPEC_PARAM_PREFIXES",
    "SWEEP_CANCELLED_TAG",
    "SWEEP_INDEX_TAG",
    "SWEEP_TAG",
    "UNKNOWN_PARAM_TAG",
    "WARNING_TAG",
    "Missing",
    "canonical_json",
    "lower_is_better",
    "metric_direction",
]


class Missing(enum.Enum):
    """The type of :data:`MISSING`: an enum, so that ``x is MISSING`` narrows types and the
    sentinel stays itself through ``copy``, ``deepcopy`` and pickling."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "—"


# A key a run lacks, where runs are compared (diffs, the compare view, reports): not None,
# which is a value a run can have. Printed as "—"; JSON views turn it into null.
MISSING: Final = Missing.MISSING

# Reserved tags: what mlnb writes on runs under its own `mlnb.` prefix (docs/jobs.md names
# each where it is written)
ERROR_TAG: Final = "mlnb.error"  # a failed job's tags: mlnb.error.name, .message, .cell, ...
ERROR_NAME_TAG: Final = f"{ERROR_TAG}.name"  # why a run failed, as reports show it
ERROR_MESSAGE_TAG: Final = f"{ERROR_TAG}.message"
WARNING_TAG: Final = "mlnb.warning"  # what a job noted about its parameters
JOB_TAG: Final = "mlnb.job"  # the run is a headless job (`mlnb run`, a sweep's child)
NOTEBOOK_HASH_TAG: Final = "mlnb.notebook_hash"  # the job's notebook, as it was run
KERNEL_START_RETRIES_TAG: Final = "mlnb.kernel_start_retries"  # a job's kernel failed to start
KERNEL_START_ERROR_TAG: Final = "mlnb.kernel_start_error"
UNKNOWN_PARAM_TAG: Final = "mlnb.unknown_param"  # values injected for names the notebook lacks
SWEEP_TAG: Final = "mlnb.sweep"  # the parent run of a sweep
SWEEP_INDEX_TAG: Final = "mlnb.sweep.index"  # a child's point in the grid
SWEEP_CANCELLED_TAG: Final = "mlnb.sweep.cancelled"  # why a queued child never ran
RETRIES_TAG: Final = "mlnb.retries"  # a Dask child run again after its worker was lost
RETRY_REASON_TAG: Final = "mlnb.retry_reason"  # which worker was lost, and where it ran again
REPRODUCE_OF_TAG: Final = "mlnb.reproduce.of"  # the run a reproduction re-executed
REPRODUCE_VERDICT_TAG: Final = "mlnb.reproduce.verdict"
NOTE_TAG: Final = "mlnb.note"  # `%track note TEXT`
RETRAIN_REASON_TAG: Final = "mlnb.retrain.reason"  # why `mlnb retrain` trained this run
MONITOR_TAG: Final = "mlnb.monitor"  # a model's monitor run (`mlnb monitor`): the model
MLFLOW_RUN_TAG: Final = "mlnb.mlflow.run_id"  # the MLflow run this run was pushed to or pulled from
# ... and what mlnb writes on an MLflow server (docs/teams.md): its runs and model versions
# carry where they came from under `mlnb.source.`, which a pull strips again
SOURCE_TAG_PREFIX: Final = "mlnb.source."
SOURCE_RUN_TAG: Final = "mlnb.source.run_id"  # the mlnb run id of a pushed run

# The environment variables mlnb reads (users read about each where it is used: docs/store.md,
# docs/jobs.md, docs/capture.md, docs/lineage.md)
ENV_STORE: Final = "MLNB_STORE"  # the store folder, for the CLI, the API and jobs
ENV_RUN_ID: Final = "MLNB_RUN_ID"  # a job's run: %track in its kernel attaches to it
ENV_JOB_EXPERIMENT: Final = "MLNB_JOB_EXPERIMENT"  # `mlnb run --experiment` chose it
ENV_JOB_PROGRESS: Final = "MLNB_JOB_PROGRESS"  # a file where a job writes its cell progress
ENV_NOTEBOOK: Final = "MLNB_NOTEBOOK"  # the notebook a kernel runs, when it cannot be found
ENV_TEST: Final = "MLNB_TEST"  # set by `mlnb test`: notebooks may shrink their work
ENV_CAPTURE: Final = "MLNB_CAPTURE"  # what start_run captures by default
ENV_SYSTEM_METRICS: Final = "MLNB_SYSTEM_METRICS"  # sample system metrics by default
ENV_SYNCHRONOUS: Final = "MLNB_SYNCHRONOUS"  # NORMAL (default) or FULL: SQLite's fsync policy
ENV_SERVE_CONFIG: Final = "MLNB_SERVE_CONFIG"  # mlnb serve hands its settings to uvicorn's workers

# Exit codes of the `mlnb` commands and of the results that carry one (JobResult,
# SweepResult, GateResult, Reproduction): one table, so a code means the same everywhere.
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # a cell raised, a child failed, a gate failed, an mlnb error
EXIT_USAGE: Final = 2  # bad options or input, found before anything ran
EXIT_CHECK_FAILED: Final = 3  # the run finished but a --check failed
EXIT_NOT_REPRODUCED: Final = 16  # + what differs: metrics 1, data 2, environment 4, code 8
EXIT_BUSY: Final = 75  # another retrain of the model holds its lock (EX_TEMPFAIL: try later)
EXIT_TIMEOUT: Final = 124  # a cell timed out (as timeout(1))
EXIT_INTERRUPTED: Final = 130  # Ctrl-C (128 + SIGINT, as shells report it)
EXIT_DEAD_KERNEL: Final = 138  # the kernel died
EXIT_CODES: Final = {
    EXIT_OK: "ok",
    EXIT_FAILED: "failed",
    EXIT_USAGE: "usage error (nothing ran)",
    EXIT_CHECK_FAILED: "a --check failed",
    EXIT_NOT_REPRODUCED: "not reproduced (16 + the bits of what differs)",
    EXIT_BUSY: "busy: another retrain of the model is running (try later)",
    EXIT_TIMEOUT: "a cell timed out",
    EXIT_INTERRUPTED: "interrupted",
    EXIT_DEAD_KERNEL: "the kernel died",
}

# A parent run's params describe the sweep (its spec), not a model: `sweep.points`,
# `grid.lr` (the values swept), `fixed.epochs`. Comparisons leave them out.
SPEC_PARAM_PREFIXES = ("sweep.", "grid.", "fixed.")

# the words of a key's name (split at anything not a letter or digit) that decide its best
_LOWER_PREFIXES = ("loss", "err", "nll", "cost", "regret", "perplexity", "ppl", "mse", "mae",
                   "rmse", "mape", "wer", "cer", "latency")  # fmt: skip
_HIGHER_PREFIXES = ("acc", "precision", "recall", "f1", "auc", "auroc", "auprc", "score",
                    "reward", "return", "bleu", "rouge", "ndcg", "iou", "sharpe",
                    "throughput")  # fmt: skip
_HIGHER_WORDS = frozenset({"ap", "map", "mrr", "hit", "hits", "win", "r2", "dice", "top1",
                           "top3", "top5", "top10"})  # fmt: skip


def canonical_json(value: Any) -> str:
    """Stable JSON text: sorted keys, no spaces, NaN/inf spelled as strings."""
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"dict key {k!r} is a {type(k).__name__}, not a string")
            out[k] = _jsonable(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return _jsonable(item())
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def metric_direction(key: str) -> Literal["lower", "higher"] | None:
    """Which way a metric improves, as its name says: the words after the last ``/`` (split
    at anything not a letter or digit). A loss or an error improves downwards (``val_loss``,
    ``error_rate``, ``acc_loss``: lower wins), an accuracy-like score upwards (``val_acc``,
    ``f1``, ``map@5``); None when the name does not say (``lr``, ``custom``).

    The one direction policy; what a name that says nothing means depends on the use:
    where runs are shown (live plots, the compare view, multidiff) the best value is the
    minimum (:func:`lower_is_better`); a gate (``mlnb gate``, ``mlnb.gate``) takes higher
    as better, MLflow's ``MetricThreshold`` default. Told explicitly (a gate's comparator
    or ``--lower-is-better`` / ``--higher-is-better``), a gate never guesses."""
    words = [w for w in re.split(r"[^a-z0-9]+", key.rsplit("/", 1)[-1].lower()) if w]
    if any(w.startswith(_LOWER_PREFIXES) for w in words):
        return "lower"
    if any(w.startswith(_HIGHER_PREFIXES) or w in _HIGHER_WORDS for w in words):
        return "higher"
    return None


def lower_is_better(key: str) -> bool:
    """Whether the best value of a metric, where runs are shown, is its minimum: what its
    name says (:func:`metric_direction`), and the minimum when the name says nothing."""
    return metric_direction(key) != "higher"
