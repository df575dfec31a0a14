"""`python -m analysis.tables` on real SQLite stores: where its output goes whatever the working directory, which
experiment it reads by default, a trial two experiments hold counted once, and seconds never pooled across machines
unsaid."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
from stores import log_trial

from analysis.cli import selection_name
from analysis.output import BUILD, build_dir, checkout, output_dir, results_dir
from analysis.runs import AnalysisError
from analysis.tables import main as tables_main
from grokbench import machine
from grokbench.sweep.mlflow_store import TrackingStore

REPO = Path(__file__).resolve().parents[2]
CPU_A = {"cpu": "Xeon A", "cpus": "2", "gpu": "none", "torch": "2.5.1", "threads": "2"}
CPU_B = {**CPU_A, "cpu": "EPYC B", "cpus": "16"}


@pytest.fixture
def store(tmp_path, migrated_store, monkeypatch):
    """An empty store as ./mlflow.db of a temporary working directory."""
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return TrackingStore(f"sqlite:///{tmp_path / 'mlflow.db'}")


def log_pair(store, experiment, budget_steps=1000, at=1.0, machine_tags=None, seeds=(0, 1)):
    """A baseline and a GrokAlign trial, two seeds each, in `experiment` (seconds × `at`); GrokAlign twice as fast."""
    experiment_id = store.prepare_experiment(f"grokbench/{experiment}")
    ids = []
    for seed, (steps, t) in zip(seeds, [(400, 40.0 * at), (600, 60.0 * at)], strict=True):
        ids.append(
            log_trial(
                store.client, experiment_id, "baseline", "ce", seed, "grokked", steps, t, budget_steps=budget_steps
            )
        )
        ids.append(
            log_trial(
                store.client,
                experiment_id,
                "grokalign",
                "ce",
                seed,
                "grokked",
                steps // 2,
                t / 2,
                lam=1e-3,
                budget_steps=budget_steps,
            )
        )
    for run_id in ids:
        for key, value in (machine_tags or {}).items():
            store.client.set_tag(run_id, key, value)
    return ids


def table(out: Path, name: str = "table1_ce") -> pd.DataFrame:
    return pd.read_csv(out / f"{name}.csv", dtype=str, keep_default_na=False).set_index("Method")


def test_the_default_output_is_the_checkouts_ignored_build_folder_whatever_the_working_directory(store, capsys):
    log_pair(store, "mnist-smoke")
    expected = REPO / BUILD / "mnist-smoke"
    shutil.rmtree(expected, ignore_errors=True)
    try:
        assert tables_main(["--no-log"]) == 0  # run from a temporary directory
        assert f"files to {expected}" in capsys.readouterr().out
        assert "| Baseline | 2/2 |" in (expected / "table1_ce.md").read_text()
        assert not Path("results").exists() and not Path("build").exists()  # nothing beside the working directory
    finally:
        shutil.rmtree(expected, ignore_errors=True)
    assert REPO / "build" in [
        REPO / line.strip().rstrip("/") for line in (REPO / ".gitignore").read_text().splitlines()
    ]
    assert build_dir(selection_name(["grokbench/mnist"], None)) == REPO / "build/analysis/mnist"  # MNIST as any
    assert selection_name(["grokbench/mnist", "grokbench/mnist_ce"], None) == "mnist+mnist_ce"
    assert selection_name(["grokbench/mnist"], "mnist-20261125-120000") == "mnist-20261125-120000"
    assert results_dir("mnist") == REPO / "results/mnist"


def test_outside_a_checkout_the_default_is_under_the_working_directory_and_results_are_refused(store, tmp_path):
    installed = tmp_path / "site-packages" / "analysis"
    installed.mkdir(parents=True)
    assert checkout(installed) is None
    assert build_dir("mnist", installed) == tmp_path / "build/analysis/mnist"
    with pytest.raises(AnalysisError, match="--update-results writes a grokbench checkout's results/"):
        results_dir("mnist", installed)
    clone = tmp_path / "clone"
    (clone / ".git").mkdir(parents=True)
    assert results_dir("xor_tiny", clone / "analysis") == clone / "results/xor_tiny"


def test_out_and_update_results_exclude_each_other(store, capsys):
    with pytest.raises(SystemExit) as exit_:
        tables_main(["--out", "x", "--update-results"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "not allowed with argument" in err
    assert err.count("\n") == 1 and "usage" not in err  # one line, as every refusal (was the usage, then the error)


def test_after_the_quick_start_the_tables_are_of_the_sweep_run_last_and_say_so(store, tmp_path, capsys):
    log_pair(store, "xor_tiny")
    log_pair(store, "mnist-smoke")  # the quick start's second sweep, run after the first
    out = tmp_path / "out"
    assert tables_main(["--no-log", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "holds several grokbench experiments (mnist-smoke, xor_tiny)" in err
    assert "the tables are of the one run most recently, mnist-smoke" in err
    trials = pd.read_csv(out / "trials.csv", dtype=str)
    assert set(trials["sweep"]) == {"table-test-1"} and len(trials) == 4


def test_a_trial_two_experiments_hold_counts_once_as_its_run_with_the_larger_budget(store, tmp_path):
    log_pair(store, "mnist", budget_steps=1000)  # seeds 0-1 under a budget of 250 epochs
    log_pair(store, "mnist_ce", budget_steps=1500, at=1.1)  # the same trials continued under 375
    extra = store.prepare_experiment("grokbench/mnist_ce")
    log_trial(store.client, extra, "grokalign", "ce", 2, "grokked", 250, 25.0, lam=1e-3, budget_steps=1500)
    out = tmp_path / "out"
    assert tables_main(["--no-log", "--experiment", "mnist,mnist_ce", "--out", str(out)]) == 0
    rows = table(out)
    assert rows.loc["Baseline", "grokked"] == "2/2" and rows.loc["GrokAlign", "grokked"] == "3/3"  # not 4/4, 5/5
    # the kept runs are mnist_ce's (budget 375 epochs): 44 and 66 s for the baseline, not 40 and 60
    assert rows.loc["Baseline", "Absolute Time (s)"] == "55 ± 16 (med 55)"
    trials = pd.read_csv(out / "trials.csv", dtype=str).set_index(["method", "seed"])
    assert len(trials) == 5 and trials.loc[("Baseline", "1"), "time to grok (s)"] == "66.0"
    notes = (out / "table1_ce.md").read_text()
    assert (
        "a trial that several experiments hold counts once (the run with an outcome, then the one with the larger "
        "budget" in notes
    )
    assert "Baseline mnist_ce 2; GrokAlign mnist_ce 3" in notes


def test_on_equal_budgets_the_later_run_is_kept(store, tmp_path):
    log_pair(store, "mnist")
    log_pair(store, "mnist_ce", at=2.0)  # started later
    out = tmp_path / "out"
    assert tables_main(["--no-log", "--experiment", "mnist,mnist_ce", "--out", str(out)]) == 0
    assert table(out).loc["Baseline", "Absolute Time (s)"] == "100 ± 28 (med 100)"  # 80 and 120 s


def test_one_experiment_has_no_experiments_footnote(store, tmp_path):
    log_pair(store, "mnist")
    out = tmp_path / "out"
    assert tables_main(["--no-log", "--out", str(out)]) == 0
    assert "by experiment" not in (out / "table1_ce.md").read_text()


@pytest.mark.parametrize(
    ("machines", "said"),
    [
        ((None, None), "seconds: machine not recorded (runs logged before grokbench recorded where a trial ran)"),
        ((CPU_A, CPU_A), f"seconds measured on one machine: {machine.label(CPU_A)}"),
        (
            (CPU_A, CPU_B),
            "seconds mix machines, so they compare only roughly (steps compare across them): "
            f"{machine.label(CPU_B)} (4 trials); {machine.label(CPU_A)} (4 trials)",
        ),
        (
            (CPU_A, None),
            "seconds mix machines, so they compare only roughly (steps compare across them): "
            f"{machine.label(CPU_A)} (4 trials); machine not recorded (4 trials)",
        ),
    ],
)
def test_a_table_with_seconds_says_which_machines_they_come_from(store, tmp_path, machines, said):
    for seeds, recorded in zip(((0, 1), (2, 3)), machines, strict=True):
        log_pair(store, "mnist", seeds=seeds, machine_tags=machine.as_tags(recorded) if recorded else None)
    out = tmp_path / "out"
    assert tables_main(["--no-log", "--out", str(out)]) == 0
    for name in ("table1_ce", "trials"):
        assert f"*{said}*" in (out / f"{name}.md").read_text().splitlines()


def test_the_tuning_command_writes_where_the_tables_command_does():
    from analysis.tuning import parse_args

    args = parse_args([])
    assert output_dir(args, args.tuning) == REPO / "build/analysis/mnist_tune"
    args = parse_args(["--update-results"])
    assert output_dir(args, args.tuning) == REPO / "results/mnist_tune"
