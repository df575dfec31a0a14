"""Parent runs on real SQLite MLflow stores (and a real local Ray for the sweeps): one per sweep, found again on a
resume, every trial run its direct child; no reader counts a parent as a trial; export and import carry parents,
their artifacts and their children's links, and archives written before parents existed still import."""

import gzip
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from stores import SWEEP, log_trial

from analysis.runs import load_runs
from grokbench.cli import main as cli
from grokbench.sweep.driver import SweepOptions, run_sweep
from grokbench.sweep.errors import EXIT_INTERRUPTED
from grokbench.sweep.keys import KEY_TAG, SWEEP_TAG
from grokbench.sweep.mlflow_store import (
    PARENT_IDENTITY_TAG,
    PARENT_RUN_TAG,
    PARENT_TAG,
    SWEEP_PARENT,
    TrackingStore,
)
from grokbench.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[2]
BENCHMARK_TAG = "grokbench.benchmark"  # a benchmark's identifying tag, as grokbench/benchmark/ names it


def fresh_store(tmp_path: Path, migrated_store: Path, name: str) -> str:
    shutil.copy(migrated_store, tmp_path / f"{name}.db")
    return f"sqlite:///{tmp_path / name}.db"


def trials_of(store: TrackingStore, experiment_id: str) -> dict[str, object]:
    """What every reader of trials sees: the analysis's rows, the planner's records, a sweep's summaries."""
    rows, _ = load_runs(store.uri, ["mnist"])
    return {
        "rows": rows.sort_values("run_id").reset_index(drop=True),
        "stored": store.stored_trials("grokbench/mnist"),
        "summaries": sorted(store.sweep_summaries(experiment_id, SWEEP), key=lambda s: (s["method"], s["seed"])),
    }


def test_a_parent_run_is_one_per_identity_reopened_by_a_resume_and_never_a_trial(tmp_path, migrated_store):
    store = TrackingStore(fresh_store(tmp_path, migrated_store, "mlflow"))
    experiment_id = store.prepare_experiment("grokbench/mnist")
    for seed, (steps, t) in enumerate([(400, 40.0), (600, 60.0)]):
        log_trial(store.client, experiment_id, "baseline", "ce", seed, "grokked", steps, t)
    log_trial(store.client, experiment_id, "grokalign", "ce", 0, "censored", 0, 0, lam=1e-3)
    before = trials_of(store, experiment_id)
    assert len(before["rows"]) == 3 and len(before["summaries"]) == 3  # the readers read something

    parent = store.parent_run(experiment_id, SWEEP_PARENT, {SWEEP_TAG: SWEEP}, SWEEP)
    store.log_text(parent, "# leaderboard", "leaderboard.md")
    store.log_batch(parent, params={"suite_hash": "abc"}, metrics=[("cost_s", 1.5, 0, 0)])
    benchmark = store.parent_run(experiment_id, "benchmark", {BENCHMARK_TAG: "smoke"}, "smoke")
    store.terminate(parent, "KILLED")
    assert store.parent_run(experiment_id, SWEEP_PARENT, {SWEEP_TAG: SWEEP}, "any name") == parent  # found, not made
    run = store.get_run(parent)
    assert run.info.status == "RUNNING" and run.info.run_name == SWEEP  # a resume reopens it
    assert run.data.tags[PARENT_TAG] == "sweep" and run.data.tags[SWEEP_TAG] == SWEEP and KEY_TAG not in run.data.tags
    assert TrackingStore.parent_identity(run.data.tags) == {PARENT_TAG: "sweep", SWEEP_TAG: SWEEP}
    assert [r.info.run_id for r in store.parent_runs(experiment_id)] == [parent, benchmark]
    assert [r.info.run_id for r in store.parent_runs(experiment_id, "benchmark")] == [benchmark]

    after = trials_of(store, experiment_id)
    pd.testing.assert_frame_equal(after["rows"], before["rows"])
    assert after["stored"] == before["stored"] and after["summaries"] == before["summaries"]
    assert len(store.trial_runs([experiment_id], SWEEP)) == 3
    with pytest.raises(ValueError, match="identifying tags"):
        store.parent_run(experiment_id, SWEEP_PARENT, {}, "no identity")


