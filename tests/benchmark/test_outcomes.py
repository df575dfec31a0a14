"""A benchmark's outcomes: the study times, the score's table and the winners the confirmation reruns."""

import math

import pytest

from grokbench.benchmark.outcomes import DRAWN_TAG, TRIAL_TAG, TrialOutcome, latest_outcomes, time_table, winners
from grokbench.benchmark.suite import Coordinates, load_suite
from grokbench.sweep.keys import KEY_TAG, SWEEP_TAG
from grokbench.sweep.mlflow_store import TrackingStore


@pytest.fixture(scope="module")
def suite():
    return load_suite("smoke")  # xor; baseline and grokalign; both rulesets of 2 studies × 1 trial


def tuned(arm, ruleset, study, trial, steps, status=None):
    status = status or ("grokked" if steps is not None else "censored")
    coords = Coordinates("xor", arm, ruleset, "tuning", study, trial)
    return TrialOutcome(coords, f"run-{arm}-{ruleset}-{study}-{trial}", status, steps, None)


def test_the_winner_is_the_fastest_trial_of_the_median_study_with_misses_last():
    suite = load_suite("smoke")
    outcomes = [
        # baseline, paper: studies take 120 and 90 updates; sorted (90: study 1, 120: study 0), the lower middle of
        # an even count is the first: study 1, trial 0
        tuned("baseline", "paper", 0, 0, 120),
        tuned("baseline", "paper", 1, 0, 90),
        # baseline, open: study 0 missed (∞ sorts last), study 1 took 150: study 1 wins
        tuned("baseline", "open", 0, 0, None),
        tuned("baseline", "open", 1, 0, 150),
        # grokalign, paper: both missed: the lower study, its trial 0
        tuned("grokalign", "paper", 0, 0, None),
        tuned("grokalign", "paper", 1, 0, None, status="diverged"),
        # grokalign, open: only study 1 has finished (study 0 still running): 80 then ∞, study 1
        tuned("grokalign", "open", 0, 0, None, status="running"),
        tuned("grokalign", "open", 1, 0, 80),
    ]
    assert winners(suite, outcomes) == {
        ("xor", "baseline", "paper"): Coordinates("xor", "baseline", "paper", "tuning", 1, 0),
        ("xor", "baseline", "open"): Coordinates("xor", "baseline", "open", "tuning", 1, 0),
        ("xor", "grokalign", "paper"): Coordinates("xor", "grokalign", "paper", "tuning", 0, 0),
        ("xor", "grokalign", "open"): Coordinates("xor", "grokalign", "open", "tuning", 1, 0),
    }


def test_the_time_table_has_each_studys_fastest_time_on_either_measure(suite):
    outcomes = [tuned("baseline", "paper", 0, 0, 120), tuned("baseline", "paper", 1, 0, None)]
    costs = {("xor", "baseline"): 0.5, ("xor", "grokalign"): 2.0}
    steps = time_table(suite, outcomes, "paper", "steps", costs)
    assert steps.studies == {("xor", "baseline"): [120.0, math.inf], ("xor", "grokalign"): [math.inf, math.inf]}
    modelled = time_table(suite, outcomes, "paper", "modelled", costs)
    assert modelled.studies[("xor", "baseline")] == [60.0, math.inf]  # 120 updates × 0.5 s


def test_a_run_is_read_back_as_its_outcome_and_the_newest_with_an_outcome_speaks(tmp_path, suite):
    store = TrackingStore(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = store.prepare_experiment(suite.experiment)
    coords = Coordinates("xor", "grokalign", "open", "tuning", 1, 0)
    tags = {
        **coords.tags(suite.name),
        TRIAL_TAG: "0",
        DRAWN_TAG: '{"lam": 0.001, "lr": 0.05}',
        KEY_TAG: "grokalign-key",
        SWEEP_TAG: "smoke-1",
    }
    grokked = store.create_run(experiment, "a", {**tags, "status": "grokked"}, start_time=1)
    store.log_batch(grokked, metrics=[("steps_to_grok", 112.0, 0, 112), ("time_to_grok_s", 0.7, 0, 112)])
    store.create_run(experiment, "b", {**tags, "status": "failed"}, start_time=2)  # a later attempt that failed
    (outcome,) = latest_outcomes(store.trial_runs([experiment]))
    assert (outcome.coords, outcome.run_id, outcome.status) == (coords, grokked, "grokked")
    assert (outcome.steps_to_target, outcome.seconds_to_target) == (112, 0.7)
    assert outcome.drawn == {"lam": 0.001, "lr": 0.05} and outcome.benchmark_id == "smoke-1"
