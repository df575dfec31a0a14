"""`grokbench export` / `grokbench import`: an experiment's finished runs as one portable file, and back.

A tracking store lives on one machine; results that took CPU-hours should outlive it. The archive is gzip'd JSON
lines: a header (with the experiment's `best.*` tags: what its searches found), then one finished run a line with
its params, tags, text artifacts and every metric's whole history (step, value, timestamp; values exact, NaN
written as JSON's common `NaN` extension). Importing recreates the runs in any store (new run ids, the same tags
and dataset inputs), so the tables come out the same and `grokbench sweep` skips the trials the archive holds: a
sweep stopped on one machine goes on, trial by trial, on another. Importing twice adds nothing.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from grokbench.sweep.errors import SweepError
from grokbench.sweep.keys import FINAL_STATUSES, KEY_TAG, SWEEP_TAG, experiment_name, outcome_rank
from grokbench.sweep.mlflow_store import BEST_PREFIX, CHECKPOINT_TAG, TrackingStore
from grokbench.sweep.retry import patiently

FORMAT = "grokbench-runs/1"
OUTCOMES = (*FINAL_STATUSES, "failed")  # a failed trial is a record too (the tables count it apart)
TEXT_ARTIFACTS = ("config.json", "summary.json")
IMPORTED_TAG = "grokbench.imported_from"
RECORD_KEYS = ("run_name", "start_time", "end_time", "status", "params", "tags", "metrics", "artifacts")
# and "datasets" (the run's dataset inputs), which archives written before runs had them lack

log = logging.getLogger("grokbench.sweep.archive")


class ArchiveError(SweepError):
    """The archive or the experiment asked for is missing or not what it should be."""


def export_runs(uri: str, experiment: str, path: Path) -> int:
    """Write the experiment's runs that have an outcome (or failed) to `path`; returns how many. The file appears
    whole or not at all."""
    name = experiment_name(experiment)
    store = TrackingStore(uri)
    experiment_id = store.experiment_id(name)
    if experiment_id is None:
        raise ArchiveError(f"no experiment {name} in {uri}; pass the sweep's name (e.g. mnist) and its --tracking-uri")
    finished = store.runs_with_outcome(experiment_id, OUTCOMES)
    runs = [r for r in finished if _identity(r.data.tags)]
    if len(runs) < len(finished):  # not made by a sweep: nothing would say which trial it is
        log.warning(
            "left out %d finished runs without the %s and %s tags", len(finished) - len(runs), SWEEP_TAG, KEY_TAG
        )
    if not runs:
        raise ArchiveError(f"{name} in {uri} has no finished run of a grokbench sweep; nothing to export")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with gzip.open(partial, "wt") as stream:
            header = {"format": FORMAT, "experiment": name, "runs": len(runs), "best": store.best_tags(name)}
            stream.write(json.dumps(header) + "\n")
            for run in sorted(runs, key=lambda r: r.info.start_time):
                stream.write(json.dumps(_run_record(store, run)) + "\n")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return len(runs)


def _identity(tags: dict[str, str]) -> tuple[str, str] | None:
    """(sweep id, trial key): which trial a run is, in any store."""
    return (tags[SWEEP_TAG], tags[KEY_TAG]) if SWEEP_TAG in tags and KEY_TAG in tags else None


def _run_record(store: TrackingStore, run) -> dict[str, Any]:
    run_id = run.info.run_id
    metrics = {key: [list(point) for point in store.metric_history(run_id, key)] for key in sorted(run.data.metrics)}
    return {
        "run_name": run.info.run_name,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "status": run.info.status,
        "params": run.data.params,
        "tags": run.data.tags,
        "metrics": metrics,
        "artifacts": store.text_artifacts(run_id, TEXT_ARTIFACTS),
        "datasets": store.datasets(run),
    }


def import_runs(path: Path, uri: str, progress: Callable[[str], None] = lambda _: None) -> tuple[int, int]:
    """Add the archive's runs to the store at `uri`; returns (added, already there). A run is already there when
    the store holds its trial (sweep id and trial key) with the same outcome or a better one (a real outcome is
    better than a failure)."""
    header = _checked(path)
    store = TrackingStore(uri)
    experiment_id = patiently(lambda: store.prepare_experiment(header["experiment"]), uri)
    # what the experiment's searches found (archives written before they carried it have none)
    patiently(lambda: store.set_experiment_tags(experiment_id, header.get("best", {})), uri)
    present: dict[tuple[str, str], int] = {}
    for run in patiently(lambda: store.runs_with_outcome(experiment_id, OUTCOMES), uri):
        identity = _identity(run.data.tags)
        present[identity] = max(present.get(identity, 0), outcome_rank(run.data.tags["status"]))
    added = skipped = 0
    for number, record in enumerate(_records(path), start=1):
        if present.get(_identity(record["tags"]), 0) >= outcome_rank(record["tags"]["status"]):
            skipped += 1
            continue
        progress(f"run {number} of {header['runs']}: {record['tags'][KEY_TAG]}")
        patiently(lambda r=record: _import_run(store, experiment_id, r, path.name), uri)
        added += 1
    return added, skipped


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
    if not _valid_best_tags(header.get("best", {})):
        raise ArchiveError(
            damaged.format(
                f"its header's best settings are not {BEST_PREFIX}<sweep>.<method>.<setting> tags with numbers"
            )
        )
    count = 0
    try:
        for record in _records(path):
            count += 1
            _check_record(record, count)
    except (OSError, EOFError, ValueError, TypeError, zlib.error) as err:
        raise ArchiveError(damaged.format(err)) from None
    if count != header.get("runs"):
        raise ArchiveError(
            f"{path} is incomplete ({count} of {header.get('runs')} runs); nothing was imported; export it again"
        )
    return header


def _valid_best_tags(best: Any) -> bool:
    """What an Optuna search found, as `search_best` reads it back: best.<sweep>.<method>.<setting> → a number."""
    if not isinstance(best, dict):
        return False
    for key, value in best.items():
        if not (isinstance(key, str) and TrackingStore.best_tag_parts(key) and isinstance(value, str)):
            return False
        try:
            float(value)
        except ValueError:
            return False
    return True


def _check_record(record: Any, number: int) -> None:
    if not isinstance(record, dict) or any(k not in record for k in RECORD_KEYS):
        raise ValueError(f"run {number} is not a run record")
    if (
        not isinstance(record["tags"], dict)
        or not _identity(record["tags"])
        or record["tags"].get("status") not in OUTCOMES
    ):
        raise ValueError(f"run {number} lacks its sweep id, trial key or outcome")
    if not isinstance(record.get("datasets", []), list):
        raise ValueError(f"run {number} has datasets that are not a list")
    for history in record["metrics"].values():
        if any(len(point) != 3 for point in history):
            raise ValueError(f"run {number} has a metric point that is not [step, value, timestamp]")


def _records(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt") as stream:
        next(stream)
        for line in stream:
            yield json.loads(line)


def _import_run(store: TrackingStore, experiment_id: str, record: dict[str, Any], source: str) -> None:
    """One run, safe to repeat: a copy already complete is only closed again, and one an earlier import left
    part-way (no outcome yet: the outcome tag is written last) is deleted and made again."""
    # create_run names it; the checkpoint tag leads to a file on the machine that ran the trial, not this one
    tags = {k: v for k, v in record["tags"].items() if k not in ("mlflow.runName", CHECKPOINT_TAG)}
    outcome = tags.pop("status")
    for earlier in store.trial_runs([experiment_id], tags[SWEEP_TAG], tags[KEY_TAG]):
        if IMPORTED_TAG not in earlier.data.tags:
            continue
        if earlier.data.tags.get("status") == outcome:
            store.terminate(earlier.info.run_id, record["status"], record["end_time"])
            return
        if "status" not in earlier.data.tags:
            store.delete_run(earlier.info.run_id)
    run_id = store.create_run(
        experiment_id, record["run_name"], {**tags, IMPORTED_TAG: source}, start_time=record["start_time"]
    )
    points = [
        (key, value, timestamp, step)
        for key, history in record["metrics"].items()
        for step, value, timestamp in history
    ]
    store.log_batch(run_id, metrics=points, params=record["params"])
    for dataset in record.get("datasets", []):
        store.log_dataset(run_id, dataset)
    for name, text in record["artifacts"].items():
        store.log_text(run_id, text, name)
    store.log_batch(run_id, tags={"status": outcome})
    store.terminate(run_id, record["status"], record["end_time"])
