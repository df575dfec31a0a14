"""MLflow on the driver: one experiment per sweep file, one run per trial, written by a single process.

Runs are owned by the sweep, not by Tune: each carries the sweep id and the trial's stable key as tags, so a
resumed or retried trial finds and continues its run, and metric points at steps already logged are skipped
(MLflow cannot delete a point, so none may be written twice).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ray import tune

import grokbench
from grokbench.sweep.errors import TrackingError
from grokbench.sweep.keys import FINAL_STATUSES, KEY_TAG, SWEEP_TAG, trial_key

T = TypeVar("T")

# every evaluation logs it, as the last metric of its point: its last step is the run's last logged step
CURVE_SENTINEL = "train_acc"
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call
NOT_SUMMARY_METRICS = ("seed", "train_time_s")  # a param, and a curve already logged at the final step
PATIENCE_ENV = "GROKBENCH_TRACKING_PATIENCE_S"  # how long the driver waits out a tracking store that is down
DEFAULT_PATIENCE_S = 300.0


def absolute_uri(uri: str) -> str:
    """Trials and the driver must agree on one store: relative SQLite paths are made absolute here."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    if "://" not in uri:
        raise TrackingError(f"tracking URI {uri!r} is not a URI; use sqlite:///path/to/mlflow.db or http://host:port")
    return uri


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
                response.read()
        except (urllib.error.URLError, OSError) as err:
            raise TrackingError(
                f"the MLflow tracking server at {uri} does not answer ({getattr(err, 'reason', err)}); "
                "start it (mlflow server ...) or pass --tracking-uri / MLFLOW_TRACKING_URI"
            ) from None
    elif uri.startswith("sqlite:///"):
        directory = Path(uri[len("sqlite:///"):]).parent
        if not directory.is_dir():
            raise TrackingError(f"the directory of the SQLite tracking store {directory} does not exist")


def prepare_experiment(uri: str, name: str) -> str:
    """Create the sweep's experiment once, from the driver (trials never create it), and return its id."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):  # next to the database, not in whatever directory a process runs in
        artifact_location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    experiment_id = client.create_experiment(name, artifact_location=artifact_location)
    # the MLflow 3 UI opens in its GenAI view; this tag makes it show the runs table and charts
    client.set_experiment_tag(experiment_id, "mlflow.experimentKind", "custom_model_development")
    return experiment_id


RETRYABLE_HTTP = (408, 429, 500, 502, 503, 504)  # timeouts, overload, a server restarting or down


def is_transient(err: Exception) -> bool:
    """A server restart, a dropped connection or a locked database (worth waiting out), not a rejected request."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException):  # connection errors arrive as INTERNAL_ERROR (500), and so do SQL ones
        text = str(err)
        if "sqlite" in text.lower() or "database schema" in text:  # of a SQL store, only a lock passes
            return "database is locked" in text
        return err.get_http_status_code() in RETRYABLE_HTTP
    if isinstance(err, requests.HTTPError):  # an artifact upload the server answered
        return err.response is not None and err.response.status_code in RETRYABLE_HTTP
    # requests' and urllib3's connection errors are OSErrors; a local artifact directory's are not transient
    return isinstance(err, OSError) and not isinstance(err, (PermissionError, FileNotFoundError))


