"""Statistics for times to grok, where a run that never grokked is censored at its budget, not dropped.

A sample holds each trial's figure (its value at grokking when observed, else its value at the end of the budget:
a lower bound on what grokking would have taken), whether it grokked, and its seed. The estimators are scipy's
and lifelines'; this module only chooses which one applies and orients each as baseline ÷ method (> 1: faster).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter, LogNormalAFTFitter
from lifelines.exceptions import ConvergenceError
from lifelines.statistics import logrank_test
from scipy import stats

GEOMETRIC = "ratio of geometric means"
AFT = "log-normal AFT time ratio"
MEDIANS = "ratio of Kaplan–Meier medians"
WELCH = "Welch t-test on log values"
LOGRANK = "log-rank test"


class Sample(NamedTuple):
    values: Sequence[float]
    observed: Sequence[bool]
    seeds: Sequence[int] = ()  # pairs a method's trials with the baseline's for the paper's per-seed ratios


@dataclass(frozen=True)
class Cell:
    """One table cell: a method's figure over seeds."""

    n: int  # trials that grokked or were censored (diverged and failed ones are counted apart)
    grokked: int
    mean: float | None  # over grokked trials, only when every trial grokked
    std: float | None
    median: float | None  # the plain median when every trial grokked, else the Kaplan–Meier median
    median_is_km: bool
    exceeds: float | None  # the KM curve never fell to 1/2: the median lies beyond this, the last time followed


def km_median(values: Sequence[float], observed: Sequence[bool]) -> float | None:
    """Kaplan–Meier median (lifelines): the first time the survival estimate falls to 1/2 or below; None when it
    never does. Each run leaves the risk set at its own censoring time, so budgets that differ are handled."""
    survival = KaplanMeierFitter().fit(values, event_observed=observed).survival_function_.iloc[:, 0]
    # read off the curve, not median_survival_time_: lifelines multiplies in log space, so a curve that falls to
    # exactly 1/2 (2 of 4 seeds) reads 0.5000000000000001 there and its median would be the next time
    below = survival.index[survival <= 0.5 + 1e-12]
    return float(below[0]) if len(below) else None


def median_or_bound(values: Sequence[float], observed: Sequence[bool]) -> tuple[float | None, bool]:
    """(median, is_lower_bound). Where the KM curve never falls to 1/2, the median is only known to exceed the
    last time followed (the largest value): that value, flagged as a bound."""
    if not len(values):
        return None, False
    if all(observed):
        return float(np.median(values)), False
    median = km_median(values, observed)
    return (median, False) if median is not None else (float(max(values)), True)


def cell(values: Sequence[float], observed: Sequence[bool]) -> Cell:
    n, grokked = len(values), sum(observed)
    if n and grokked == n:
        arr = np.asarray(values, dtype=float)
        std = float(arr.std(ddof=1)) if n > 1 else 0.0
        return Cell(n, grokked, float(arr.mean()), std, float(np.median(arr)), False, None)
    median, is_bound = median_or_bound(values, observed)
    return Cell(n, grokked, None, None, None if is_bound else median, True, median if is_bound else None)


@dataclass(frozen=True)
class SpeedUp:
    """Baseline ÷ method for one figure, with the estimand and test it came from."""

    ratio: float | None
    estimand: str = ""
    test: str = ""
    ci_low: float | None = None  # 95%
    ci_high: float | None = None
    p_value: float | None = None
    bound: str = ""  # "≥" / "≤": a row's median is censored, so the ratio of medians is only a bound
    median_ratio: float | None = None  # the ratio of the rows' (Kaplan–Meier) medians, beside the estimand
    per_seed_mean: float | None = None  # the paper's form: baseline ÷ method per seed, over seeds in both rows
    per_seed_std: float | None = None
    pairs: int = 0
    note: str = ""  # why there is no ratio, interval or test


