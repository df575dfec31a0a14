"""The r_max stopper, called as Tune calls it (`__call__(trial_id, result)` with results shaped as
`grokbench.sweep.trainable` reports them, Tune's `config` included): a property test that it leaves ρ and B as they
are, and the rule's edges by hand."""

from __future__ import annotations

import functools
import logging
import math
import pickle
from dataclasses import dataclass

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from ray import tune

from grokbench.benchmark.score import TimeTable, profile_curve, score_table, study_time
from grokbench.benchmark.stopper import (
    REACHED_KEY,
    FinishedTrial,
    RMaxStopper,
    StoppedTrial,
)
from grokbench.benchmark.suite import Coordinates
from grokbench.sweep.keys import STOPPED_BY

R_MAX = 4.0
INF = math.inf


def config(workload="w", arm="A", ruleset="open", study=0, phase="tuning") -> dict:
    """Tune's config of a benchmark trial, as the coordinator builds it."""
    where = {"workload": workload, "arm": arm, "ruleset": ruleset, "phase": phase, "study": study, "trial": 0}
    return {"trial": {"config": {"task": "xor", "seed": 1}, "checkpoint_every": 500, "benchmark": where}}


def report(step: int, reached: int | None = None, **where) -> dict:
    """An intermediate report: the trainable's keys, and Tune's config."""
    return {"step": step, "curve": [], "objective": 1.0, REACHED_KEY: reached, "config": config(**where)}


def last_report(step: int, reached: int | None, **where) -> dict:
    summary = {"status": "grokked" if reached is not None else "censored", "steps_to_grok": reached, "steps": step}
    return {"step": step, "curve": [], "objective": 1.0, "summary": summary, "config": config(**where)}


# ---- the property: ρ and B with and without the stopper ----------------------------------------------------------


@dataclass(frozen=True)
class SimTrial:
    trial_id: str
    where: Coordinates
    reached: int | None  # the step of the first evaluation at the target; None: a miss within the budget
    reports: tuple[int, ...]  # the steps it reports at; the last one carries the summary
    start: float  # when it starts, and its seconds per update: the order in which reports reach Tune
    pace: float


@dataclass(frozen=True)
class Benchmark:
    costs: dict[tuple[str, str], float]
    studies: dict[str, int]
    refused: frozenset[tuple[str, str]]
    trials: tuple[SimTrial, ...]

    @property
    def workloads(self) -> list[str]:
        return sorted({w for w, _ in self.costs})

    @property
    def arms(self) -> list[str]:
        return sorted({a for _, a in self.costs})


