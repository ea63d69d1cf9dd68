"""Checks and conversions for what users log: keys, metric values, steps, params.

Everything here raises :class:`InvalidInputError` naming the key and the problem, before
anything is written, so a batch with one bad item writes nothing.
"""

from __future__ import annotations

import json
import math
import numbers
import sys
from typing import Any

from mlnb.conventions import canonical_json
from mlnb.errors import InvalidInputError

MAX_KEY_LENGTH = 250
MAX_TAG_LENGTH = 8000
MAX_STEP = 2**63 - 1


def check_key(key: object, what: str = "key") -> str:
    """A key must be a non-empty str of printable characters, at most 250 long."""
    if not isinstance(key, str):
        raise InvalidInputError(f"{what} must be a string, got {type(key).__name__}: {key!r}")
    if not key or key.isspace():
        raise InvalidInputError(f"{what} must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInputError(
            f"{what} {key[:40]!r}... is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}"
        )
    if not key.isprintable():
        check_text(key, what)  # a lone surrogate gets its own message
        bad = next(c for c in key if not c.isprintable())
        raise InvalidInputError(f"{what} {key!r} contains the control character {bad!r}")
    return key


def artifact_name(name: object) -> str:
    """An artifact's name as one relative POSIX path, spelled one way: ``./`` parts and
    repeated or trailing slashes are dropped. Refused: absolute names, ``..`` parts,
    backslashes and drive letters, because a name is where the file lands when a run's
    artifacts are written out, and that must stay inside the folder they go to."""
    text = check_key(name, "artifact name")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if text.startswith("/"):
        problem = "is absolute"
    elif "\\" in text:
        problem = "contains a backslash"
    elif ".." in parts:
        problem = "has a '..' part"
    elif not parts:
        problem = "names no file"
    elif len(parts[0]) >= 2 and parts[0][1] == ":" and parts[0][0].isalpha():
        problem = "starts with a drive letter"
    else:
        return "/".join(parts)
    raise InvalidInputError(
        f"artifact name {text!r} {problem}; give a relative path inside the run's "
        "artifacts, such as 'model.pkl' or 'plots/roc.png'"
    )


def check_text(text: str, what: str) -> str:
    """Text SQLite can store: UTF-8 encodable, so no lone surrogate (``"\\ud800"``, or
    what ``surrogateescape`` makes of bytes that are not UTF-8)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} {text[:40]!r} contains the lone surrogate {text[exc.start]!r} at "
            f"position {exc.start}, which is not text SQLite can store; remove it, or decode "
            "the bytes it came from with errors='replace'"
        ) from None
    return text


def metric_value(key: str, value: object) -> float:
    """A metric value as a float: Python and numpy numbers, 0-d or one-element arrays."""
    t = type(value)
    if t is float:
        return value  # type: ignore[return-value]
    if t is int:
        return _int_as_float(key, value)  # type: ignore[arg-type]
    if isinstance(value, (str, bytes, bytearray)) or value is None:
        raise InvalidInputError(
            f"metric {key!r} must be a number, got {type(value).__name__}: {value!r}"
        )
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, numbers.Number):
        try:
            size = math.prod(int(n) for n in shape)
        except TypeError:
            size = -1
        if size != 1:
            raise InvalidInputError(
                f"metric {key!r} must be a single number, got a {type(value).__name__} "
                f"of shape {tuple(shape)}; log one element or use log_metrics"
            )
    if isinstance(value, complex):
        raise InvalidInputError(f"metric {key!r} must be a real number, got complex {value!r}")
    if isinstance(value, numbers.Integral):
        return _int_as_float(key, int(value))
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        raise InvalidInputError(_too_large(key, value)) from None
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"metric {key!r} must be a number, got {type(value).__name__}: {value!r}"
        ) from None


def _int_as_float(key: str, value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        raise InvalidInputError(_too_large(key, value)) from None


def _too_large(key: str, value: object) -> str:
    digits = len(str(abs(value))) if isinstance(value, int) else None
    shown = f"an integer of {digits} digits" if digits else f"{value!r:.60}"
    return (
        f"metric {key!r} is {shown}, beyond the largest float (about 1.8e308) that the store "
        "keeps; scale it down (log its logarithm, say) or log float('inf')"
    )


def timestamp_value(key: str, timestamp: object) -> float:
    """A metric point's time: finite Unix seconds (an int or float)."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        raise InvalidInputError(
            f"timestamp of metric {key!r} must be Unix seconds (a number), got "
            f"{type(timestamp).__name__}: {timestamp!r}"
        )
    try:
        seconds = float(timestamp)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise InvalidInputError(
            f"timestamp of metric {key!r} must be finite Unix seconds, got {timestamp!r}"
        )
    return seconds


