"""Sweep grids: parsing ``-g NAME=VALUES`` and grid files, and expanding a grid into its
points (every combination, zipped lists, or a seeded random sample, also from ranges such
as ``loguniform(1e-4, 1e-1)``). Pure functions, used by :mod:`mlnb.jobs.sweeps`; see
docs/jobs.md ("Sweeps").
"""

from __future__ import annotations

import itertools
import math
import os
import random as random_module
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlnb.errors import InvalidInputError

__all__ = [
    "MAX_POINTS",
    "Distribution",
    "expand_grid",
    "load_grid_file",
    "parse_grid_arg",
    "parse_value",
]

MAX_POINTS = 10_000


@dataclass(frozen=True)
class Distribution:
    """A range to sample from under ``random=N``: ``uniform(low, high)``,
    ``loguniform(low, high)`` (uniform in log space; both > 0) or ``randint(low, high)``
    (an int, both ends included)."""

    kind: str
    low: float
    high: float

    def sample(self, rng: random_module.Random) -> float | int:
        """One value drawn with ``rng``."""
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.randint(int(self.low), int(self.high))

    def __str__(self) -> str:
        return f"{self.kind}({self.low:g}, {self.high:g})"


_DISTRIBUTION = re.compile(r"^\s*(uniform|loguniform|randint)\s*\((.*)\)\s*$")