def source_with_parents(tmp_path: Path, migrated_store: Path) -> tuple[TrackingStore, str, str, list[str]]:
    """A store with a sweep's parent run (tags, a param, a metric, text artifacts and an image), two trial runs
    that are its children, one whose parent is not in the store, and a benchmark's parent without children."""
    store = TrackingStore(fresh_store(tmp_path, migrated_store, "source"))
    experiment_id = store.prepare_experiment("grokbench/mnist")
    parent = store.parent_run(experiment_id, SWEEP_PARENT, {SWEEP_TAG: SWEEP}, SWEEP)
    children = [
        log_trial(store.client, experiment_id, "baseline", "ce", seed, "grokked", 400 + 100 * seed, 40.0)
        for seed in range(3)
    ]
    for child, link in zip(children, [parent, parent, "a0b1c2d3e4f5"], strict=True):
        store.set_tag(child, PARENT_RUN_TAG, link)
    store.log_batch(
        parent, metrics=[("cost_s", 1.5, 7, 0), ("cost_s", 1.25, 8, 1)], params={"suite_hash": "abc"}, tags={"a": "b"}
    )
    store.log_text(parent, "| arm | score |\n|---|---|\n| baseline | 1.0 |\n", "board/leaderboard.md")
    store.log_text(parent, '{"baseline": 0.002}', "costs.json")
    image = tmp_path / "profiles.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    store.log_file(parent, image)
    store.terminate(parent, "FINISHED")
    store.parent_run(experiment_id, "benchmark", {BENCHMARK_TAG: "smoke"}, "smoke")
    return store, experiment_id, parent, children


def test_export_and_import_carry_parents_their_artifacts_and_links_once(tmp_path, migrated_store, capsys):
    from grokbench.sweep.archive import IMPORTED_TAG

    source, source_experiment, parent, children = source_with_parents(tmp_path, migrated_store)
    archive = tmp_path / "runs.jsonl.gz"
    assert cli(["export", "mnist", "--tracking-uri", source.uri, "--out", str(archive)]) == 0
    assert "wrote 3 runs" in capsys.readouterr().out
    copy = TrackingStore(fresh_store(tmp_path, migrated_store, "copy"))
    for added in (3, 0):  # a second import adds nothing: no second parent, no second child
        assert cli(["import", str(archive), "--tracking-uri", copy.uri]) == 0
        assert f"added {added} runs" in capsys.readouterr().out
    assert cli(["import", str(archive), "--tracking-uri", source.uri]) == 0  # into the store it came from
    assert len(source.parent_runs(source_experiment)) == 2 and len(source.trial_runs([source_experiment])) == 3

    experiment_id = copy.experiment_id("grokbench/mnist")
    parents = {run.data.tags[PARENT_TAG]: run for run in copy.parent_runs(experiment_id)}
    assert len(parents) == 2  # one of each kind
    sweep_parent, benchmark_parent = parents["sweep"], parents["benchmark"]
    original = source.get_run(parent)
    assert {k: v for k, v in sweep_parent.data.tags.items() if k != IMPORTED_TAG} == original.data.tags
    assert sweep_parent.info.status == "FINISHED" and sweep_parent.info.run_name == SWEEP
    assert sweep_parent.data.params == {"suite_hash": "abc"}
    assert copy.metric_history(sweep_parent.info.run_id, "cost_s") == [(0, 1.5, 7), (1, 1.25, 8)]
    assert copy.text_artifacts(sweep_parent.info.run_id) == {
        "board/leaderboard.md": "| arm | score |\n|---|---|\n| baseline | 1.0 |\n",
        "costs.json": '{"baseline": 0.002}',
    }  # the image is not text: left behind
    assert copy.parent_identity(benchmark_parent.data.tags) == {PARENT_TAG: "benchmark", BENCHMARK_TAG: "smoke"}
    links = {
        run.data.params["seed"]: run.data.tags.get(PARENT_RUN_TAG) for run in copy.trial_runs([experiment_id], SWEEP)
    }
    # seed 2's parent was never in the source store: a link to nothing is not carried over
    assert links == {"0": sweep_parent.info.run_id, "1": sweep_parent.info.run_id, "2": None}


def test_an_archive_with_a_parent_it_cannot_tell_apart_imports_nothing(tmp_path, migrated_store, capsys):
    source, *_ = source_with_parents(tmp_path, migrated_store)
    archive, damaged = tmp_path / "runs.jsonl.gz", tmp_path / "damaged.jsonl.gz"
    assert cli(["export", "mnist", "--tracking-uri", source.uri, "--out", str(archive)]) == 0
    with gzip.open(archive, "rt") as stream:
        lines = [json.loads(line) for line in stream]
    assert lines[0]["format"] == "grokbench-runs/2" and lines[0]["parents"] == 2
    del lines[1]["tags"][PARENT_IDENTITY_TAG]
    with gzip.open(damaged, "wt") as stream:
        stream.writelines(json.dumps(line) + "\n" for line in lines)
    copy = fresh_store(tmp_path, migrated_store, "copy")
    capsys.readouterr()
    assert cli(["import", str(damaged), "--tracking-uri", copy]) == 2
    assert "is a parent run without its run id or identifying tags" in capsys.readouterr().err
    assert TrackingStore(copy).experiment_id("grokbench/mnist") is None  # nothing half-written


