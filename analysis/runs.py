"""Read a sweep's runs from MLflow into pandas: one row per trial (runs without a trial key are not trials)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from grokbench.sweep.keys import EXPERIMENT_PREFIX, FINAL_STATUSES, SWEEP_TAG, experiment_name, outcome_rank
from grokbench.sweep.mlflow_store import TrackingStore, check_readable, store_errors

NUMERIC_PARAMS = ("lam", "init_scale", "seed", "max_epochs", "eval_every", "weight_decay", "lr")
SUMMARY_METRICS = (  # a trial's summary figures; max_epochs among them: a continued trial's last budget
    "max_epochs",
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
    rank = runs["status"].map(outcome_rank)
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
        "trial_key": raw["trial_key"],  # recomputed from each run's settings: one trial across grokbench versions
        "status": column("tags.status", "running").fillna("running"),
        "method": column("params.method", None),
        "loss": column("params.loss", None),
        "task": column("params.task", None),
    })
    labels = [variant_and_condition(_params(raw, index)) for index in raw.index]
    runs["variant"] = [v for v, _ in labels]
    runs["condition"] = [c for _, c in labels]
    for name in NUMERIC_PARAMS:
        runs[name] = pd.to_numeric(column(f"params.{name}"), errors="coerce")
    for name in SUMMARY_METRICS:
        metric = pd.to_numeric(column(f"metrics.{name}"), errors="coerce")
        runs[name] = metric.fillna(runs[name]) if name in runs else metric  # a run that predates the metric
    return runs.reset_index(drop=True)


def at_budget(uri: str, runs: pd.DataFrame, max_epochs: int) -> pd.DataFrame:
    """The runs as they stood at a budget of `max_epochs` epochs: a trial that grokked (or memorised) later, or
    trained further, counts as censored at that budget, with its steps and training seconds at the last evaluation
    within it (read off its `train_time_s` curve)."""
    runs = runs.copy()
    past = runs["status"].isin(FINAL_STATUSES) & (runs["epochs"] > max_epochs)
    store = TrackingStore(uri)
    for index in runs.index[past]:
        run = runs.loc[index]
        updates_per_epoch = run["steps"] / run["epochs"]
        clock = {step: t for step, t in store.curve(run["run_id"], "train_time_s").items()
                 if step <= max_epochs * updates_per_epoch}
        step = max(clock, default=0)
        runs.loc[index, ["steps", "epochs", "train_time_s"]] = [step, step / updates_per_epoch, clock.get(step, 0.0)]
        if not run["epochs_to_grok"] <= max_epochs:  # diverged later, or grokked later: still going at the budget
            runs.loc[index, "status"] = "censored"
            runs.loc[index, ["steps_to_grok", "epochs_to_grok", "time_to_grok_s", "grok_phase_time_s"]] = np.nan
        if not run["epochs_to_memorise"] <= max_epochs:
            runs.loc[index, ["steps_to_memorise", "epochs_to_memorise", "time_to_memorise_s"]] = np.nan
    return runs


def budget_note(runs: pd.DataFrame, max_epochs: int | None) -> str:
    """What budget a table applies, in epochs and updates."""
    if max_epochs is not None:
        return (f"budget: {max_epochs:,} epochs (--max-epochs); a trial that grokked or ran past it counts as "
                "censored at it")
    budgets = runs["max_epochs"].dropna()
    if budgets.empty:
        return "budget: unknown"
    low, high = int(budgets.min()), int(budgets.max())
    span = f"{low:,} epochs" if low == high else f"{low:,}–{high:,} epochs (each censored trial at its own)"
    return f"budget: {span}, as the trials ran; --max-epochs applies a smaller one"


def _params(raw: pd.DataFrame, index) -> dict[str, str]:
    row = raw.loc[index]
    return {name[len("params."):]: value for name, value in row.items()
            if name.startswith("params.") and isinstance(value, str)}


def variant_and_condition(params: dict[str, str]) -> tuple[str, str]:
    """(variant, condition) of a trial, from its stored settings. The variant names the method's own settings
    where they differ from its defaults (e.g. "subset=32, every=4" for GrokAlign's penalty on 32 points of every
    4th update) and the settings its task presents (`Presentation.conditions`, then `.variants`) where they differ
    from the task's or its preset's defaults (e.g. "freeze_embeddings=True"); the condition names the conditions
    alone. "" for the method as its authors ran it on the task's defaults (or settings unreadable)."""
    from grokbench.config import ConfigError, TrialConfig, resolve, stored_config
    from grokbench.tasks import TASKS

    if "task" not in params or "method" not in params:
        return "", ""
    try:
        cfg = stored_config(params)
        default = resolve(TrialConfig.from_dict({k: params[k] for k in ("task", "method", "preset") if k in params}))
    except (ConfigError, KeyError, ValueError, TypeError):
        return "", ""
    own, defaults = cfg.method_settings.as_dict(), default.method_settings.as_dict()
    prefix = f"{params['method']}_"
    method_part = [f"{name.removeprefix(prefix)}={value}" for name, value in own.items() if value != defaults[name]]
    shown = TASKS[cfg.task].presentation

    def off_default(names: tuple[str, ...]) -> list[str]:
        values = [(name, _setting(cfg, name), _setting(default, name)) for name in names]
        return [f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                for name, value, usual in values if value != usual]

    conditions = off_default(shown.conditions)
    return ", ".join(method_part + conditions + off_default(shown.variants)), ", ".join(conditions)


def _setting(cfg, name: str):
    from grokbench.config import SHARED

    return getattr(cfg, name) if name in SHARED else getattr(cfg.task_settings, name)


def presentation(runs: pd.DataFrame):
    """What the runs' task presents (`grokbench.tasks.base.Presentation`); runs of several tasks, or of none
    named, get the defaults (MNIST's)."""
    from grokbench.tasks import TASKS
    from grokbench.tasks.base import Presentation

    tasks = set(runs["task"].dropna()) if "task" in runs else set()
    return TASKS[tasks.pop()].presentation if len(tasks) == 1 and tasks <= set(TASKS) else Presentation()


def progress_note(runs: pd.DataFrame) -> str | None:
    """A sweep still running (or stopped early): how many of its trials are done."""
    running = int((runs["status"] == "running").sum())
    if not running:
        return None
    return (f"{len(runs) - running} of {len(runs)} trials started so far are done ({running} still running or "
            "interrupted); the tables use the finished ones")
