"""Read a sweep's runs from MLflow into pandas: one row per trial, through MLflow's own query API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from grokbench.sweep.keys import EXPERIMENT_PREFIX, FINAL_STATUSES, KEY_TAG, SWEEP_TAG, experiment_name

NUMERIC_PARAMS = ("lam", "init_scale", "seed", "max_epochs", "eval_every", "weight_decay", "lr")
SUMMARY_METRICS = (
    "steps", "epochs", "train_time_s", "wall_s", "steps_to_memorise", "epochs_to_memorise", "time_to_memorise_s",
    "steps_to_grok", "epochs_to_grok", "time_to_grok_s", "grok_phase_time_s", "final_train_acc", "final_test_acc",
)


class AnalysisError(ValueError):
    """Nothing to analyse, or the request is wrong; the message says what exists."""


def load_runs(uri: str, experiments: list[str] | None = None, sweep: str | None = None) -> pd.DataFrame:
    """One row per trial of the named experiments (default `grokbench/mnist`), optionally one sweep id only."""
    import mlflow

    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise AnalysisError(f"no MLflow store at {uri}; pass --tracking-uri (a sweep prints it when it ends)")
    client = mlflow.MlflowClient(uri)
    try:
        known = {e.name: e.experiment_id for e in client.search_experiments()}
    except mlflow.exceptions.MlflowException as err:
        raise AnalysisError(f"cannot read the tracking store at {uri}: {str(err).splitlines()[0]}") from None
    grokbench_experiments = sorted(n for n in known if n.startswith(EXPERIMENT_PREFIX))
    if experiments:
        names = [experiment_name(e) for e in experiments]
    elif sweep:
        names = grokbench_experiments
    else:
        names = [experiment_name("mnist")]
    missing = [n for n in names if n not in known]
    if missing:
        raise AnalysisError(f"no experiment {', '.join(missing)} in {uri}; grokbench experiments there: "
                            f"{', '.join(grokbench_experiments) or 'none (run grokbench sweep first)'}")
    where = f"tags.`{SWEEP_TAG}` = '{sweep}'" if sweep else ""
    raw = pd.DataFrame(_flat_runs(client, [known[n] for n in names], where))
    if raw.empty:
        what = f"sweep {sweep}" if sweep else ", ".join(names)
        raise AnalysisError(f"no runs in {what} at {uri}")
    return latest_per_trial(_tidy(raw, {v: k for k, v in known.items()}))


def latest_per_trial(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per trial key across a mix of sweeps: the newest run with an outcome, else the newest failed one
    (a failed trial is run again by the next sweep), else the newest unfinished one."""
    rank = runs["status"].map(lambda s: 2 if s in FINAL_STATUSES else 1 if s == "failed" else 0)
    runs = runs.assign(_rank=rank).sort_values(["_rank", "start_time"], kind="stable", na_position="first")
    runs = runs.groupby(["experiment", "trial_key"], dropna=False).tail(1)
    return runs.drop(columns="_rank").sort_values("run_id").reset_index(drop=True)


def _flat_runs(client, experiment_ids: list[str], where: str) -> list[dict]:
    """Every matching run as one flat dict (params.x, metrics.x, tags.x), page by page."""
    rows, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=where, max_results=1000, page_token=token)
        for run in page:
            row = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                   "start_time": run.info.start_time}
            row.update({f"params.{k}": v for k, v in run.data.params.items()})
            row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
            row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
            rows.append(row)
        token = page.token
        if not token:
            return rows


def _tidy(raw: pd.DataFrame, experiment_names: dict[str, str]) -> pd.DataFrame:
    def column(name: str, default=np.nan) -> pd.Series:
        return raw[name] if name in raw else pd.Series(default, index=raw.index)

    runs = pd.DataFrame({
        "run_id": raw["run_id"],
        "experiment": raw["experiment_id"].map(experiment_names).str.removeprefix(EXPERIMENT_PREFIX),
        "start_time": raw["start_time"],
        "sweep_id": column(f"tags.{SWEEP_TAG}", None),
        "trial_key": column(f"tags.{KEY_TAG}", None),
        "status": column("tags.status", "running").fillna("running"),
        "method": column("params.method", None),
        "loss": column("params.loss", None),
        "task": column("params.task", None),
    })
    for name in NUMERIC_PARAMS:
        runs[name] = pd.to_numeric(column(f"params.{name}"), errors="coerce")
    for name in SUMMARY_METRICS:
        runs[name] = pd.to_numeric(column(f"metrics.{name}"), errors="coerce")
    return runs.reset_index(drop=True)


def progress_note(runs: pd.DataFrame) -> str | None:
    """A sweep still running (or stopped early): how many of its trials are done."""
    running = int((runs["status"] == "running").sum())
    if not running:
        return None
    return (f"{len(runs) - running} of {len(runs)} trials started so far are done ({running} still running or "
            "interrupted); the tables use the finished ones")
