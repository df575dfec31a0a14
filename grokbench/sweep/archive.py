"""`grokbench export` / `grokbench import`: an experiment's finished runs as one portable file, and back.

A tracking store lives on one machine; results that took CPU-hours should outlive it. The archive is gzip'd JSON
lines: a header (with the experiment's `best.*` tags: what its searches found), then the experiment's parent runs
(of its sweeps and benchmarks: their tags, params, metrics and text artifacts), then one finished trial run a line
with its params, tags, text artifacts and every metric's whole history (step, value, timestamp; values exact, NaN
written as JSON's common `NaN` extension). Importing recreates the runs in any store (new run ids, the same tags
and dataset inputs; each child's `mlflow.parentRunId` points at its parent's new run), so the tables come out the
same and `grokbench sweep` skips the trials the archive holds: a sweep stopped on one machine goes on, trial by
trial, on another. Importing twice adds nothing. Archives of format 1, written before runs had parents, hold no
parent runs and import as they always did.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import zlib
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from grokbench.sweep.errors import SweepError
from grokbench.sweep.keys import FINAL_STATUSES, KEY_TAG, SWEEP_TAG, experiment_name, outcome_rank
from grokbench.sweep.mlflow_store import BEST_PREFIX, CHECKPOINT_TAG, PARENT_RUN_TAG, PARENT_TAG, TrackingStore
from grokbench.sweep.retry import patiently
from grokbench.sweep.storage import NAME

FORMAT = "grokbench-runs/2"  # 2: parent runs, and every record's run id (a child's parent link names one)
READABLE = ("grokbench-runs/1", FORMAT)
OUTCOMES = (*FINAL_STATUSES, "failed")  # a failed trial is a record too (the tables count it apart)
TEXT_ARTIFACTS = ("config.json", "summary.json")
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")  # MLflow's
IMPORTED_TAG = "grokbench.imported_from"
RECORD_KEYS = ("run_name", "start_time", "end_time", "status", "params", "tags", "metrics", "artifacts")
# and "datasets" (the run's dataset inputs), which archives written before runs had them lack

log = logging.getLogger("grokbench.sweep.archive")


class ArchiveError(SweepError):
    """The archive or the experiment asked for is missing or not what it should be."""


def export_runs(uri: str, experiment: str, path: Path) -> int:
    """Write the experiment's parent runs, and its trial runs that have an outcome (or failed), to `path`; returns
    how many trial runs. The file appears whole or not at all."""
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
    # made by `TrackingStore.parent_run`, every parent has its identity; one without could not be told apart
    parents = [r for r in store.parent_runs(experiment_id) if len(TrackingStore.parent_identity(r.data.tags)) > 1]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with gzip.open(partial, "wt") as stream:
            header = {"format": FORMAT, "experiment": name, "runs": len(runs), "parents": len(parents)}
            stream.write(json.dumps({**header, "best": store.best_tags(name)}) + "\n")
            for run in parents:  # first: an import makes them before the children that point at them
                stream.write(json.dumps(_run_record(store, run, None)) + "\n")
            for run in sorted(runs, key=lambda r: r.info.start_time):
                stream.write(json.dumps(_run_record(store, run, TEXT_ARTIFACTS)) + "\n")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return len(runs)


def _identity(tags: dict[str, str]) -> tuple[str, str] | None:
    """(sweep id, trial key): which trial a run is, in any store."""
    return (tags[SWEEP_TAG], tags[KEY_TAG]) if SWEEP_TAG in tags and KEY_TAG in tags else None


def _is_parent(tags: dict[str, str]) -> bool:
    return PARENT_TAG in tags and KEY_TAG not in tags


def _run_record(store: TrackingStore, run, artifacts: tuple[str, ...] | None) -> dict[str, Any]:
    """The run as an archive's line; with its text artifacts of these names (None: every one)."""
    run_id = run.info.run_id
    metrics = {key: [list(point) for point in store.metric_history(run_id, key)] for key in sorted(run.data.metrics)}
    return {
        "run_id": run_id,
        "run_name": run.info.run_name,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "status": run.info.status,
        "params": run.data.params,
        "tags": run.data.tags,
        "metrics": metrics,
        "artifacts": store.text_artifacts(run_id, artifacts),
        "datasets": store.datasets(run),
    }