def _distribution(name: str, text: str) -> Distribution | None:
    m = _DISTRIBUTION.match(text)
    if m is None:
        return None
    kind, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
    try:
        low, high = (float(a) for a in args)
    except ValueError:
        raise InvalidInputError(
            f"{name}: {kind}() takes two numbers, e.g. {kind}(1, 10); got {text!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise InvalidInputError(f"{name}: {text!r} needs finite bounds with low < high")
    if kind == "loguniform" and low <= 0:
        raise InvalidInputError(f"{name}: loguniform bounds must be > 0, got {text!r}")
    if kind == "randint" and not (low.is_integer() and high.is_integer()):
        raise InvalidInputError(f"{name}: randint bounds must be integers, got {text!r}")
    return Distribution(kind, low, high)


def parse_value(text: str) -> Any:
    """One value from the command line, read as papermill reads ``-p``: ``True``/``true``,
    ``False``/``false``, ``None``/``null``, an int, a float, else the text itself (as given:
    ``-p name " a "`` keeps its spaces)."""
    stripped = text.strip()
    if stripped in ("True", "true"):
        return True
    if stripped in ("False", "false"):
        return False
    if stripped in ("None", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(stripped)
        except ValueError:
            pass
    return text


def parse_grid_arg(text: str) -> tuple[str, list[Any] | Distribution]:
    """``NAME=V1,V2,...`` (values as in :func:`parse_value`), ``NAME=[YAML list]`` (for
    values holding commas, or lists), or ``NAME=loguniform(1e-4,1e-1)`` (a range, with
    ``random=N`` only)."""
    from mlnb.jobs.yamlinput import load_yaml

    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise InvalidInputError(f"expected NAME=VALUES (e.g. lr=0.01,0.1), got {text!r}")
    if not name.isidentifier():
        raise InvalidInputError(f"grid parameter name {name!r} is not a valid Python identifier")
    dist = _distribution(name, values)
    if dist is not None:
        return name, dist
    if values.strip().startswith("["):
        loaded = load_yaml(values, source=f"-g {name}")
        if not isinstance(loaded, list):
            raise InvalidInputError(f"{name}: {values!r} is not a YAML list")
        items = loaded
    else:
        items = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if not items:
        raise InvalidInputError(f"grid parameter {name!r} has no values (e.g. {name}=1,2,3)")
    return name, items


def load_grid_file(path: str | os.PathLike[str]) -> dict[str, Any] | list[dict[str, Any]]:
    """A grid from YAML: a mapping ``{lr: [0.01, 0.1], depth: [3, 5]}`` (a value that is
    not a list is one fixed value; a string like ``"loguniform(1e-4, 1e-1)"`` is a range),
    or a list of mappings, each one point of its own (``- {lr: 0.1, depth: 3}``). Read
    within the limits of :mod:`mlnb.jobs.yamlinput` (size, aliases, nesting)."""
    from mlnb.jobs.yamlinput import read_yaml_file

    p = Path(path).expanduser()
    loaded = read_yaml_file(p, what="grid file")
    if isinstance(loaded, list):
        if not loaded or not all(isinstance(pt, dict) for pt in loaded):
            raise InvalidInputError(
                f"the grid file {p} is a list: each item must be a mapping of parameter "
                "names to values (one point each)"
            )
        for point in loaded:
            _check_names(point, p)
        return [dict(pt) for pt in loaded]
    if not isinstance(loaded, dict) or not loaded:
        raise InvalidInputError(
            f"the grid file {p} must map parameter names to lists of values, e.g. "
            "{lr: [0.01, 0.1], depth: [3, 5]}"
        )
    _check_names(loaded, p)
    grid: dict[str, Any] = {}
    for name, values in loaded.items():
        dist = _distribution(name, values) if isinstance(values, str) else None
        grid[name] = dist if dist is not None else values if isinstance(values, list) else [values]
        if grid[name] == []:
            raise InvalidInputError(f"grid parameter {name!r} in {p} has no values")
    return grid


def _check_names(mapping: Mapping[Any, Any], where: object) -> None:
    for name in mapping:
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidInputError(f"grid parameter name {name!r} in {where} is not valid")


def expand_grid(
    grid: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    mode: str = "product",
    random: int | None = None,
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """The points of a grid, in order. ``grid`` maps names to lists of values (a non-list
    value is one value) or to :class:`Distribution` ranges, or is a list of points.
    ``mode="product"``: every combination; ``"zip"``: the i-th values together (lists of
    equal length). ``random=N`` samples N points with ``random.Random(seed)``: N distinct
    points of the grid, or, when a range is given, N independent draws (a list is then
    sampled uniformly). Refuses an empty grid and more than 10,000 points."""
    if mode not in ("product", "zip"):
        raise InvalidInputError(f"mode must be 'product' or 'zip', got {mode!r}")
    if random is not None and (not isinstance(random, int) or random < 1):
        raise InvalidInputError(f"random must be a positive number of points, got {random!r}")
    rng = random_module.Random(seed)
    if isinstance(grid, Sequence) and not isinstance(grid, str):
        points = _listed_points(grid)
    else:
        axes = _axes(grid)
        ranges = [k for k, v in axes.items() if isinstance(v, Distribution)]
        if ranges:
            return _draws(axes, _range_draws(ranges, mode=mode, random=random), rng)
        lists = {k: list(v) for k, v in axes.items() if not isinstance(v, Distribution)}
        if mode == "zip":
            points = _zip_points(lists)
        elif random is not None and _product_size(lists) > MAX_POINTS:
            return _draws(lists, random, rng)  # too many to list: independent draws
        else:
            points = _product_points(lists)
    if random is not None:
        points = _sample(points, random, rng)
    if len(points) > MAX_POINTS:
        raise InvalidInputError(f"{len(points):,} points is more than {MAX_POINTS:,}")
    return points


def _listed_points(grid: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A grid given as its list of points (a grid file that lists them)."""
    points = [dict(p) for p in grid]
    if not points:
        raise InvalidInputError("the grid has no points")
    return points


def _axes(grid: object) -> dict[str, Sequence[Any] | Distribution]:
    """Each parameter's values: a list or tuple, a range, or one value as a list of one."""
    if not isinstance(grid, Mapping) or not grid:
        raise InvalidInputError("the grid is empty: give at least one parameter with values")
    axes: dict[str, Sequence[Any] | Distribution] = {
        k: (v if isinstance(v, (list, tuple, Distribution)) else [v]) for k, v in grid.items()
    }
    for name, values in axes.items():
        if not isinstance(values, Distribution) and len(values) == 0:
            raise InvalidInputError(f"grid parameter {name!r} has no values")
    return axes


def _range_draws(ranges: list[str], *, mode: str, random: int | None) -> int:
    """How many points to draw when the grid has ranges: they are only sampled
    (``random=N``), and never zipped."""
    if random is None:
        raise InvalidInputError(
            f"{', '.join(ranges)} {'is a range' if len(ranges) == 1 else 'are ranges'}: "
            "sample from it with random=N (--random N)"
        )
    if mode == "zip":
        raise InvalidInputError("ranges cannot be zipped; use mode='product'")
    return random


def _draws(
    axes: Mapping[str, Sequence[Any] | Distribution], n: int, rng: random_module.Random
) -> list[dict[str, Any]]:
    """``n`` independent points: each range sampled, each list chosen from uniformly."""
    return [
        {k: v.sample(rng) if isinstance(v, Distribution) else rng.choice(list(v))
         for k, v in axes.items()}
        for _ in range(n)
    ]  # fmt: skip


def _zip_points(lists: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The i-th values together; the lists must be of equal length."""
    lengths = {k: len(v) for k, v in lists.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise InvalidInputError(
            f"mode zip needs lists of equal length, got {shown}; use mode product "
            "for every combination"
        )
    return [dict(zip(lists, values, strict=True)) for values in zip(*lists.values(), strict=True)]


def _product_size(lists: dict[str, list[Any]]) -> int:
    return math.prod(len(v) for v in lists.values())


def _product_points(lists: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last parameter varying fastest; at most ``MAX_POINTS``."""
    size = _product_size(lists)
    if size > MAX_POINTS:
        raise InvalidInputError(
            f"the grid has {size:,} points (more than {MAX_POINTS:,}); sample some with random=N"
        )
    return [dict(zip(lists, combo, strict=True)) for combo in itertools.product(*lists.values())]


def _sample(
    points: list[dict[str, Any]], n: int, rng: random_module.Random
) -> list[dict[str, Any]]:
    """``n`` distinct points of ``points``, in grid order."""
    if n > len(points):
        raise InvalidInputError(
            f"random={n} is more than the grid's {len(points)} points; use at most "
            f"{len(points)}, or drop random to run them all"
        )
    chosen = sorted(rng.sample(range(len(points)), n))
    return [points[i] for i in chosen]
