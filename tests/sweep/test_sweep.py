"""Sweeps on a real local Ray, logging to a real SQLite MLflow store, searched by real Optuna.

One local Ray for the whole test session (`local_ray` in conftest.py); each test copies a pre-migrated store and
uses its own results directory.
"""

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest
import ray
import yaml

from analysis.tables import main as tables_main
from grokbench.cli import main
from grokbench.sweep.driver import SweepOptions, run_sweep
from grokbench.sweep.errors import SweepError
from grokbench.sweep.keys import KEY_TAG, SWEEP_TAG, trial_key
from grokbench.sweep.spec import build_sweep, load_sweep

TINY = {
    "name": "tiny",
    "description": "two xor trials",
    "task": "xor",
    "budget": {"max_epochs": 150},
    "base": {"eval_every": 10, "hidden": 128},  # a quarter of the task's hidden units: still groks, at ≈ 100 epochs
    "grid": {"seed": [0, 1]},
    "methods": {"baseline": {}, "grokalign": {"lam": 1e-3}},
    "resources": {"cpus_per_trial": 1},
    "checkpoint_every": 40,
    "max_failures": 2,
}


@pytest.fixture
def workdir(tmp_path, migrated_store):
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    return tmp_path


def write_sweep(directory: Path, **changes) -> Path:
    path = directory / f"{changes.get('name', TINY['name'])}.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def uri(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


def runs_of(workdir: Path, experiment: str):
    client = mlflow.MlflowClient(uri(workdir))
    exp = client.get_experiment_by_name(experiment)
    return client, [r for r in client.search_runs([exp.experiment_id]) if KEY_TAG in r.data.tags] if exp else []


def assert_each_trial_logged_once(workdir: Path, experiment: str, expected_trials: int):
    client, runs = runs_of(workdir, experiment)
    keys = [r.data.tags[KEY_TAG] for r in runs]
    assert len(keys) == expected_trials and len(set(keys)) == expected_trials  # none missing, none duplicated
    for run in runs:
        for metric in run.data.metrics:  # curves and summary figures alike: no step logged twice
            metric_steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert len(metric_steps) == len(set(metric_steps)), f"{run.info.run_name}: {metric} {metric_steps}"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_acc")]
        assert steps == sorted(set(steps)), f"{run.info.run_name}: repeated or unordered steps {steps}"
        eval_every = int(run.data.params["eval_every"])
        epochs = int(run.data.metrics["epochs"])
        # xor: one update per epoch; an evaluation at 0, every eval_every epochs, and at the end
        expected = sorted(set(range(0, epochs + 1, eval_every)) | {epochs})
        assert steps == expected, f"{run.info.run_name}: steps {steps} != {expected}"
        assert run.info.status == "FINISHED" and run.data.tags["status"] in ("grokked", "censored")
    return runs


@pytest.mark.slow
def test_tiny_sweep_logs_one_run_per_trial_with_params_curves_and_summary(local_ray, workdir):
    spec = load_sweep(str(write_sweep(workdir)))
    code = run_sweep(spec, SweepOptions(tracking_uri=uri(workdir), storage=str(workdir / "results")))
    assert code == 0
    runs = assert_each_trial_logged_once(workdir, "grokbench/tiny", expected_trials=4)
    client = mlflow.MlflowClient(uri(workdir))
    for run in runs:
        params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
        assert params["task"] == "xor" and params["method"] in ("baseline", "grokalign")
        assert {"lam", "init_scale", "seed", "lr", "weight_decay", "batch_size", "code_version"} <= set(params)
        assert params["threads"] == "1" and params["device"] == "cpu"
        assert {"test_acc", "centroid_alignment", "jacobian_norm", "steps_to_grok", "time_to_grok_s"} <= set(metrics)
        assert (tags["method"], tags["loss"]) == (params["method"], "mse") and tags[SWEEP_TAG].startswith("tiny-")
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert artifacts == {"config.json", "summary.json"}
    lams = sorted(float(r.data.params["lam"]) for r in runs)
    assert lams == [0.0, 0.0, 1e-3, 1e-3]

    # the analysis reads the sweep back: Table 1 with both methods, every trial counted
    sweep_id = runs[0].data.tags[SWEEP_TAG]
    assert tables_main(["--tracking-uri", uri(workdir), "--sweep", sweep_id, "--out", str(workdir / "tables")]) == 0
    table = (workdir / "tables" / "table1_mse.md").read_text()
    assert "| Baseline | 2/2 |" in table and "| GrokAlign | 2/2 |" in table