def import_runs(path: Path, uri: str, progress: Callable[[str], None] = lambda _: None) -> tuple[int, int]:
    """Add the archive's runs to the store at `uri`; returns (trial runs added, already there). A trial run is
    already there when the store holds its trial (sweep id and trial key) with the same outcome or a better one (a
    real outcome is better than a failure); a parent run, when the store holds a parent of its kind and identity."""
    header = _checked(path)
    store = TrackingStore(uri)
    experiment_id = patiently(lambda: store.prepare_experiment(header["experiment"]), uri)
    # what the experiment's searches found (archives written before they carried it have none)
    patiently(lambda: store.set_experiment_tags(experiment_id, header.get("best", {})), uri)
    parents = {  # the parent's run id in the archive → in this store
        record["run_id"]: patiently(lambda r=record: _import_parent(store, experiment_id, r, path.name), uri)
        for record in _records(path)
        if _is_parent(record["tags"])
    }
    present: dict[tuple[str, str], int] = {}
    for run in patiently(lambda: store.runs_with_outcome(experiment_id, OUTCOMES), uri):
        identity = _identity(run.data.tags)
        present[identity] = max(present.get(identity, 0), outcome_rank(run.data.tags["status"]))
    added = skipped = 0
    trials = (record for record in _records(path) if not _is_parent(record["tags"]))
    for number, record in enumerate(trials, start=1):
        if present.get(_identity(record["tags"]), 0) >= outcome_rank(record["tags"]["status"]):
            skipped += 1
            continue
        progress(f"run {number} of {header['runs']}: {record['tags'][KEY_TAG]}")
        patiently(lambda r=record: _import_run(store, experiment_id, r, path.name, parents), uri)
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
    if not isinstance(header, dict) or header.get("format") not in READABLE or not _named(header.get("experiment")):
        raise ArchiveError(f"{path} is not a grokbench archive ({FORMAT}, written by `grokbench export`)")
    if not _valid_best_tags(header.get("best", {})):
        raise ArchiveError(
            damaged.format(
                f"its header's best settings are not {BEST_PREFIX}<sweep>.<method>.<setting> tags with numbers"
            )
        )
    counts = {"runs": 0, "parents": 0}
    try:
        for number, record in enumerate(_records(path), start=1):
            _check_record(record, number)
            counts["parents" if _is_parent(record["tags"]) else "runs"] += 1
    except (OSError, EOFError, ValueError, TypeError, zlib.error) as err:
        raise ArchiveError(damaged.format(err)) from None
    expected = {"runs": header.get("runs"), "parents": header.get("parents", 0)}  # format 1 had no parents
    if counts != expected:
        named = {"runs": "runs", "parents": "parent runs"}
        what = ", ".join(f"{counts[k]} of {expected[k]} {named[k]}" for k in counts if counts[k] != expected[k])
        raise ArchiveError(f"{path} is incomplete ({what}); nothing was imported; export it again")
    return header


def _named(experiment: Any) -> bool:
    return isinstance(experiment, str) and bool(experiment.strip())


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
    if not isinstance(record["tags"], dict):
        raise ValueError(f"run {number} is not a run record")
    if _is_parent(record["tags"]):
        identity = TrackingStore.parent_identity(record["tags"])
        names = [*identity, *identity.values()]  # each goes into a search filter
        if len(identity) < 2 or not all(NAME.fullmatch(n) for n in names) or not isinstance(record.get("run_id"), str):
            raise ValueError(f"run {number} is a parent run without its run id or identifying tags")
    elif not _identity(record["tags"]) or record["tags"].get("status") not in OUTCOMES:
        raise ValueError(f"run {number} lacks its sweep id, trial key or outcome")
    if not isinstance(record.get("datasets", []), list) or not all(map(_is_dataset, record.get("datasets", []))):
        raise ValueError(f"run {number} has datasets that are not a list of dataset inputs")
    if not all(_is_text_map(record[k]) for k in ("params", "tags", "artifacts")) or not _are_paths(record["artifacts"]):
        raise ValueError(f"run {number} has params, tags or artifacts that are not names and texts")
    if not isinstance(record["run_name"], str) or record["status"] not in RUN_STATUSES:
        raise ValueError(f"run {number} has a run name that is not text, or a status not MLflow's")
    if not _whole(record["start_time"]) or not (_whole(record["end_time"]) or record["end_time"] is None):
        raise ValueError(f"run {number} has a start or end time that is not a whole number of milliseconds")
    metrics = record["metrics"]
    if not isinstance(metrics, dict) or not all(_is_history(h) for h in metrics.values()):
        raise ValueError(f"run {number} has a metric point that is not [step, value, timestamp]")


