"""The one home of MLflow access (grokbench/sweep/mlflow_store.py) on real SQLite stores: URIs, stores that are
not there, paged reads that see only trials, the analysis run of `python -m analysis.tables`, and what a run says
of where it came from."""

import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest
from stores import log_trial

from analysis.runs import load_runs
from analysis.tables import main as tables_main
from grokbench import machine
from grokbench.cli import main as cli
from grokbench.sweep import mlflow_store
from grokbench.sweep.errors import TrackingError
from grokbench.sweep.keys import KEY_TAG, SWEEP_TAG
from grokbench.sweep.mlflow_store import KIND_TAG, TrackingStore, trial_filter
from grokbench.sweep.provenance import context_tags
from grokbench.sweep.uri import absolute_uri, check_readable, tracking_uri

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def smoke_store(tmp_path, migrated_store, monkeypatch):
    """A store holding only grokbench/mnist-smoke (as after the README's first sweep), in the working directory."""
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = TrackingStore(uri)
    experiment_id = store.prepare_experiment("grokbench/mnist-smoke")
    for seed, (steps, t) in enumerate([(400, 40.0), (600, 60.0)]):
        log_trial(store.client, experiment_id, "baseline", "ce", seed, "grokked", steps, t)
        log_trial(store.client, experiment_id, "grokalign", "ce", seed, "grokked", steps // 2, t / 2, lam=1e-3)
    return uri, experiment_id


def test_uris_are_made_absolute_and_a_plain_path_is_a_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert absolute_uri("runs/mlflow.db") == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert absolute_uri("/data/mlflow.db") == "sqlite:////data/mlflow.db"
    assert absolute_uri("sqlite:///rel.db") == f"sqlite:///{tmp_path / 'rel.db'}"
    assert absolute_uri("http://host:5000") == "http://host:5000"
    with pytest.raises(TrackingError, match="refuses file stores; use sqlite:///"):
        absolute_uri("file:///tmp/mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "elsewhere.db")
    assert tracking_uri() == f"sqlite:///{tmp_path / 'elsewhere.db'}" and tracking_uri("x.db").endswith("/x.db")
    assert trial_filter("s-1", "k") == "tags.`grokbench.sweep_id` = 's-1' and tags.`grokbench.trial_key` = 'k'"
    assert trial_filter(key="k") == "tags.`grokbench.trial_key` = 'k'" and trial_filter() == ""


def test_a_store_that_is_missing_or_empty_is_reported_and_left_alone(tmp_path, capsys):
    assert tables_main(["--tracking-uri", "/nonexistent/mlflow.db"]) == 2
    assert "no MLflow store at sqlite:////nonexistent/mlflow.db" in capsys.readouterr().err
    assert not Path("/nonexistent").exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    text = tmp_path / "notes.db"
    text.write_text("not a database")
    for path in (empty, text):
        before = (path.stat().st_size, path.stat().st_mtime_ns)
        assert tables_main(["--tracking-uri", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"{path} is not an MLflow store" in err and "Traceback" not in err
        assert (path.stat().st_size, path.stat().st_mtime_ns) == before
    assert cli(["export", "mnist", "--tracking-uri", str(tmp_path / "none.db"), "--out", str(tmp_path / "x.gz")]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "notes.db"]  # nothing made, no journal left
    with pytest.raises(TrackingError, match="is not an MLflow store"):
        check_readable(f"sqlite:///{empty}")


@pytest.mark.slow  # three analysis commands against one store: seconds
def test_each_invocation_logs_one_analysis_run_that_no_reader_counts_as_a_trial(smoke_store, tmp_path, capsys):
    uri, experiment_id = smoke_store
    assert tables_main(["--tracking-uri", uri, "--out", "first", "--figures"]) == 0
    assert "logged them to MLflow as run" in capsys.readouterr().out
    client = mlflow.MlflowClient(uri)
    (analysis,) = client.search_runs([experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'analysis'")
    assert KEY_TAG not in analysis.data.tags and "status" not in analysis.data.tags and not analysis.data.params
    assert analysis.data.tags["mlflow.user"] and analysis.data.tags["mlflow.source.type"] == "LOCAL"
    artifacts = {a.path for a in client.list_artifacts(analysis.info.run_id)}
    assert artifacts == {p.name for p in Path("first").iterdir()} and "table1_ce.md" in artifacts
    assert "geometry.png" in artifacts

    # read again: the analysis run is in no table, no trial count, no export
    assert tables_main(["--tracking-uri", uri, "--out", "second", "--no-log"]) == 0
    for name in ("table1_ce.md", "trials.csv", "geometry.md"):
        assert (Path("second") / name).read_bytes() == (Path("first") / name).read_bytes()
    runs, read = load_runs(uri)
    assert len(runs) == 4 and read == ["grokbench/mnist-smoke"]
    assert len(TrackingStore(uri).stored_trials("grokbench/mnist-smoke")) == 4
    assert cli(["export", "mnist-smoke", "--tracking-uri", uri, "--out", str(tmp_path / "runs.gz")]) == 0
    assert "wrote 4 runs" in capsys.readouterr().out
    assert len(client.search_runs([experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'analysis'")) == 1


def test_a_store_that_refuses_the_analysis_run_gets_a_warning_and_the_tables_stay(tmp_path, migrated_store, capsys):
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    blocker = tmp_path / "a-file"  # artifacts cannot be written beneath a file
    blocker.write_text("")
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("grokbench/mnist", artifact_location=(blocker / "artifacts").as_uri())
    log_trial(client, experiment_id, "baseline", "ce", 0, "grokked", 400, 40.0)
    assert tables_main(["--tracking-uri", uri, "--out", str(tmp_path / "out"), "--format", "md"]) == 0
    captured = capsys.readouterr()
    assert "warning: the tables are written, but" in captured.err and "refused the analysis run" in captured.err
    assert "Traceback" not in captured.err and (tmp_path / "out" / "table1_ce.md").is_file()
    assert len(client.search_runs([experiment_id])) == 1  # the half-made analysis run is gone again


def test_searches_read_every_page_and_only_trials(tmp_path, migrated_store, monkeypatch):
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    store = TrackingStore(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = store.prepare_experiment("grokbench/paged")
    for seed in range(5):
        store.create_run(experiment_id, f"t{seed}", {SWEEP_TAG: "s-1", KEY_TAG: f"k{seed}", "status": "grokked"})
    store.create_run(experiment_id, "analysis", {KIND_TAG: "analysis"})
    monkeypatch.setattr(mlflow_store, "PAGE", 2)
    assert sorted(r.data.tags[KEY_TAG] for r in store.trial_runs([experiment_id])) == [f"k{i}" for i in range(5)]
    assert [r.data.tags[KEY_TAG] for r in store.trial_runs([experiment_id], "s-1", "k3")] == ["k3"]
    assert {key: t.sweep_id for key, t in store.stored_trials("grokbench/paged").items()} == {
        f"k{i}": "s-1" for i in range(5)
    }
    assert len(store.run_rows([experiment_id])) == 5


def test_a_stored_trial_knows_which_further_events_its_run_reached_and_where(tmp_path, migrated_store):
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    store = TrackingStore(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = store.prepare_experiment("grokbench/events")
    laptop = {"cpu": "Some CPU", "cpus": "8", "gpu": "none", "torch": "2.5.1", "threads": "1"}
    for key, strict in (("strict", 70), ("loose", None)):
        tags = {SWEEP_TAG: "s-1", KEY_TAG: key, "status": "grokked", **(machine.as_tags(laptop) if strict else {})}
        run_id = store.create_run(experiment_id, key, tags)
        figures = {"epochs": 100, "epochs_to_memorise": 20, "epochs_to_grok": 40, "grok_phase_time_s": 1.5}
        figures.update({"epochs_to_grok_strict": strict} if strict else {})
        store.log_batch(run_id, [(name, value, 0, 100) for name, value in figures.items()])
    held = store.stored_trials("grokbench/events")
    assert held["strict"].event_epochs == {"grok_strict": 70} and held["loose"].event_epochs == {}
    assert (held["strict"].epochs, held["strict"].epochs_to_grok) == (100, 40)
    assert held["strict"].machine == "Some CPU ×8, no GPU, torch 2.5.1, 1 thread"
    assert held["loose"].machine == "machine not recorded"  # logged before runs recorded their machine


def test_runs_say_who_made_them_from_which_source_and_commit():
    tags = context_tags()
    assert tags["mlflow.user"] and tags["mlflow.source.name"] and tags["mlflow.source.type"] == "LOCAL"
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert tags["mlflow.source.git.commit"] == head.strip()


def test_a_dataset_input_travels_through_export_and_import_and_the_checkpoint_stays_behind(
    tmp_path, migrated_store, capsys
):
    from ray import tune

    from grokbench.config import TrialConfig
    from grokbench.sweep.tracking import checkpoint_uri
    from grokbench.sweep.trainable import dataset_record
    from grokbench.train import Trial

    record = dataset_record(Trial(TrialConfig(task="xor", device="cpu")))
    assert record["name"] == "xor" and record == dataset_record(Trial(TrialConfig(task="xor", device="cpu", seed=3)))
    assert '"train_rows": 400' in record["profile"] and '"features": 1000' in record["profile"]
    assert dataset_record(Trial(TrialConfig(task="xor", device="cpu", dtype="float64")))["digest"] != record["digest"]
    import pyarrow.fs

    s3 = pyarrow.fs.S3FileSystem(region="us-east-1", anonymous=True)
    assert (
        checkpoint_uri(tune.Checkpoint("bucket/sweep/checkpoint_000001", filesystem=s3))
        == "s3://bucket/sweep/checkpoint_000001"
    )
    assert checkpoint_uri(tune.Checkpoint(str(tmp_path))) == str(tmp_path)

    uris = {}
    for name in ("source", "copy"):
        shutil.copy(migrated_store, tmp_path / f"{name}.db")
        uris[name] = f"sqlite:///{tmp_path / name}.db"
    source = TrackingStore(uris["source"])
    experiment_id = source.prepare_experiment("grokbench/mnist")
    log_trial(source.client, experiment_id, "baseline", "ce", 0, "grokked", 400, 40.0)
    (run,) = source.trial_runs([experiment_id])
    source.log_dataset(run.info.run_id, record)
    source.log_dataset(run.info.run_id, record)  # the same dataset again adds nothing
    source.set_tag(run.info.run_id, "grokbench.checkpoint", str(tmp_path / "checkpoint_000001"))
    archive = tmp_path / "runs.jsonl.gz"
    assert cli(["export", "mnist", "--tracking-uri", uris["source"], "--out", str(archive)]) == 0
    assert cli(["import", str(archive), "--tracking-uri", uris["copy"]]) == 0
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err and "run 1 of 1" in err  # a log, not a terminal: plain lines
    copy = TrackingStore(uris["copy"])
    (imported,) = copy.trial_runs([copy.experiment_id("grokbench/mnist")])
    original = source.get_run(run.info.run_id)
    assert len(original.inputs.dataset_inputs) == 1
    assert TrackingStore.datasets(imported) == TrackingStore.datasets(original)
    # a checkpoint is a file on the machine that ran the trial: an imported censored trial given a larger budget
    # runs again from the start rather than fail on a path this machine does not have
    assert "grokbench.checkpoint" in original.data.tags and "grokbench.checkpoint" not in imported.data.tags


OLD_MAIN = Path(__file__).parents[1] / "fixtures" / "old_main_xor_tiny"


def test_trials_stored_by_earlier_code_are_skipped_by_a_grid_sweep_and_counted_once(tmp_path, migrated_store, capsys):
    """An archive of runs written by the code at 7ed46c0, whose trial keys hashed the budget and every method's
    settings: today's code recognises them by recomputing each run's identity from its stored settings."""
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert cli(["import", str(OLD_MAIN / "runs.jsonl.gz"), "--tracking-uri", uri]) == 0
    assert cli(["sweep", "xor_tiny", "--tracking-uri", uri, "--storage", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "4 of 4 trials already have an outcome" in out and "nothing to run" in out
    assert not (tmp_path / "results").exists()  # no Ray, no sweep: nothing was started

    tables = tmp_path / "tables"
    assert (
        tables_main(
            ["--tracking-uri", uri, "--experiment", "xor_tiny", "--out", str(tables), "--format", "md", "--no-log"]
        )
        == 0
    )
    for name in ("trials.md", "geometry.md"):  # what the code of then gave on these runs
        assert (tables / name).read_text() == (OLD_MAIN / name).read_text()
    assert (tables / "table1_mse.md").read_text().count("| 2/2 |") == 2