@pytest.mark.slow
def test_a_sweep_keeping_one_checkpoint_a_trial_keeps_the_latest_and_retries_a_killed_worker_from_it(
    local_ray, workdir
):
    spec = load_sweep(
        str(
            write_sweep(
                workdir,
                grid={"seed": [0]},
                methods={"baseline": {}},
                name="keep-one",
                keep_checkpoints=1,
                checkpoint_every=20,
            )
        )
    )
    fault = {"kill_at_epoch": 50, "marker_dir": str(workdir / "faults")}
    code = run_sweep(
        spec,
        SweepOptions(tracking_uri=uri(workdir), storage=str(workdir / "results"), fault=fault, sweep_id="keep-one-1"),
    )
    assert code == 0 and len(list((workdir / "faults").iterdir())) == 1
    (run,) = assert_each_trial_logged_once(workdir, "grokbench/keep-one", expected_trials=1)
    summary = mlflow.artifacts.load_dict(run.info.artifact_uri + "/summary.json")
    # continued from the latest checkpoint, the one kept (at 20 and 40; xor: one update per epoch), not from the start
    assert summary["resumed_from_step"] == 40
    kept = list((workdir / "results").glob("keep-one/keep-one-1/grid/*/checkpoint_*"))
    assert len(kept) == 1 and (kept[0] / "trial.pt").is_file()  # only the final checkpoint is left
    assert Path(run.data.tags["grokbench.checkpoint"]).resolve() == kept[0].resolve()  # and the run leads to it


def test_a_checkpoint_deleted_under_a_stale_experiment_state_gives_way_to_the_newest_beside_it(tmp_path):
    from grokbench.sweep.trainable import STATE_FILE, existing_checkpoint

    trial_dir = tmp_path / "grid" / "run_trial_0"
    for name, complete in (("checkpoint_000001", True), ("checkpoint_000002", True), ("checkpoint_000003", False)):
        (trial_dir / name).mkdir(parents=True)
        if complete:
            (trial_dir / name / STATE_FILE).write_bytes(b"state")
    kept = ray.tune.Checkpoint(str(trial_dir / "checkpoint_000001"))
    assert existing_checkpoint(kept).path == kept.path  # there: used as it is, though a newer one exists
    deleted = ray.tune.Checkpoint(str(trial_dir / "checkpoint_000000"))
    assert existing_checkpoint(deleted).path == str(trial_dir / "checkpoint_000002")  # the newest that holds a state
    alone = ray.tune.Checkpoint(str(tmp_path / "elsewhere" / "checkpoint_000000"))
    assert existing_checkpoint(alone).path == alone.path  # nothing beside it: loading it fails as it would have


@pytest.mark.slow
def test_diverging_trial_is_recorded_as_diverged_not_retried(local_ray, workdir):
    spec = load_sweep(
        str(
            write_sweep(
                workdir,
                name="diverge",
                grid={"seed": [0]},
                methods={"baseline": {}},
                base={**TINY["base"], "lr": 50.0},
            )
        )
    )
    assert run_sweep(spec, SweepOptions(tracking_uri=uri(workdir), storage=str(workdir / "results"))) == 0
    _, (run,) = runs_of(workdir, "grokbench/diverge")
    assert run.data.tags["status"] == "diverged" and run.info.status == "FINISHED"
    assert run.data.metrics["epochs"] < 150


@pytest.mark.slow
def test_optuna_search_finds_and_logs_a_best_value_per_method(local_ray, workdir):
    path = write_sweep(
        workdir,
        name="search",
        grid={},
        base={**TINY["base"], "seed": 0},
        methods={"grokalign": {}, "grokfast": {}},
        search={
            "num_samples": 2,
            "seed": 3,
            "space": {
                "grokalign": {"lam": {"low": 1e-4, "high": 1e-1, "log": True}},
                "grokfast": {"lam": {"low": 0.01, "high": 1.0, "log": True}},
            },
        },
    )
    spec = load_sweep(str(path))
    assert run_sweep(spec, SweepOptions(tracking_uri=uri(workdir), storage=str(workdir / "results"))) == 0
    client, runs = runs_of(workdir, "grokbench/search")
    assert len(runs) == 4
    lams = {r.data.params["method"]: [] for r in runs}
    for r in runs:
        lams[r.data.params["method"]].append(float(r.data.params["lam"]))
    assert all(1e-4 <= v <= 1e-1 for v in lams["grokalign"]) and all(0.01 <= v <= 1 for v in lams["grokfast"])
    assert len(set(lams["grokalign"])) == 2  # Optuna sampled two different values
    tags = client.get_experiment_by_name("grokbench/search").tags
    for method in ("grokalign", "grokfast"):
        (best_key,) = [k for k in tags if k.startswith("best.") and k.endswith(f".{method}.lam")]
        best = [r for r in runs if r.data.tags.get("grokbench.best") == "true" and r.data.params["method"] == method]
        assert len(best) == 1 and float(best[0].data.params["lam"]) == pytest.approx(float(tags[best_key]))
        objective = lambda r: r.data.metrics["time_to_grok_s" if r.data.tags["status"] == "grokked" else "train_time_s"]  # noqa: E731
        assert objective(best[0]) == min(objective(r) for r in runs if r.data.params["method"] == method)


