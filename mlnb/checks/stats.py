"""The statistics of drift, as pure functions over numpy arrays (docs/drift.md).

Definitions (the ones Evidently uses, so thresholds users know keep their meaning):

- **PSI** over matching bins with proportions ``r`` (reference) and ``c`` (current):
  ``sum((c - r) * ln(c / r))``; a proportion of 0 becomes :data:`EPSILON` (1e-4) first.
- **Jensen–Shannon distance**: the square root of the JS divergence with natural logs
  (scipy's ``jensenshannon`` default base), so it lies in [0, sqrt(ln 2)] ≈ [0, 0.833].
- **L∞**: the largest absolute difference of two proportions, and where it is.
- **Normalised Wasserstein**: the 1-Wasserstein distance of two samples divided by the
  reference's standard deviation (ddof=0; at least 0.001, as Evidently).
- **KS** (two-sample Kolmogorov–Smirnov) and **chi-square** (homogeneity of two count
  vectors, a 2 x k contingency table): p-values from scipy when it is importable (KS in
  ``method="auto"``), else from the documented numpy fallbacks below (the asymptotic
  Kolmogorov distribution; the regularised upper incomplete gamma function).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = [
    "EPSILON",
    "chi2_test",
    "js_distance",
    "ks_test",
    "linf",
    "proportions",
    "psi",
    "wasserstein_normalised",
]

EPSILON = 1e-4
MIN_STD = 1e-3


# PSI, JS and L∞ work on bins and categories: short vectors, where plain Python beats
# numpy's per-call overhead (a drift of 50 columns from two profiles is a few ms).


def proportions(counts: Iterable[float]) -> list[float]:
    """Counts as proportions (all zeros stay zeros)."""
    c = [float(x) for x in counts]
    total = math.fsum(c)
    return [x / total for x in c] if total > 0 else c


def psi(ref_counts: Iterable[float], cur_counts: Iterable[float]) -> float:
    """Population Stability Index of two count (or proportion) vectors on the same bins."""
    r = [max(x, EPSILON) for x in proportions(ref_counts)]
    c = [max(x, EPSILON) for x in proportions(cur_counts)]
    return math.fsum((b - a) * math.log(b / a) for a, b in zip(r, c, strict=True))


def js_distance(ref_counts: Iterable[float], cur_counts: Iterable[float]) -> float:
    """Jensen–Shannon distance (natural log) of two count vectors on the same support."""
    p, q = proportions(ref_counts), proportions(cur_counts)
    total = 0.0
    for a, b in zip(p, q, strict=True):
        m = (a + b) / 2
        if a > 0:
            total += a * math.log(a / m)
        if b > 0:
            total += b * math.log(b / m)
    return math.sqrt(max(total / 2, 0.0))


def linf(ref_counts: Iterable[float], cur_counts: Iterable[float]) -> tuple[float, int]:
    """The L∞ distance of two proportion vectors and the index where it is reached."""
    diff = [abs(a - b) for a, b in zip(proportions(ref_counts), proportions(cur_counts),
                                       strict=True)]  # fmt: skip
    if not diff:
        return 0.0, 0
    i = max(range(len(diff)), key=diff.__getitem__)
    return diff[i], i


def wasserstein_normalised(ref: Any, cur: Any) -> float:
    """W1(ref, cur) / max(std(ref), 0.001): the area between the two empirical CDFs."""
    import numpy as np

    a = np.sort(np.asarray(ref, dtype=np.float64))
    b = np.sort(np.asarray(cur, dtype=np.float64))
    grid = np.concatenate([a, b])
    grid.sort(kind="mergesort")
    widths = np.diff(grid)
    fa = np.searchsorted(a, grid[:-1], side="right") / a.size
    fb = np.searchsorted(b, grid[:-1], side="right") / b.size
    w = float(np.sum(np.abs(fa - fb) * widths))
    return w / max(float(a.std()), MIN_STD)


def ks_test(ref: Any, cur: Any) -> tuple[float, float]:
    """Two-sample KS statistic D and its p-value (two-sided)."""
    import numpy as np

    try:
        from scipy import stats  # type: ignore[import-untyped]
    except ImportError:
        stats = None
    if stats is not None:
        res = stats.ks_2samp(ref, cur)
        return float(res.statistic), float(res.pvalue)
    a = np.sort(np.asarray(ref, dtype=np.float64))
    b = np.sort(np.asarray(cur, dtype=np.float64))
    grid = np.concatenate([a, b])
    d = float(
        np.max(
            np.abs(
                np.searchsorted(a, grid, side="right") / a.size
                - np.searchsorted(b, grid, side="right") / b.size
            )
        )
    )
    return d, _kolmogorov_sf(d * math.sqrt(a.size * b.size / (a.size + b.size)))


def _kolmogorov_sf(x: float) -> float:
    """P(K > x) of the Kolmogorov distribution: 2 sum (-1)^(k-1) exp(-2 k^2 x^2)."""
    if x < 0.2:
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = 2 * (-1) ** (k - 1) * math.exp(-2 * k * k * x * x)
        total += term
        if abs(term) < 1e-12:
            break
    return min(max(total, 0.0), 1.0)


def chi2_test(ref_counts: Any, cur_counts: Any) -> tuple[float, float]:
    """Chi-square test of homogeneity of two count vectors (a 2 x k table, no continuity
    correction; categories empty on both sides are dropped): the statistic and p-value."""
    import numpy as np

    table = np.vstack([np.asarray(ref_counts, float), np.asarray(cur_counts, float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    try:
        from scipy import stats
    except ImportError:
        return stat, _chi2_sf(stat, dof)
    return stat, float(stats.chi2.sf(stat, dof))


def _chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for chi-square with ``dof`` degrees: Q(dof/2, x/2), the regularised upper
    incomplete gamma function (series below a + 1, continued fraction above)."""
    a, z = dof / 2, x / 2
    if z <= 0:
        return 1.0
    log_front = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1:
        term = total = 1 / a
        n = a
        for _ in range(1000):
            n += 1
            term *= z / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1 - total * math.exp(log_front))
    b = z + 1 - a
    c = 1 / 1e-300
    d = 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_front) * h)
