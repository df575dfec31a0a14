"""The benchmark's score, as AlgoPerf's (arXiv 2306.07179, section 4): performance profiles over workloads and the
area under each, for one ruleset and one time measure (steps, or modelled seconds) at a time.

- A study's time is its fastest trial that reached the target, ∞ when none did (`study_time`).
- An arm's time on a workload is the median over its studies, ∞ counting as a value: an even count averages the
  two middle values, so a median that lands on ∞ (or averages with it) is a miss (`arm_time`).
- r_{m,w} = t_{m,w} / min over arms m' of t_{m',w} (`ratios`). A time above r_max × that best scores as a miss
  (r = ∞), as in AlgoPerf's scoring code. A workload's best is over the arms it can run; an arm a workload refuses
  is n/a (None) there and its profile is over the workloads it can run. Two arms tied at the best both get r = 1.
- ρ_m(τ) = the fraction of arm m's workloads with r_{m,w} ≤ τ (`rho`, `profile_curve`).
- B_m = ∫₁^{r_max} ρ_m(τ) dτ / (r_max − 1) (`area_score`). ρ is a step function, so the integral is exact: each
  workload adds (r_max − r_{m,w}) / (r_max − 1) for r_{m,w} ≤ r_max, and nothing for a miss.

`threshold_u` is the U of the r_max stopper (`grokbench.benchmark.stopper`): the same best time, over the trials
finished so far; `stop_factor` is its f. Times are non-negative (0: a trial at the target when it started);
math.inf is a miss.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Key = tuple[str, str]  # (workload, arm)


@dataclass(frozen=True)
class TimeTable:
    """One ruleset's study times on one measure: (workload, arm) → each study's time (math.inf: a miss), or None
    where the workload refuses the arm (n/a). Every arm has an entry on every workload."""

    studies: Mapping[Key, Sequence[float] | None]

    def __post_init__(self) -> None:
        missing = [(w, a) for w in self.workloads for a in self.arms if (w, a) not in self.studies]
        if missing:
            raise ValueError(f"time table: no entry for (workload, arm) {missing[0]} (use None for n/a)")
        for key, times in self.studies.items():
            if times is None:
                continue
            if not times:
                raise ValueError(f"time table: {key} has no studies")
            bad = [t for t in times if not (t >= 0)]  # also catches NaN
            if bad:
                raise ValueError(f"time table: {key} has a time {bad[0]!r}; times are >= 0, math.inf for a miss")

    @property
    def workloads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(w for w, _ in self.studies))

    @property
    def arms(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a for _, a in self.studies))


@dataclass(frozen=True)
class ArmScore:
    """An arm's ratios over the workloads it can run (math.inf: a miss), the workloads it cannot, and B."""

    arm: str
    ratios: Mapping[str, float]
    refused: tuple[str, ...]
    score: float | None  # None: the arm runs on no workload

    @property
    def workloads(self) -> int:
        """How many workloads the profile is over: the count the leaderboard shows beside the score."""
        return len(self.ratios)


def study_time(trial_times: Iterable[float]) -> float:
    """A study's time: its fastest trial, math.inf when it has none (or none reached the target)."""
    return min(trial_times, default=math.inf)


def arm_time(study_times: Sequence[float]) -> float:
    """An arm's time on a workload: the median over its studies, a miss (math.inf) counting as a value."""
    return statistics.median(study_times)


def threshold_u(finished: Mapping[str, Sequence[Sequence[float]]]) -> float:
    """U of one (workload, ruleset) and one measure: arm → each study's finished trials' times (math.inf for a
    finished miss), a study with none finished as an empty sequence. The minimum over arms of the median over
    studies of each study's fastest finished trial; math.inf when no arm's median is finite.

    A study with no finished trial counts as ∞, an upper bound on its final time. Each time that enters is an upper
    bound of the final one and min and median only rise with their inputs, so U is never below the final best;
    as trials finish a study's minimum only falls, so U only falls."""
    return min((arm_time([study_time(s) for s in studies]) for studies in finished.values()), default=math.inf)


def stop_factor(studies: int) -> int:
    """f of the r_max stopper: a study time above f × r_max × the best cannot move an arm time of `studies` studies
    that is within r_max × the best. 1 for an odd count; 2 for an even one, whose median averages two studies."""
    return 1 if studies % 2 else 2


def ratios(table: TimeTable, r_max: float) -> dict[Key, float | None]:
    """r_{m,w} per (workload, arm): None for n/a, math.inf for a miss or a time above r_max × the best."""
    _check_r_max(r_max)
    out: dict[Key, float | None] = {}
    for workload in table.workloads:
        times = {a: arm_time(s) for (w, a), s in table.studies.items() if w == workload and s is not None}
        best = min(times.values(), default=math.inf)
        for arm in table.arms:
            t = times.get(arm)
            out[workload, arm] = None if t is None else _ratio(t, best, r_max)
    return out


def _ratio(t: float, best: float, r_max: float) -> float:
    # the cap compares times, not a rounded ratio: the stopper's comparison, so a time it stops is capped here too
    if not math.isfinite(t) or t > r_max * best:
        return math.inf
    return 1.0 if t == best else t / best  # a tie at the best, a best of 0 too


def rho(arm_ratios: Sequence[float], tau: float) -> float:
    """ρ(τ): the fraction of the arm's workloads (n/a excluded) with r ≤ τ."""
    if not arm_ratios:
        raise ValueError("rho: the arm runs on no workload")
    return sum(r <= tau for r in arm_ratios) / len(arm_ratios)


def profile_curve(arm_ratios: Sequence[float], taus: Sequence[float]) -> np.ndarray:
    """ρ sampled on a grid of τ (for the leaderboard's figure)."""
    return np.array([rho(arm_ratios, tau) for tau in taus])


def area_score(arm_ratios: Sequence[float], r_max: float) -> float:
    """B = ∫₁^{r_max} ρ(τ) dτ / (r_max − 1), exactly: the mean over workloads of (r_max − r)₊ / (r_max − 1)."""
    _check_r_max(r_max)
    if not arm_ratios:
        raise ValueError("area_score: the arm runs on no workload")
    return sum(max(r_max - r, 0.0) for r in arm_ratios) / ((r_max - 1) * len(arm_ratios))


def score_table(table: TimeTable, r_max: float) -> dict[str, ArmScore]:
    """Each arm's ratios and B, over the workloads it can run."""
    r = ratios(table, r_max)
    out = {}
    for arm in table.arms:
        own = {w: r[w, arm] for w in table.workloads if r[w, arm] is not None}
        refused = tuple(w for w in table.workloads if r[w, arm] is None)
        score = area_score(list(own.values()), r_max) if own else None
        out[arm] = ArmScore(arm, own, refused, score)
    return out


def _check_r_max(r_max: float) -> None:
    if not (1 < r_max < math.inf):
        raise ValueError(f"r_max must be a finite number above 1, got {r_max!r}")