@st.composite
def trial_steps(draw, every: int, budget_evals: int, typical: int):
    """(reached, the steps it reports at): evaluations every `every` updates, reaching the target near the arm's
    typical evaluation or missing; a trial at the target may train on past it; it reports at a random subset of
    its evaluations (Tune receives them in batches) and at its end."""
    reached_eval = draw(st.integers(typical // 2, 2 * typical))
    if draw(st.integers(0, 4)) == 0 or reached_eval > budget_evals:  # one in five misses
        reached_eval = None
    after = draw(st.sampled_from([0, 0, 2, 8, 30]))
    last = budget_evals if reached_eval is None else min(budget_evals, reached_eval + after)
    shown = draw(st.sets(st.integers(0, last), max_size=last + 1))
    reports = tuple(sorted({e * every for e in shown} | {last * every}))
    return (None if reached_eval is None else reached_eval * every), reports


@st.composite
def benchmarks(draw) -> Benchmark:
    """Workloads × arms × rulesets × studies × trials; arms some times slower than the fastest, so that trials run
    past r_max × U, with costs per update far apart, so that the two measures disagree."""
    workloads = [f"w{i}" for i in range(draw(st.integers(1, 3)))]
    arms = [f"arm{i}" for i in range(draw(st.integers(2, 3)))]
    rulesets = draw(st.sampled_from([["open"], ["paper"], ["paper", "open"]]))
    studies = {rs: draw(st.integers(1, 4)) for rs in rulesets}
    per_study = {rs: draw(st.integers(1, 2)) for rs in rulesets}
    costs = {(w, a): draw(st.sampled_from([0.25, 1.0, 9.0])) for w in workloads for a in arms}
    refused = frozenset(key for key in costs if draw(st.integers(0, 5)) == 0)
    rng = draw(st.randoms(use_true_random=False))
    trials = []
    for w in workloads:
        every, base = draw(st.sampled_from([1, 2, 5])), draw(st.integers(0, 3))
        for a in arms:
            typical = base * draw(st.sampled_from([1, 2, 3, 5, 8]))
            for rs in rulesets:
                if (w, a) in refused:
                    continue
                for study in range(studies[rs]):
                    for _ in range(per_study[rs]):
                        reached, reports = draw(trial_steps(every, 40, typical))
                        where = Coordinates(w, a, rs, "tuning", study, 0)
                        start, pace = rng.uniform(0, 20), rng.uniform(0.1, 3)
                        trials.append(SimTrial(f"t{len(trials)}", where, reached, reports, start, pace))
    return Benchmark(costs, studies, refused, tuple(trials))


def run_online(bench: Benchmark, stopper: RMaxStopper | None) -> set[str]:
    """Feed every trial's reports to the stopper in the order they would reach Tune, ending a trial where it says
    stop (its later reports never come); return the stopped trials' ids."""
    events = sorted(
        ((t.start + t.pace * step, i, t, step) for t in bench.trials for i, step in enumerate(t.reports)),
        key=lambda e: (e[0], e[1], e[2].trial_id),
    )
    stopped: set[str] = set()
    for _, _, trial, step in events:
        if trial.trial_id in stopped or stopper is None:
            continue
        where = {f: getattr(trial.where, f) for f in ("workload", "arm", "ruleset", "study", "phase")}
        if step == trial.reports[-1]:
            result = last_report(step, trial.reached, **where)
        else:
            result = report(
                step, trial.reached if trial.reached is not None and trial.reached <= step else None, **where
            )
        if stopper(trial.trial_id, result):
            stopped.add(trial.trial_id)
    return stopped


def profiles(bench: Benchmark, stopped: set[str]) -> dict[tuple[str, str, str], tuple[list[float], float | None]]:
    """(ruleset, measure, arm) → the arm's ratios over the workloads it runs, and B; a stopped trial is a miss."""
    out = {}
    for rs, s in bench.studies.items():
        for measure in ("steps", "modelled"):
            studies: dict[tuple[str, str], list[float] | None] = {}
            for w in bench.workloads:
                for a in bench.arms:
                    scale = 1.0 if measure == "steps" else bench.costs[w, a]
                    times: list[list[float]] = [[] for _ in range(s)]
                    for t in bench.trials:
                        if (t.where.workload, t.where.arm, t.where.ruleset) == (w, a, rs):
                            miss = t.reached is None or t.trial_id in stopped
                            times[t.where.study].append(INF if miss else t.reached * scale)
                    studies[w, a] = None if (w, a) in bench.refused else [study_time(ts) for ts in times]
            for arm, score in score_table(TimeTable(studies), R_MAX).items():
                out[rs, measure, arm] = (list(score.ratios.values()), score.score)
    return out


def check_profiles_unchanged(bench: Benchmark) -> None:
    stopper = RMaxStopper(bench.costs, bench.studies, R_MAX)
    stopped = run_online(bench, stopper)
    assert stopped == set(stopper.stopped)
    event(f"trials stopped: {'some' if stopped else 'none'}")
    plain, with_stopper = profiles(bench, set()), profiles(bench, stopped)
    assert plain.keys() == with_stopper.keys()
    for key, (ratios, score) in plain.items():
        other_ratios, other_score = with_stopper[key]
        assert other_score == score, key
        if ratios:  # ρ is a step function with its jumps at the ratios: equal at every jump, equal everywhere
            taus = sorted({1.0, R_MAX, *(r for r in ratios + other_ratios if math.isfinite(r))})
            assert profile_curve(other_ratios, taus).tolist() == profile_curve(ratios, taus).tolist(), key


def by_hand(costs: dict[str, float], studies: int, trials: list[tuple[str, int, int | None, int, float, float]]):
    """A one-workload benchmark under `open`: trials as (arm, study, reached, last step, start, pace), each
    reporting at every step up to its last."""
    sims = tuple(
        SimTrial(f"t{i}", Coordinates("w", arm, "open", "tuning", study, 0), reached, tuple(range(last + 1)), t0, v)
        for i, (arm, study, reached, last, t0, v) in enumerate(trials)
    )
    return Benchmark({("w", a): c for a, c in costs.items()}, {"open": studies}, frozenset(), sims)


# the module docstring's counterexample: two studies, B's (1 + 6) / 2 = 3.5 is within r_max of A's 1, but B's second
# trial runs past 4 × U = 4 (only a stop past 2 × 4 × U leaves B's median as it is)
EVEN_STUDIES = by_hand(
    {"A": 1.0, "B": 1.0},
    2,
    [("A", 0, 1, 1, 0, 0.1), ("A", 1, 1, 1, 0, 0.1), ("B", 0, 1, 1, 0, 0.1), ("B", 1, 6, 6, 1, 1)],
)
# B is 10 × slower than A in steps but the fastest in modelled seconds (10 × 0.25 < 1 × 9): a stop on steps alone at
# step 5 would make it a miss in modelled time
CHEAP_UPDATES = by_hand({"A": 9.0, "B": 0.25}, 1, [("A", 0, 1, 1, 0, 0.1), ("B", 0, 10, 10, 1, 1)])
# B reaches the target at step 3 (r = 3) and trains on to step 10: past 4 × U, but not a miss
TRAINS_ON = by_hand({"A": 1.0, "B": 1.0}, 1, [("A", 0, 1, 1, 0, 0.1), ("B", 0, 3, 10, 1, 1)])

# A's first study finishes at 1 while its other two are still running (they reach 10): its median is not 1, and
# B's trials, at 6 the best, must not be stopped past 4 × 1
UNFINISHED_STUDIES = by_hand(
    {"A": 1.0, "B": 1.0},
    3,
    [("A", 0, 1, 1, 0, 0.1), ("A", 1, 10, 10, 0, 1), ("A", 2, 10, 10, 0, 1)]
    + [("B", study, 6, 6, 1, 1) for study in range(3)],
)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(benchmarks())
@example(EVEN_STUDIES)
@example(CHEAP_UPDATES)
@example(TRAINS_ON)
@example(UNFINISHED_STUDIES)
def test_the_stopper_leaves_rho_and_b_unchanged(bench):
    check_profiles_unchanged(bench)


@pytest.mark.long
@pytest.mark.slow  # so that the fast tier's -m "not slow", which replaces the default -m "not long", leaves it out
@settings(derandomize=True, max_examples=3000, deadline=None)
@given(benchmarks())
def test_the_stopper_leaves_rho_and_b_unchanged_long(bench):
    check_profiles_unchanged(bench)


# ---- the rule's edges, by hand ------------------------------------------------------------------------------------


def finish(stopper: RMaxStopper, arm: str, study: int, reached: int | None, status: str | None = None, **where):
    """A trial's last report, as Tune hands it over; returns the stopper's answer."""
    result = last_report(reached or 1000, reached, arm=arm, study=study, **where)
    if status:
        result["summary"]["status"] = status
    return stopper(f"{arm}-{study}-{reached}-{status}-{where}", result)


def test_thresholds_from_finished_trials_by_hand():
    stopper = RMaxStopper({("w", "A"): 1.0, ("w", "B"): 3.0}, {"open": 3, "paper": 3}, R_MAX)
    assert stopper.thresholds("w", "open") == (INF, INF)
    for arm, study, reached in [("A", 0, 10), ("A", 1, 20), ("B", 0, 8), ("B", 1, 8), ("B", 2, None)]:
        assert finish(stopper, arm, study, reached) is False
    finish(stopper, "A", 2, 2, phase="confirmation")  # not a study's trial
    finish(stopper, "A", 2, 3, status="diverged")  # reached, then diverged: counts as ∞
    # steps: A median(10, 20, ∞) = 20, B median(8, 8, ∞) = 8 → 8
    # modelled: A 1 s × (10, 20, ∞) → 20 s, B 3 s × (8, 8, ∞) → 24 s → 20 s
    assert stopper.thresholds("w", "open") == (8, 20)
    assert stopper.thresholds("w", "paper") == (INF, INF)


def three_arms() -> RMaxStopper:
    """One study; A (1 s per update) finished at step 10: U = 10 steps and 10 s, so the limits are 40 and 40 s."""
    stopper = RMaxStopper({("w", "A"): 1.0, ("w", "B"): 3.0, ("w", "C"): 0.25}, {"open": 1}, R_MAX)
    finish(stopper, "A", 0, 10)
    return stopper


def test_a_confirmation_trial_is_never_stopped():
    stopper = three_arms()
    assert stopper("conf", report(10_000, arm="A", phase="confirmation")) is False
    assert stopper("tune", report(10_000, arm="A")) is True


def test_both_measures_must_be_beyond_r_max_times_u():
    stopper = three_arms()
    assert stopper("c", report(50, arm="C")) is False  # 50 > 40 steps, but 50 × 0.25 = 12.5 s ≤ 40 s
    assert stopper("c", report(161, arm="C")) is True  # 161 > 40 and 40.25 s > 40 s
    assert stopper("b", report(20, arm="B")) is False  # 20 × 3 = 60 s > 40 s, but 20 ≤ 40 steps
    assert stopper("b", report(41, arm="B")) is True  # 41 > 40 and 123 s > 40 s


def test_exactly_r_max_times_u_is_not_stopped():
    stopper = three_arms()
    assert stopper("a", report(40, arm="A")) is False  # 40 = 4 × 10 steps, 40 s = 4 × 10 s
    assert stopper("a", report(41, arm="A")) is True


def test_an_even_study_count_doubles_the_limit():
    stopper = RMaxStopper({("w", "A"): 1.0}, {"open": 2}, R_MAX)
    finish(stopper, "A", 0, 10)
    finish(stopper, "A", 1, 10)  # U = (10 + 10) / 2 = 10
    assert stopper("a", report(80, arm="A")) is False  # 80 = 2 × 4 × 10
    assert stopper("a", report(81, arm="A")) is True


def test_a_trial_at_its_target_is_never_stopped(caplog):
    stopper = three_arms()
    assert stopper("a", report(1000, reached=30, arm="A")) is False  # at the target by step 30, training on
    unsaid = report(1000, arm="A")
    del unsaid[REACHED_KEY]
    with caplog.at_level(logging.WARNING, "grokbench.benchmark.stopper"):
        assert stopper("b", unsaid) is False
        assert stopper("c", unsaid) is False
    assert [r.message for r in caplog.records] == [
        f"r_max stopper: reports carry no {REACHED_KEY!r}, so no trial is stopped"
    ]


def test_a_stop_is_marked_listed_and_logged(caplog):
    stopper = three_arms()
    result = report(60, arm="B", study=0)
    with caplog.at_level(logging.INFO, "grokbench.benchmark.stopper"):
        assert stopper("b", result) is True
    assert result[STOPPED_BY] == "r_max"
    assert dict(stopper.stopped) == {"b": StoppedTrial(Coordinates("w", "B", "open", "tuning", 0, 0), 60, 40.0, 40.0)}
    message = caplog.records[-1].getMessage()
    assert "trial b (w, B, open, study 0) at step 60 > 40 = 1 × 4 × U_steps 10, modelled 180 s > 40 s" in message
    assert stopper("b", report(61, arm="B")) is True  # a late report of a stopped trial
    assert stopper.stop_all() is False


def test_seeded_from_trials_finished_before_a_resume():
    finished = [FinishedTrial(Coordinates("w", "A", "open", "tuning", 0, 0), 10)]
    costs = {("w", "A"): 1.0}
    seeded = RMaxStopper(costs, {"open": 1}, R_MAX)
    seeded.seed(finished)
    assert seeded("a", report(41, arm="A")) is True
    # Tune unpickles the stopper it started with: it reads `history` before its first decision
    started = RMaxStopper(costs, {"open": 1}, R_MAX, history=functools.partial(list, finished))
    restored = pickle.loads(pickle.dumps(started))
    assert restored("a", report(41, arm="A")) is True
    assert pickle.loads(pickle.dumps(RMaxStopper(costs, {"open": 1}, R_MAX)))("a", report(41, arm="A")) is False


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RMaxStopper({}, {"open": 1}, 1.0), "r_max must be"),
        (lambda: RMaxStopper({("w", "A"): 0.0}, {"open": 1}, R_MAX), "must be positive"),
        (lambda: RMaxStopper({}, {"open": 0}, R_MAX), "studies: 'open': 0"),
        (lambda: RMaxStopper({}, {"closed": 1}, R_MAX), "studies: 'closed'"),
        (lambda: three_arms()("x", {"step": 1, "config": {"trial": {"config": {}}}}), "not a benchmark trial"),
        (lambda: three_arms()("x", report(1, arm="D")), "no cost per update for arm D on w"),
        (lambda: three_arms()("x", report(1, ruleset="paper")), "no study count for ruleset paper"),
        (lambda: three_arms()("x", report(1, ruleset="closed")), "bad ruleset, phase, study or trial"),
        (lambda: finish(three_arms(), "A", 1, 5), "more studies than S"),
    ],
)
def test_bad_settings_and_results_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ---- on Ray Tune ----------------------------------------------------------------------------------------------------


