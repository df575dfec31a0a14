"""The r_max stopper: a Ray Tune `Stopper` that ends a tuning trial as a miss once it can no longer change the score.

**Rule.** For each (workload, ruleset) and each measure (steps; modelled seconds = steps × the arm's cost per
update on the workload), U is `score.threshold_u` over the tuning trials finished so far. A tuning trial that has
not reached the target is stopped at a report of step k when

    k > f · r_max · U_steps  and  k · cost > f · r_max · U_modelled,

both U of its own workload and ruleset, with f = 1 when the ruleset has an odd number of studies S and f = 2 when
S is even. Strict ">": a time of exactly f · r_max · U is not stopped. Confirmation trials are never stopped, and
neither is a trial that has reached the target (it may train on past it: `epochs_after_grok`, or a further event
such as polynomial's `grok_strict`).

**Why ρ and B come out the same.** Fix a workload, ruleset and measure; let T be the final best time of the run
without the stopper and L = r_max · T. (1) U ≥ T at every moment: every time it uses is an upper bound of the final
one (a study with no finished trial counts as ∞), and min and median only rise with their inputs. (2) A stopped
trial had not reached the target by step k, so its time x ≥ k > f · L, on both measures (modelled: x · cost ≥
k · cost); that is why both must hold. (3) Stopping it changes its study's time only where x was that minimum, so
only a study time above f · L changes, and only upwards. (4) S odd: an arm's time is its middle study time; study
times ≤ L are unchanged and those above L stay above L, so an arm time ≤ L is unchanged and one above L stays above.
S even: an arm time ≤ L is the mean of the two middle study times a ≤ b, so b ≤ 2L − a ≤ 2L; study times up to b
are unchanged and the rest only rise, so both middle values and the median are unchanged. (5) So the best arm keeps
T, every arm time ≤ L is the same, and any time above L scores r = ∞ (`score.ratios` caps it): every r, hence ρ at
every τ and B, is unchanged.

With f = 1 for an even S, as the issue first wrote the rule, ρ and B can change: r_max = 4, S = 2, one trial per
study; arm A's studies take 1 and 1 (best T = 1), arm B's 1 and 6, so r_B = (1 + 6) / 2 = 3.5. Once A's trials
finish U = 1, and B's second trial would be stopped at step 5 > 4 × 1; B's median becomes (1 + ∞) / 2 = ∞.

**What the stopper reads from a result** (Ray 2.60: `Trainable.train` adds the trial's `config` to every result):
`config["trial"]["benchmark"]` = {workload, arm, ruleset, phase, study, trial} (`Coordinates`); `step` (updates so
far); on the last report `summary`, whose `status` is "grokked" when the trial reached the target, at
`steps_to_grok`; and on every report `steps_to_grok` (REACHED_KEY, None before the target). A report without
REACHED_KEY never stops its trial (the stopper cannot tell it has not reached the target) and logs a warning once.
A finished trial counts at its `steps_to_grok` only with status "grokked" (a diverged one counts as ∞, an upper
bound whatever the score makes of it).

**Stopped trials** are listed by `stopped` (Tune trial id → `StoppedTrial`) and marked on the result itself,
`result[STOPPED_BY] = STOPPED_BY_R_MAX`: Tune hands that same dict to its callbacks' `on_trial_result` and keeps
it as the trial's `last_result`, so the callback that records the trial sees the mark without a reference to the
stopper. **Resume:** `Tuner.restore` unpickles the stopper it was started with (it takes no run config), so trials
finished before the resume reach it through `history`, a picklable callable it calls once, before its first
decision; `seed` takes them directly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ray.tune.stopper import Stopper

from grokbench.benchmark.score import stop_factor, threshold_u
from grokbench.benchmark.suite import RULESETS, STOPPED_BY_R_MAX, Coordinates
from grokbench.sweep.keys import STOPPED_BY

log = logging.getLogger("grokbench.benchmark.stopper")

REACHED_KEY = "steps_to_grok"  # the step at which the trial reached the target, None before (the summary's name)
TUNING = "tuning"


@dataclass(frozen=True)
class FinishedTrial:
    """A trial that ended: at the target after `steps_to_target` updates, or None (censored, diverged, stopped)."""

    coordinates: Coordinates
    steps_to_target: int | None


@dataclass(frozen=True)
class StoppedTrial:
    coordinates: Coordinates
    step: int  # where it was stopped: the coordinator records the trial as censored there
    limit_steps: float  # f · r_max · U_steps when it was stopped
    limit_modelled_s: float  # f · r_max · U_modelled


class RMaxStopper(Stopper):
    """Stops tuning trials that can no longer change ρ or B (the rule and its proof: the module's docstring).

    costs: (workload, arm) → seconds per update, for every arm that runs a tuning trial on the workload; studies:
    ruleset → its number of studies S; history: a picklable callable giving the trials finished before a resume."""

    def __init__(
        self,
        costs: Mapping[tuple[str, str], float],
        studies: Mapping[str, int],
        r_max: float,
        history: Callable[[], Iterable[FinishedTrial]] | None = None,
    ):
        _check_settings(costs, studies, r_max)
        self.costs = dict(costs)
        self.studies = dict(studies)
        self.r_max = r_max
        self.history = history
        # (workload, ruleset) → arm → study → fewest steps of a finished trial that reached the target
        self._best: dict[tuple[str, str], dict[str, dict[int, int]]] = {}
        self._stopped: dict[str, StoppedTrial] = {}
        self._history_loaded = False
        self._warned_unreached = False

    def __getstate__(self) -> dict[str, Any]:
        # pickled with the Tuner as its settings: a restored stopper starts afresh and reads `history`
        return {"costs": self.costs, "studies": self.studies, "r_max": self.r_max, "history": self.history}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    # ---- Tune's interface -------------------------------------------------------------------------------------

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if not self._history_loaded:
            self._history_loaded = True
            if self.history is not None:
                self.seed(self.history())
        if trial_id in self._stopped:
            return True
        where = Coordinates.of(result["config"])
        if where.phase != TUNING:
            return False
        if "summary" in result:  # its last report
            summary = result["summary"]
            reached = summary[REACHED_KEY] if summary["status"] == "grokked" else None
            self.seed([FinishedTrial(where, reached)])
            return False
        if not self._known_unreached(result):
            return False
        return self._stop_if_beyond(trial_id, where, result)

    def stop_all(self) -> bool:
        return False

    # ---- for the coordinator ----------------------------------------------------------------------------------

    def seed(self, finished: Iterable[FinishedTrial]) -> None:
        """Count trials that finished (before a resume, or just now) towards U; confirmation trials are ignored."""
        for trial in finished:
            where = trial.coordinates
            if where.phase != TUNING:
                continue
            self._cost(where)
            if trial.steps_to_target is None:
                continue  # a miss leaves every study's minimum as it was
            arm_best = self._best.setdefault((where.workload, where.ruleset), {}).setdefault(where.arm, {})
            arm_best[where.study] = min(arm_best.get(where.study, math.inf), trial.steps_to_target)
            if len(arm_best) > self._studies(where.ruleset):
                raise ValueError(f"arm {where.arm} on {where.workload} ({where.ruleset}): more studies than S")

    @property
    def stopped(self) -> Mapping[str, StoppedTrial]:
        """Tune trial id → the trial this stopper ended as a miss."""
        return MappingProxyType(self._stopped)

    def thresholds(self, workload: str, ruleset: str) -> tuple[float, float]:
        """(U_steps, U_modelled in seconds) of a workload and ruleset, from the trials finished so far."""
        s = self._studies(ruleset)
        by_arm = self._best.get((workload, ruleset), {})

        def u(scale: Callable[[str], float]) -> float:
            finished = {
                arm: [[scale(arm) * steps] for steps in best.values()] + [[]] * (s - len(best))
                for arm, best in by_arm.items()
            }
            return threshold_u(finished)

        return u(lambda arm: 1.0), u(lambda arm: self.costs[workload, arm])

    # ---- the rule ---------------------------------------------------------------------------------------------

    def _stop_if_beyond(self, trial_id: str, where: Coordinates, result: dict[str, Any]) -> bool:
        u_steps, u_modelled = self.thresholds(where.workload, where.ruleset)
        f = stop_factor(self._studies(where.ruleset))  # why 2 for an even S: the module's docstring
        limit_steps, limit_modelled = f * (self.r_max * u_steps), f * (self.r_max * u_modelled)
        step, cost = result["step"], self._cost(where)
        if not (step > limit_steps and step * cost > limit_modelled):
            return False
        self._stopped[trial_id] = StoppedTrial(where, step, limit_steps, limit_modelled)
        result[STOPPED_BY] = STOPPED_BY_R_MAX
        log.info(
            "r_max stop: trial %s (%s, %s, %s, study %d) at step %d > %g = %g × %g × U_steps %g, modelled %.4g s > "
            "%.4g s = %g × %g × U_modelled %.4g s",
            trial_id, where.workload, where.arm, where.ruleset, where.study, step, limit_steps, f, self.r_max,
            u_steps, step * cost, limit_modelled, f, self.r_max, u_modelled,
        )  # fmt: skip
        return True

    def _known_unreached(self, result: Mapping[str, Any]) -> bool:
        """Whether the report says its trial has not reached the target; a report that does not say is never
        stopped (it may be training on past the target)."""
        if REACHED_KEY not in result:
            if not self._warned_unreached:
                self._warned_unreached = True
                log.warning("r_max stopper: reports carry no %r, so no trial is stopped", REACHED_KEY)
            return False
        return result[REACHED_KEY] is None

    def _cost(self, where: Coordinates) -> float:
        try:
            return self.costs[where.workload, where.arm]
        except KeyError:
            raise ValueError(f"r_max stopper: no cost per update for arm {where.arm} on {where.workload}") from None

    def _studies(self, ruleset: str) -> int:
        try:
            return self.studies[ruleset]
        except KeyError:
            raise ValueError(f"r_max stopper: no study count for ruleset {ruleset}") from None


def _check_settings(costs: Mapping[tuple[str, str], float], studies: Mapping[str, int], r_max: float) -> None:
    if not (1 < r_max < math.inf):
        raise ValueError(f"r_max must be a finite number above 1, got {r_max!r}")
    for key, cost in costs.items():
        if not (0 < cost < math.inf):
            raise ValueError(f"cost per update of {key}: must be positive and finite, got {cost!r}")
    for ruleset, s in studies.items():
        if ruleset not in RULESETS or type(s) is not int or s < 1:
            raise ValueError(f"studies: {ruleset!r}: {s!r} (a ruleset of {RULESETS} and an int >= 1)")
