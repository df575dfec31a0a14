"""Suite files: what they declare, what each arm tunes under each ruleset, and every kind of mistake named by file
and key (exit 2 through the command line, nothing run)."""

import copy

import pytest
import yaml

from grokbench.benchmark.suite import R_MAX, load_suite, suite_names
from grokbench.cli import main
from grokbench.sweep.errors import EXIT_BAD_INPUT, SweepError
from grokbench.sweep.spec import Range

SUITE = {
    "name": "tiny",
    "description": "two workloads, four arms",
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
        "mnist": {
            "task": "mnist",
            "settings": {"loss": "ce"},
            "budget_updates": 1001,
            "expected_best_updates": {"paper": 400, "open": 100},
            "ranges": {"lr": {"low": 1e-4, "high": 1e-2}},
            "arms": {"grokalign": {"search": {"lam": {"low": 1e-4, "high": 1e-2}}}},
        },
    },
    "arms": {
        "baseline": {"method": "baseline"},
        "grokalign": {"method": "grokalign", "search": {"lam": {"low": 1e-5, "high": 1e-3}}},
        "norm_constraint": {
            "method": "norm_constraint",
            "weight_decay": 0,
            "search": {"norm_constraint_multiple": {"low": 0.5, "high": 2.0}},
        },
        "stablemax": {"method": "baseline", "loss": "stablemax"},
    },
    "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
}


