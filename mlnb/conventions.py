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
from typing import Any, Final

__all__ = [
    "MISSING",
    "SPEC_PARAM_PREFIXES",
    "Missing",
    "canonical_json",
    "lower_is_better",
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


def lower_is_better(key: str) -> bool:
    """Whether the best value of a metric is its minimum, guessed from the words of its
    name after the last ``/``: a loss or an error is minimised (``val_loss``,
    ``error_rate``), an accuracy-like score maximised (``val_acc``, ``f1``, ``map@5``),
    anything else minimised."""
    words = [w for w in re.split(r"[^a-z0-9]+", key.rsplit("/", 1)[-1].lower()) if w]
    if any(w.startswith(_LOWER_PREFIXES) for w in words):
        return True
    higher = any(w.startswith(_HIGHER_PREFIXES) or w in _HIGHER_WORDS for w in words)
    return not higher