def step_value(key: str, step: object) -> int:
    """A step must be a non-negative integer (bools and floats with fractions refused)."""
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        else:
            raise InvalidInputError(
                f"step for metric {key!r} must be an integer, got {type(step).__name__}: {step!r}"
            )
    step = int(step)
    if not 0 <= step <= MAX_STEP:
        raise InvalidInputError(step_out_of_range(key, step))
    return step


def step_out_of_range(key: str, step: int) -> str:
    """The message for a step SQLite cannot store (also an automatic one past 2**63-1)."""
    return (
        f"step for metric {key!r} must be between 0 and 2**63-1 (the largest integer SQLite "
        f"stores), got {step}; log smaller steps, or log the point with an explicit step"
    )


def encode_param(key: str, value: object) -> tuple[str, str, float | None]:
    """A param as ``(text, type, number)``: text is what MLflow would store (``str(v)``,
    canonical JSON for dicts and lists); number is set for numeric values so filters can
    compare numerically."""
    if type(value) is int:  # the common cases first, by exact type
        return _int_param(key, value)
    if type(value) is float:
        return repr(value), "float", value if math.isfinite(value) else None
    if isinstance(value, bool):
        return str(value), "bool", float(value)
    if isinstance(value, int):
        return _int_param(key, int(value))  # an IntEnum is logged as its number
    if isinstance(value, float):
        value = float(value)  # np.float64 is a float subclass whose repr differs
        return repr(value), "float", value if math.isfinite(value) else None
    if isinstance(value, str):
        return check_text(value, f"param {key!r}"), "str", _number_or_none(value)
    if value is None:
        return "None", "none", None
    if isinstance(value, (dict, list, tuple)):
        try:
            return canonical_json(value), "json", None
        except TypeError as exc:
            raise InvalidInputError(f"param {key!r} is not JSON-serializable: {exc}") from None
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return encode_param(key, item())
    raise InvalidInputError(
        f"param {key!r} has type {type(value).__name__}, which is not JSON-serializable; "
        "log a str, number, bool, None, or a list/dict of those"
    )


def _int_param(key: str, value: int) -> tuple[str, str, float | None]:
    """An int param; one too large for a float has no number (filters compare its text)."""
    try:
        text = str(value)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise InvalidInputError(
            f"param {key!r} is an integer of over {sys.get_int_max_str_digits()} digits, more "
            "than Python turns into text; log it as a string (or a hash of it)"
        ) from None
    try:
        return text, "int", float(value)
    except OverflowError:
        return text, "int", None


def decode_param(text: str, type_: str) -> Any:
    """The Python value a param was logged with."""
    if type_ == "int":
        return int(text)
    if type_ == "float":
        return float(text)
    if type_ == "bool":
        return text == "True"
    if type_ == "none":
        return None
    if type_ == "json":
        return json.loads(text)
    return text


def _number_or_none(text: str) -> float | None:
    try:
        num = float(text)
    except ValueError:
        return None
    return num if math.isfinite(num) else None


def tag_value(key: str, value: object) -> str:
    """Tags are strings; other scalars, and None, are converted with str() (``"None"``,
    the text ``log_params`` and MLflow's ``set_tag`` store for None)."""
    if isinstance(value, (dict, list, tuple, set)):
        raise InvalidInputError(
            f"tag {key!r} must be a string or scalar, got {type(value).__name__}"
        )
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TAG_LENGTH:
        raise InvalidInputError(f"tag {key!r} is longer than {MAX_TAG_LENGTH} characters")
    return check_text(text, f"tag {key!r}")