def write(tmp_path, raw, name="tiny"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def load(tmp_path, raw):
    return load_suite(str(write(tmp_path, raw)))


def test_a_suite_file_declares_its_workloads_arms_rulesets_and_resources(tmp_path):
    suite = load(tmp_path, SUITE)
    assert suite.name == "tiny" and suite.r_max == R_MAX == 4
    assert suite.experiment == "grokbench/benchmark_tiny"
    assert (suite.rulesets["paper"].studies, suite.rulesets["paper"].trials) == (2, 3)
    assert suite.confirmation_seeds == 4
    assert suite.workloads["xor"].expected_best_updates == {"paper": 50, "open": 50}
    assert suite.workloads["mnist"].expected_best_updates == {"paper": 400, "open": 100}
    assert suite.arms["stablemax"].method == "baseline"
    assert suite.arms["stablemax"].own.settings == {"loss": "stablemax"}
    assert suite.resources.max_concurrent == 2


def test_what_each_arm_tunes_comes_from_the_file(tmp_path):
    """The issue's table: nothing / λ / norm multiple under paper; under open the shared lr and weight decay
    beside them, but norm_constraint, which fixes weight_decay: 0, draws lr and its norm multiple only."""
    suite = load(tmp_path, SUITE)
    tuned = {
        (arm, ruleset): set(suite.space("xor", arm, ruleset)) for arm in suite.arms for ruleset in ("paper", "open")
    }
    assert tuned == {
        ("baseline", "paper"): set(),
        ("baseline", "open"): {"lr", "weight_decay"},
        ("grokalign", "paper"): {"lam"},
        ("grokalign", "open"): {"lam", "lr", "weight_decay"},
        ("norm_constraint", "paper"): {"norm_constraint_multiple"},
        ("norm_constraint", "open"): {"lr", "norm_constraint_multiple"},
        ("stablemax", "paper"): set(),
        ("stablemax", "open"): {"lr", "weight_decay"},
    }


def test_a_workload_may_narrow_the_shared_ranges_and_an_arms_own(tmp_path):
    suite = load(tmp_path, SUITE)
    assert suite.space("mnist", "grokalign", "open") == {
        "lr": Range(1e-4, 1e-2),
        "weight_decay": Range(1e-3, 1.0),
        "lam": Range(1e-4, 1e-2),
    }
    assert suite.space("xor", "grokalign", "open")["lr"] == Range(1e-3, 1e-1)


def test_an_arm_the_task_refuses_is_na_there_not_an_error(tmp_path):
    suite = load(tmp_path, SUITE)
    assert set(suite.refused) == {("xor", "stablemax")}
    assert "scalar output" in suite.refused["xor", "stablemax"]
    assert ("mnist", "stablemax") in suite.applicable()


def test_a_norm_constraint_arm_drawing_a_weight_decay_is_refused(tmp_path):
    raw = copy.deepcopy(SUITE)
    del raw["arms"]["norm_constraint"]["weight_decay"]
    with pytest.raises(SweepError, match=r"tiny\.yaml: arms\.norm_constraint: under the open ruleset .*weight_decay"):
        load(tmp_path, raw)


def _broken(change):
    raw = copy.deepcopy(SUITE)
    change(raw)
    return raw


MISTAKES = [
    (lambda r: r.update(budget=3), r"tiny\.yaml: budget: unknown key"),
    (lambda r: r.pop("workloads"), r"tiny\.yaml: workloads: missing"),
    (lambda r: r["rulesets"].update(closed={"studies": 1, "trials": 1}), r"rulesets\.closed: unknown key"),
    (lambda r: r["rulesets"]["paper"].update(ranges={}), r"rulesets\.paper\.ranges: unknown key"),
    (lambda r: r["rulesets"]["open"].update(studies=0), r"rulesets\.open\.studies: must be a positive integer"),
    (lambda r: r.update(r_max=1), r"r_max: must be above 1"),
    (lambda r: r.update(confirmation_seeds=1001), r"confirmation_seeds: at most 1000"),
    (lambda r: r["workloads"]["xor"].pop("budget_updates"), r"workloads\.xor\.budget_updates: missing"),
    (lambda r: r["workloads"]["xor"].update(task="chess"), r"workloads\.xor\.task: 'chess' is not one of"),
    (
        lambda r: r["workloads"]["xor"].update(settings={"muon_lr": 1}),
        r"workloads\.xor\.settings\.muon_lr: unknown key",
    ),
    (
        lambda r: r["workloads"]["mnist"].update(expected_best_updates={"paper": 400}),
        r"workloads\.mnist\.expected_best_updates\.open: missing",
    ),
    (lambda r: r["arms"]["baseline"].update(method="magic"), r"arms\.baseline\.method: 'magic' is not one of"),
    (lambda r: r["arms"]["baseline"].update(seed=3), r"arms\.baseline\.seed: unknown key"),
    (lambda r: r["arms"]["baseline"].update(grokfast_alpha=0.5), r"arms\.baseline\.grokfast_alpha: unknown key"),
    (lambda r: r["arms"]["grokalign"].update(lam=[1, 2]), r"arms\.grokalign\.lam: an arm fixes one value"),
    (
        lambda r: r["arms"]["grokalign"]["search"].update(lam={"low": 1.0, "high": 0.1}),
        r"arms\.grokalign\.search\.lam: low \(1\.0\) must be below high \(0\.1\)",
    ),
    (
        lambda r: r["arms"]["grokalign"]["search"].update(lr={"low": 1e-3, "high": 1e-1}),
        r"arms\.grokalign\.search\.lr: drawn from the open ruleset's shared range",
    ),
    (lambda r: r["workloads"].pop("mnist"), r"arms\.stablemax: no workload of the suite can run it \(loss: "),
    (lambda r: r["workloads"]["xor"].update(arms={"muon": {}}), r"workloads\.xor\.arms\.muon: not one of"),
    (
        lambda r: r["workloads"]["xor"].update(arms={"grokalign": {"grokalign_projections": 0}}),
        r"arms\.grokalign: on workload xor: grokalign_projections: ",
    ),
    (lambda r: r["resources"].update(gpus=1), r"resources\.gpus: unknown key"),
    # found by tests/test_fuzz.py: each was a TypeError traceback
    (lambda r: r["workloads"]["xor"].update(task=[]), r"workloads\.xor\.task: \[\] is not one of"),
    (lambda r: r["arms"]["baseline"].update(method={}), r"arms\.baseline\.method: \{\} is not one of"),
]


@pytest.mark.parametrize(("change", "message"), MISTAKES)
def test_every_mistake_names_the_file_and_the_key(tmp_path, change, message):
    with pytest.raises(SweepError, match=message):
        load(tmp_path, _broken(change))


def test_a_bad_suite_file_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, _broken(lambda r: r["arms"]["baseline"].update(method="magic")))
    assert main(["benchmark", str(path), "--dry-run"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "arms.baseline.method" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


def test_an_unknown_suite_name_lists_the_shipped_ones(capsys):
    assert main(["benchmark", "no_such_suite", "--dry-run"]) == EXIT_BAD_INPUT
    assert "smoke" in capsys.readouterr().err


def test_the_shipped_suites_parse():
    assert {"smoke", "lite", "full"} <= set(suite_names())
    for name in suite_names():
        suite = load_suite(name)
        assert suite.name == name and suite.applicable()


def test_two_workloads_alike_but_for_their_budgets_are_refused_as_the_same_trials(tmp_path, capsys):
    xor = SUITE["workloads"]["xor"]
    arms = {name: SUITE["arms"][name] for name in ("baseline", "grokalign")}
    raw = {**SUITE, "arms": arms, "workloads": {"a": xor, "b": {**xor, "budget_updates": 200}}}
    path = write(tmp_path, raw)  # was planned: 2 cells sharing each trial's run, one of them losing its trials
    assert main(["benchmark", str(path), "--dry-run", "--measure-updates", "0"]) == 2
    err = capsys.readouterr().err
    assert "baseline on a (paper, study 0, trial 0) and baseline on b (paper, study 0, trial 0) are the same" in err


def test_a_workload_that_can_run_no_arm_is_an_error_not_n_a(tmp_path):
    mnist = {**SUITE["workloads"]["mnist"], "settings": {"loss": "cross_entropy"}}  # a typo
    arms = {name: SUITE["arms"][name] for name in ("baseline", "grokalign")}
    raw = {**SUITE, "arms": arms, "workloads": {**SUITE["workloads"], "mnist": mnist}}
    with pytest.raises(SweepError, match="workloads.mnist: it can run no arm of the suite"):
        load(tmp_path, raw)  # was: "it refuses every arm", exit 0, and a leaderboard that crashed
