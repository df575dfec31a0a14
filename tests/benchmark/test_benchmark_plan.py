"""A benchmark's plan, without Ray: its trials and their count, the quasi-random draws, the seeds, the budgets in
epochs, the confirmation trials and the dry run."""

import math
from collections import Counter
from dataclasses import replace

import pytest
import yaml
from scipy.stats import qmc

from grokbench.benchmark import plan
from grokbench.benchmark.suite import TUNING_SEED_BASE, load_suite
from grokbench.cli import main
from grokbench.sweep.keys import trial_key
from grokbench.sweep.spec import Range

SUITE = {
    "name": "counted",
    "rulesets": {
        "paper": {"studies": 2, "trials": 3},
        "open": {
            "studies": 3,
            "trials": 2,
            "ranges": {"lr": {"low": 1e-3, "high": 1e-1}, "weight_decay": {"low": 1e-3, "high": 1.0}},
        },
    },
    "confirmation_seeds": 4,
    "workloads": {
        "xor": {"task": "xor", "budget_updates": 100, "expected_best_updates": 50},
        # 1024 training points in batches of 256: 4 updates an epoch, so 1001 updates take 251 epochs
        "mnist": {"task": "mnist", "settings": {"loss": "ce"}, "budget_updates": 1001, "expected_best_updates": 400},
    },
    "arms": {
        "baseline": {"method": "baseline"},
        "grokfast": {"method": "grokfast", "search": {"lam": {"low": 0.01, "high": 5.0}}},
        "stablemax": {"method": "baseline", "loss": "stablemax"},  # n/a on xor: a scalar output
    },
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "counted.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    return load_suite(str(path))


@pytest.fixture(scope="module")
def trials(suite):
    return plan.tuning_trials(suite)


def test_the_count_is_the_formula_and_the_plan_has_that_many_trials(suite, trials):
    # 2 workloads × 3 arms, less stablemax on xor: 5 pairs; per pair paper 2 × 3 + 4, open 3 × 2 + 4
    assert plan.trial_count(suite) == 5 * ((2 * 3 + 4) + (3 * 2 + 4)) == 100
    assert len(trials) == 5 * (2 * 3 + 3 * 2) == 60
    winners = [t for t in trials if t.coords.study == 0 and t.coords.trial == 0]
    assert len(winners) == 10
    assert len(trials) + len(plan.confirmation_trials(suite, winners)) == 100


def test_every_planned_trial_is_a_distinct_trial(suite, trials):
    """Distinct trial keys (what resume and the store go by), confirmation trials included."""
    winners = [t for t in trials if t.coords.study == 1 and t.coords.trial == 0]
    keys = [trial_key(t.config) for t in [*trials, *plan.confirmation_trials(suite, winners)]]
    assert len(set(keys)) == len(keys) == 100


def test_an_arm_the_task_refuses_has_no_trials_there(suite, trials):
    assert not [t for t in trials if (t.coords.workload, t.coords.arm) == ("xor", "stablemax")]
    assert len([t for t in trials if (t.coords.workload, t.coords.arm) == ("mnist", "stablemax")]) == 12


def test_a_budget_in_updates_becomes_whole_epochs_rounded_up(trials):
    epochs = {t.coords.workload: t.config.max_epochs for t in trials}
    assert epochs == {"mnist": 251, "xor": 100}  # xor trains full batch: one update an epoch


def test_the_draws_are_the_scrambled_sobol_points(suite):
    """The first trial of a study too (Optuna would draw it at random): point i of scipy's scrambled Sobol
    sequence with the sampler's seed, mapped onto each log range by hand."""
    space = {"lr": Range(1e-3, 1e-1), "lam": Range(0.01, 5.0)}
    seed = plan.sampler_seed(suite, "xor", "grokfast", "open", 1)
    points = qmc.Sobol(2, scramble=True, seed=seed).random(4)
    expected = [
        {
            "lr": math.exp(math.log(1e-3) + u * (math.log(1e-1) - math.log(1e-3))),
            "lam": math.exp(math.log(0.01) + v * (math.log(5.0) - math.log(0.01))),
        }
        for u, v in points
    ]
    drawn = plan.draws(space, 4, seed)
    for got, want in zip(drawn, expected, strict=True):
        assert got == pytest.approx(want, rel=1e-12)


def test_draws_are_log_uniform_and_low_discrepancy():
    """64 points of a 1-D log range: exactly one in each of 64 equal bins of log(lr) (a Sobol net's
    stratification), which uniform draws on a linear scale, or random ones, would not give."""
    drawn = [d["lr"] for d in plan.draws({"lr": Range(1e-4, 1.0)}, 64, seed=7)]
    assert all(1e-4 <= x <= 1.0 for x in drawn)
    bins = Counter(math.floor((math.log10(x) + 4) / 4 * 64) for x in drawn)
    assert sorted(bins) == list(range(64))


def test_draws_are_deterministic_within_their_ranges_and_differ_between_studies(suite, trials):
    again = plan.tuning_trials(suite)
    assert [t.drawn for t in trials] == [t.drawn for t in again]
    for t in trials:
        space = suite.space(t.coords.workload, t.coords.arm, t.coords.ruleset)
        assert set(t.drawn) == set(space)
        assert all(space[k].low <= v <= space[k].high for k, v in t.drawn.items())
        assert all(t.config.to_dict()[k] == v for k, v in t.drawn.items())
    firsts = {
        t.coords.study: t.drawn["lam"]
        for t in trials
        if (t.coords.workload, t.coords.arm, t.coords.ruleset, t.coords.trial) == ("xor", "grokfast", "open", 0)
    }
    assert len(set(firsts.values())) == 3


def test_tuning_seeds_are_distinct_paired_across_arms_and_never_confirmation_seeds(suite, trials):
    by_group: dict[tuple, list[int]] = {}
    for t in trials:
        by_group.setdefault((t.coords.workload, t.coords.ruleset, t.coords.arm), []).append(t.config.seed)
    for (workload, ruleset, _arm), seeds in by_group.items():
        rules = suite.rulesets[ruleset]
        assert len(set(seeds)) == len(seeds) == rules.studies * rules.trials
        assert seeds == by_group[workload, ruleset, "baseline"]  # the same seeds for every arm
    assert plan.confirmation_seeds(suite) == [0, 1, 2, 3]
    assert min(t.config.seed for t in trials) == TUNING_SEED_BASE > 3


def test_the_confirmation_reruns_each_winner_on_every_confirmation_seed(suite, trials):
    winner = next(
        t for t in trials if t.coords.arm == "grokfast" and t.coords.ruleset == "open" and t.coords.study == 2
    )
    confirmed = plan.confirmation_trials(suite, [winner])
    assert [t.config.seed for t in confirmed] == [0, 1, 2, 3]
    for i, t in enumerate(confirmed):
        assert (t.coords.phase, t.coords.study, t.coords.trial) == ("confirmation", 2, i)
        assert t.drawn == winner.drawn
        assert t.config.replace(seed=winner.config.seed) == winner.config
    assert confirmed[0].coords.tags("counted")["grokbench.phase"] == "confirmation"
    with pytest.raises(ValueError, match="one tuning trial"):
        plan.confirmation_trials(suite, [winner, winner])


def test_the_estimate_with_and_without_the_stopper(suite):
    """By hand, at 1 s an update for every pair: without the stopper every trial runs its budget; with it tuning
    trials run min(budget, f × 4 × expected best), f = 2 for an even number of studies: xor min(100, 400 or 200) =
    100, mnist min(1001, 3200 or 1600) = 1001, so the same; a smaller expected best shows the cut."""
    per_update = dict.fromkeys(suite.applicable(), 1.0)
    cost = plan.estimate(suite, per_update)
    trials_per_pair = (2 * 3 + 4) + (3 * 2 + 4)
    full = 2 * trials_per_pair * 100 + 3 * trials_per_pair * 1001
    assert cost.full == cost.stopped == full
    xor = replace(suite.workloads["xor"], expected_best_updates={"paper": 10, "open": 10})
    cut = replace(suite, workloads={"xor": xor})
    cost = plan.estimate(cut, dict.fromkeys(cut.applicable(), 1.0))
    # paper has 2 studies (even: f = 2), so its tuning trials stop at min(100, 2 × 4 × 10) = 80; open has 3 (f = 1):
    # min(100, 4 × 10) = 40; 2 arms × [paper 6 × 80 + 4 × 100, open 6 × 40 + 4 × 100]
    assert cost.stopped == 2 * ((6 * 80 + 4 * 100) + (6 * 40 + 4 * 100))


def test_the_dry_run_prints_the_plan_and_the_count_through_the_command_line(capsys):
    assert main(["benchmark", "smoke", "--dry-run", "--measure-updates", "0"]) == 0
    out = capsys.readouterr().out
    assert "trials: 16 = 2 (workload, arm) pairs × [paper (2 × 1 + 2) + open (2 × 1 + 2)]" in out
    assert "workload xor: xor; budget 200 updates = 200 epochs of 1" in out
    assert "ruleset open: 2 studies of 1 trial; shared lr in [0.01, 0.1] log" in out
    assert "no estimate" in out


def test_a_dry_run_of_trials_wider_than_this_machine_times_nothing(capsys):
    """Found beside tests/test_fuzz.py: --cpus-per-trial 1e9 timed updates at a billion torch threads (libgomp ran
    out of memory)."""
    assert main(["benchmark", "smoke", "--dry-run", "--cpus-per-trial", "1e9", "--measure-updates", "1"]) == 0
    out = capsys.readouterr().out
    assert "no estimate: a trial needs more CPUs than this machine has" in out and "measuring" not in out


def test_the_cost_per_update_is_measured_for_every_pair_that_runs(tmp_path, capsys):
    """On a tiny XOR (5 training points in batches of 2: 3 updates an epoch), timed over 1 epoch."""
    raw = {
        "rulesets": {"paper": {"studies": 1, "trials": 1}},
        "confirmation_seeds": 1,
        "workloads": {
            "xor": {
                "task": "xor",
                "settings": {"p": 3, "hidden": 4, "train_size": 5, "test_size": 4, "batch_size": 2, "probe_size": 4},
                "budget_updates": 7,
                "expected_best_updates": 3,
            }
        },
        "arms": {"baseline": {"method": "baseline"}, "grokalign": {"method": "grokalign"}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    suite = load_suite(str(path))
    per_update = plan.seconds_per_update(suite, measure_updates=1)
    assert set(per_update) == {("xor", "baseline"), ("xor", "grokalign")}
    assert all(0 < s < 1 for s in per_update.values())
    assert plan.tuning_trials(suite)[0].config.max_epochs == 3  # 7 updates in epochs of 3: rounded up
    plan.dry_run(suite, measure_updates=1)
    assert "CPU-hours" in capsys.readouterr().out