@pytest.mark.slow
def test_sweep_whose_driver_is_killed_resumes_with_every_trial_logged_once(local_ray, workdir):
    path = write_sweep(
        workdir,
        name="killed",
        grid={"seed": [0]},
        budget={"max_epochs": 200},
        base={**TINY["base"], "epochs_after_grok": 60},
        methods={"baseline": {}},
    )
    command = [
        sys.executable,
        "-m",
        "grokbench.cli",
        "sweep",
        str(path),
        "--address",
        local_ray,
        "--tracking-uri",
        uri(workdir),
        "--storage",
        str(workdir / "results"),
        "--sweep-id",
        "killed-1",
    ]
    seeds = ["--seeds", "0,1,2"]  # an override the resume must restore from the sweep's plan
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(
        command + seeds,
        cwd=workdir,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # kill once some trial has logged curves, before all have finished
            time.sleep(1)
            _, runs = runs_of(workdir, "grokbench/killed") if (workdir / "mlflow.db").exists() else (None, [])
            finished = [r for r in runs if r.data.tags.get("status") not in (None, "running")]
            if runs and len(finished) < 3 and any("train_acc" in r.data.metrics for r in runs):
                break
        assert driver.poll() is None, "the sweep ended before it could be killed"
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    resumed = subprocess.run(command + ["--resume"], cwd=workdir, env=env, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_each_trial_logged_once(workdir, "grokbench/killed", expected_trials=3)
    last_line = [line for line in resumed.stderr.splitlines() if "queued" in line][-1]
    counts = dict(re.findall(r"(queued|running|grokked|done before resume) (\d+)", last_line))
    assert counts["queued"] == counts["running"] == "0", last_line
    assert int(counts.get("grokked", 0)) + int(counts.get("done before resume", 0)) == 3, last_line


@pytest.mark.slow
def test_a_grid_sweep_runs_only_the_trials_the_store_lacks(local_ray, workdir, migrated_store):
    path = write_sweep(workdir, name="grow", grid={"seed": [0]}, methods={"baseline": {}})
    where = {"tracking_uri": uri(workdir), "storage": str(workdir / "results")}
    assert run_sweep(load_sweep(str(path)), SweepOptions(**where, sweep_id="grow-1"), out=io.StringIO()) == 0

    grown, out = build_sweep(str(path), {"seeds": [0, 1]}), io.StringIO()  # extended by a seed: only it runs
    assert run_sweep(grown, SweepOptions(**where, sweep_id="grow-2"), out=out) == 0
    assert "1 of 2 trials already have an outcome" in out.getvalue() and "(sweep grow-1)" in out.getvalue()
    assert "--experiment grow" in out.getvalue()  # the tables hint covers both sweeps
    runs = assert_each_trial_logged_once(workdir, "grokbench/grow", expected_trials=2)
    assert sorted((r.data.params["seed"], r.data.tags[SWEEP_TAG]) for r in runs) == [("0", "grow-1"), ("1", "grow-2")]

    out = io.StringIO()  # everything done: nothing runs, and no sweep is created
    assert run_sweep(grown, SweepOptions(**where, sweep_id="grow-3"), out=out) == 0
    assert "2 of 2 trials already have an outcome" in out.getvalue() and "nothing to run" in out.getvalue()
    assert not (workdir / "results" / "grow" / "grow-3").exists()
    assert_each_trial_logged_once(workdir, "grokbench/grow", expected_trials=2)

    out = io.StringIO()  # a dry run says the same, and estimates only what is left
    three = build_sweep(str(path), {"seeds": [0, 1, 2]})
    assert run_sweep(three, SweepOptions(**where, dry_run=True), out=out) == 0
    assert re.search(r"baseline-mse-init12-seed1-\w+ +150 +done \(sweep grow-2\)", out.getvalue()), out.getvalue()
    assert "\n1 trial to run" in out.getvalue()

    # on another machine, from the archive alone: the same trials are done there, only the new seed would run
    archive, elsewhere = workdir / "grow.jsonl.gz", workdir / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(migrated_store, elsewhere / "mlflow.db")
    assert main(["export", "grow", "--tracking-uri", uri(workdir), "--out", str(archive)]) == 0
    assert main(["import", str(archive), "--tracking-uri", uri(elsewhere)]) == 0
    out = io.StringIO()
    there = SweepOptions(tracking_uri=uri(elsewhere), storage=str(elsewhere / "results"), dry_run=True)
    assert run_sweep(three, there, out=out) == 0
    for seed, sweep in ((0, "grow-1"), (1, "grow-2")):
        assert re.search(rf"seed{seed}-\w+ +150 +done \(sweep {sweep}\)", out.getvalue()), out.getvalue()
    assert "\n1 trial to run" in out.getvalue()

    out = io.StringIO()  # --rerun runs a done trial again, in a run of its own
    assert run_sweep(load_sweep(str(path)), SweepOptions(**where, sweep_id="grow-4", rerun=True), out=out) == 0
    _, runs = runs_of(workdir, "grokbench/grow")
    assert sorted(r.data.tags[SWEEP_TAG] for r in runs) == ["grow-1", "grow-2", "grow-4"]
    with pytest.raises(SweepError, match="cannot be combined with --resume"):
        run_sweep(grown, SweepOptions(**where, sweep_id="grow-4", rerun=True, resume=True))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"methodz": {}}, "methodz: unknown key; allowed here:"),
        ({"grid": {"seed": []}}, "grid.seed: must be a non-empty list of values"),
        ({"methods": {"grokalign": {"lam": -1}}}, "methods.grokalign: lam: must be >= 0"),
        ({"methods": {"sam": {}}}, "methods.sam: method: 'sam' is not one of"),
        ({"budget": {"max_epochs": 0}}, "budget.max_epochs: must be a positive integer"),
        ({"grid": {"learning_rate": [1]}}, "grid.learning_rate: unknown key"),
        ({"resources": {"cpus_per_trial": 0}}, "resources.cpus_per_trial: must be a positive number"),
        # found by tests/test_fuzz.py: each was a traceback (TypeError, OverflowError, ValueError)
        ({"task": []}, "task: [] is not one of"),
        ({"resources": {"max_concurrent": float("inf")}}, "resources.max_concurrent: must be a number >= 0"),
        ({"max_failures": float("nan")}, "max_failures: must be a number >= 0"),
        (
            {"search": {"num_samples": 2, "seed": "x", "space": {"grokalign": {"lam": {"low": 1e-5, "high": 1e-2}}}}},
            "search.seed: must be an integer from 0",
        ),
        (  # a string was truthy: read as a log range without a word
            {"search": {"num_samples": 2, "space": {"grokalign": {"lam": {"low": 1e-5, "high": 1e-2, "log": "no"}}}}},
            "search.space.grokalign.lam.log: must be true or false, got 'no'",
        ),
    ],
)
def test_bad_sweep_file_names_file_and_key_with_exit_code_2(tmp_path, capsys, change, message):
    path = write_sweep(tmp_path, **change)
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err and "Traceback" not in err