def _is_text_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _are_paths(artifacts: dict[str, str]) -> bool:
    """Artifact names stay inside the run's artifacts: relative, no `..` (a damaged name must not write elsewhere)."""
    return all(name and not os.path.isabs(name) and ".." not in Path(name).parts for name in artifacts)


def _is_dataset(value: Any) -> bool:
    keys = ("name", "digest", "source_type", "source")
    return (
        isinstance(value, dict)
        and all(isinstance(value.get(k), str) for k in keys)
        and isinstance(value.get("profile"), str | None)
        and _is_text_map(value.get("tags", {}))
    )


def _whole(n: Any) -> bool:
    """A step, a timestamp: an integer the store holds (64 bits)."""
    return isinstance(n, int) and not isinstance(n, bool) and -(2**63) <= n < 2**63


def _is_history(history: Any) -> bool:
    return isinstance(history, list) and all(
        isinstance(p, list)
        and len(p) == 3
        and _whole(p[0])
        and _whole(p[2])
        and (isinstance(p[1], float) or _whole(p[1]))
        for p in history
    )


def _records(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt") as stream:
        next(stream)
        for line in stream:
            yield json.loads(line)


def _import_parent(store: TrackingStore, experiment_id: str, record: dict[str, Any], source: str) -> str:
    """The parent run's id in this store: its own run where the archive came from this store, else its copy, made
    now or by an earlier import (then written again: whatever that import left undone is done, nothing doubled)."""
    identity = TrackingStore.parent_identity(record["tags"])
    kind = identity.pop(PARENT_TAG)
    found = store.parent_runs(experiment_id, kind, identity)
    if found and IMPORTED_TAG not in found[0].data.tags:
        return found[0].info.run_id
    # its own parent link, were it a child, would name a run of the archive's store
    tags = {k: v for k, v in record["tags"].items() if k not in ("mlflow.runName", PARENT_RUN_TAG)}
    if found:
        run = found[0]
        run_id, logged, params = run.info.run_id, set(run.data.metrics), run.data.params
    else:
        run_id = store.create_run(
            experiment_id, record["run_name"], {**tags, IMPORTED_TAG: source}, start_time=record["start_time"]
        )
        logged, params = set(), {}
    fresh = {k: v for k, v in record["params"].items() if k not in params}  # a param is written once, never changed
    store.log_batch(run_id, metrics=_points(record, leave_out=logged), params=fresh, tags=tags)
    for name, text in record["artifacts"].items():
        store.log_text(run_id, text, name)
    if record["status"] != "RUNNING":
        store.terminate(run_id, record["status"], record["end_time"])
    return run_id


def _points(record: dict[str, Any], leave_out: Collection[str] = ()) -> list[tuple[str, float, int, int]]:
    """Every metric point of a record as `TrackingStore.log_batch` takes them, but those of metrics left out."""
    return [
        (key, value, timestamp, step)
        for key, history in record["metrics"].items()
        if key not in leave_out
        for step, value, timestamp in history
    ]


def _import_run(
    store: TrackingStore, experiment_id: str, record: dict[str, Any], source: str, parents: dict[str, str]
) -> None:
    """One run, safe to repeat: a copy already complete is only closed again, and one an earlier import left
    part-way (no outcome yet: the outcome tag is written last) is deleted and made again. Its parent link points at
    its parent's run in this store (`parents`: archive's run id → this store's), or is left out where the archive
    holds no such parent."""
    # create_run names it; the checkpoint tag leads to a file on the machine that ran the trial, not this one
    tags = {k: v for k, v in record["tags"].items() if k not in ("mlflow.runName", CHECKPOINT_TAG, PARENT_RUN_TAG)}
    parent = parents.get(record["tags"].get(PARENT_RUN_TAG, ""))
    if parent:
        tags[PARENT_RUN_TAG] = parent
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
    store.log_batch(run_id, metrics=_points(record), params=record["params"])
    for dataset in record.get("datasets", []):
        store.log_dataset(run_id, dataset)
    for name, text in record["artifacts"].items():
        store.log_text(run_id, text, name)
    store.log_batch(run_id, tags={"status": outcome})
    store.terminate(run_id, record["status"], record["end_time"])
