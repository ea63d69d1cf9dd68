"""Drift: does the current data still look like the reference? See docs/drift.md.

Either side is raw data (a DataFrame or a data file) or a stored profile (``RUN[:NAME]``,
or a profile dict), so a run's training data can be compared with today's batch without
keeping the training data:

- **from a profile** (at least one side): numeric columns get the PSI on the reference's
  decile bins (warn at 0.1, drift at 0.25); categorical ones the Jensen–Shannon distance
  (drift at 0.1) and the L∞ distance with the value whose share moved most. The current
  side's mass in the reference's bins is exact from raw data or from an integer column's
  value counts, else read from its profile's percentiles (interpolated), else, in a
  profile stored before percentiles were kept, from its deciles and quantiles (each
  result's ``note`` says which);
- **raw data on both sides**: Evidently's automatic choice by the reference's rows ``n``:
  n ≤ 1,000, KS (numeric with more than 5 values) or chi-square (the rest) at p < 0.05;
  larger, normalised Wasserstein (≥ 0.1) or Jensen–Shannon (≥ 0.1).

The dataset drifts when at least half of the compared columns drift. Integrity checks
against the reference ride along: row count within ±10 %, each column's missing share
up at most 5 points, no new or missing columns, no dtype change, no unseen category.
Methods and thresholds can be set per column. The statistics are pure functions
(:mod:`mlnb.checks.stats`); :func:`compare` is pure over two :class:`Source`; :func:`drift`
reads the sides and records the verdicts as ``checks`` rows (kind ``validation``).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlnb.checks import stats
from mlnb.checks.sources import Source, load_source, record_result
from mlnb.errors import InvalidInputError
from mlnb.records import CheckRecord

if TYPE_CHECKING:
    from mlnb.tracking.active import StoreLike

__all__ = ["METHODS", "ColumnDrift", "DriftResult", "IntegrityCheck", "compare", "drift"]

# method: (default threshold, the statistic drifts when "above" it, or "p" when p < it)
METHODS: dict[str, tuple[float, str]] = {
    "psi": (0.25, "above"),
    "js": (0.1, "above"),
    "wasserstein": (0.1, "above"),
    "ks": (0.05, "p"),
    "chi2": (0.05, "p"),
}
PSI_WARN = 0.1
SMALL_N = 1000
FEW_VALUES = 5
ROW_TOLERANCE = 0.10
MISSING_TOLERANCE = 0.05
DRIFT_SHARE = 0.5
OTHER = "(other)"
NUMERIC = "numeric"
CATEGORICAL = ("categorical", "string", "object", "boolean")


@dataclass(frozen=True)
class ColumnDrift:
    """The verdict on one column: the method, its statistic (and p-value for tests), the
    threshold, both sample sizes, and for categorical columns the L∞ distance and the
    value whose share moved most. ``warn``: PSI at or above 0.1, below the drift line."""

    column: str
    kind: str
    method: str
    statistic: float
    threshold: float
    drifted: bool
    n_ref: int
    n_cur: int
    p_value: float | None = None
    warn: bool = False
    linf: float | None = None
    moved: Any = None
    note: str = ""

    @property
    def score(self) -> float:
        """What the threshold applies to: the p-value of a test, else the statistic."""
        return self.p_value if self.p_value is not None else self.statistic

    @property
    def rule(self) -> str:
        """``psi >= 0.25``, ``p < 0.05``: when this column drifts."""
        if METHODS[self.method][1] == "p":
            return f"p < {self.threshold:g}"
        return f"{self.method} >= {self.threshold:g}"


@dataclass(frozen=True)
class IntegrityCheck:
    """One integrity check against the reference (rows, columns, dtype, missing, unseen)."""

    name: str
    passed: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DriftResult:
    """Every column's verdict, the integrity checks and the dataset's verdict. Truthy
    when nothing drifted and every integrity check passed."""

    reference: str
    current: str
    columns: tuple[ColumnDrift, ...]
    integrity: tuple[IntegrityCheck, ...]
    drift_share: float = DRIFT_SHARE
    batch: str = ""

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def share(self) -> float:
        """The share of compared columns that drifted."""
        return len(self.drifted_columns) / len(self.columns) if self.columns else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.columns) and self.share >= self.drift_share

    @property
    def passed(self) -> bool:
        return not self.dataset_drift and all(c.passed for c in self.integrity)

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "current": self.current,
            "passed": self.passed,
            "dataset_drift": self.dataset_drift,
            "drifted_share": self.share,
            "drift_share": self.drift_share,
            "columns": [
                {**asdict(c), "moved": _plain(c.moved), "rule": c.rule} for c in self.columns
            ],
            "integrity": [asdict(c) for c in self.integrity],
        }

    def _rows(self) -> list[list[str]]:
        return [
            [
                c.column, c.method, _fmt(c.statistic),
                "" if c.p_value is None else _fmt(c.p_value), c.rule,
                f"{c.n_ref:,}", f"{c.n_cur:,}",
                "DRIFT" if c.drifted else ("warn" if c.warn else "ok"),
                _detail(c),
            ]
            for c in self.columns
        ]  # fmt: skip

    HEADER = ("column", "method", "statistic", "p", "drifts when", "n ref", "n cur", "result",
              "detail")  # fmt: skip

    def summary(self) -> str:
        verdict = "DRIFT" if self.dataset_drift else "no drift"
        failed = [c for c in self.integrity if not c.passed]
        tail = f"; {len(failed)} integrity check(s) failed" if failed else ""
        if self.drift_share < 0.005:  # "0%" would read as "never"; monitoring uses ~0
            rule = "the dataset drifts when any column does"
        else:
            rule = f"the dataset drifts at {self.drift_share:.0%}"
        return (
            f"{verdict}: {len(self.drifted_columns)} of {len(self.columns)} columns drifted "
            f"({self.share:.0%}; {rule}){tail}"
        )

    def __str__(self) -> str:
        rows = [list(self.HEADER), *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEADER))]
        lines = [f"drift of {self.current} against {self.reference}", ""]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]  # fmt: skip
        lines.append("")
        lines += [f"{'ok  ' if c.passed else 'FAIL'} {c.name}: {c.message}" for c in self.integrity]
        lines.append(self.summary())
        return "\n".join(lines)

    def to_markdown(self) -> str:
        from mlnb.formatting import escape_markdown

        def row(cells: list[str]) -> str:
            return "| " + " | ".join(escape_markdown(c) for c in cells) + " |"

        out = [
            f"### Drift of {escape_markdown(self.current)} against "
            f"{escape_markdown(self.reference)}",
            "",
            f"**{escape_markdown(self.summary())}**",
            "",
            row(list(self.HEADER)),
            "|" + "---|" * len(self.HEADER),
            *(row(r) for r in self._rows()),
            "",
            row(["integrity check", "result", "why"]),
            "|---|---|---|",
            *(row([c.name, "PASS" if c.passed else "FAIL", c.message]) for c in self.integrity),
        ]
        return "\n".join(out) + "\n"

    def to_checks(self, batch: str) -> list[CheckRecord]:
        """The rows of the ``checks`` table: one per column (``drift:COLUMN``), one per
        integrity check (``integrity:NAME``) and the dataset's (``drift``)."""
        columns = self.to_dict()["columns"]
        out = [
            CheckRecord(
                kind="validation", name=f"drift:{c.column}", passed=not c.drifted,
                value=c.score, threshold=c.threshold,
                comparator=">=" if c.p_value is not None else "<",
                message=f"{c.method} {_fmt(c.statistic)}, drifts when {c.rule}"
                + (f"; {_detail(c)}" if _detail(c) else ""),
                details={"check": "drift", **columns[i]}, batch=batch,
            )
            for i, c in enumerate(self.columns)
        ]  # fmt: skip
        out += [
            CheckRecord(kind="validation", name=f"integrity:{c.name}", passed=c.passed,
                        message=c.message, details={"check": "drift", **c.details},
                        batch=batch)
            for c in self.integrity
        ]  # fmt: skip
        out.append(
            CheckRecord(
                kind="validation", name="drift", passed=not self.dataset_drift,
                value=self.share, threshold=self.drift_share, comparator="<",
                message=f"{self.summary()} ({self.current} vs {self.reference})",
                details={"check": "drift", "reference": self.reference,
                         "current": self.current, "drifted": self.drifted_columns},
                batch=batch,
            )
        )  # fmt: skip
        return out


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.4g}"


