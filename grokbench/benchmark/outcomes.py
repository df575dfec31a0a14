"""A benchmark's trials as its MLflow runs record them, and what the protocol reads off them: each study's time,
each arm's time table for the score, and the winning setting that each (workload, arm, ruleset) confirms.

The benchmark's driver uses it (the stopper's history on a resume, the confirmation's winners) and so does the
leaderboard (`analysis.leaderboard`), so both read the same runs the same way.

- A trial's time on the *steps* measure is its updates to the target; on the *modelled* measure, those updates ×
  its arm's cost per update on the workload (`costs.json` of the benchmark's parent run). A trial that did not reach
  the target (censored, diverged, stopped by r_max) has no time: ∞.
- The winner of a study is its fastest trial to the target (the lower trial index on a tie), or its trial 0 where
  none reached it (each setting is then as good as another). The median study is the middle one of the studies
  sorted by time (∞ last, the lower study index on a tie); with an even S, the lower of the two middle ones. Its
  winner is what the confirmation reruns on fresh seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from grokbench.benchmark.score import TimeTable, study_time
from grokbench.benchmark.suite import (
    ARM_TAG,
    PHASE_TAG,
    RULESET_TAG,
    STUDY_TAG,
    WORKLOAD_TAG,
    Coordinates,
    Suite,
)
from grokbench.sweep.keys import FINAL_STATUSES, STOPPED_BY_TAG, SWEEP_TAG, outcome_rank

DRAWN_TAG = "grokbench.drawn"  # the tuned settings' values of a trial, as JSON (absent: nothing drawn)
TRIAL_TAG = "grokbench.trial"  # a tuning trial's index in its study; a confirmation trial's index among its seeds
MEASURES = ("steps", "modelled")
Cell = tuple[str, str, str]  # (workload, arm, ruleset)


@dataclass(frozen=True)
class TrialOutcome:
    """One benchmark trial's run: where it sits, how it ended and when it reached the target."""

    coords: Coordinates
    run_id: str
    status: str  # grokked (reached the target), censored, diverged, failed or running
    steps_to_target: int | None
    seconds_to_target: float | None  # measured training seconds
    drawn: Mapping[str, float] = field(default_factory=dict)
    stopped_by: str | None = None
    benchmark_id: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    def time(self, measure: str, costs: Mapping[tuple[str, str], float]) -> float:
        """Its time on a measure (math.inf: the target was not reached)."""
        if self.steps_to_target is None:
            return math.inf
        if measure == "steps":
            return float(self.steps_to_target)
        return self.steps_to_target * costs[self.coords.workload, self.coords.arm]


def outcome_of(run) -> TrialOutcome | None:
    """A benchmark trial's outcome from its MLflow run (an mlflow Run); None for a run that is not one."""
    tags, metrics = run.data.tags, run.data.metrics
    if PHASE_TAG not in tags:
        return None
    coords = Coordinates(
        workload=tags[WORKLOAD_TAG],
        arm=tags[ARM_TAG],
        ruleset=tags[RULESET_TAG],
        phase=tags[PHASE_TAG],
        study=int(tags[STUDY_TAG]),
        trial=int(tags[TRIAL_TAG]),
    )
    status = tags.get("status", "running")
    reached = status == "grokked" and "steps_to_grok" in metrics
    return TrialOutcome(
        coords=coords,
        run_id=run.info.run_id,
        status=status,
        steps_to_target=int(metrics["steps_to_grok"]) if reached else None,
        seconds_to_target=metrics.get("time_to_grok_s") if reached else None,
        drawn=json.loads(tags.get(DRAWN_TAG, "{}")),
        stopped_by=tags.get(STOPPED_BY_TAG),
        benchmark_id=tags.get(SWEEP_TAG),
    )


def latest_outcomes(runs: Iterable) -> list[TrialOutcome]:
    """One outcome per trial (its coordinates), from the runs of any of the suite's benchmarks: the newest run with
    an outcome, else the newest failed one, else the newest unfinished one."""
    ranked = sorted(runs, key=lambda r: (outcome_rank(r.data.tags.get("status")), r.info.start_time or 0))
    latest: dict[Coordinates, TrialOutcome] = {}
    for run in ranked:
        outcome = outcome_of(run)
        if outcome is not None:
            latest[outcome.coords] = outcome
    return sorted(latest.values(), key=lambda o: _order(o.coords))


def _order(c: Coordinates) -> tuple:
    return c.workload, c.arm, c.ruleset, c.phase, c.study, c.trial


def tuning_studies(suite: Suite, outcomes: Iterable[TrialOutcome]) -> dict[Cell, list[list[TrialOutcome]]]:
    """(workload, arm, ruleset) → its studies, each the list of its finished tuning trials, for every cell the
    suite runs (a study with none finished is an empty list)."""
    out: dict[Cell, list[list[TrialOutcome]]] = {
        (w, a, r): [[] for _ in range(rules.studies)]
        for w, a in suite.applicable()
        for r, rules in suite.rulesets.items()
    }
    for o in outcomes:
        c = o.coords
        if c.phase == "tuning" and o.finished and (c.workload, c.arm, c.ruleset) in out:
            out[c.workload, c.arm, c.ruleset][c.study].append(o)
    return out


def time_table(
    suite: Suite, outcomes: Iterable[TrialOutcome], ruleset: str, measure: str, costs: Mapping[tuple[str, str], float]
) -> TimeTable:
    """The score's table for one ruleset and measure: each study's time, None for an arm a workload refuses."""
    studies = tuning_studies(suite, outcomes)
    table: dict[tuple[str, str], list[float] | None] = {}
    for w in suite.workloads:
        for a in suite.arms:
            cell = studies.get((w, a, ruleset))
            table[w, a] = None if cell is None else [study_time(o.time(measure, costs) for o in s) for s in cell]
    return TimeTable(table)


def study_winner(study: int, trials: list[TrialOutcome]) -> tuple[float, int, int]:
    """(its time in steps, study, the winning trial's index) of one study."""
    reached = [(o.steps_to_target, o.coords.trial) for o in trials if o.steps_to_target is not None]
    steps, trial = min(reached, default=(math.inf, 0))
    return steps, study, trial


def winners(suite: Suite, outcomes: Iterable[TrialOutcome]) -> dict[Cell, Coordinates]:
    """Each (workload, arm, ruleset)'s confirmed setting: the winner of its median study (module docstring)."""
    out = {}
    for (w, a, r), studies in tuning_studies(suite, outcomes).items():
        ranked = sorted(study_winner(s, trials) for s, trials in enumerate(studies))
        _, study, trial = ranked[(len(ranked) - 1) // 2]
        out[w, a, r] = Coordinates(w, a, r, "tuning", study, trial)
    return out
