"""Rules that more than one layer follows, defined once (MLflow keeps its reserved tag
names in one module for the same reason): the canonical JSON text that environment hashes
and param values are computed from.

Standard library only, and no import of mlnb, so every layer can import it.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["canonical_json"]


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
