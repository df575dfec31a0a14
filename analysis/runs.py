"""Read a sweep's runs from MLflow into pandas: one row per trial (runs without a trial key are not trials)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from grokbench.sweep.keys import EXPERIMENT_PREFIX, FINAL_STATUSES, KEY_TAG, SWEEP_TAG, experiment_name
from grokbench.sweep.mlflow_store import TrackingStore, check_readable, store_errors

NUMERIC_PARAMS = ("lam", "init_scale", "seed", "max_epochs", "eval_every", "weight_decay", "lr")
SUMMARY_METRICS = (
    "steps", "epochs", "train_time_s", "wall_s", "steps_to_memorise", "epochs_to_memorise", "time_to_memorise_s",
    "steps_to_grok", "epochs_to_grok", "time_to_grok_s", "grok_phase_time_s", "final_train_acc", "final_test_acc",
)


class AnalysisError(ValueError):
    """Nothing to analyse, or the request is wrong; the message says what exists."""


DEFAULT_EXPERIMENT = experiment_name("mnist")  # the paper's Table 1, whose tables live in results/


def load_runs(uri: str, experiments: list[str] | None = None, sweep: str | None = None) -> tuple[pd.DataFrame, list]:
    """One row per trial of the named experiments (default: grokbench/mnist, else the store's only grokbench
    experiment), optionally of one sweep id only; and the names of the experiments read, in order. Reads only: a
    store that is missing, empty or not MLflow's is reported, never created."""
    check_readable(uri)
    store = TrackingStore(uri)
    try:
        known = store.grokbench_experiments()
    except store_errors() as err:
        raise AnalysisError(f"cannot read the tracking store at {uri}: {str(err).splitlines()[0]}") from None
    names = [experiment_name(e) for e in experiments] if experiments else _default_experiments(uri, known, sweep)
    missing = [n for n in names if n not in known]
    if missing:
        raise AnalysisError(f"no experiment {', '.join(missing)} in {uri}; grokbench experiments there: "
                            f"{', '.join(sorted(known)) or 'none (run grokbench sweep first)'}")
    raw = pd.DataFrame(store.run_rows([known[n] for n in names], sweep))
    if raw.empty:
        what = f"sweep {sweep}" if sweep else ", ".join(names)
        raise AnalysisError(f"no runs in {what} at {uri}")
    runs = latest_per_trial(_tidy(raw, {v: k for k, v in known.items()}))
    return runs, names if experiments else [experiment_name(n) for n in sorted(set(runs["experiment"]))]


def _default_experiments(uri: str, known: dict[str, str], sweep: str | None) -> list[str]:
    """With --sweep, every experiment (the sweep's runs are in one of them); else grokbench/mnist, or the only
    grokbench experiment there is (a store holding only a smoke sweep)."""
    if sweep:
        return sorted(known)
    if DEFAULT_EXPERIMENT in known or not known:
        return [DEFAULT_EXPERIMENT]
    if len(known) == 1:
        return list(known)
    names = ", ".join(n.removeprefix(EXPERIMENT_PREFIX) for n in sorted(known))
    raise AnalysisError(f"{uri} holds several grokbench experiments and none is the default mnist; pick one or "
                        f"more with --experiment (there: {names})")


def latest_per_trial(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per trial key across a mix of sweeps: the newest run with an outcome, else the newest failed one
    (a failed trial is run again by the next sweep), else the newest unfinished one."""
    rank = runs["status"].map(lambda s: 2 if s in FINAL_STATUSES else 1 if s == "failed" else 0)
    runs = runs.assign(_rank=rank).sort_values(["_rank", "start_time"], kind="stable", na_position="first")
    runs = runs.groupby(["experiment", "trial_key"], dropna=False).tail(1)
    return runs.drop(columns="_rank").sort_values("run_id").reset_index(drop=True)


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
