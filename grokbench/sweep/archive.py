"""`grokbench export` / `grokbench import`: an experiment's finished runs as one portable file, and back.

A tracking store lives on one machine; results that took CPU-hours should outlive it. The archive is gzip'd JSON
lines: a header, then one finished run a line with its params, tags, text artifacts and every metric's whole
history (values exact). Importing recreates the runs in any store (new run ids, the same tags), so the tables come
out the same and `grokbench sweep` skips the trials the archive holds. Importing twice adds nothing.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from grokbench.sweep.errors import SweepError
from grokbench.sweep.keys import EXPERIMENT_PREFIX, KEY_TAG, SWEEP_TAG
from grokbench.sweep.tracking import (
    FINAL_STATUSES, MAX_METRICS_PER_BATCH, patiently, prepare_experiment, runs_with_outcome,
)

FORMAT = "grokbench-runs/1"
OUTCOMES = (*FINAL_STATUSES, "failed")
TEXT_ARTIFACTS = ("config.json", "summary.json")
IMPORTED_TAG = "grokbench.imported_from"


class ArchiveError(SweepError):
    """The archive or the experiment asked for is missing or not what it should be."""


def export_runs(uri: str, experiment: str, path: Path) -> int:
    """Write the experiment's runs that have an outcome to `path`; returns how many. The file appears whole or not
    at all."""
    import mlflow

    name = experiment if experiment.startswith(EXPERIMENT_PREFIX) else EXPERIMENT_PREFIX + experiment
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is None:
        raise ArchiveError(f"no experiment {name} in {uri}; pass the sweep's name (e.g. mnist) and its --tracking-uri")
    runs = runs_with_outcome(client, found.experiment_id, OUTCOMES)
    if not runs:
        raise ArchiveError(f"{name} in {uri} has no finished run yet; nothing to export")
    partial = path.with_name(path.name + ".partial")
    with gzip.open(partial, "wt") as stream:
        stream.write(json.dumps({"format": FORMAT, "experiment": name, "runs": len(runs)}) + "\n")
        for run in sorted(runs, key=lambda r: r.info.start_time):
            stream.write(json.dumps(_run_record(client, run)) + "\n")
    os.replace(partial, path)
    return len(runs)


def _run_record(client, run) -> dict[str, Any]:
    metrics = {}
    for key in sorted(run.data.metrics):
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))
        metrics[key] = [[m.step, m.value] for m in history]
    return {"run_name": run.info.run_name, "start_time": run.info.start_time, "end_time": run.info.end_time,
            "status": run.info.status, "params": run.data.params, "tags": run.data.tags, "metrics": metrics,
            "artifacts": _text_artifacts(client, run.info.run_id)}


def _text_artifacts(client, run_id: str) -> dict[str, str]:
    present = {a.path for a in client.list_artifacts(run_id)}
    texts = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in TEXT_ARTIFACTS:
            if name in present:
                texts[name] = Path(client.download_artifacts(run_id, name, scratch)).read_text()
    return texts


def import_runs(path: Path, uri: str) -> tuple[int, int]:
    """Add the archive's runs to the store at `uri`; returns (added, already there). A run is already there when
    the store holds one with its sweep id and trial key and an outcome."""
    import mlflow

    header, records = _read(path)
    experiment_id = prepare_experiment(uri, header["experiment"])
    client = mlflow.MlflowClient(uri)
    present = {(r.data.tags.get(SWEEP_TAG), r.data.tags.get(KEY_TAG))
               for r in patiently(lambda: runs_with_outcome(client, experiment_id, OUTCOMES), uri)}
    added = skipped = 0
    for record in records:
        key = (record["tags"].get(SWEEP_TAG), record["tags"].get(KEY_TAG))
        if key in present:
            skipped += 1
            continue
        patiently(lambda r=record: _import_run(client, experiment_id, r, path.name), uri)
        added += 1
    return added, skipped


def _read(path: Path) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    if not path.is_file():
        raise ArchiveError(f"no archive at {path}; `grokbench export` writes one")
    try:
        with gzip.open(path, "rt") as stream:
            header = json.loads(stream.readline())
    except (OSError, ValueError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ArchiveError(f"{path} is not a grokbench archive ({FORMAT}, written by `grokbench export`)")

    def records() -> Iterator[dict[str, Any]]:
        with gzip.open(path, "rt") as stream:
            next(stream)
            for line in stream:
                yield json.loads(line)

    return header, records()


def _import_run(client, experiment_id: str, record: dict[str, Any], source: str) -> None:
    """One run, safe to repeat: an earlier import of it that stopped part-way (it has no outcome yet) is deleted
    first, and the outcome tag is written last."""
    from mlflow.entities import Metric, Param, RunTag

    tags = {k: v for k, v in record["tags"].items() if k != "mlflow.runName"}  # create_run names it
    outcome = tags.pop("status")
    key_filter = " and ".join(f"tags.`{t}` = '{tags[t]}'" for t in (SWEEP_TAG, KEY_TAG) if t in tags)
    for stale in client.search_runs([experiment_id], filter_string=key_filter):
        if IMPORTED_TAG in stale.data.tags and "status" not in stale.data.tags:
            client.delete_run(stale.info.run_id)
    run_id = client.create_run(experiment_id, start_time=record["start_time"], run_name=record["run_name"],
                               tags={**tags, IMPORTED_TAG: source}).info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in record["params"].items()])
    points = [Metric(key, value, record["start_time"], step)
              for key, history in record["metrics"].items() for step, value in history]
    for start in range(0, len(points), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=points[start:start + MAX_METRICS_PER_BATCH])
    for name, text in record["artifacts"].items():
        client.log_text(run_id, text, name)
    client.log_batch(run_id, tags=[RunTag("status", outcome)])
    client.set_terminated(run_id, status=record["status"], end_time=record["end_time"])