def _plain(v: Any) -> Any:
    return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)


def _detail(c: ColumnDrift) -> str:
    parts = []
    if c.linf is not None:
        parts.append(f"L∞ {c.linf:.3f} at {c.moved!r}")
    if c.note:
        parts.append(c.note)
    return "; ".join(parts)


# ---------------------------------------------------------------- the public function


def drift(
    reference: Any,
    current: Any,
    *,
    methods: str | Mapping[str, str] | None = None,
    thresholds: float | Mapping[str, float] | None = None,
    columns: list[str] | None = None,
    row_tolerance: float = ROW_TOLERANCE,
    missing_tolerance: float = MISSING_TOLERANCE,
    drift_share: float = DRIFT_SHARE,
    run: str | None = None,
    record: bool = True,
    store: StoreLike | None = None,
) -> DriftResult:
    """Compare ``current`` with ``reference``; each is a DataFrame, a data file, a profile
    dict or ``"RUN"`` / ``"RUN:NAME"`` (a run's stored profile): ``mlnb.drift("baseline:train",
    today_df)``. ``methods`` / ``thresholds``: one for every column or ``{column: ...}``
    (methods: psi, js, chi2 from profiles; also ks and wasserstein with raw data on both
    sides). The verdicts are stored as checks on ``run``, else on the active run, unless
    ``record=False``. Returns a :class:`DriftResult` (truthy when nothing drifted)."""
    ref = load_source(reference, store=store, what="reference")
    cur = load_source(current, store=store, what="current")
    result = compare(
        ref, cur, methods=methods, thresholds=thresholds, columns=columns,
        row_tolerance=row_tolerance, missing_tolerance=missing_tolerance,
        drift_share=drift_share,
    )  # fmt: skip
    if record:
        result = record_result(result, run=run, store=store)
    return result


