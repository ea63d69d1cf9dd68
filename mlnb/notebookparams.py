"""A notebook's parameters: the cell tagged ``parameters`` (papermill's convention), read
and checked before anything runs.

Used by the runner (``mlnb run``), sweeps and ``mlnb reproduce``; ``mlnb params`` prints
:func:`notebook_parameters`. papermill and nbformat are imported inside the functions.
"""

from __future__ import annotations

import ast
import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlnb.errors import InvalidInputError

__all__ = [
    "RUN_ID_PARAMETER",
    "Param",
    "cell_tags",
    "check_parameters",
    "notebook_parameters",
    "parameters_of",
    "quiet_warnings",
    "read_notebook",
]

RUN_ID_PARAMETER = "mlnb_run_id"  # injected by mlnb into every job: never a user's


@dataclass(frozen=True)
class Param:
    """One parameter of a notebook: a line of its ``parameters`` cell.

    ``type`` is the annotation if there is one, else the type of the default (``float``,
    ``int``, ``str``, ``bool``, ``list``, ``dict``, ``None``…), or ``""`` when the default
    is an expression rather than a literal; ``default`` is the literal's value (``None``
    for an expression), ``source`` the default as written, ``help`` the trailing comment.
    """

    name: str
    type: str
    default: Any
    help: str = ""
    source: str = ""


def read_notebook(path: Path) -> Any:
    """The notebook at ``path`` (nbformat 4), or an InvalidInputError that says why not."""
    import nbformat

    if not path.exists():
        raise InvalidInputError(f"no such notebook: {path}")
    if not path.is_file():
        raise InvalidInputError(f"{path} is not a notebook file (it is a folder)")
    try:
        with quiet_warnings():
            reader: Any = nbformat.read
            return reader(path, as_version=4)
    except Exception as exc:
        raise InvalidInputError(
            f"{path} is not a Jupyter notebook ({type(exc).__name__}: {exc})"
        ) from None


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """nbformat warns about notebooks missing cell ids; that is not the user's problem."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def cell_tags(cell: Any) -> list[str]:
    """A cell's tags (metadata.tags), whatever the notebook holds there."""
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, list) else []


def parameters_of(nb: Any) -> list[Param]:
    """The parameters of a read notebook (see :func:`notebook_parameters`)."""
    from papermill.translators import papermill_translators
    from papermill.utils import nb_kernel_name, nb_language

    cell = next((c for c in nb.cells if "parameters" in cell_tags(c)), None)
    if cell is None:
        return []
    try:
        translator = papermill_translators.find_translator(nb_kernel_name(nb), nb_language(nb))
        inspected = translator.inspect(cell)
    except (ValueError, NotImplementedError) as exc:
        raise InvalidInputError(f"cannot read the parameters of this notebook: {exc}") from None
    params = []
    for p in inspected:
        source = str(p.default)
        try:
            value = ast.literal_eval(source)
            literal = True
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value, literal = None, False
        annotation = p.inferred_type_name if p.inferred_type_name != "None" else ""
        if annotation:
            type_name = annotation
        elif literal:
            type_name = "None" if value is None else type(value).__name__
        else:
            type_name = ""
        params.append(Param(p.name, type_name, value, p.help or "", source))
    return params


def notebook_parameters(path: str | os.PathLike[str]) -> list[Param]:
    """The parameters of the notebook at ``path``: the assignments of its cell tagged
    ``parameters`` (papermill's convention), in order. No such cell: an empty list."""
    return parameters_of(read_notebook(Path(path).expanduser()))


# -- checks before running ---------------------------------------------------------------

_JSONISH = (str, int, float, bool, type(None))


def _check_value(key: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(
            f"parameter {key!r}: {value!r} cannot be passed to a notebook; use a finite number"
        )
    if isinstance(value, _JSONISH):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_value(key, item)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise InvalidInputError(f"parameter {key!r}: dict keys must be strings, got {k!r}")
            _check_value(key, item)
        return
    raise InvalidInputError(
        f"parameter {key!r}: {type(value).__name__} values cannot be passed to a notebook; "
        "use str, int, float, bool, None, or lists and dicts of them"
    )


_TYPE_CHECKS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float, int),
    "str": (str,),
    "bool": (bool,),
    "list": (list, tuple),
    "dict": (dict,),
}


def check_parameters(
    given: Mapping[str, Any], known: list[Param], *, strict: bool, where: Path
) -> None:
    """Refuse values no notebook can receive (and names that are not identifiers); with
    ``strict``, also names the notebook does not have and values of the wrong type."""
    for key, value in given.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise InvalidInputError(f"parameter name {key!r} is not a valid Python identifier")
        if key == RUN_ID_PARAMETER:
            raise InvalidInputError(f"{RUN_ID_PARAMETER!r} is set by mlnb; do not pass it")
        _check_value(key, value)
    if not strict:
        return
    by_name = {p.name: p for p in known}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        names = ", ".join(by_name) if by_name else "none (no cell tagged 'parameters')"
        raise InvalidInputError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for "
            f"{where.name}; its parameters are: {names}"
        )
    for key, value in given.items():
        param = by_name[key]
        allowed = _TYPE_CHECKS.get(param.type)
        if allowed is None:  # None default, an expression, or an annotation we don't judge
            continue
        is_bool = isinstance(value, bool)
        if not isinstance(value, allowed) or (is_bool and param.type != "bool"):
            raise InvalidInputError(
                f"parameter {key!r} of {where.name} is a {param.type} (default "
                f"{param.source}), got {type(value).__name__}: {value!r}"
            )