def retry_only_patiently() -> None:
    """Leave retrying to `patiently`: MLflow's HTTP layer would re-send a POST (creating a second run) and wait
    minutes per call before a caller can say anything."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def tracking_patience_s() -> float:
    text = os.environ.get(PATIENCE_ENV, str(DEFAULT_PATIENCE_S))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise TrackingError(f"{PATIENCE_ENV}={text!r}: must be a number of seconds >= 0")
    return value


def patiently(call: Callable[[], T], uri: str, patience_s: float | None = None) -> T:
    """`call()`, retried with backoff while the tracking store is unreachable, for up to `patience_s` (default
    GROKBENCH_TRACKING_PATIENCE_S, else 5 minutes).

    Only for idempotent calls: a write whose response was lost may already have been applied, and is sent again.
    """
    patience_s = tracking_patience_s() if patience_s is None else patience_s
    deadline = time.monotonic() + patience_s
    wait = 1.0
    while True:
        try:
            return call()
        except Exception as err:
            if not is_transient(err):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TrackingError(
                    f"the MLflow tracking store {uri} has not answered for {patience_s:.0f} s ({err}); "
                    "bring it back and continue the sweep with --resume"
                ) from err
            print(f"tracking store {uri} unreachable ({type(err).__name__}); retrying in {min(wait, remaining):.0f} s",
                  file=sys.stderr, flush=True)
            time.sleep(min(wait, remaining))
            wait = min(wait * 2, 30.0)


def runs_link(uri: str, experiment_id: str) -> str:
    base = uri.rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def code_version() -> str:
    root = Path(grokbench.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{grokbench.__version__}+{sha}" if sha else grokbench.__version__


class TrialRuns(tune.Callback):
    """A Tune callback on the driver that owns one MLflow run per trial."""

    def __init__(self, uri: str, experiment_id: str, sweep_id: str):
        self.uri = uri
        self.experiment_id = experiment_id
        self.sweep_id = sweep_id
        self.version = code_version()
        self._runs: dict[str, tuple[str, int]] = {}  # trial key → (run id, last logged step)
        self._nodes: dict[str, str] = {}  # trial key → the Ray node its latest attempt runs on
        self._client = None
        self.failure: TrackingError | None = None

    def __getstate__(self) -> dict[str, Any]:
        # pickled with the Tuner for `--resume`: only the settings, so that a newer grokbench can restore it
        return {"uri": self.uri, "experiment_id": self.experiment_id, "sweep_id": self.sweep_id}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["uri"], state["experiment_id"], state["sweep_id"])

    @property
    def client(self):
        if self._client is None:
            import mlflow

            self._client = mlflow.MlflowClient(self.uri)
        return self._client

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
        if key not in self._runs:
            # find-or-create as one retried unit: a create whose answer was lost is found by its tags next time
            self._runs[key] = self._patiently(lambda: self._find_run(key) or (self._create_run(key, config), -1))
            self._log_settings(self._runs[key][0], config)
        return (key, *self._runs[key])

    def _find_run(self, key: str) -> tuple[str, int] | None:
        found = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{self.sweep_id}' and tags.`{KEY_TAG}` = '{key}'"
        )
        if not found:
            return None
        run_id = min(found, key=lambda run: run.info.start_time).info.run_id  # the one a resume has always used
        history = self.client.get_metric_history(run_id, CURVE_SENTINEL)
        return run_id, max((m.step for m in history), default=-1)

    def _create_run(self, key: str, config: dict[str, Any]) -> str:
        tags = {SWEEP_TAG: self.sweep_id, KEY_TAG: key, "method": config["method"], "loss": config["loss"],
                "seed": str(config["seed"]), "task": config["task"], "status": "running",
                "grokbench.version": self.version}
        return self.client.create_run(self.experiment_id, run_name=key, tags=tags).info.run_id

    def _log_settings(self, run_id: str, config: dict[str, Any]) -> None:
        """The resolved config as config.json and as params, unless an earlier attempt logged them (the params,
        written last, mark both as done)."""
        from mlflow.entities import Param

        if self._patiently(lambda: self.client.get_run(run_id).data.params):
            return  # a resumed sweep may run newer code: its params stay those the run started with
        params = [Param(k, "None" if v is None else str(v)) for k, v in sorted(config.items())]
        params.append(Param("code_version", self.version))
        self._patiently(lambda: self.client.log_dict(run_id, config, "config.json"))
        self._patiently(lambda: self.client.log_batch(run_id, params=params))

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        from mlflow.entities import Metric

        key, run_id, last_step = self._run(trial)
        now = int(time.time() * 1000)  # one timestamp per result, so a resent batch duplicates nothing
        node = result.get("node_id")
        if node and self._nodes.get(key) != node:
            self._patiently(lambda: self.client.set_tag(run_id, "node_id", node))
            self._nodes[key] = node
        fresh = [point for point in result.get("curve", []) if point["step"] > last_step]
        # whole points per batch, the sentinel last in each: a driver killed between two batches leaves no
        # point half-logged that a resume would skip as done
        batches: list[list] = [[]]
        for point in fresh:
            names = sorted((k for k in point if k not in ("step", CURVE_SENTINEL)), key=str) + [CURVE_SENTINEL]
            entries = [Metric(k, float(point[k]), now, point["step"]) for k in names if point.get(k) is not None]
            if len(batches[-1]) + len(entries) > MAX_METRICS_PER_BATCH:
                batches.append([])
            batches[-1] += entries
        for batch in filter(None, batches):
            self._patiently(lambda batch=batch: self.client.log_batch(run_id, metrics=batch))
        if fresh:
            self._runs[key] = (run_id, fresh[-1]["step"])
        if "summary" in result:
            self._log_summary(run_id, result["summary"], int(result["step"]))

    def _log_summary(self, run_id: str, summary: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric, RunTag

        run = self._patiently(lambda: self.client.get_run(run_id))
        if run.data.tags.get("status") in FINAL_STATUSES:
            return  # logged before the driver died; the resumed trial only repeated its last report
        numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        # stamped with the run's start, not the clock: a summary half-logged before the driver died and sent again
        # after a resume is then the same points, not new ones
        stamp = run.info.start_time
        metrics = [Metric(k, float(v), stamp, step) for k, v in numbers.items() if k not in NOT_SUMMARY_METRICS]
        tags = [RunTag("status", summary["status"]),
                RunTag("grokked_before_memorised", str(summary["grokked_before_memorised"]))]
        # the summary file first: the status tag marks the summary as logged, so it is written last
        self._patiently(lambda: self.client.log_text(run_id, json.dumps(summary, indent=2), "summary.json"))
        self._patiently(lambda: self.client.log_batch(run_id, metrics=metrics, tags=tags))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run(trial)[1]
        self._patiently(lambda: self.client.set_terminated(run_id, status="FINISHED"))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run(trial)[1]
        if self._patiently(lambda: self.client.get_run(run_id).data.tags.get("status")) in FINAL_STATUSES:
            # it died after reporting its outcome: the outcome stands
            self._patiently(lambda: self.client.set_terminated(run_id, status="FINISHED"))
            return
        self._patiently(lambda: self.client.set_tag(run_id, "status", "failed"))
        self._patiently(lambda: self.client.set_terminated(run_id, status="FAILED"))


def runs_with_outcome(client, experiment_id: str, outcomes: tuple[str, ...] = FINAL_STATUSES) -> list:
    """Every run of the experiment whose trial ended with one of these outcomes."""
    found, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=50_000, page_token=token)
        found += [run for run in page if run.data.tags.get("status") in outcomes]
        token = page.token
        if not token:
            return found


def finished_trials(uri: str, experiment_name: str) -> dict[str, str]:
    """Trial key → sweep id of every trial with an outcome in the experiment, from any sweep. A failed trial has
    none: it is run again."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return {}
    return {run.data.tags[KEY_TAG]: run.data.tags.get(SWEEP_TAG, "?")
            for run in runs_with_outcome(client, experiment.experiment_id) if KEY_TAG in run.data.tags}


def sweep_summaries(uri: str, experiment_id: str, sweep_id: str) -> list[dict[str, Any]]:
    """The summary of every finished trial of a sweep, read back from MLflow (the sweep's record of truth)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{sweep_id}'", max_results=50_000)
    summaries = []
    for run in runs:
        status = run.data.tags.get("status")
        if status in (None, "running"):
            continue
        params, metrics = run.data.params, run.data.metrics
        summaries.append({
            "method": params["method"], "loss": params["loss"], "lam": float(params["lam"]),
            "init_scale": float(params["init_scale"]), "seed": int(params["seed"]), "status": status,
            "steps_to_grok": metrics.get("steps_to_grok"), "time_to_grok_s": metrics.get("time_to_grok_s"),
        })
    return summaries
