"""Read a sweep's runs from MLflow into pandas: one row per trial (runs without a trial key are not trials)."""

from __future__ import annotations

import logging
import numbers

import numpy as np
import pandas as pd

from grokbench import machine
from grokbench.sweep.keys import EXPERIMENT_PREFIX, FINAL_STATUSES, SWEEP_TAG, experiment_name, outcome_rank
from grokbench.sweep.mlflow_store import TrackingStore, store_errors
from grokbench.sweep.uri import check_readable

log = logging.getLogger(f"grokbench.{__name__}")

NUMERIC_PARAMS = ("lam", "init_scale", "seed", "max_epochs", "epochs_after_grok", "eval_every", "weight_decay", "lr")
SUMMARY_METRICS = (  # a trial's summary figures; max_epochs among them: a continued trial's last budget
    "max_epochs",
    "steps",
    "epochs",
    "train_time_s",
    "wall_s",
    "steps_to_memorise",
    "epochs_to_memorise",
    "time_to_memorise_s",
    "steps_to_grok",
    "epochs_to_grok",
    "time_to_grok_s",
    "grok_phase_time_s",
    "final_train_acc",
    "final_test_acc",
    "resumed_from_step",  # where this process continued a saved trial: its wall_s covers only what followed
)


class AnalysisError(ValueError):
    """Nothing to analyse, or the request is wrong; the message says what exists."""


FINISHED = ("grokked", "censored")  # the outcomes a trial is read at; a diverged or failed one is counted apart

DEFAULT_EXPERIMENT = experiment_name("mnist")  # the paper's Table 1 (results/mnist/)


def load_runs(uri: str, experiments: list[str] | None = None, sweep: str | None = None) -> tuple[pd.DataFrame, list]:
    """One row per trial of the named experiments (default: grokbench/mnist, else the store's grokbench experiment
    run most recently), optionally of one sweep id only; and the names of the experiments read, in order. Reads
    only: a store that is missing, empty or not MLflow's is reported, never created."""
    check_readable(uri)
    store = TrackingStore(uri)
    try:
        known = store.grokbench_experiments()
    except store_errors() as err:
        raise AnalysisError(f"cannot read the tracking store at {uri}: {str(err).splitlines()[0]}") from None
    names = [experiment_name(e) for e in experiments] if experiments else _default_experiments(uri, store, known, sweep)
    missing = [n for n in names if n not in known]
    if missing:
        raise AnalysisError(
            f"no experiment {', '.join(missing)} in {uri}; grokbench experiments there: "
            f"{', '.join(sorted(known)) or 'none (run grokbench sweep first)'}"
        )
    raw = pd.DataFrame(store.run_rows([known[n] for n in names], sweep))
    if raw.empty:
        what = f"sweep {sweep}" if sweep else ", ".join(names)
        raise AnalysisError(f"no runs in {what} at {uri}")
    runs = once_across_experiments(latest_per_trial(_tidy(raw, {v: k for k, v in known.items()})))
    return runs, names if experiments else [experiment_name(n) for n in sorted(set(runs["experiment"]))]


def _default_experiments(uri: str, store: TrackingStore, known: dict[str, str], sweep: str | None) -> list[str]:
    """With --sweep, every experiment (the sweep's runs are in one of them); else grokbench/mnist, or the only
    grokbench experiment there is, or the one run most recently (after the quick start's two sweeps: the second)."""
    if sweep:
        return sorted(known)
    if DEFAULT_EXPERIMENT in known or not known:
        return [DEFAULT_EXPERIMENT]
    if len(known) == 1:
        return list(known)
    newest = max(store.run_rows(list(known.values())), key=lambda row: row["start_time"], default=None)
    if newest is None:
        return sorted(known)[:1]
    chosen = {v: k for k, v in known.items()}[newest["experiment_id"]]
    log.info(
        "%s holds several grokbench experiments (%s) and none is the default mnist: the tables are of the one run "
        "most recently, %s (--experiment picks others)",
        uri,
        ", ".join(n.removeprefix(EXPERIMENT_PREFIX) for n in sorted(known)),
        chosen.removeprefix(EXPERIMENT_PREFIX),
    )
    return [chosen]


