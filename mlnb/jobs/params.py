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

from mlnb.conventions import UNKNOWN_PARAM_TAG, canonical_json
from mlnb.errors import InvalidInputError

__all__ = [
    "RUN_ID_PARAMETER",
    "Param",
    "cell_tags",
    "check_parameters",
    "has_parameters_cell",
    "language_of",
    "notebook_parameters",
    "parameters_of",
    "quiet_warnings",
    "read_notebook",
    "readable_parameters",
    "unknown_param_tags",
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


def has_parameters_cell(nb: Any) -> bool:
    """Whether a read notebook has a cell tagged ``parameters``."""
    return any("parameters" in cell_tags(c) for c in nb.cells)


def parameters_of(nb: Any) -> list[Param]:
    """The parameters of a read notebook (see :func:`notebook_parameters`); an
    InvalidInputError when papermill cannot read them in the notebook's language."""
    params = readable_parameters(nb)
    if params is None:
        raise InvalidInputError(
            f"cannot read the parameters of this notebook: papermill reads the parameters "
            f"cell of Python notebooks only, and this one is in {language_of(nb)!r}"
        )
    return params


def language_of(nb: Any) -> str:
    """The notebook's language as papermill reads it (``language_info``, else the
    kernelspec's), or ``"unknown"``."""
    from papermill.utils import nb_language

    try:
        return str(nb_language(nb))
    except ValueError:
        return "unknown"


def readable_parameters(nb: Any, kernel: str | None = None) -> list[Param] | None:
    """The parameters of a read notebook, ``[]`` without a ``parameters`` cell, or None
    when papermill cannot read them: it introspects Python only (an R notebook's values
    are still injected by its translator). ``kernel`` is the kernel the job runs in
    (default: the notebook's), which papermill consults before the language."""
    from papermill.exceptions import PapermillException
    from papermill.translators import papermill_translators

    cell = next((c for c in nb.cells if "parameters" in cell_tags(c)), None)
    if cell is None:
        return []
    kernel = kernel or nb.metadata.get("kernelspec", {}).get("name")
    try:
        translator = papermill_translators.find_translator(kernel, language_of(nb))
        inspected = translator.inspect(cell)
    except (ValueError, NotImplementedError, PapermillException):
        return None
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


ALLOW_HINT = "--allow-unknown-params (allow_unknown_params=True)"
TAG_HOWTO = (
    "add the tag 'parameters' to the cell that assigns the defaults (JupyterLab: select the "
    "cell, open the property inspector (the gears icon, right sidebar) and add a tag; "
    "Notebook 7: View > Cell Toolbar > Tags)"
)


def _unknown_message(names: list[str], known: list[Param], has_cell: bool, where: Path) -> str:
    """Why ``names`` are refused, what the first may have been meant as, and what to do."""
    import difflib

    first = names[0]
    also = f" (nor {', '.join(map(repr, names[1:]))})" if len(names) > 1 else ""
    allow = (
        f"to inject {'them' if also else 'it'} anyway (recorded as the tag "
        f"{UNKNOWN_PARAM_TAG}.{first}, not as a param), pass {ALLOW_HINT}"
    )
    if not has_cell:
        return (
            f"{where.name} has no cell tagged 'parameters', so {first!r}{also} would be "
            f"injected at the top, where the notebook's own assignments may override it: "
            f"{TAG_HOWTO}; or, {allow}"
        )
    defined = [p.name for p in known]
    close = difflib.get_close_matches(first, defined, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"its parameters are: {', '.join(defined)}."
    return (
        f"the parameters cell of {where.name} defines no {first!r}{also}; {hint} "
        f"{allow[0].upper()}{allow[1:]}"
    )


def check_parameters(
    given: Mapping[str, Any],
    known: list[Param] | None,
    *,
    where: Path,
    has_cell: bool,
    strict: bool = False,
    allow_unknown: bool = False,
) -> dict[str, Any]:
    """Refuse values no notebook can receive, names that are not identifiers and, unless
    ``allow_unknown``, names the ``parameters`` cell does not assign (``known``; None when
    papermill cannot read that cell: then nothing can be checked); with ``strict``, also
    values of the wrong type. Returns the unknown values that are allowed (papermill injects
    them all the same; they are recorded as tags, not params)."""
    for key, value in given.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise InvalidInputError(f"parameter name {key!r} is not a valid Python identifier")
        if key == RUN_ID_PARAMETER:
            raise InvalidInputError(f"{RUN_ID_PARAMETER!r} is set by mlnb; do not pass it")
        _check_value(key, value)
    if known is None:
        if strict and given:
            raise InvalidInputError(
                f"strict parameters cannot be checked for {where.name}: papermill reads the "
                f"parameters cell of Python notebooks only; run it without strict checks"
            )
        return {}
    by_name = {p.name: p for p in known}
    unknown = {k: v for k, v in given.items() if k not in by_name}
    if unknown and not allow_unknown:
        raise InvalidInputError(_unknown_message(sorted(unknown), known, has_cell, where))
    if not strict:
        return unknown
    for key, value in given.items():
        param = by_name.get(key)
        if param is None:
            continue
        allowed = _TYPE_CHECKS.get(param.type)
        if allowed is None:  # None default, an expression, or an annotation we don't judge
            continue
        is_bool = isinstance(value, bool)
        if not isinstance(value, allowed) or (is_bool and param.type != "bool"):
            raise InvalidInputError(
                f"parameter {key!r} of {where.name} is a {param.type} (default "
                f"{param.source}), got {type(value).__name__}: {value!r}"
            )
    return unknown


def unknown_param_tags(unknown: Mapping[str, Any]) -> dict[str, str]:
    """The tags that record values injected for names the notebook does not declare:
    ``mlnb.unknown_param.<name>``, text as is, other values as JSON."""
    return {
        f"{UNKNOWN_PARAM_TAG}.{k}": v if isinstance(v, str) else canonical_json(v)
        for k, v in unknown.items()
    }
