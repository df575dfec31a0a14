"""The driver's record of each trial (grokbench/sweep/tracking.py) on real SQLite stores: a run never goes on
without its params, and a sweep id MLflow could not search for is refused before anything is written."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from grokbench.cli import main as cli
from grokbench.sweep.errors import SweepError, TrackingError
from grokbench.sweep.keys import trial_key
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