def speed_up(base: Sample, method: Sample) -> SpeedUp:
    """Every trial of both rows grokked: the ratio of geometric means with one Welch test on log values. Otherwise
    a log-normal AFT time ratio (the same estimand under that model) with a log-rank test, or, where a row has
    fewer than 2 grokked trials, the ratio of KM medians: a bound (≥ / ≤) where a median is censored."""
    base, method = Sample(*base), Sample(*method)
    if not (len(base.values) and len(method.values)):
        return SpeedUp(None, note="a row has no finished trial")
    if min(base.values) <= 0 or min(method.values) <= 0:
        return SpeedUp(None, note="a value ≤ 0 has no logarithm")
    (b_med, b_bound), (m_med, m_bound) = median_or_bound(*base[:2]), median_or_bound(*method[:2])
    medians = b_med / m_med if not (b_bound or m_bound) else None
    if all(base.observed) and all(method.observed):
        return replace(geometric_mean_ratio(base, method), median_ratio=medians, **per_seed(base, method))
    p = logrank_p(base, method)
    if min(sum(base.observed), sum(method.observed)) >= 2:
        fitted = aft_time_ratio(base, method)
        if fitted is not None:
            return SpeedUp(fitted[0], AFT, LOGRANK, fitted[1], fitted[2], p, median_ratio=medians)
        note = "the AFT fit did not converge: no interval"
    else:
        note = "a row has fewer than 2 grokked trials: no AFT fit, no interval"
    if b_bound and m_bound:
        return SpeedUp(None, test=LOGRANK, p_value=p, note="both medians are censored: no ratio, a log-rank test")
    bound = "≥" if b_bound else "≤" if m_bound else ""
    return SpeedUp(b_med / m_med, MEDIANS, LOGRANK, p_value=p, bound=bound, median_ratio=medians, note=note)


def geometric_mean_ratio(base: Sample, method: Sample) -> SpeedUp:
    """exp(mean log baseline − mean log method), and the Welch t-test on those logs: its p-value and its 95%
    interval for the difference of means, exponentiated, so ratio, interval and test are one estimand."""
    logs = np.log(base.values), np.log(method.values)
    ratio = float(np.exp(logs[0].mean() - logs[1].mean()))
    if min(len(logs[0]), len(logs[1])) < 2:
        return SpeedUp(ratio, GEOMETRIC, note="one trial in a row: no interval, no test")
    found = welch(*logs)
    if found is None:
        return SpeedUp(ratio, GEOMETRIC, note="every trial of each row took the same: no interval, no test")
    low, high, p = found
    return SpeedUp(ratio, GEOMETRIC, WELCH, finite(np.exp(low)), finite(np.exp(high)), finite(p))


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float] | None:
    """Welch's t-test of mean(a) − mean(b): its 95% interval and two-sided p; None where a sample has fewer than
    two values, or neither varies (t would be infinite: p = 0 and an interval of zero width)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(len(a), len(b)) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return None
    result = stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(0.95)
    return float(interval.low), float(interval.high), float(result.pvalue)


def logrank_p(base: Sample, method: Sample) -> float | None:
    """None where neither row has an event: lifelines would give p = 1, a test of nothing."""
    if not (any(base.observed) or any(method.observed)):
        return None
    result = logrank_test(base.values, method.values, event_observed_A=base.observed, event_observed_B=method.observed)
    return finite(result.p_value)


def aft_time_ratio(base: Sample, method: Sample) -> tuple[float, float, float] | None:
    """(ratio, low, high) from a log-normal accelerated-failure-time fit with a baseline indicator: exp(coef) is
    the baseline's time over the method's, and (log-normal) the ratio of their medians and geometric means."""
    data = pd.DataFrame(
        {
            "time": [*base.values, *method.values],
            "grokked": [*base.observed, *method.observed],
            "baseline": [1] * len(base.values) + [0] * len(method.values),
        }
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lifelines' advice on small samples; a failed fit raises instead
            fitter = LogNormalAFTFitter().fit(data, duration_col="time", event_col="grokked")
    except ConvergenceError:
        return None
    row = fitter.summary.loc[("mu_", "baseline")]
    fitted = [finite(np.exp(row[key])) for key in ("coef", "coef lower 95%", "coef upper 95%")]
    return None if None in fitted else (fitted[0], fitted[1], fitted[2])


def per_seed(base: Sample, method: Sample) -> dict:
    """The paper's form: mean and std of baseline ÷ method over the seeds both rows ran (paired by seed number);
    nothing where a row repeats a seed, as then the pairing is ambiguous."""
    if len(set(base.seeds)) < len(base.seeds) or len(set(method.seeds)) < len(method.seeds):
        return {}
    b, m = dict(zip(base.seeds, base.values, strict=False)), dict(zip(method.seeds, method.values, strict=False))
    ratios = [b[s] / m[s] for s in sorted(b.keys() & m.keys())]
    if not ratios:
        return {}
    std = float(np.std(ratios, ddof=1)) if len(ratios) > 1 else None
    return {"per_seed_mean": float(np.mean(ratios)), "per_seed_std": std, "pairs": len(ratios)}


def finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
