"""The Tune callback on the driver that records each trial as one MLflow run, written by this single process.

Runs are owned by the sweep, not by Tune: each carries the sweep id and the trial's stable key as tags, so a
resumed or retried trial finds and continues its run, and metric points at steps already logged are skipped
(MLflow cannot delete a point, so none may be written twice). Each run also says where it came from (MLflow's
user, source and git tags), which data it trained on (a dataset input) and where its latest checkpoint is. Given a
parent run (`TrackingStore.parent_run`), each run it creates is that run's child; a run it continues from another
sweep keeps the parent it had.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ray import tune

from grokbench.machine import as_tags
from grokbench.sweep.errors import TrackingError
from grokbench.sweep.keys import FINAL_STATUSES, KEY_TAG, STOPPED_BY, STOPPED_BY_TAG, SWEEP_TAG, VERSION_TAG, trial_key
from grokbench.sweep.mlflow_store import (
    CHECKPOINT_TAG,
    CURVE_SENTINEL,
    MAX_METRICS_PER_BATCH,
    PARENT_RUN_TAG,
    TrackingStore,
)
from grokbench.sweep.provenance import code_version, context_tags
from grokbench.sweep.retry import patiently

T = TypeVar("T")

NOT_SUMMARY_METRICS = ("seed", "lr", "train_time_s")  # params, and a curve already logged at the final step


def checkpoint_uri(checkpoint: tune.Checkpoint) -> str:
    """A checkpoint's path, with its file system's scheme where it is not local (s3://bucket/...)."""
    kind = checkpoint.filesystem.type_name if checkpoint.filesystem is not None else "local"
    return checkpoint.path if kind == "local" else f"{kind}://{checkpoint.path}"


class TrialRuns(tune.Callback):
    """Owns one MLflow run per trial. Pickled with the Tuner as its settings alone, so that a resumed sweep's
    restored callback is made afresh from them (and a newer grokbench can restore an older sweep)."""

    def __init__(self, uri: str, experiment_id: str, sweep_id: str, parent_run_id: str | None = None):
        self.uri = uri
        self.experiment_id = experiment_id
        self.sweep_id = sweep_id
        self.parent_run_id = parent_run_id  # the run every run this callback creates is a child of
        self.store = TrackingStore(uri)
        self.version = code_version()
        self.context = context_tags()  # of this driver process, which creates the runs
        self._runs: dict[str, tuple[str, int]] = {}  # trial key → (run id, last logged step)
        self._nodes: dict[str, str] = {}  # trial key → the Ray node its latest attempt runs on
        self._datasets: set[str] = set()  # trial keys whose dataset input this driver has logged
        self.failure: TrackingError | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "experiment_id": self.experiment_id,
            "sweep_id": self.sweep_id,
            "parent_run_id": self.parent_run_id,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a sweep started before sweeps had parent runs was pickled without one
        self.__init__(state["uri"], state["experiment_id"], state["sweep_id"], state.get("parent_run_id"))

    def _patiently(self, call: Callable[[], T]) -> T:
        if self.failure:  # the store is gone: write nothing more, wait no more
            raise self.failure
        try:
            return patiently(call, self.uri)
        except TrackingError as err:
            self.failure = err
            raise

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        # Tune turns some callbacks' errors into trial failures (and retries the trial); this one ends the sweep
        if self.failure:
            raise self.failure

    def _run(self, trial: Any) -> tuple[str, str, int]:
        """(trial key, run id, last logged step), from the cache, else from MLflow, else a new run."""
        config = trial.config["trial"]["config"]
        key = trial_key(config)
        continued = trial.config["trial"].get("continue")
        if key not in self._runs and continued:
            self._runs[key] = self._patiently(lambda: self.store.reopen_run(continued["run_id"], self.sweep_id))
        elif key not in self._runs:
            # find-or-create as one retried unit: a create whose answer was lost is found by its tags next time
            extra = trial.config["trial"].get("tags", {})
            found = self._patiently(
                lambda: (
                    self.store.find_trial_run(self.experiment_id, self.sweep_id, key)
                    or (self._create_run(key, config, extra), -1)
                )
            )
            self._log_settings(found[0], key, config)
            self._runs[key] = found  # only now: a run whose settings are not in it is never written to
        return (key, *self._runs[key])

    def _create_run(self, key: str, config: dict[str, Any], extra: dict[str, str]) -> str:
        """A new run of the trial; `extra`: tags its Tune config asks for (a benchmark trial's coordinates)."""
        tags = {
            **extra,
            SWEEP_TAG: self.sweep_id,
            KEY_TAG: key,
            "method": config["method"],
            "loss": config["loss"],
            "seed": str(config["seed"]),
            "task": config["task"],
            "status": "running",
            VERSION_TAG: self.version,
        }
        if self.parent_run_id:
            tags[PARENT_RUN_TAG] = self.parent_run_id
        return self.store.create_run(self.experiment_id, key, {**self.context, **tags})

    def _log_settings(self, run_id: str, key: str, config: dict[str, Any]) -> None:
        """The resolved config as config.json and as params, unless an earlier attempt logged them (the params,
        written last, mark both as done). A store that refuses them ends the sweep: every reader of the run needs
        its params, and a resume tries again."""
        if self._patiently(lambda: self.store.get_run(run_id).data.params):
            return  # a resumed sweep may run newer code: its params stay those the run started with
        params = {k: "None" if v is None else str(v) for k, v in sorted(config.items())}
        params["code_version"] = self.version
        try:
            self._patiently(
                lambda: self.store.log_text(run_id, json.dumps(config, indent=2, default=str), "config.json")
            )
            self._patiently(lambda: self.store.log_batch(run_id, params=params))
        except TrackingError:
            raise
        except Exception as err:  # not transient (transient ones `_patiently` waited out): retrying will not help
            first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
            self.failure = TrackingError(
                f"the tracking store {self.uri} refused the settings of trial {key} (run {run_id}): {first_line}; "
                "nothing more is logged to a run without them: fix the cause and continue with --resume"
            )
            raise self.failure from err

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run(trial)[1]
        self._patiently(lambda: self.store.mark_running(run_id))  # a resumed run was KILLED by the interruption

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        key, run_id, last_step = self._run(trial)
        now = int(time.time() * 1000)  # one timestamp per result, so a resent batch duplicates nothing
        node = result.get("node_id")
        if node and self._nodes.get(key) != node:
            self._patiently(lambda: self.store.set_tag(run_id, "node_id", node))
            self._nodes[key] = node
        if "dataset" in result and key not in self._datasets:
            self._patiently(lambda: self.store.log_dataset(run_id, result["dataset"]))
            self._datasets.add(key)
        fresh = [point for point in result.get("curve", []) if point["step"] > last_step]
        for batch in curve_batches(fresh, now):
            self._patiently(lambda batch=batch: self.store.log_batch(run_id, metrics=batch))
        if fresh:
            self._runs[key] = (run_id, fresh[-1]["step"])
        if "summary" in result:
            self._log_summary(run_id, result["summary"], int(result["step"]), result.get("machine", {}))
        elif result.get(STOPPED_BY):
            self._log_stopped(run_id, result[STOPPED_BY], int(result["step"]))

    def _log_stopped(self, run_id: str, stopper: str, step: int) -> None:
        """A trial a stopper ended before its outcome (the benchmark's r_max stopper: a miss) is censored at its
        step, so that a resume does not run it again."""
        tags = {"status": "censored", STOPPED_BY_TAG: stopper}
        stamp = self._patiently(lambda: self.store.get_run(run_id)).info.start_time
        self._patiently(lambda: self.store.log_batch(run_id, metrics=[("steps", float(step), stamp, step)], tags=tags))

    def _log_summary(self, run_id: str, summary: dict[str, Any], step: int, machine: dict[str, str]) -> None:
        run = self._patiently(lambda: self.store.get_run(run_id))
        if run.data.tags.get("status") in FINAL_STATUSES:
            return  # logged before the driver died; the resumed trial only repeated its last report
        numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        # stamped with the run's start, not the clock: a summary half-logged before the driver died and sent again
        # after a resume is then the same points, not new ones
        stamp = run.info.start_time
        metrics = [(k, float(v), stamp, step) for k, v in numbers.items() if k not in NOT_SUMMARY_METRICS]
        tags = {"status": summary["status"], "grokked_before_memorised": str(summary["grokked_before_memorised"])}
        tags.update(as_tags(machine) if machine else {})  # where its seconds were measured
        # the summary file first: the status tag marks the summary as logged, so it is written last
        self._patiently(lambda: self.store.log_text(run_id, json.dumps(summary, indent=2), "summary.json"))
        self._patiently(lambda: self.store.log_batch(run_id, metrics=metrics, tags=tags))

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: tune.Checkpoint, **info: Any) -> None:
        # Tune reports an error raised here with a traceback and goes on; a store that is gone ends the sweep from
        # on_step_begin instead (`_patiently` has recorded it), with one clear message
        try:
            run_id = self._run(trial)[1]
            self._patiently(lambda: self.store.set_tag(run_id, CHECKPOINT_TAG, checkpoint_uri(checkpoint)))
        except TrackingError:
            return

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run(trial)[1]
        self._patiently(lambda: self.store.terminate(run_id, "FINISHED"))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run(trial)[1]
        if self._patiently(lambda: self.store.get_run(run_id).data.tags.get("status")) in FINAL_STATUSES:
            # it died after reporting its outcome: the outcome stands
            self._patiently(lambda: self.store.terminate(run_id, "FINISHED"))
            return
        self._patiently(lambda: self.store.set_tag(run_id, "status", "failed"))
        self._patiently(lambda: self.store.terminate(run_id, "FAILED"))


def curve_batches(points: list[dict[str, Any]], timestamp: int) -> list[list[tuple[str, float, int, int]]]:
    """Whole evaluation points per batch, the sentinel last in each: a driver killed between two batches leaves no
    point half-logged that a resume would skip as done."""
    batches: list[list] = [[]]
    for point in points:
        names = sorted((k for k in point if k not in ("step", CURVE_SENTINEL)), key=str) + [CURVE_SENTINEL]
        entries = [(k, float(point[k]), timestamp, point["step"]) for k in names if point.get(k) is not None]
        if len(batches[-1]) + len(entries) > MAX_METRICS_PER_BATCH:
            batches.append([])
        batches[-1] += entries
    return [batch for batch in batches if batch]
