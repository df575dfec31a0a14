"""The confirmation runs' statistics: per workload, each (ruleset, arm)'s winning setting rerun on fresh seeds:
how many reach the target, how long they take (median and geometric mean, each with a 95 % interval), whether they
still grok, and the speed-up against the baseline arm; and that speed-up pooled over workloads for the leaderboard.

Censoring is `analysis.stats`': a seed that missed the target is censored at its last step (second), a median
where the Kaplan–Meier curve never falls to 1/2 is "> x" (x: the last time followed), a geometric mean over a
censored sample is "> x" (the censored seeds' true times lie beyond the times followed), and a speed-up whose
baseline missed is "> x".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from lifelines import KaplanMeierFitter
from lifelines.utils import median_survival_times
from scipy import stats

from analysis.cells import fmt, speed_columns, speed_notes, speed_text
from analysis.leaderboard_data import Benchmark, ConfirmedSeed
from analysis.output import Table
from analysis.stats import Sample, SpeedUp, finite, median_or_bound, speed_up

SAMPLED = ("grokked", "censored")  # a diverged seed is counted apart, as in the tables
STRICT = {"≥": ">", "≤": "<", "": ""}  # a censored time's true value lies strictly beyond it
POOLED = "geometric mean over workloads of the per-workload speed-ups"
POOLED_TEST = "one-sample t interval on their logs (scipy.stats.ttest_1samp)"
INTERVAL_NOTE = (
    "median: the plain median where every seed reached the target, else the Kaplan–Meier median, or > x where the "
    "curve never falls to 1/2; its 95 % interval read off lifelines' Kaplan–Meier confidence band (exponential "
    "Greenwood) at 1/2 (∞: the band never falls to 1/2). geo. mean: exp(mean log time) where every seed reached "
    "the target, with the one-sample t interval on the logs (scipy.stats.ttest_1samp), else > the geometric mean "
    "of the times followed"
)


def baseline_arm(bench: Benchmark) -> str | None:
    """The arm the speed-ups are against: the one named `baseline`, else the first running the baseline method
    with nothing fixed."""
    arms = bench.suite.arms
    if "baseline" in arms:
        return "baseline"
    return next((a.name for a in arms.values() if a.method == "baseline" and not a.own.settings), None)


def sample(seeds: Sequence[ConfirmedSeed], figure: str, cost: float = 1.0) -> Sample:
    """The seeds' times on a figure (steps, seconds, or modelled: steps × cost), reached or censored."""
    scale = cost if figure == "modelled" else 1.0
    timed = [(s, s.seconds if figure == "seconds" else s.steps) for s in seeds if s.status in SAMPLED]
    kept = [(s, t * scale) for s, t in timed if t is not None]
    return Sample([t for _, t in kept], [s.reached for s, _ in kept], [s.seed for s, _ in kept])


def median_interval(sample: Sample) -> tuple[float | None, bool, float | None, float | None]:
    """(median, is a lower bound, 95 % low, high)."""
    median, bound = median_or_bound(sample.values, sample.observed)
    if median is None or bound:
        return median, bound, None, None
    fitted = KaplanMeierFitter().fit(sample.values, event_observed=sample.observed)
    low, high = median_survival_times(fitted.confidence_interval_).to_numpy()[0]
    return median, False, float(low), float(high)


def geometric_mean(sample: Sample) -> tuple[float | None, bool, float | None, float | None]:
    """(geometric mean, is a lower bound, 95 % low, high)."""
    if not len(sample.values):
        return None, False, None, None
    logs = np.log(sample.values)
    mean = float(np.exp(logs.mean()))
    if not all(sample.observed):
        return mean, True, None, None
    if len(logs) < 2 or np.ptp(logs) == 0:
        return mean, False, None, None
    interval = stats.ttest_1samp(logs, 0.0).confidence_interval(0.95)
    return mean, False, finite(np.exp(interval.low)), finite(np.exp(interval.high))


def estimate_text(value: float | None, bound: bool, low: float | None, high: float | None) -> str:
    if value is None:
        return "—"
    if bound:
        return f"> {fmt(value)}"
    if low is None:
        return fmt(value)
    return f"{fmt(value)} [{fmt(low)}, {'∞' if high == math.inf else fmt(high)}]"


def strict(s: SpeedUp) -> SpeedUp:
    """A bound shown as > / < (the censored median lies beyond the last time followed)."""
    return replace(s, bound=STRICT[s.bound])


def arm_speed_up(bench: Benchmark, workload: str, arm: str, ruleset: str, figure: str) -> SpeedUp | None:
    """The arm's confirmation speed-up against the baseline arm on the workload and ruleset (baseline ÷ arm);
    None for the baseline itself, or where either does not run."""
    base = baseline_arm(bench)
    refused = bench.suite.refused
    if base is None or arm == base or (workload, arm) in refused or (workload, base) in refused:
        return None
    costs = bench.costs.per_update
    samples = [
        sample(bench.confirmed(workload, a, ruleset), figure, costs.get((workload, a), 1.0)) for a in (base, arm)
    ]
    return strict(speed_up(*samples))


