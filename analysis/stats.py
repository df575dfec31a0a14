"""Statistics for times to grok, where a run that never grokked is censored at its budget, not dropped.

Each sample is a pair (value, observed): value is the figure at grokking when observed, else the figure at the
end of the run's budget (a lower bound on what grokking would have taken).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Cell:
    """One table cell: a method's figure over seeds."""

    n: int  # trials that grokked or were censored (diverged and failed ones are counted apart)
    grokked: int
    mean: float | None  # over grokked trials, only when every trial grokked
    std: float | None
    median: float | None  # the plain median when every trial grokked, else the Kaplan–Meier median
    median_is_km: bool
    above_budget: bool  # fewer than half grokked: the median is only known to exceed the budget
    budget: float | None  # the smallest censoring value (what "> budget" refers to)


def km_median(values: list[float], observed: list[bool]) -> float | None:
    """Kaplan–Meier (product-limit) median: the first time the survival estimate falls to 1/2 or below;
    None when it never does (fewer than half of the runs are known to have grokked)."""
    order = sorted(zip(values, observed), key=lambda p: (p[0], not p[1]))  # events before censorings at ties
    at_risk = len(order)
    survival = 1.0
    i = 0
    while i < len(order):
        t = order[i][0]
        events = sum(1 for v, o in order[i:] if v == t and o)
        removed = sum(1 for v, _ in order[i:] if v == t)
        if events:
            survival *= 1 - events / at_risk
            if survival <= 0.5:
                return t
        at_risk -= removed
        i += removed
    return None


def cell(values: list[float], observed: list[bool]) -> Cell:
    n, grokked = len(values), sum(observed)
    budget = min((v for v, o in zip(values, observed) if not o), default=None)
    if n and grokked == n:
        arr = np.asarray(values, dtype=float)
        std = float(arr.std(ddof=1)) if n > 1 else 0.0
        return Cell(n, grokked, float(arr.mean()), std, float(np.median(arr)), False, False, None)
    median, is_bound = median_or_bound(values, observed)
    return Cell(n, grokked, None, None, None if is_bound else median, True, is_bound, budget)


def median_or_bound(values: list[float], observed: list[bool]) -> tuple[float | None, bool]:
    """(median, is_lower_bound). When fewer than half the runs grokked (or the KM median is undefined), the
    median is only known to exceed the smallest censoring value: that value, flagged as a bound."""
    if not values:
        return None, False
    if all(observed):
        return float(np.median(values)), False
    median = km_median(values, observed) if 2 * sum(observed) >= len(values) else None
    if median is not None:
        return median, False
    return min(v for v, o in zip(values, observed) if not o), True


@dataclass(frozen=True)
class SpeedUp:
    ratio: float | None  # baseline ÷ method (> 1: the method is faster)
    lower_bound: bool  # the baseline's median is censored, so the ratio is at least this
    ci_low: float | None  # only for a ratio that is not a bound
    ci_high: float | None
    p_value: float | None  # Welch's t-test on log values, only when no run of either side is censored
    upper_bound: bool = False  # the method's median is censored, so the ratio is at most this


def speed_up(base: tuple[list[float], list[bool]], method: tuple[list[float], list[bool]],
             resamples: int = 2000, seed: int = 0) -> SpeedUp:
    """Ratio of medians (Kaplan–Meier where censored), a percentile-bootstrap 95% interval over seeds, and
    Welch's test on log values. A censored median makes the ratio a bound (≥ for the baseline, ≤ for the
    method), for which no interval is given; the test needs every run of both sides to have grokked."""
    (bv, bo), (mv, mo) = base, method
    b_med, b_bound = median_or_bound(bv, bo)
    m_med, m_bound = median_or_bound(mv, mo)
    if b_med is None or m_med is None or m_med <= 0 or (b_bound and m_bound):
        return SpeedUp(None, False, None, None, None)
    ratio = b_med / m_med
    ci: tuple[float | None, float | None] = (None, None)
    if not (b_bound or m_bound) and min(len(bv), len(mv)) >= 2:  # one seed a side: nothing to resample
        rng = np.random.default_rng(seed)
        boot = []
        for _ in range(resamples):
            bi = rng.integers(0, len(bv), len(bv))
            mi = rng.integers(0, len(mv), len(mv))
            # a resample whose median is only a bound enters at that bound, so none is dropped
            b, _ = median_or_bound([bv[i] for i in bi], [bo[i] for i in bi])
            m, _ = median_or_bound([mv[i] for i in mi], [mo[i] for i in mi])
            if m and m > 0:
                boot.append(b / m)
        ci = (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))
    p = None
    if all(bo) and all(mo) and len(bv) >= 2 and len(mv) >= 2 and min(bv) > 0 and min(mv) > 0:
        p = float(stats.ttest_ind(np.log(bv), np.log(mv), equal_var=False).pvalue)
    return SpeedUp(ratio, b_bound, ci[0], ci[1], p, upper_bound=m_bound)