class LastResults(tune.Callback):
    """What the driver's recording callback reads of each trial when it ends: its last result, by arm."""

    def __init__(self):
        self.last: dict[str, dict] = {}

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.last[trial.config["trial"]["benchmark"]["arm"]] = trial.last_result


@pytest.mark.slow
def test_on_tune_the_stopper_reads_the_config_and_its_mark_reaches_the_callbacks(local_ray, tmp_path):
    """Tune hands the stopper each result with the trial's config, ends the trial it stops, and its callbacks see
    the stopper's mark on that result: A reaches the target at step 2 (U = 2), B is stopped at step 9 > 4 × 2."""

    def reports_until(config):
        """A function trainable reporting as grokbench's does: each step, then a summary at its end. Defined in the
        test so that Ray pickles it by value (its workers cannot import a test module)."""
        reach, last = config["trial"]["reach"], config["trial"]["last"]
        for step in range(1, last):
            tune.report({"step": step, REACHED_KEY: reach if reach is not None and reach <= step else None})
        status = "grokked" if reach is not None else "censored"
        tune.report({"step": last, "summary": {"status": status, "steps_to_grok": reach}})

    def entry(arm, reach, last):
        where = {"workload": "w", "arm": arm, "ruleset": "open", "phase": "tuning", "study": 0, "trial": 0}
        return {"benchmark": where, "reach": reach, "last": last}

    stopper = RMaxStopper({("w", "A"): 1.0, ("w", "B"): 1.0}, {"open": 1}, R_MAX)
    marks = LastResults()
    tuner = tune.Tuner(
        reports_until,
        param_space={"trial": tune.grid_search([entry("A", 2, 2), entry("B", None, 200)])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),  # A first: U is set before B runs
        run_config=tune.RunConfig(storage_path=str(tmp_path), stop=stopper, callbacks=[marks], verbose=0),
    )
    results = {r.config["trial"]["benchmark"]["arm"]: r.metrics for r in tuner.fit()}
    assert results["B"]["step"] == 9 and results["B"][STOPPED_BY] == "r_max"
    assert marks.last["B"][STOPPED_BY] == "r_max" and marks.last["B"]["step"] == 9
    assert STOPPED_BY not in marks.last["A"] and marks.last["A"]["summary"]["steps_to_grok"] == 2
    assert [s.coordinates.arm for s in stopper.stopped.values()] == ["B"]