def latest_per_trial(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per trial key across a mix of sweeps: the newest run with an outcome, else the newest failed one
    (a failed trial is run again by the next sweep), else the newest unfinished one."""
    rank = runs["status"].map(outcome_rank)
    runs = runs.assign(_rank=rank).sort_values(["_rank", "start_time"], kind="stable", na_position="first")
    runs = runs.groupby(["experiment", "trial_key"], dropna=False).tail(1)
    # ordered by what an archive keeps (an import gives runs new ids), so a rebuild draws its figures alike
    return runs.drop(columns="_rank").sort_values(["experiment", "trial_key"]).reset_index(drop=True)


def once_across_experiments(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per trial key where several experiments hold runs of it (a sweep continued under a larger budget in
    another experiment): the run with an outcome, then the larger budget, then the later start."""
    rank = runs["status"].map(outcome_rank)
    order = runs.assign(_rank=rank).sort_values(
        ["_rank", "max_epochs", "start_time"], kind="stable", na_position="first"
    )
    kept = order.groupby("trial_key", dropna=False).tail(1)
    return kept.drop(columns="_rank").sort_values(["experiment", "trial_key"]).reset_index(drop=True)


def column(frame: pd.DataFrame, name: str, default=np.nan) -> pd.Series:
    """A column of the frame, or `default` in every row where it has none (a metric no run has logged yet)."""
    return frame[name] if name in frame else pd.Series(default, index=frame.index)


def _tidy(raw: pd.DataFrame, experiment_names: dict[str, str]) -> pd.DataFrame:
    runs = pd.DataFrame(
        {
            "run_id": raw["run_id"],
            "experiment": raw["experiment_id"].map(experiment_names).str.removeprefix(EXPERIMENT_PREFIX),
            "start_time": raw["start_time"],
            "sweep_id": column(raw, f"tags.{SWEEP_TAG}", None),
            "trial_key": raw["trial_key"],  # recomputed from each run's settings: one trial across grokbench versions
            "status": column(raw, "tags.status", "running").fillna("running"),
            "method": column(raw, "params.method", None),
            "loss": column(raw, "params.loss", None),
            "task": column(raw, "params.task", None),
        }
    )
    params = [_prefixed(raw, index, "params.") for index in raw.index]
    runs["machine"] = [machine.label(machine.from_tags(_prefixed(raw, index, "tags."))) for index in raw.index]
    configs = [_config(p) for p in params]
    labels = [variant_and_condition(p) for p in params]
    runs["variant"] = [v for v, _ in labels]
    runs["condition"] = [c for _, c in labels]
    for name in NUMERIC_PARAMS:
        runs[name] = pd.to_numeric(column(raw, f"params.{name}"), errors="coerce")
    # from the resolved settings: runs logged before `softmax_precision` stored `float64_loss`
    runs["softmax_precision"] = pd.to_numeric([getattr(c, "softmax_precision", None) for c in configs], errors="coerce")
    finals = [name.removeprefix("metrics.") for name in raw if name.startswith("metrics.final_")]
    further = [name for event in _declared_and_logged_events(raw, configs) for name in event_columns(event)]
    for name in dict.fromkeys([*SUMMARY_METRICS, *finals, *further]):
        metric = pd.to_numeric(column(raw, f"metrics.{name}"), errors="coerce")
        runs[name] = metric.fillna(runs[name]) if name in runs else metric  # a run that predates the metric
    settings = pd.DataFrame([task_settings(cfg) for cfg in configs], index=raw.index)
    return pd.concat([runs, settings], axis=1).reset_index(drop=True)


TASK_SETTING = "task."  # the prefix of a task setting's column (task.alpha), apart from the shared settings


def event_columns(event: str) -> tuple[str, str, str]:
    """The summary's figures of an event (grokbench.events): optimiser steps, epochs and training seconds to it."""
    return f"steps_to_{event}", f"epochs_to_{event}", f"time_to_{event}_s"


def further_events(runs: pd.DataFrame) -> list[str]:
    """The events a task's criterion reports beside memorised and grokked (polynomial: grok_strict)."""
    return [
        c.removeprefix("steps_to_")
        for c in runs
        if c.startswith("steps_to_") and c not in ("steps_to_memorise", "steps_to_grok")
    ]


def _declared_and_logged_events(raw: pd.DataFrame, configs: list) -> list[str]:
    """Each run's criterion's further events (so an event no run reached still gets its censored columns), and
    any a run logged."""
    from grokbench.tasks import TASKS

    declared = [name for cfg in configs if cfg is not None for name in TASKS[cfg.task].criterion(cfg).further_events()]
    logged = [c.removeprefix("metrics.steps_to_") for c in raw if c.startswith("metrics.steps_to_")]
    return [e for e in dict.fromkeys([*declared, *logged]) if e not in ("memorise", "grok")]


def task_settings(cfg) -> dict[str, object]:
    return {} if cfg is None else {TASK_SETTING + k: v for k, v in cfg.task_settings.as_dict().items()}


def varied_task_settings(runs: pd.DataFrame) -> list[str]:
    """The task settings that take two or more values among one task's runs: a sweep's task axes (α), conditions
    shown in a column of their own; not those the task's `Presentation` names in a row's label."""
    presented = presentation(runs)
    named = {TASK_SETTING + name for name in (*presented.conditions, *presented.variants)}
    columns = [c for c in runs if c.startswith(TASK_SETTING) and c not in named]
    return [c for c in columns if (runs.groupby("task", dropna=False)[c].nunique() > 1).any()]


def row_settings(runs: pd.DataFrame) -> list[str]:
    """The settings a table's rows split on besides method and loss: the init scale where a sweep varied it (a
    setting every task shares, so none of the task's own), then the varied task settings."""
    scales = runs.groupby("task", dropna=False)["init_scale"].nunique() > 1 if "init_scale" in runs else [False]
    return (["init_scale"] if any(scales) else []) + varied_task_settings(runs)


def independent_settings(runs: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns, less any whose value an earlier one sets (σ's paired step-size factor): a figure against it
    would only repeat the one against that earlier setting."""
    kept: list[str] = []
    for column in columns:
        if not any(runs.groupby(k, dropna=False)[column].nunique(dropna=False).max() <= 1 for k in kept):
            kept.append(column)
    return kept


def setting_name(column: str) -> str:
    return column.removeprefix(TASK_SETTING)


def value_text(value) -> str:
    """A setting's value as the tables and figures show it: numbers in %g."""
    return f"{value:g}" if isinstance(value, numbers.Real) and not isinstance(value, bool) else str(value)


def setting_text(columns: list[str], values: tuple) -> str:
    """`alpha=0.5`: task settings and their values, as a figure's legend names them."""
    return ", ".join(f"{setting_name(c)}={value_text(v)}" for c, v in zip(columns, values, strict=False))


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
        clock = {
            step: t
            for step, t in store.curve(run["run_id"], "train_time_s").items()
            if step <= max_epochs * updates_per_epoch
        }
        step = max(clock, default=0)
        runs.loc[index, ["steps", "epochs", "train_time_s"]] = [step, step / updates_per_epoch, clock.get(step, 0.0)]
        if not run["epochs_to_grok"] <= max_epochs:  # diverged later, or grokked later: still going at the budget
            runs.loc[index, "status"] = "censored"
            runs.loc[index, ["steps_to_grok", "epochs_to_grok", "time_to_grok_s", "grok_phase_time_s"]] = np.nan
        for event in ("memorise", *further_events(runs)):
            if not run[f"epochs_to_{event}"] <= max_epochs:
                runs.loc[index, list(event_columns(event))] = np.nan
    return runs


def grokking_at(runs: pd.DataFrame, event: str) -> pd.DataFrame:
    """The runs as if grokking were the further event `event` (a stricter threshold): a finished run that did not
    reach it is censored at its end (a run that grokked goes on until its further events happened, or to its
    budget), and its grokking phase runs from memorising to it (0 where it came first, as for grokking)."""
    runs = runs.copy()
    steps, epochs, time_s = event_columns(event)
    reached = runs[steps].notna()
    finished = runs["status"].isin(["grokked", "censored"])
    runs.loc[finished, "status"] = np.where(reached[finished], "grokked", "censored")
    runs["steps_to_grok"], runs["epochs_to_grok"], runs["time_to_grok_s"] = runs[steps], runs[epochs], runs[time_s]
    first = runs["steps_to_memorise"].isna() | (runs["steps_to_grok"] < runs["steps_to_memorise"])
    phase = (runs["time_to_grok_s"] - runs["time_to_memorise_s"]).mask(first, 0.0)
    runs["grok_phase_time_s"] = phase.where(reached)
    return runs


def budget_note(runs: pd.DataFrame, max_epochs: int | None) -> str:
    """What budget a table applies, in epochs and updates."""
    if max_epochs is not None:
        return (
            f"budget: {max_epochs:,} epochs (--max-epochs); a trial that grokked or ran past it counts as "
            "censored at it"
        )
    budgets = runs["max_epochs"].dropna()
    if budgets.empty:
        return "budget: unknown"
    low, high = int(budgets.min()), int(budgets.max())
    span = f"{low:,} epochs" if low == high else f"{low:,}–{high:,} epochs (each censored trial at its own)"
    return f"budget: {span}, as the trials ran; --max-epochs applies a smaller one"


def _prefixed(raw: pd.DataFrame, index, prefix: str) -> dict[str, str]:
    """A run's params (or tags) by name, from its flat row's `params.<name>` (`tags.<name>`) columns."""
    row = raw.loc[index]
    return {
        name[len(prefix) :]: value for name, value in row.items() if name.startswith(prefix) and isinstance(value, str)
    }


def _config(params: dict[str, str]):
    """The run's resolved TrialConfig, None where its settings are unreadable."""
    from grokbench.config import ConfigError
    from grokbench.resolve import stored_config

    if "task" not in params or "method" not in params:
        return None
    try:
        return stored_config(params)
    except (ConfigError, KeyError, ValueError, TypeError):
        return None


def variant_and_condition(params: dict[str, str]) -> tuple[str, str]:
    """(variant, condition) of a trial, from its stored settings. The variant names the method's own settings
    where they differ from its defaults (e.g. "subset=32, every=4" for GrokAlign's penalty on 32 points of every
    4th update) and the settings its task presents (`Presentation.conditions`, then `.variants`) where they differ
    from the task's or its preset's defaults (e.g. "freeze_embeddings=True"). The condition names the conditions
    alone. "" for the method as its authors ran it on the task's defaults (or settings unreadable)."""
    from grokbench.tasks import TASKS

    cfg = _config(params)
    usual = None if cfg is None else _usual_settings(cfg, params)
    if usual is None:
        return "", ""
    prefix = f"{params['method']}_"
    method_part = [
        f"{name.removeprefix(prefix)}={value}"
        for name, value in cfg.method_settings.changed(usual.method_settings).items()
    ]
    presented = TASKS[cfg.task].presentation
    conditions = _off_default(presented.conditions, cfg, usual)
    return ", ".join(method_part + conditions + _off_default(presented.variants, cfg, usual)), ", ".join(conditions)


def _usual_settings(cfg, params: dict[str, str]):
    """The trial's task, method and preset resolved at their defaults, with the shared settings the task gives
    the trial's own task settings (a polynomial trial's learning rate is compared with N/α² at its α); None where
    the stored settings no longer resolve."""
    from grokbench.config import SHARED, ConfigError
    from grokbench.resolve import config_from, resolve
    from grokbench.tasks import TASKS

    try:
        named = config_from({k: params[k] for k in ("task", "method", "preset") if k in params})
        usual = resolve(named)
        # not resolve() at the trial's task settings: a preset's own settings (its batch size) may not fit them
        shared_here = {
            **TASKS[cfg.task].shared_defaults(cfg.task_settings),
            **{name: getattr(named, name) for name in SHARED if getattr(named, name) is not None},
        }
    except (ConfigError, KeyError, ValueError, TypeError):
        return None
    return usual.replace(**{name: shared_here[name] for name in SHARED if name in shared_here})


def _off_default(names: tuple[str, ...], cfg, usual) -> list[str]:
    """`name=value` for each of the named settings where the trial's differs from the usual one."""
    return [
        f"{name}={value_text(_setting(cfg, name))}" for name in names if _setting(cfg, name) != _setting(usual, name)
    ]


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
    return (
        f"{len(runs) - running} of {len(runs)} trials started so far are done ({running} still running or "
        "interrupted); the tables use the finished ones"
    )
