"""The wire formats of ``mlnb serve``, as pure functions: a request body in, a frame of
inputs checked against the model's signature out; predictions in, a response body out.

- MLflow's scoring protocol (``POST /invocations``): a JSON object with exactly one of
  ``dataframe_split`` (``{"columns": [...], "data": [[...]]}``), ``dataframe_records``
  (``[{"col": value}, ...]``), ``instances`` or ``inputs`` (a list of rows, a list of
  records, or ``{"col": [values]}``), and optional ``params``; or a CSV body
  (``Content-Type: text/csv``). The answer is ``{"predictions": [...]}``.
- The Open Inference Protocol V2 (``POST /v2/models/{name}/infer``): ``inputs`` is a list of
  tensors ``{"name", "shape", "datatype", "data"}``, one per column (shape ``[n]`` or
  ``[n, 1]``), or one tensor of shape ``[n, k]`` holding the rows; the answer holds
  ``outputs`` tensors.

Everything a client gets wrong raises :class:`~mlnb.errors.PredictionInputError` naming
the field (400: the body is malformed; 422: it does not fit the signature). pandas and
numpy are imported inside the functions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlnb.errors import PredictionInputError

if TYPE_CHECKING:
    import pandas as pd

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")

# V2 tensor datatypes and the signature dtypes they stand for (and back)
V2_TYPES = {
    "BOOL": "bool",
    **dict.fromkeys(("UINT8", "UINT16", "UINT32", "UINT64"), "int64"),
    **dict.fromkeys(("INT8", "INT16", "INT32", "INT64"), "int64"),
    **dict.fromkeys(("FP16", "FP32", "FP64"), "float64"),
    "BYTES": "str",
}


@dataclass(frozen=True)
class Signature:
    """The inputs a served model expects: column names and their dtypes (from the
    version's signature; ``columns`` empty: not known, any columns are passed through)."""

    columns: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()

    @property
    def all_float(self) -> bool:
        """Whether every input is a float column (numbers arrive as one float block)."""
        return bool(self.dtypes) and all(t.startswith("float") for t in self.dtypes)

    @classmethod
    def of(cls, signature: Mapping[str, Any] | None) -> Signature:
        inputs = (signature or {}).get("inputs") or []
        cols = tuple(str(c.get("name")) for c in inputs if isinstance(c, Mapping))
        types = tuple(str(c.get("dtype") or "") for c in inputs if isinstance(c, Mapping))
        return cls(cols, types)

    def v2_inputs(self) -> list[dict[str, Any]]:
        """The V2 metadata of the inputs: one tensor per column."""
        return [{"name": c, "datatype": v2_datatype(t), "shape": [-1]}
                for c, t in zip(self.columns, self.dtypes, strict=True)]  # fmt: skip


def v2_datatype(dtype: str) -> str:
    """The V2 datatype of a signature or numpy dtype name."""
    if dtype.startswith(("int", "uint")):
        return "INT64"
    if dtype.startswith("float"):
        return "FP64"
    if dtype == "bool":
        return "BOOL"
    return "BYTES"


def bad(message: str, field: str | None = None, status: int = 400) -> PredictionInputError:
    return PredictionInputError(message, field=field, status=status)


def check_request_id(request_id: Any, field: str = "request_id") -> str:
    """A request id as the service hands them out: 1-128 letters, digits, ``._:-``."""
    if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
        raise bad(f"bad request id {request_id!r:.60}: 1 to 128 letters, digits, '.', '_', "
                  "':' or '-' (the x-request-id the service returned)", field)  # fmt: skip
    return request_id


def parse_json(body: bytes) -> Any:
    """The JSON of a request body, else a 400 saying where it stops parsing."""
    if not body.strip():
        raise bad("the request body is empty; send a JSON object (or CSV with text/csv)")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"the request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise bad("the request body nests JSON too deeply to read") from None


def mlflow_frame(body: bytes, content_type: str, sig: Signature) -> tuple[pd.DataFrame, Any]:
    """An ``/invocations`` request as ``(frame checked against sig, params)``."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "text/csv":
        return check_frame(_csv(body), sig), None
    if kind not in ("application/json", ""):
        raise bad(
            f"unsupported Content-Type {content_type!r}: send application/json (dataframe_split, "
            "dataframe_records, instances or inputs) or text/csv",
            "Content-Type",
            415,
        )
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise bad(
            f"the body must be a JSON object with one of {', '.join(MLFLOW_KEYS)}, not a "
            f"{type(payload).__name__}"
        )
    keys = [k for k in MLFLOW_KEYS if k in payload]
    unknown = sorted(set(payload) - {*MLFLOW_KEYS, "params"})
    if len(keys) != 1:
        found = f"it has {', '.join(keys)}" if keys else "it has none"
        if unknown:
            found += f" (and {', '.join(unknown[:5])})"
        raise bad(f"the body must hold exactly one of {', '.join(MLFLOW_KEYS)}; {found}")
    if unknown:
        raise bad(f"unknown field {unknown[0]!r} next to {keys[0]!r}", unknown[0])
    params = payload.get("params")
    if params is not None and not isinstance(params, dict):
        raise bad("params must be a JSON object of parameter names and values", "params")
    key = keys[0]
    value = payload[key]
    if key == "dataframe_split":
        frame = _split(value, sig)
    elif key == "dataframe_records":
        frame = _records(value, key)
    else:
        frame = _instances(value, key, sig)
    return check_frame(frame, sig), params


def _csv(body: bytes) -> pd.DataFrame:
    import io

    import pandas as pd

    try:
        return pd.read_csv(io.BytesIO(body))
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError, EmptyDataError
        raise bad(f"the CSV body does not parse ({str(exc).strip()})", "body") from None


def _split(value: Any, sig: Signature) -> pd.DataFrame:
    import pandas as pd

    field = "dataframe_split"
    if not isinstance(value, dict):
        raise bad(f"{field} must be an object with columns and data", field)
    extra = sorted(set(value) - {"columns", "data", "index"})
    if extra:
        raise bad(f"unknown field {field}.{extra[0]}", f"{field}.{extra[0]}")
    data = value.get("data")
    if not isinstance(data, list):
        raise bad(f"{field}.data must be a list of rows", f"{field}.data")
    columns = value.get("columns")
    if columns is None:
        columns = list(sig.columns) or None
    elif not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise bad(f"{field}.columns must be a list of column names", f"{field}.columns")
    _rows_fit(data, columns, f"{field}.data")
    if sig.all_float and columns == list(sig.columns) and _all_numbers(data):
        import numpy as np  # the common case: numbers only, one block, no per-column work

        return pd.DataFrame(np.array(data, dtype=np.float64), columns=columns)
    return pd.DataFrame(data, columns=columns)


def _all_numbers(rows: list[list[Any]]) -> bool:
    number = (int, float)
    return all(type(v) in number for row in rows for v in row)


def _rows_fit(data: list[Any], columns: Sequence[str] | None, field: str) -> None:
    width = len(columns) if columns is not None else None
    for i, row in enumerate(data):
        if not isinstance(row, list):
            raise bad(f"{field}[{i}] must be a list of values (a row)", f"{field}[{i}]")
        if width is None:
            width = len(row)
        if len(row) != width:
            raise bad(f"{field}[{i}] has {len(row)} values; expected {width}", f"{field}[{i}]")


def _records(value: Any, field: str) -> pd.DataFrame:
    import pandas as pd

    if not isinstance(value, list):
        raise bad(f"{field} must be a list of records ({{column: value}})", field)
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            raise bad(f"{field}[{i}] must be an object of column: value", f"{field}[{i}]")
    return pd.DataFrame.from_records(value)


def _instances(value: Any, field: str, sig: Signature) -> pd.DataFrame:
    """``instances`` / ``inputs``: ``{"col": [values]}``, a list of records, or a list of
    rows (positional, in the signature's order)."""
    import pandas as pd

    if isinstance(value, dict):
        columns: dict[str, list[Any]] = {}
        length = None
        for name, col in value.items():
            values = col if isinstance(col, list) else [col]
            if length is not None and len(values) != length:
                raise bad(f"{field}.{name} has {len(values)} values; the other columns have "
                          f"{length}", f"{field}.{name}")  # fmt: skip
            length = len(values)
            columns[name] = values
        return pd.DataFrame(columns)
    if not isinstance(value, list):
        raise bad(f"{field} must be a list of rows or records, or an object of columns", field)
    if value and all(isinstance(r, dict) for r in value):
        return _records(value, field)
    if value and not isinstance(value[0], list):  # one column, or one row of a 1-D input
        if len(sig.columns) == 1:
            return pd.DataFrame({sig.columns[0]: value})
        value = [value]
    names = list(sig.columns) or None
    _rows_fit(value, names, field)
    return pd.DataFrame(value, columns=names)


def check_frame(frame: pd.DataFrame, sig: Signature) -> pd.DataFrame:
    """The frame with the signature's columns, in its order, of its dtypes; a missing
    column or a value of the wrong type is a 422 naming the column. Extra columns are
    dropped (MLflow does the same)."""
    if len(frame) == 0:
        raise bad("the request holds no rows to predict", "data")
    if not sig.columns:
        return frame
    present = set(frame.columns)
    missing = [c for c in sig.columns if c not in present]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise bad(
            f"missing input column{'s' if len(missing) > 1 else ''} {shown}; the model expects "
            f"{', '.join(sig.columns)}",
            missing[0],
            422,
        )
    if list(frame.columns) != list(sig.columns):
        frame = frame[list(sig.columns)]
    converted = {}
    have = frame.dtypes.tolist()
    for i, (name, dtype) in enumerate(zip(sig.columns, sig.dtypes, strict=True)):
        if have[i].kind == "f" and dtype.startswith("float"):
            continue  # already what the model takes (the common case: no column lookup)
        column = frame.iloc[:, i]
        fixed = _convert(column, dtype, name)
        if fixed is not column:
            converted[name] = fixed
    if converted:
        frame = frame.assign(**converted)
    return frame


def _convert(column: pd.Series, dtype: str, name: str) -> pd.Series:
    """The column as ``dtype`` when its values are of that kind, else a 422."""
    import numpy as np

    kind = column.dtype.kind
    if dtype.startswith(("float", "int", "uint")):
        target = np.dtype(dtype)
    if dtype.startswith("float"):
        if kind == "f":
            return column
        if kind in "iu":
            return column.astype(target)
        return _refuse(column, name, "numbers", dtype)
    if dtype.startswith(("int", "uint")):
        if kind in "iu":
            return column if column.dtype == target else column.astype(target)
        if kind == "f":
            values = column.to_numpy()
            if all(math.isfinite(v) and float(v).is_integer() for v in values):
                return column.astype(target)
            return _refuse(column, name, "whole numbers", dtype)
        return _refuse(column, name, "whole numbers", dtype)
    if dtype == "bool":
        return column if kind == "b" else _refuse(column, name, "true or false", dtype)
    if dtype in ("str", "object", "string"):
        if kind in "OSUT" and all(v is None or isinstance(v, str) for v in column.tolist()):
            return column
        return _refuse(column, name, "strings", dtype)
    if dtype.startswith("datetime"):
        import pandas as pd

        try:
            return pd.to_datetime(column)
        except (ValueError, TypeError):
            return _refuse(column, name, "dates or times", dtype)
    return column  # category and other dtypes: passed to the model as they came


def _refuse(column: pd.Series, name: str, expected: str, dtype: str) -> pd.Series:
    sample = next((v for v in column.tolist() if not _fits(v, dtype)), column.iloc[0])
    raise bad(
        f"column {name!r} must hold {expected} ({dtype}); got {sample!r:.60}",
        name,
        422,
    )


def _fits(value: Any, dtype: str) -> bool:
    if dtype.startswith("float"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype.startswith(("int", "uint")):
        return isinstance(value, int) and not isinstance(value, bool)
    if dtype == "bool":
        return isinstance(value, bool)
    return isinstance(value, str)


def v2_frame(body: bytes, sig: Signature) -> tuple[pd.DataFrame, str | None, Any]:
    """A V2 inference request as ``(frame, request id, parameters)``."""
    import pandas as pd

    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise bad("the body must be a JSON object with inputs (a list of tensors)")
    tensors = payload.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise bad("inputs must be a non-empty list of tensors {name, shape, datatype, data}",
                  "inputs")  # fmt: skip
    request_id = payload.get("id")
    if request_id is not None:
        check_request_id(request_id, "id")
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise bad("parameters must be an object", "parameters")
    decoded = [_tensor(t, i) for i, t in enumerate(tensors)]
    if len(decoded) == 1 and len(decoded[0][1]) == 2 and decoded[0][0] not in sig.columns:
        name, shape, data = decoded[0]
        rows, width = shape
        if sig.columns and width != len(sig.columns):
            raise bad(
                f"inputs[0] ({name}) has {width} columns per row; the model expects "
                f"{len(sig.columns)} ({', '.join(sig.columns)})",
                "inputs[0].shape",
                422,
            )
        matrix = [data[r * width : (r + 1) * width] for r in range(rows)]
        frame = pd.DataFrame(matrix, columns=list(sig.columns) or None)
    else:
        columns: dict[str, list[Any]] = {}
        length = None
        for i, (name, shape, data) in enumerate(decoded):
            if len(shape) == 2 and shape[1] != 1:
                raise bad(f"inputs[{i}] ({name}) has shape {shape}; a column is [n] or [n, 1]",
                          f"inputs[{i}].shape")  # fmt: skip
            if length is not None and len(data) != length:
                raise bad(f"inputs[{i}] ({name}) has {len(data)} values; the others have "
                          f"{length}", f"inputs[{i}].data")  # fmt: skip
            length = len(data)
            columns[name] = data
        frame = pd.DataFrame(columns)
    return check_frame(frame, sig), request_id, parameters


def _tensor(tensor: Any, i: int) -> tuple[str, list[int], list[Any]]:
    field = f"inputs[{i}]"
    if not isinstance(tensor, dict):
        raise bad(f"{field} must be a tensor object {{name, shape, datatype, data}}", field)
    for key in ("name", "shape", "datatype", "data"):
        if key not in tensor:
            raise bad(f"{field} has no {key}", f"{field}.{key}")
    name, shape, datatype, data = (tensor[k] for k in ("name", "shape", "datatype", "data"))
    if not isinstance(name, str):
        raise bad(f"{field}.name must be a string", f"{field}.name")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
            or not all(isinstance(s, int) and s >= 0 for s in shape)):  # fmt: skip
        raise bad(f"{field}.shape must be [n] or [n, k] of whole numbers", f"{field}.shape")
    if datatype not in V2_TYPES:
        raise bad(f"{field}.datatype {datatype!r:.20} is not one of {', '.join(V2_TYPES)}",
                  f"{field}.datatype")  # fmt: skip
    flat = _flatten(data, f"{field}.data")
    if len(flat) != math.prod(shape):
        raise bad(f"{field}.data holds {len(flat)} values; shape {shape} needs "
                  f"{math.prod(shape)}", f"{field}.data")  # fmt: skip
    want = V2_TYPES[datatype]
    for value in flat:
        ok = _fits(value, want) or (want == "float64" and value is None)
        if not ok:
            raise bad(f"{field}.data holds {value!r:.40}, which is not {datatype}",
                      f"{field}.data", 422)  # fmt: skip
    return name, list(shape), flat


def _flatten(data: Any, field: str) -> list[Any]:
    if not isinstance(data, list):
        raise bad(f"{field} must be a list", field)
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    for v in data:
        out.extend(_flatten(v, field) if isinstance(v, list) else [v])
    return out


def plain(values: Any) -> list[Any]:
    """A model's output as JSON-ready values (numpy arrays, frames, series, lists)."""
    tolist = getattr(values, "tolist", None)
    if callable(tolist):
        out = tolist()
    else:
        to_numpy = getattr(values, "to_numpy", None)
        out = to_numpy().tolist() if callable(to_numpy) else list(values)
    return [_clean(v) for v in out] if isinstance(out, list) else [_clean(out)]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def v2_outputs(predictions: list[Any]) -> list[dict[str, Any]]:
    """Predictions as one V2 output tensor (``predict``)."""
    first = predictions[0] if predictions else None
    width = len(first) if isinstance(first, list) else None
    flat = _flatten(predictions, "outputs") if width else predictions
    sample = next((v for v in flat if v is not None), None)
    if isinstance(sample, bool):
        datatype = "BOOL"
    elif isinstance(sample, int):
        datatype = "INT64"
    elif isinstance(sample, float):
        datatype = "FP64"
    else:
        datatype = "BYTES"
    shape = [len(predictions), width] if width else [len(predictions)]
    return [{"name": "predict", "datatype": datatype, "shape": shape, "data": flat}]
