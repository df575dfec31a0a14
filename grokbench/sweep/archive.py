"""`grokbench export` / `grokbench import`: an experiment's finished runs as one portable file, and back.

A tracking store lives on one machine; results that took CPU-hours should outlive it. The archive is gzip'd JSON
lines: a header, then one finished run a line with its params, tags, text artifacts and every metric's whole
history (step, value, timestamp; values exact, NaN written as JSON's common `NaN` extension). Importing recreates
the runs in any store (new run ids, the same tags), so the tables come out the same and `grokbench sweep` skips
the trials the archive holds. Importing twice adds nothing.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from grokbench.sweep.errors import SweepError
from grokbench.sweep.keys import FINAL_STATUSES, KEY_TAG, SWEEP_TAG, experiment_name
from grokbench.sweep.tracking import MAX_METRICS_PER_BATCH, patiently, prepare_experiment, runs_with_outcome

FORMAT = "grokbench-runs/1"
OUTCOMES = (*FINAL_STATUSES, "failed")  # a failed trial is a record too (the tables count it apart)
TEXT_ARTIFACTS = ("config.json", "summary.json")
IMPORTED_TAG = "grokbench.imported_from"
RECORD_KEYS = ("run_name", "start_time", "end_time", "status", "params", "tags", "metrics", "artifacts")


class ArchiveError(SweepError):
    """The archive or the experiment asked for is missing or not what it should be."""


def export_runs(uri: str, experiment: str, path: Path) -> int:
    """Write the experiment's runs that have an outcome (or failed) to `path`; returns how many. The file appears
    whole or not at all."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per small file is noise
    name = experiment_name(experiment)
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is None:
        raise ArchiveError(f"no experiment {name} in {uri}; pass the sweep's name (e.g. mnist) and its --tracking-uri")
    finished = runs_with_outcome(client, found.experiment_id, OUTCOMES)
    runs = [r for r in finished if _identity(r.data.tags)]
    if len(runs) < len(finished):  # not made by a sweep: nothing would say which trial it is
        print(f"left out {len(finished) - len(runs)} finished runs without the {SWEEP_TAG} and {KEY_TAG} tags",
              file=sys.stderr)
    if not runs:
        raise ArchiveError(f"{name} in {uri} has no finished run of a grokbench sweep; nothing to export")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with gzip.open(partial, "wt") as stream:
            stream.write(json.dumps({"format": FORMAT, "experiment": name, "runs": len(runs)}) + "\n")
            for run in sorted(runs, key=lambda r: r.info.start_time):
                stream.write(json.dumps(_run_record(client, run)) + "\n")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return len(runs)


def _identity(tags: dict[str, str]) -> tuple[str, str] | None:
    """(sweep id, trial key): which trial a run is, in any store."""
    return (tags[SWEEP_TAG], tags[KEY_TAG]) if SWEEP_TAG in tags and KEY_TAG in tags else None


def _run_record(client, run) -> dict[str, Any]:
    metrics = {}
    for key in sorted(run.data.metrics):
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))
        metrics[key] = [[m.step, m.value, m.timestamp] for m in history]
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


def import_runs(path: Path, uri: str, progress: Callable[[str], None] = lambda _: None) -> tuple[int, int]:
    """Add the archive's runs to the store at `uri`; returns (added, already there). A run is already there when
    the store holds its trial (sweep id and trial key) with the same outcome or a better one (a real outcome is
    better than a failure)."""
    import mlflow

    header = _checked(path)
    experiment_id = prepare_experiment(uri, header["experiment"])
    client = mlflow.MlflowClient(uri)
    present: dict[tuple[str, str], int] = {}
    for run in patiently(lambda: runs_with_outcome(client, experiment_id, OUTCOMES), uri):
        identity = _identity(run.data.tags)
        present[identity] = max(present.get(identity, 0), _rank(run.data.tags["status"]))
    added = skipped = 0
    for number, record in enumerate(_records(path), start=1):
        if present.get(_identity(record["tags"]), 0) >= _rank(record["tags"]["status"]):
            skipped += 1
            continue
        progress(f"run {number} of {header['runs']}: {record['tags'][KEY_TAG]}")
        patiently(lambda r=record: _import_run(client, experiment_id, r, path.name), uri)
        added += 1
    return added, skipped