def pooled_speed_up(per_workload: Sequence[SpeedUp]) -> tuple[SpeedUp | None, int]:
    """The geometric mean over workloads of the speed-ups that have a ratio, and how many: with one, that
    workload's own estimate and interval; with several, the one-sample t interval on the log ratios (scipy).
    Where some are bounds, all one way, the mean is a bound that way, with no interval."""
    kept = [s for s in per_workload if s.ratio is not None]
    if not kept:
        return None, 0
    if len(kept) == 1:
        return kept[0], 1
    logs = np.log([s.ratio for s in kept])
    ratio = float(np.exp(logs.mean()))
    bounds = {s.bound for s in kept} - {""}
    if len(bounds) > 1:
        return SpeedUp(None, POOLED, note="bounds both ways: no mean"), len(kept)
    if bounds:
        return SpeedUp(ratio, POOLED, bound=bounds.pop(), note="a workload's speed-up is a bound"), len(kept)
    if np.ptp(logs) == 0:
        return SpeedUp(ratio, POOLED, note="every workload's speed-up is the same: no interval"), len(kept)
    interval = stats.ttest_1samp(logs, 0.0).confidence_interval(0.95)
    low, high = finite(np.exp(interval.low)), finite(np.exp(interval.high))
    return SpeedUp(ratio, POOLED, POOLED_TEST, low, high), len(kept)


def median_delay(seeds: Sequence[ConfirmedSeed]) -> float | None:
    """The median memorise→target delay, in steps, over the seeds that reached the target having memorised."""
    delays = [s.delay_steps for s in seeds if s.delay_steps is not None]
    return float(np.median(delays)) if delays else None


def fraction_text(count: int, n: int) -> str:
    return f"{count}/{n}"


def ratio_of(count: int, n: int) -> float | None:
    return count / n if n else None


def confirmed_row(bench: Benchmark, workload: str, arm: str, ruleset: str) -> tuple[list[str], dict, list[SpeedUp]]:
    """One (ruleset, arm)'s cells as shown, its CSV columns, and its speed-ups (for the footnote)."""
    seeds = bench.confirmed(workload, arm, ruleset)
    n, reached = len(seeds), sum(s.reached for s in seeds)
    diverged = sum(s.status == "diverged" for s in seeds)
    shown = [ruleset, arm, fraction_text(reached, n) + (f" ({diverged} diverged)" if diverged else "")]
    columns: dict = {"seeds": n, "reached": reached, "diverged": diverged, "reached_fraction": ratio_of(reached, n)}
    for figure in ("steps", "seconds"):
        data = sample(seeds, figure)
        for name, estimate in (("median", median_interval(data)), ("geomean", geometric_mean(data))):
            shown.append(estimate_text(*estimate))
            keys = [f"{figure}_{name}{part}" for part in ("", "_bound", "_ci_low", "_ci_high")]
            columns.update(zip(keys, estimate, strict=True))
    delay = median_delay(seeds)
    accuracies = [s.final_test_acc for s in seeds if s.final_test_acc is not None]
    accuracy = float(np.median(accuracies)) if accuracies else None
    before = sum(s.before_memorising for s in seeds)
    shown += [fmt(delay), fraction_text(before, n), "—" if accuracy is None else f"{accuracy:.3f}"]
    columns.update(
        delay_median_steps=delay,
        before_memorising=before,
        before_memorising_fraction=ratio_of(before, n),
        final_test_acc_median=accuracy,
    )
    speeds = {figure: arm_speed_up(bench, workload, arm, ruleset, figure) for figure in ("steps", "seconds")}
    for figure, s in speeds.items():
        shown.append("—" if s is None else speed_text(s))
        columns.update(speed_columns(figure, s))
    return shown, columns, [s for s in speeds.values() if s is not None]


CONFIRMED_HEADERS = [
    "ruleset",
    "arm",
    "reached target",
    "steps: median [95 % CI]",
    "steps: geo. mean [95 % CI]",
    "seconds: median [95 % CI]",
    "seconds: geo. mean [95 % CI]",
    "memorise→target (median steps)",
    "target before memorising",
    "final test acc (median)",
    "speed-up (steps)",
    "speed-up (seconds)",
]


def confirmed_table(bench: Benchmark, workload: str) -> Table:
    """The workload's confirmation table, a row per (ruleset, arm) in the suite's order; an arm the workload
    refuses shows as n/a."""
    suite = bench.suite
    table = Table(f"confirmed_{workload}", f"Confirmation on fresh seeds: {workload}", list(CONFIRMED_HEADERS))
    cells = [(r, a) for r in suite.rulesets for a in suite.arms]
    rows = {(r, a): confirmed_row(bench, workload, a, r) for r, a in cells if (workload, a) not in suite.refused}
    blank = dict.fromkeys(next(iter(rows.values()))[1])
    for ruleset, arm in cells:
        refused = [ruleset, arm, *["n/a"] * (len(CONFIRMED_HEADERS) - 2)], blank, []
        shown, columns, _ = rows.get((ruleset, arm), refused)
        table.rows.append(shown)
        table.stats.append(columns)
    table.notes += confirmed_notes(bench, workload, [s for _, _, speeds in rows.values() for s in speeds])
    return table


def confirmed_notes(bench: Benchmark, workload: str, speeds: list[SpeedUp]) -> list[str]:
    suite = bench.suite
    machines = sorted({s.machine for r in suite.rulesets for a in suite.arms for s in bench.confirmed(workload, a, r)})
    return [
        f"each (ruleset, arm)'s winning setting (its median study's fastest trial) rerun on {suite.confirmation_seeds} "
        "confirmation seeds no tuning trial used; steps are optimizer updates to the target, seconds measured "
        f"training seconds (on {'; '.join(machines) or 'no machine recorded'})",
        INTERVAL_NOTE,
        "memorise→target: the median over the seeds that reached the target of its steps from memorising to the "
        "target; target before memorising: the seeds that reached the target without memorising first",
        f"speed-up against the {baseline_arm(bench) or '(no baseline arm)'} arm on the same ruleset; "
        "> x: the baseline's median is censored, so the speed-up exceeds x (< x: the arm's is)",
        *speed_notes(speeds, per_seed_shown=False),
    ]