# ---------------------------------------------------------------- pure comparison


def _per_column(value: Any, column: str, default: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get(column, value.get("*", default))
    return default if value is None else value


def compare(
    ref: Source,
    cur: Source,
    *,
    methods: str | Mapping[str, str] | None = None,
    thresholds: float | Mapping[str, float] | None = None,
    columns: list[str] | None = None,
    row_tolerance: float = ROW_TOLERANCE,
    missing_tolerance: float = MISSING_TOLERANCE,
    drift_share: float = DRIFT_SHARE,
) -> DriftResult:
    """The drift of ``cur`` against ``ref`` (pure: reads no store)."""
    for m in methods.values() if isinstance(methods, Mapping) else [methods]:
        if m is not None and m not in METHODS:
            raise InvalidInputError(f"unknown drift method {m!r}: use one of {', '.join(METHODS)}")
    raw = ref.raw and cur.raw
    ref_stats = _stats_by_name(ref.profile) if not raw else {}
    cur_stats = _stats_by_name(cur.profile) if not cur.raw else {}
    ref_names = _columns(ref)
    cur_names = _columns(cur)
    wanted = columns if columns is not None else [c for c in ref_names if c in cur_names]
    unknown = [c for c in wanted if c not in ref_names or c not in cur_names]
    if unknown:
        raise InvalidInputError(
            f"column(s) {', '.join(map(str, unknown))} are not on both sides; "
            f"common columns: {', '.join(str(c) for c in ref_names if c in cur_names)}"
        )
    results = []
    for name in wanted:
        method = _per_column(methods, name, None)
        threshold = _per_column(thresholds, name, None)
        if raw:
            res = _raw_column(ref.frame[name], cur.frame[name], len(ref.frame), method, threshold)
        else:
            cur_values = cur.frame[name] if cur.raw else None
            res = _profile_column(ref_stats[name], cur_stats.get(name), cur_values, method,
                                  threshold)  # fmt: skip
        if res is not None:
            results.append(res)
    integrity = _integrity(ref, cur, row_tolerance, missing_tolerance)
    return DriftResult(ref.label, cur.label, tuple(results), tuple(integrity), drift_share)


def _columns(src: Source) -> list[Any]:
    if src.raw:
        return [c for c in src.frame.columns]
    return [f["name"] for f in src.profile["schema"]]


def _stats_by_name(profile: Mapping[str, Any]) -> dict[Any, dict[str, Any]]:
    return {s["name"]: s for s in profile["stats"]}


def _threshold(method: str, threshold: float | None) -> float:
    return METHODS[method][0] if threshold is None else float(threshold)


def _verdict(method: str, statistic: float, p: float | None, threshold: float) -> bool:
    if METHODS[method][1] == "p":
        return p is not None and p < threshold
    return statistic >= threshold


# ---------------------------------------------------------------- raw data on both sides


def _raw_column(
    ref: Any, cur: Any, n_rows: int, method: str | None, threshold: float | None
) -> ColumnDrift | None:
    import pandas as pd

    from mlnb.capture.profile import profile

    name = ref.name
    kind = _raw_kind(ref)
    if kind is None:
        return None
    rv = cv = None
    if kind == NUMERIC:
        rv, cv = _finite(ref), _finite(cur)
    # a numeric column with at most 5 values is compared as categories (Evidently's rule)
    numeric = rv is not None and (
        method in ("ks", "wasserstein") or _more_values_than(rv, FEW_VALUES)
    )
    if method is None:
        if numeric:
            method = "ks" if n_rows <= SMALL_N else "wasserstein"
        else:
            method = "chi2" if n_rows <= SMALL_N else "js"
    thr = _threshold(method, threshold)
    if method in ("ks", "wasserstein"):
        if rv is None or cv is None:
            raise InvalidInputError(f"column {name!r}: {method} needs numeric values")
        if method == "ks":
            d, p = stats.ks_test(rv, cv)
            return ColumnDrift(str(name), kind, method, d, thr, _verdict(method, d, p, thr),
                               rv.size, cv.size, p_value=p)  # fmt: skip
        w = stats.wasserstein_normalised(rv, cv)
        return ColumnDrift(str(name), kind, method, w, thr, w >= thr, rv.size, cv.size)
    if numeric:  # psi, js or chi2 of a numeric column: on the reference's decile bins
        ref_stats = profile(pd.DataFrame({name: ref}))["stats"][0]
        return _profile_column(ref_stats, None, cur, method, threshold)
    r_counts, c_counts = ref.value_counts(dropna=True), cur.value_counts(dropna=True)
    values = sorted(set(r_counts.index) | set(c_counts.index), key=str)
    rc = r_counts.reindex(values, fill_value=0).to_numpy()
    cc = c_counts.reindex(values, fill_value=0).to_numpy()
    note = "" if kind != NUMERIC else f"at most {FEW_VALUES} values: compared as categories"
    return _counts_verdict(str(name), "categorical", method, thr, values, rc, cc, note=note)


def _more_values_than(values: Any, n: int) -> bool:
    """Whether an array holds more than ``n`` distinct values (a cheap look first)."""
    import numpy as np

    head = values[:10_000]
    return bool(np.unique(head).size > n or np.unique(values).size > n)


def _raw_kind(s: Any) -> str | None:
    import pandas as pd
    from pandas.api import types as pt

    if isinstance(s.dtype, pd.CategoricalDtype) or pt.is_bool_dtype(s.dtype):
        return "categorical"
    if pt.is_datetime64_any_dtype(s.dtype) or pt.is_timedelta64_dtype(s.dtype):
        return None
    if pt.is_numeric_dtype(s.dtype) and not pt.is_complex_dtype(s.dtype):
        return NUMERIC
    return "categorical"


def _finite(s: Any) -> Any:
    import numpy as np

    v = np.asarray(s.to_numpy(dtype=np.float64, na_value=np.nan))
    return v[np.isfinite(v)]


def _counts_verdict(
    name: str,
    kind: str,
    method: str,
    thr: float,
    values: list[Any],
    rc: Any,
    cc: Any,
    note: str,
    n_cur: int | None = None,
) -> ColumnDrift:
    rc, cc = [float(x) for x in rc], [float(x) for x in cc]
    n_ref = round(sum(rc))
    n_cur = round(sum(cc)) if n_cur is None else n_cur
    dist, moved = None, None
    if kind != NUMERIC:  # the value whose share moved most; a numeric bin says little
        dist, at = stats.linf(rc, cc)
        moved = values[at] if values else None
    p = None
    if method == "psi":
        statistic = stats.psi(rc, cc)
    elif method == "js":
        statistic = stats.js_distance(rc, cc)
    elif method == "chi2":
        statistic, p = stats.chi2_test(rc, cc)
    else:
        raise InvalidInputError(
            f"column {name!r}: {method} needs raw data on both sides; from a profile use "
            "psi, js or chi2"
        )
    warn = method == "psi" and PSI_WARN <= statistic < thr
    return ColumnDrift(
        name, kind, method, statistic, thr, _verdict(method, statistic, p, thr), n_ref,
        n_cur, p_value=p, warn=warn, linf=dist, moved=moved, note=note,
    )  # fmt: skip


# ---------------------------------------------------------------- from a profile


def _profile_column(
    ref: Mapping[str, Any],
    cur: Mapping[str, Any] | None,
    cur_values: Any,
    method: str | None,
    threshold: float | None,
) -> ColumnDrift | None:
    """One column with the reference as a profile entry; the current side is its profile
    entry or, when raw, its values."""
    kind = ref.get("kind")
    name = str(ref["name"])
    if kind == NUMERIC:
        if cur is not None and cur.get("kind") != NUMERIC:
            return None  # a dtype change: the integrity checks report it
        method = method or "psi"
        return _numeric_profile(name, ref, cur, cur_values, method, _threshold(method, threshold))
    if kind in CATEGORICAL:
        if cur is not None and cur.get("kind") not in CATEGORICAL:
            return None
        method = method or "js"
        return _categorical_profile(name, ref, cur, cur_values, method,
                                    _threshold(method, threshold))  # fmt: skip
    return None  # datetime, timedelta: no distribution in the profile


def _cuts(ref: Mapping[str, Any]) -> list[float]:
    """The reference's inner decile edges, once each: the bins are ``(-inf, c_0)``,
    ``[c_0, c_1)``, ..., ``[c_last, inf)``."""
    return sorted({float(e) for e in ref["histogram"]["edges"][1:-1]})


def _ref_bin_counts(ref: Mapping[str, Any], cuts: list[float]) -> list[float]:
    """The reference's counts per bin, from its decile histogram: each of its bins
    ``[e_i, e_i+1)`` lies inside one of these."""
    out = [0.0] * (len(cuts) + 1)
    for left, count in zip(ref["histogram"]["edges"], ref["histogram"]["counts"], strict=False):
        out[bisect.bisect_right(cuts, left)] += count
    return out


def _numeric_profile(
    name: str,
    ref: Mapping[str, Any],
    cur: Mapping[str, Any] | None,
    cur_values: Any,
    method: str,
    thr: float,
) -> ColumnDrift | None:
    if method in ("ks", "wasserstein"):
        raise InvalidInputError(
            f"column {name!r}: {method} needs raw data on both sides; from a profile use "
            "psi, js or chi2"
        )
    if not ref.get("histogram"):
        return None  # no finite value in the reference
    cuts = _cuts(ref)
    rc = _ref_bin_counts(ref, cuts)
    note = ""
    cc: Any
    if cur_values is not None:
        import numpy as np

        v = _finite(cur_values)
        cc = np.bincount(np.searchsorted(cuts, v, side="right"), minlength=len(cuts) + 1)
        n_cur = int(v.size)
    elif cur is None or not cur.get("histogram"):
        return None
    else:
        n_cur = int(cur["count"]) - int(cur.get("infinite") or 0)
        below, note = _mass_below(cur, cuts)
        bounds = [0.0, *below, 1.0]
        cc = [(bounds[j + 1] - bounds[j]) * n_cur for j in range(len(cuts) + 1)]
    return _counts_verdict(name, NUMERIC, method, thr, [], rc, cc, note=note, n_cur=n_cur)


def _mass_below(cur: Mapping[str, Any], cuts: list[float]) -> tuple[list[float], str]:
    """P(X < c) of the current side at each cut, from its profile: exact from an integer
    column's value counts, else interpolated on its percentiles (or, in an older profile,
    on its decile edges and quantiles)."""
    if cur.get("domain"):
        values = [float(v) for v, _ in cur["domain"]]
        cum = [0.0]
        for _, c in cur["domain"]:
            cum.append(cum[-1] + c)
        return [cum[bisect.bisect_left(values, c)] / cum[-1] for c in cuts], ""
    if cur.get("percentiles"):
        knots = [float(k) for k in cur["percentiles"]]
        levels = [i / (len(knots) - 1) for i in range(len(knots))]
        note = "current binned from its profile's percentiles"
    else:
        pairs = [(i / 10, e) for i, e in enumerate(cur["histogram"]["edges"])]
        pairs += [(int(k[1:]) / 100, v) for k, v in (cur.get("quantiles") or {}).items()]
        pairs.sort()
        levels = [p for p, _ in pairs]
        knots = list(itertools.accumulate((float(v) for _, v in pairs), max))
        note = "current binned from its deciles (a profile stored before percentiles)"
    below = []
    for c in cuts:
        i = bisect.bisect_left(knots, c)
        if i == 0:
            below.append(0.0)
        elif i == len(knots):
            below.append(1.0)
        else:  # knots[i-1] < c <= knots[i]: linear between the two levels
            span = knots[i] - knots[i - 1]
            frac = (c - knots[i - 1]) / span if span > 0 else 1.0
            below.append(levels[i - 1] + frac * (levels[i] - levels[i - 1]))
    return below, note


def _distribution(entry: Mapping[str, Any]) -> tuple[dict[Any, float], bool]:
    """A categorical profile entry as {value: count} and whether it is every value (a
    profile keeps every value up to 100 of them, else the 20 most frequent)."""
    if entry.get("kind") == "boolean":
        return {True: entry["true"], False: entry["false"]}, True
    if entry.get("domain") is not None:
        return {_key(v): c for v, c in entry["domain"]}, True
    return {_key(v): c for v, c in entry.get("top") or []}, False


def _key(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _raw_distribution(values: Any) -> dict[Any, float]:
    from mlnb.capture.profile import _json_value

    counts: dict[Any, float] = {}
    for v, c in values.dropna().value_counts().items():
        k = _json_value(v)
        counts[k] = counts.get(k, 0) + int(c)
    return counts


def _categorical_profile(
    name: str,
    ref: Mapping[str, Any],
    cur: Mapping[str, Any] | None,
    cur_values: Any,
    method: str,
    thr: float,
) -> ColumnDrift:
    rd, r_all = _distribution(ref)
    r_n = ref["count"]
    if cur_values is not None:
        cd, c_all, c_n = _raw_distribution(cur_values), True, int(cur_values.notna().sum())
    else:
        assert cur is not None
        (cd, c_all), c_n = _distribution(cur), cur["count"]
    note = ""
    if r_all and c_all:
        values = sorted(set(rd) | set(cd), key=str)
    else:  # only values every partial side counted exactly; the rest as one bucket
        keep = set(rd) if not r_all else set(cd)
        if not r_all and not c_all:
            keep &= set(cd)
        values = sorted(keep, key=str)
        note = "values beyond the profile's top 20 compared as one bucket"
    rc = [rd.get(v, 0) for v in values]
    cc = [cd.get(v, 0) for v in values]
    if not (r_all and c_all):
        values = [*values, OTHER]
        rc.append(max(r_n - sum(rc), 0))
        cc.append(max(c_n - sum(cc), 0))
    return _counts_verdict(name, "categorical", method, thr, values, rc, cc, note=note)


# ---------------------------------------------------------------- integrity


def _integrity(
    ref: Source, cur: Source, row_tolerance: float, missing_tolerance: float
) -> list[IntegrityCheck]:
    rp = ref.summary
    cp = cur.summary
    out = []
    r_rows, c_rows = rp["rows"], cp["rows"]
    change = (c_rows - r_rows) / r_rows if r_rows else (0.0 if not c_rows else math.inf)
    out.append(IntegrityCheck(
        "rows", abs(change) <= row_tolerance,
        f"{c_rows:,} rows against {r_rows:,} ({change:+.1%}; allowed ±{row_tolerance:.0%})",
        {"reference": r_rows, "current": c_rows},
    ))  # fmt: skip
    r_types = {f["name"]: f["dtype"] for f in rp["schema"]}
    c_types = {f["name"]: f["dtype"] for f in cp["schema"]}
    missing = [c for c in r_types if c not in c_types]
    new = [c for c in c_types if c not in r_types]
    out.append(IntegrityCheck(
        "columns", not missing and not new,
        (f"missing: {', '.join(map(str, missing)) or 'none'}; "
         f"new: {', '.join(map(str, new)) or 'none'}"),
        {"missing": missing, "new": new},
    ))  # fmt: skip
    changed = {c: [r_types[c], c_types[c]] for c in r_types if c in c_types
               and r_types[c] != c_types[c]}  # fmt: skip
    out.append(IntegrityCheck(
        "dtypes", not changed,
        "; ".join(f"{c}: {a} → {b}" for c, (a, b) in changed.items()) or "unchanged",
        {"changed": {str(k): v for k, v in changed.items()}},
    ))  # fmt: skip
    r_stats, c_stats = _stats_by_name(rp), _stats_by_name(cp)
    up = {}
    unseen = {}
    for col in r_types:
        if col not in c_types:
            continue
        r_share = r_stats[col]["nulls"] / r_rows if r_rows else 0.0
        c_share = c_stats[col]["nulls"] / c_rows if c_rows else 0.0
        if c_share - r_share > missing_tolerance:
            up[col] = [round(r_share, 4), round(c_share, 4)]
        if r_stats[col].get("domain") is not None and r_stats[col].get("kind") in CATEGORICAL:
            known = {_key(v) for v, _ in r_stats[col]["domain"]}
            cur_values, _ = _distribution(c_stats[col])
            new_values = [v for v in cur_values if v not in known]
            if new_values:
                unseen[col] = sorted(map(str, new_values))[:5]
    out.append(IntegrityCheck(
        "missing", not up,
        "; ".join(f"{c}: {a:.1%} → {b:.1%}" for c, (a, b) in up.items())
        or f"no column's missing share rose more than {missing_tolerance:.0%}",
        {"rose": {str(k): v for k, v in up.items()}},
    ))  # fmt: skip
    out.append(IntegrityCheck(
        "unseen categories", not unseen,
        "; ".join(f"{c}: {', '.join(v)}" for c, v in unseen.items()) or "none",
        {"unseen": {str(k): v for k, v in unseen.items()}},
    ))  # fmt: skip
    return out