def _rank(outcome: str) -> int:
    return 2 if outcome in FINAL_STATUSES else 1


def _checked(path: Path) -> dict[str, Any]:
    """The archive's header, once every line has been read and checked: a damaged file imports nothing."""
    if not path.is_file():
        raise ArchiveError(f"no archive at {path}; `grokbench export` writes one")
    damaged = f"{path} is damaged ({{}}); nothing was imported; export it again"
    try:
        with gzip.open(path, "rt") as stream:
            header = json.loads(stream.readline())
    except (EOFError, zlib.error) as err:
        raise ArchiveError(damaged.format(err)) from None
    except (OSError, ValueError):  # not gzip (BadGzipFile is an OSError), or not JSON
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT or "experiment" not in header:
        raise ArchiveError(f"{path} is not a grokbench archive ({FORMAT}, written by `grokbench export`)")
    count = 0
    try:
        for record in _records(path):
            count += 1
            _check_record(record, count)
    except (OSError, EOFError, ValueError, TypeError, zlib.error) as err:
        raise ArchiveError(damaged.format(err)) from None
    if count != header.get("runs"):
        raise ArchiveError(f"{path} is incomplete ({count} of {header.get('runs')} runs); nothing was imported; "
                           "export it again")
    return header


def _check_record(record: Any, number: int) -> None:
    if not isinstance(record, dict) or any(k not in record for k in RECORD_KEYS):
        raise ValueError(f"run {number} is not a run record")
    if not isinstance(record["tags"], dict) or not _identity(record["tags"]) or \
            record["tags"].get("status") not in OUTCOMES:
        raise ValueError(f"run {number} lacks its sweep id, trial key or outcome")
    for history in record["metrics"].values():
        if any(len(point) != 3 for point in history):
            raise ValueError(f"run {number} has a metric point that is not [step, value, timestamp]")


def _records(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt") as stream:
        next(stream)
        for line in stream:
            yield json.loads(line)


def _import_run(client, experiment_id: str, record: dict[str, Any], source: str) -> None:
    """One run, safe to repeat: a copy already complete is only closed again, and one an earlier import left
    part-way (no outcome yet: the outcome tag is written last) is deleted and made again."""
    from mlflow.entities import Metric, Param, RunTag

    tags = {k: v for k, v in record["tags"].items() if k != "mlflow.runName"}  # create_run names it
    outcome = tags.pop("status")
    same_trial = f"tags.`{SWEEP_TAG}` = '{tags[SWEEP_TAG]}' and tags.`{KEY_TAG}` = '{tags[KEY_TAG]}'"
    for earlier in client.search_runs([experiment_id], filter_string=same_trial):
        if IMPORTED_TAG not in earlier.data.tags:
            continue
        if earlier.data.tags.get("status") == outcome:
            client.set_terminated(earlier.info.run_id, status=record["status"], end_time=record["end_time"])
            return
        if "status" not in earlier.data.tags:
            client.delete_run(earlier.info.run_id)
    run_id = client.create_run(experiment_id, start_time=record["start_time"], run_name=record["run_name"],
                               tags={**tags, IMPORTED_TAG: source}).info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in record["params"].items()])
    points = [Metric(key, value, timestamp, step)
              for key, history in record["metrics"].items() for step, value, timestamp in history]
    for start in range(0, len(points), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=points[start:start + MAX_METRICS_PER_BATCH])
    for name, text in record["artifacts"].items():
        client.log_text(run_id, text, name)
    client.log_batch(run_id, tags=[RunTag("status", outcome)])
    client.set_terminated(run_id, status=record["status"], end_time=record["end_time"])