def test_unknown_sweep_name_lists_the_shipped_sweeps(capsys):
    assert main(["sweep", "mnist_typo"]) == 2
    err = capsys.readouterr().err
    assert "no sweep named 'mnist_typo'" in err  # and the shipped ones, in order, whatever sweeps are added
    assert re.search(r"shipped with grokbench: mnist, (\w+, )*mnist_grokalign_cost, mnist_init, mnist_lambda, ", err)


def test_bad_flags_are_clear_errors(tmp_path, capsys):
    path = write_sweep(tmp_path)
    assert main(["sweep", str(path), "--methods", "adversarial", "--dry-run"]) == 2
    assert "--methods: adversarial not in this sweep; it has: baseline, grokalign" in capsys.readouterr().err
    assert main(["sweep", str(path), "--max-epochs", "0", "--dry-run"]) == 2
    assert "max_epochs (--max-epochs): must be a positive integer" in capsys.readouterr().err
    assert main(["sweep", str(path), "--only", "method=sam", "--dry-run"]) == 2
    assert (
        "--only method=sam: no trial of this sweep has it; its trials have method = baseline, grokalign"
        in capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", str(path), "--only", "seed", "--dry-run"])
    assert exit_.value.code == 2 and "expected SETTING=VALUE[,VALUE...]" in capsys.readouterr().err
    # a setting named twice keeps both flags' values: the two seeds of grokalign, not the last flag's one
    assert (
        main(
            [
                "sweep",
                str(path),
                "--only",
                "seed=0",
                "--only",
                "seed=1",
                "--only",
                "method=grokalign",
                "--dry-run",
                "--tracking-uri",
                uri(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "\n2 trials to run" in out and out.count("grokalign-") == 2 and "baseline-" not in out


def test_unreachable_ray_and_tracking_server_fail_before_any_trial(tmp_path, capsys):
    path = write_sweep(tmp_path)
    assert (
        main(
            [
                "sweep",
                str(path),
                "--address",
                "127.0.0.1:9",
                "--storage",
                str(tmp_path / "r"),
                "--tracking-uri",
                uri(tmp_path),
            ]
        )
        == 2
    )
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in capsys.readouterr().err
    assert main(["sweep", str(path), "--tracking-uri", "http://127.0.0.1:9", "--storage", str(tmp_path / "r")]) == 2
    assert "the MLflow tracking server at http://127.0.0.1:9 does not answer" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing half-written
    # a dry run still plans and estimates, and says it could not tell which trials are done
    out = io.StringIO()
    assert run_sweep(load_sweep(str(path)), SweepOptions(tracking_uri="http://127.0.0.1:9", dry_run=True), out=out) == 0
    assert "could not read the tracking store http://127.0.0.1:9" in out.getvalue()
    assert "\n4 trials to run" in out.getvalue()


@pytest.mark.slow  # a subprocess or seconds of training: kept out of the fast tier
def test_a_sweep_whose_data_is_missing_stops_before_any_trial_and_leaves_nothing_behind(tmp_path):
    blocker = tmp_path / "a-file"  # no data directory can be made beneath it, nor anything downloaded there
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    work = tmp_path / "work"
    work.mkdir()
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "grokbench.cli", "sweep", "mnist", "--smoke"],
        cwd=work,
        env={**env, "GROKBENCH_DATA": str(blocker / "data")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "this machine cannot run this sweep's trials" in proc.stderr and " data " in proc.stderr
    assert "fix:" in proc.stderr and "GROKBENCH_DATA" in proc.stderr and "Traceback" not in proc.stderr
    assert list(work.iterdir()) == [] and blocker.read_text() == ""  # no store, no sweep directory
    assert time.monotonic() - started < 60  # before Ray starts, let alone a trial


def test_shipped_sweeps_parse_and_plan_the_documented_trials():
    counts = {name: load_sweep(name) for name in ("mnist", "mnist_lambda", "mnist_init", "mnist_mse", "mnist_tune")}
    assert len(counts["mnist"].trials()) == 4 * 2 * 5
    lams = {(c.loss, c.lam) for c in counts["mnist"].trials() if c.method == "grokalign"}
    assert lams == {("ce", 1e-3), ("mse", 1e-4)}
    assert {c.lam for c in counts["mnist_lambda"].trials() if c.method == "grokalign"} >= {1e-4, 1e-3, 1e-2, 1e-1}
    assert {c.init_scale for c in counts["mnist_init"].trials()} >= {1, 4, 8, 16}
    # mnist_mse: Table 1's MSE baseline and GrokAlign trials, seeds 0-2, with only the budget changed, and GrokAlign
    # at two larger λ
    table1_mse = [
        c for c in counts["mnist"].trials() if c.loss == "mse" and c.method in ("baseline", "grokalign") and c.seed < 3
    ]
    larger_lam = [replace(c, lam=lam) for c in table1_mse if c.method == "grokalign" for lam in (1e-3, 1e-2)]
    assert len(counts["mnist_mse"].trials()) == 12
    longer = sorted(str(replace(c, max_epochs=62500)) for c in table1_mse + larger_lam)
    assert sorted(map(str, counts["mnist_mse"].trials())) == longer
    assert set(counts["mnist_tune"].search.space) == {"baseline", "grokalign", "grokfast", "adversarial"}
    smoke = counts["mnist"].smoke_version()
    assert smoke.name == "mnist-smoke" and len(smoke.trials()) == 8


def test_the_grokalign_cost_sweep_holds_the_baseline_the_authors_penalty_and_each_cheaper_one():
    trials = load_sweep("mnist_grokalign_cost").trials()
    assert all((c.loss, c.max_epochs) == ("ce", 25000) for c in trials)

    def variant(cfg):
        own = cfg.method_settings.as_dict()
        settings = ("grokalign_estimator", "grokalign_subset", "grokalign_every")
        return (cfg.method, cfg.lam, *(own.get(name) for name in settings))

    cheaper = {("grokalign", 1e-3, "projection", m, k) for m in (0, 32, 64) for k in (1, 4)}
    for seed in range(5):
        expected = {("baseline", 0.0, None, None, None)} | cheaper
        assert sorted(variant(c) for c in trials if c.seed == seed) == sorted(expected)
    assert len(trials) == 5 * 7
    # the baseline and the authors' penalty are Table 1's cross-entropy trials, the same keys at the same budget
    table1 = load_sweep("mnist").trials()
    assert {trial_key(c) for c in table1 if c.loss == "ce" and c.method in ("baseline", "grokalign")} <= {
        trial_key(c) for c in trials
    }
    assert len(load_sweep("mnist_grokalign_cost").smoke_version().trials()) == 7


def test_a_dead_clusters_address_file_is_not_followed(tmp_path, monkeypatch):
    """Ray's own "auto" retries the address of a cluster that died for minutes; the sweep starts its own."""
    from grokbench.sweep.cluster import running_local_cluster

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert running_local_cluster() is None  # no file
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")
    assert running_local_cluster() is None  # nothing answers there


def test_run_logger_restores_from_its_settings_alone():
    """A sweep pickled by an older grokbench (other attributes) must resume under a newer one."""
    import pickle

    from grokbench.sweep.tracking import TrialRuns

    logger = TrialRuns("sqlite:////tmp/x.db", "7", "s-1")
    old_style = TrialRuns.__new__(TrialRuns)
    old_style.__setstate__({"uri": "sqlite:////tmp/x.db", "experiment_id": "7", "sweep_id": "s-1", "extra": 1})
    for restored in (pickle.loads(pickle.dumps(logger)), old_style):
        assert (restored.uri, restored.experiment_id, restored.sweep_id) == ("sqlite:////tmp/x.db", "7", "s-1")
        assert restored._runs == {} and restored._nodes == {}


def test_the_driver_finds_a_tracking_failure_however_tune_wrapped_it():
    """A restored Tuner runs its own (unpickled) callbacks: the driver learns of a lost store from the error."""
    from grokbench.sweep.errors import TrackingError
    from grokbench.sweep.execution import tracking_failure

    failure = TrackingError("the MLflow tracking store is gone")
    try:
        try:
            raise failure
        except TrackingError as err:
            raise RuntimeError("the Tune run failed") from err
    except RuntimeError as wrapped:
        assert tracking_failure(wrapped) is failure
    assert tracking_failure(RuntimeError("a trial's own error")) is None


@pytest.mark.slow  # a subprocess or seconds of training: kept out of the fast tier
def test_tracking_calls_wait_out_an_absent_server_then_fail_clearly_and_never_retry_a_rejected_request(
    workdir, monkeypatch
):
    from mlflow.exceptions import MlflowException

    from grokbench.sweep.errors import TrackingError
    from grokbench.sweep.retry import is_transient, patiently

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own retries would wait minutes
    absent = mlflow.MlflowClient("http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(TrackingError, match=r"http://127.0.0.1:9 has not answered for 3 s.*--resume"):
        patiently(lambda: absent.get_run("0" * 32), "http://127.0.0.1:9", patience_s=3)
    assert 2 <= time.monotonic() - started < 30  # it did wait, with backoff

    calls = []
    store = mlflow.MlflowClient(uri(workdir))
    with pytest.raises(MlflowException, match="not found|does not exist"):
        patiently(lambda: calls.append(1) or store.get_run("0" * 32), uri(workdir))
    assert calls == [1]  # a rejected request is not a transient failure
    assert is_transient(MlflowException("(sqlite3.OperationalError) database is locked"))
    assert not is_transient(MlflowException("Detected out-of-date database schema (found version x)"))


def fake_tune_trials(monkeypatch, names, budget=100, checkpoints=()):
    """Stand-ins for Tune's trials, as the live view sees them, and a clock the test moves."""
    from types import SimpleNamespace

    from grokbench.sweep import live

    clock = [0.0]
    monkeypatch.setattr(live.time, "monotonic", lambda: clock[0])
    trials = [
        SimpleNamespace(
            trial_id=name,
            status="RUNNING",
            checkpoint=object() if name in checkpoints else None,
            config={"trial": {"config": {"max_epochs": budget}}},
        )
        for name in names
    ]
    return clock, trials


def eta_shown(view, trials, capsys) -> str:
    view.draw(trials)
    return capsys.readouterr().err.strip().splitlines()[-1].rsplit("ETA ", 1)[1]


def test_the_eta_after_a_resume_ignores_trials_that_began_before_it(monkeypatch, capsys):
    from grokbench.progress import duration
    from grokbench.sweep.live import LiveView

    clock, (resumed, fresh, running) = fake_tune_trials(monkeypatch, "abc", checkpoints="a")
    view = LiveView(total=3)
    for trial in (resumed, fresh):
        view.on_trial_start(0, [], trial)
    done = {"summary": {"status": "grokked"}}
    clock[0] = 1.0  # the resumed trial had little left to do
    view.on_trial_result(0, [], resumed, done)
    view.on_trial_complete(0, [], resumed)
    clock[0] = 60.0
    view.on_trial_start(0, [], running)
    clock[0] = 100.0  # a whole trial
    view.on_trial_result(0, [], fresh, done)
    view.on_trial_complete(0, [], fresh)
    # 100 s a trial, 40 s of it run (counting the resumed trial's 1 s, the median would leave 10.5 s)
    assert eta_shown(view, [resumed, fresh, running], capsys) == duration(60.0)
    clock[0] = 130.0
    assert eta_shown(view, [resumed, fresh, running], capsys) == duration(30.0)  # it counts down


def test_before_any_trial_finishes_the_eta_bounds_the_whole_budgets(monkeypatch, capsys):
    from grokbench.progress import duration
    from grokbench.sweep.live import LiveView

    clock, trials = fake_tune_trials(monkeypatch, "ab")
    view = LiveView(total=5)
    for trial in trials:
        view.on_trial_start(0, [], trial)
    assert eta_shown(view, trials, capsys) == "?"  # no pace known yet
    clock[0] = 10.0
    first = {"start_epoch": 0}  # an attempt's first report says where it began
    view.on_trial_result(0, [], trials[0], {**first, "curve": [{"epoch": 5}, {"epoch": 10}]})  # 1/s, 90 s left
    view.on_trial_result(0, [], trials[1], {**first, "curve": [{"epoch": 50}]})  # 5 epochs/s, 10 s left
    # the slot that frees first takes the next queued trial; 100 epochs at the slowest pace each: 10+100+100, 90+100
    assert eta_shown(view, trials, capsys) == "≤" + duration(210.0)


def test_a_continued_trial_is_paced_from_the_epoch_it_began_at_not_from_zero(monkeypatch, capsys):
    from grokbench.progress import duration
    from grokbench.sweep.live import LiveView

    clock, (trial,) = fake_tune_trials(monkeypatch, "a", budget=80_000)  # continued from 20 000 epochs
    view = LiveView(total=1)
    view.on_trial_start(0, [], trial)
    clock[0] = 100.0
    view.on_trial_result(0, [], trial, {"start_epoch": 20_000, "curve": [{"epoch": 21_000}]})  # 10 epochs/s
    assert eta_shown(view, [trial], capsys) == "≤" + duration(5_900.0)  # 59 000 epochs left at 10 a second
    clock[0] = 200.0
    view.on_trial_result(0, [], trial, {"curve": [{"epoch": 22_000}]})
    assert eta_shown(view, [trial], capsys) == "≤" + duration(5_800.0)
    # a trial Tune restores from its checkpoint after a --resume is paced from where it was restored
    clock, (restored,) = fake_tune_trials(monkeypatch, "r", budget=80_000, checkpoints="r")
    view = LiveView(total=1)
    view.on_trial_start(0, [], restored)
    clock[0] = 50.0
    view.on_trial_result(0, [], restored, {"start_epoch": 40_000, "curve": [{"epoch": 40_500}]})  # 10 epochs/s
    assert eta_shown(view, [restored], capsys) == "≤" + duration(3_950.0)


def test_once_trials_have_finished_the_eta_follows_the_typical_trial(monkeypatch, capsys):
    from grokbench.progress import duration
    from grokbench.sweep.live import LiveView

    clock, trials = fake_tune_trials(monkeypatch, "abc")
    a, b, c = trials
    view = LiveView(total=5)
    for trial in (a, b):
        view.on_trial_start(0, [], trial)
    clock[0] = 10.0
    view.on_trial_result(0, [], b, {"start_epoch": 0, "curve": [{"epoch": 10}]})  # 1 epoch/s
    clock[0] = 20.0  # a groks: 20 s is the typical trial now
    view.on_trial_result(0, [], a, {"summary": {"status": "grokked"}})
    view.on_trial_complete(0, [], a)
    view.on_trial_start(0, [], c)
    clock[0] = 30.0
    # b, past every finished trial's age, has (100 - 10) / 1 - 20 = 70 s of budget left; c has 10 of its 20 s
    # left, then takes the first of the 2 queued trials, which is done at 30 s, before the other at 50 s
    assert eta_shown(view, [a, b, c], capsys) == duration(70.0)


def test_trials_a_fresh_sweep_never_started_before_ctrl_c_are_not_done_before_a_resume(monkeypatch, capsys):
    from grokbench.sweep.live import LiveView

    _, (started, pending, resumed) = fake_tune_trials(monkeypatch, "abc")
    view = LiveView(total=2)
    pending.status = "PENDING"
    view.on_step_begin(0, [started, pending])
    view.on_trial_start(0, [], started)
    started.status = pending.status = "TERMINATED"  # Ctrl-C: Tune ends the trial that never started
    view.on_experiment_end([started, pending])
    assert "done before resume" not in capsys.readouterr().err
    # after a resume, a trial that had finished before it is counted as such
    again = LiveView(total=3)
    resumed.status = "TERMINATED"
    again.on_step_begin(0, [resumed])
    again.draw([resumed])
    assert "done before resume 1" in capsys.readouterr().err


def assert_runs_say_where_they_came_from(runs: list, workdir: Path) -> None:
    for run in runs:
        tags = run.data.tags
        assert tags["mlflow.user"] not in ("", "unknown") and run.info.user_id == tags["mlflow.user"]
        assert tags["mlflow.source.name"] and tags["mlflow.source.type"] == "LOCAL"
        assert len(tags["mlflow.source.git.commit"]) == 40
        (data,) = run.inputs.dataset_inputs
        assert (data.dataset.name, len(data.dataset.digest)) == ("xor", 12)
        assert '"train_rows": 400' in data.dataset.profile
        checkpoint = Path(tags["grokbench.checkpoint"])
        assert checkpoint.is_relative_to(workdir / "results") and (checkpoint / "trial.pt").is_file()


def assert_tables_log_one_analysis_run(workdir: Path, experiment: str, trials: int, monkeypatch) -> None:
    """The tables command logs one run beside the trials' and the sweep's parent run: no params, no trial key."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri(workdir))
    out = workdir / "tables"
    assert tables_main(["--tracking-uri", uri(workdir), "--experiment", experiment, "--out", str(out)]) == 0
    everything = mlflow.search_runs(experiment_names=[f"grokbench/{experiment}"], output_format="list")
    (analysis,) = [r for r in everything if r.data.tags.get("grokbench.kind") == "analysis"]
    assert len(everything) == trials + 2 and {KEY_TAG, "status"}.isdisjoint(analysis.data.tags)
    assert not analysis.data.params
    artifacts = {a.path for a in mlflow.MlflowClient(uri(workdir)).list_artifacts(analysis.info.run_id)}
    assert artifacts == {p.name for p in out.iterdir()} and "table1_mse.md" in artifacts


@pytest.mark.slow
def test_xor_tiny_smoke_runs_say_where_they_came_from_and_a_larger_budget_continues_them(
    local_ray, workdir, monkeypatch
):
    flags = ["--tracking-uri", uri(workdir), "--storage", str(workdir / "results")]
    assert main(["sweep", "xor_tiny", "--smoke", *flags]) == 0  # 40 epochs: censored before grokking (epoch 112)
    client, first = runs_of(workdir, "grokbench/xor_tiny-smoke")
    assert sorted(r.data.tags["status"] for r in first) == ["censored", "censored"]
    assert_runs_say_where_they_came_from(first, workdir)
    assert_tables_log_one_analysis_run(workdir, "xor_tiny-smoke", 2, monkeypatch)
    clock = {r.info.run_id: r.data.metrics["train_time_s"] for r in first}

    assert main(["sweep", "xor_tiny", "--smoke", "--max-epochs", "300", *flags]) == 0
    runs = assert_each_trial_logged_once(workdir, "grokbench/xor_tiny-smoke", 2)  # no second run, no step twice
    assert {r.info.run_id for r in runs} == set(clock)
    for run in runs:
        assert run.data.tags["status"] == "grokked" and run.data.metrics["max_epochs"] == 300
        assert run.data.metrics["steps_to_memorise"] == 54 and run.data.metrics["steps_to_grok"] == 112
        assert run.data.metrics["train_time_s"] > clock[run.info.run_id]  # the clock went on
        assert run.data.tags["grokbench.continued_by"] != run.data.tags[SWEEP_TAG]

    assert main(["sweep", "xor_tiny", "--smoke", "--max-epochs", "300", *flags]) == 0  # nothing more to do
    assert len(runs_of(workdir, "grokbench/xor_tiny-smoke")[1]) == 2


@pytest.mark.slow
def test_the_polynomial_alpha_smoke_sweep_reads_back_as_tables_and_figures_per_alpha(local_ray, workdir):
    import pandas as pd

    flags = ["--tracking-uri", uri(workdir), "--storage", str(workdir / "results")]
    assert main(["sweep", "polynomial_alpha", "--smoke", *flags]) == 0  # 8 values of α, 1 seed, 40 epochs
    out = workdir / "tables"
    assert (
        tables_main(
            [
                "--tracking-uri",
                uri(workdir),
                "--experiment",
                "polynomial_alpha-smoke",
                "--out",
                str(out),
                "--figures",
                "--no-log",
            ]
        )
        == 0
    )
    trials = pd.read_csv(out / "trials.csv", dtype=str, keep_default_na=False)
    assert list(trials["alpha"]) == ["0.03125", "0.125", "0.5", "1", "2", "4", "8", "32"]
    assert "final test acc" not in trials and all(v != "—" for v in trials["final test loss rel"])
    assert "steps to grok_strict" in trials
    for name in (
        "table1_mse.csv",
        "table1_mse_grok_strict.csv",
        "events.csv",
        "epochs_to_grok_vs_alpha.png",
        "polynomial_curves.png",
        "polynomial_diagnostics.png",
    ):
        assert (out / name).is_file(), name


@pytest.mark.slow
def test_the_same_sweep_started_twice_at_once_runs_once_and_the_other_refuses(local_ray, workdir):
    path = write_sweep(workdir, name="twice", grid={"seed": [0, 1]}, methods={"baseline": {}})
    where = ["--address", local_ray, "--tracking-uri", uri(workdir)]
    commands = [
        [sys.executable, "-m", "grokbench.cli", "sweep", str(path), *where, "--storage", str(workdir / f"results{i}")]
        for i in (1, 2)  # two shells, two storage folders, one store
    ]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    drivers = [subprocess.Popen(command, cwd=workdir, **pipes) for command in commands]
    outcomes = sorted((d.returncode, err) for d in drivers for _, err in [d.communicate(timeout=400)])
    (finished, _), (refused, message) = outcomes
    assert (finished, refused) == (0, 2), outcomes
    assert "a grokbench driver (pid " in message and "is already running grokbench/twice against" in message
    assert "Traceback" not in message
    assert_each_trial_logged_once(workdir, "grokbench/twice", expected_trials=2)
    later = SweepOptions(tracking_uri=uri(workdir), storage=str(workdir / "results3"))
    assert run_sweep(load_sweep(str(path)), later, out=io.StringIO()) == 0  # released: nothing left to run
