"""The driver's record of each trial (grokbench/sweep/tracking.py) on real SQLite stores: a run never goes on
without its params, a sweep id MLflow could not search for is refused before anything is written, and a real sweep
records where each trial ran without MLflow's database chatter."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from grokbench import machine
from grokbench.cli import main as cli
from grokbench.sweep.errors import SweepError, TrackingError
from grokbench.sweep.keys import STOPPED_BY, STOPPED_BY_TAG, trial_key
from grokbench.sweep.mlflow_store import TrackingStore
from grokbench.sweep.spec import load_sweep
from grokbench.sweep.tracking import TrialRuns

REPO = Path(__file__).resolve().parents[2]
XOR_TINY = REPO / "sweeps" / "xor_tiny.yaml"


def tune_trial(config: dict) -> SimpleNamespace:
    """What TrialRuns reads of a Tune trial: its config, as the driver builds it."""
    return SimpleNamespace(config={"trial": {"config": config, "continue": None}})


def summary_result(step: int = 40) -> dict:
    summary = {"status": "censored", "grokked_before_memorised": False, "epochs": 40, "steps_to_grok": None}
    return {"step": step, "curve": [], "summary": summary}


@pytest.fixture
def store(tmp_path, migrated_store):
    (tmp_path / "mlflow.db").write_bytes(migrated_store.read_bytes())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return TrackingStore(uri), TrackingStore(uri).prepare_experiment("grokbench/xor_tiny")


def test_a_run_whose_params_the_store_refuses_gets_nothing_more_and_a_resume_logs_them(store):
    store, experiment_id = store
    config = load_sweep(str(XOR_TINY)).trials()[0].to_dict()
    # a setting whose name MLflow refuses as a param ("Names may only contain alphanumerics, ..."): the store
    # refuses the whole batch, and would again (not transient)
    refused = {**config, "warmup@steps": 5}
    assert trial_key(refused) == trial_key(config)  # a setting this grokbench does not know is no part of the key
    runs = TrialRuns(store.uri, experiment_id, "params-1")
    with pytest.raises(TrackingError, match="refused the settings of trial .*continue with --resume"):
        runs.on_trial_start(0, [], tune_trial(refused))
    # the trial goes on reporting; nothing more reaches its run, and the sweep ends at its next step
    with pytest.raises(TrackingError):
        runs.on_trial_result(1, [], tune_trial(refused), summary_result())
    with pytest.raises(TrackingError):
        runs.on_step_begin(2, [])
    (run,) = store.trial_runs([experiment_id], "params-1")
    assert run.data.params == {} and run.data.tags["status"] == "running"  # no outcome logged without settings
    assert store.sweep_summaries(experiment_id, "params-1") == []  # was KeyError: 'method'
    # the resume, with the cause fixed: the same run gets its params, then its outcome
    resumed = TrialRuns(store.uri, experiment_id, "params-1")
    resumed.on_trial_start(0, [], tune_trial(config))
    resumed.on_trial_result(1, [], tune_trial(config), summary_result())
    (run,) = store.trial_runs([experiment_id], "params-1")
    assert run.data.params["method"] == config["method"] and run.data.params["seed"] == str(config["seed"])
    (summary,) = store.sweep_summaries(experiment_id, "params-1")
    assert (summary["method"], summary["status"]) == (config["method"], "censored")


@pytest.mark.parametrize("sweep_id", ["it's", 'say "grok"', "a/b", " lead"])
def test_a_sweep_id_mlflow_could_not_search_for_is_refused_before_anything_is_written(
    sweep_id, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    where = ["--tracking-uri", str(tmp_path / "mlflow.db"), "--storage", str(tmp_path / "results")]
    assert cli(["sweep", str(XOR_TINY), "--sweep-id", sweep_id, *where]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "use only letters, digits, '.', '_' and '-'" in message, message
    assert list(tmp_path.iterdir()) == []  # no store, no storage
    with pytest.raises(SweepError, match="use only letters"):  # nor does a search (analysis --sweep) send it
        TrackingStore(f"sqlite:///{tmp_path / 'mlflow.db'}").trial_runs(["0"], sweep_id)


@pytest.mark.slow
def test_a_sweep_records_each_trials_machine_and_keeps_mlflows_database_set_up_quiet(tmp_path, local_ray):
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"  # a new store: MLflow creates and migrates its tables
    command = [sys.executable, "-m", "grokbench.cli", "sweep", str(XOR_TINY), "--smoke", "--address", local_ray]
    command += ["--tracking-uri", uri, "--storage", str(tmp_path / "results"), "--sweep-id", "machine-1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}  # this checkout
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=400, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for chatter in ("Creating initial MLflow database tables", "Updating database tables", "alembic"):
        assert chatter not in output, output
    store = TrackingStore(uri)
    runs = store.trial_runs(list(store.grokbench_experiments().values()), "machine-1")
    assert len(runs) == 2  # baseline and GrokAlign at the smoke seed
    for run in runs:
        tags = run.data.tags
        # the worker's machine: this one, training on the CPU with the trial's one thread (cpus_per_trial: 1)
        assert tags["grokbench.machine.cpu"] == machine.cpu_model()
        assert tags["grokbench.machine.cpus"] == str(os.cpu_count())
        assert tags["grokbench.machine.gpu"] == "none"
        assert tags["grokbench.machine.torch"] == torch.__version__
        assert tags["grokbench.machine.threads"] == "1"
        expected = f"{machine.cpu_model()} ×{os.cpu_count()}, no GPU, torch {torch.__version__}, 1 thread"
        assert tags["grokbench.machine"] == expected


def test_a_trial_a_stopper_ended_is_censored_at_its_step_with_the_tags_its_entry_asks_for(store):
    store, experiment_id = store
    config = load_sweep(str(XOR_TINY)).trials()[0].to_dict()
    trial = tune_trial(config)
    trial.config["trial"]["tags"] = {"grokbench.arm": "baseline", "grokbench.phase": "tuning"}
    runs = TrialRuns(store.uri, experiment_id, "stopped-1", parent_run_id=None)
    runs.on_trial_start(0, [], trial)
    point = {"step": 30, "epoch": 30, "train_acc": 1.0, "test_acc": 0.5, "train_time_s": 0.1}
    runs.on_trial_result(1, [], trial, {"step": 30, "steps_to_grok": None, "curve": [point], STOPPED_BY: "r_max"})
    runs.on_trial_complete(2, [], trial)
    (run,) = store.trial_runs([experiment_id], "stopped-1")
    tags = run.data.tags
    assert (tags["status"], tags[STOPPED_BY_TAG], tags["grokbench.arm"], tags["grokbench.phase"]) == (
        "censored",
        "r_max",
        "baseline",
        "tuning",
    )
    assert run.data.metrics["steps"] == 30 and run.info.status == "FINISHED"
    assert trial_key(config) in TrackingStore(store.uri).stored_trials("grokbench/xor_tiny")  # a resume skips it