@pytest.mark.slow  # twenty runs written one by one: seconds
def test_an_archive_written_before_parent_runs_imports_its_trials_unchanged(tmp_path, migrated_store, capsys):
    archive = REPO / "results" / "runs" / "mnist_tuned.jsonl.gz"
    with gzip.open(archive, "rt") as stream:
        header = json.loads(stream.readline())
    assert header["format"] == "grokbench-runs/1" and "parents" not in header
    store = TrackingStore(fresh_store(tmp_path, migrated_store, "copy"))
    assert cli(["import", str(archive), "--tracking-uri", store.uri]) == 0
    assert f"added {header['runs']} runs" in capsys.readouterr().out and header["runs"] == 20
    experiment_id = store.experiment_id(header["experiment"])
    runs = store.trial_runs([experiment_id])
    assert len(runs) == 20 and store.parent_runs(experiment_id) == []
    assert not any(PARENT_RUN_TAG in run.data.tags for run in runs)


XOR = {
    "name": "parents",
    "description": "two xor trials",
    "task": "xor",
    "budget": {"max_epochs": 200},
    "base": {"eval_every": 10, "epochs_after_grok": 60},
    "grid": {"seed": [0, 1]},
    "methods": {"baseline": {}},
    "resources": {"cpus_per_trial": 1},
    "checkpoint_every": 40,
}


def interrupt_once_a_trial_reports(uri: str, experiment: str) -> threading.Thread:
    """Ctrl-C, as Tune takes it (SIGUSR1 is Tune's other stop signal, and leaves pytest's SIGINT alone), as soon as
    some trial has logged a curve point: Tune's handler is installed by then, and trials are still running."""

    def watch() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            time.sleep(0.5)
            client = mlflow.MlflowClient(uri)
            found = client.get_experiment_by_name(experiment)
            if found and any("train_acc" in r.data.metrics for r in client.search_runs([found.experiment_id])):
                os.kill(os.getpid(), signal.SIGUSR1)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


@pytest.mark.slow
def test_a_sweep_has_one_parent_run_that_a_resume_reuses_and_export_carries(local_ray, tmp_path, migrated_store):
    uri = fresh_store(tmp_path, migrated_store, "mlflow")
    path = tmp_path / "parents.yaml"
    path.write_text(yaml.safe_dump(XOR))
    options = SweepOptions(tracking_uri=uri, storage=str(tmp_path / "results"), sweep_id="parents-1")
    watcher = interrupt_once_a_trial_reports(uri, "grokbench/parents")
    assert run_sweep(load_sweep(str(path)), options) == EXIT_INTERRUPTED  # interrupted: trials left for a resume
    watcher.join()
    store = TrackingStore(uri)
    experiment_id = store.experiment_id("grokbench/parents")
    (parent,) = store.parent_runs(experiment_id)
    assert parent.info.status == "KILLED" and parent.info.run_name == "parents-1"
    assert json.loads(store.text_artifacts(parent.info.run_id)["sweep.json"])["trials"] == 2
    interrupted = [r for r in store.trial_runs([experiment_id]) if r.data.tags["status"] == "running"]
    assert interrupted and {r.info.status for r in interrupted} == {"KILLED"}  # the UI shows which were stopped

    resumed = SweepOptions(storage=str(tmp_path / "results"), sweep_id="parents-1", resume=True)
    assert run_sweep(load_sweep(str(path)), resumed) == 0
    (again,) = store.parent_runs(experiment_id)
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    runs = store.trial_runs([experiment_id])
    assert len(runs) == 2 and {r.data.tags[PARENT_RUN_TAG] for r in runs} == {parent.info.run_id}
    assert {r.info.status for r in runs} == {"FINISHED"}  # each interrupted run continued in place
    for run in runs:
        for metric in run.data.metrics:
            steps = [m.step for m in store.client.get_metric_history(run.info.run_id, metric)]
            assert len(steps) == len(set(steps)), f"{run.info.run_name}: {metric} logged twice at a step"

    archive = tmp_path / "runs.jsonl.gz"
    assert cli(["export", "parents", "--tracking-uri", uri, "--out", str(archive)]) == 0
    copy = TrackingStore(fresh_store(tmp_path, migrated_store, "copy"))
    assert cli(["import", str(archive), "--tracking-uri", copy.uri]) == 0
    copied_experiment = copy.experiment_id("grokbench/parents")
    (copied,) = copy.parent_runs(copied_experiment)
    assert copy.parent_identity(copied.data.tags) == {PARENT_TAG: "sweep", SWEEP_TAG: "parents-1"}
    assert copy.text_artifacts(copied.info.run_id) == store.text_artifacts(parent.info.run_id)
    copied_runs = copy.trial_runs([copied_experiment])
    assert len(copied_runs) == 2 and {r.data.tags[PARENT_RUN_TAG] for r in copied_runs} == {copied.info.run_id}
