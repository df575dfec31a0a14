"""The tables beside Table 1: every trial, the sensitivity to λ and to the initialisation scale, the epochs to each
event, Optuna's best settings, and the task's curves at memorisation and grokking (MNIST: geometry)."""

from __future__ import annotations

import pandas as pd

from analysis.cells import (
    CELL_NOTE,
    cell_text,
    fmt,
    number_text,
    sample_text,
    seeds_text,
    speed_columns,
    speed_notes,
    speed_text,
    whole_text,
)
from analysis.groups import (
    METHOD_NAMES,
    event_sample,
    method_rank,
    reference_baseline,
    row_groups,
    row_label,
    samples,
    varied_groups,
    with_budget_columns,
    with_conditions,
)
from analysis.output import Table
from analysis.provenance import machine_note
from analysis.runs import (
    event_columns,
    further_events,
    presentation,
    row_settings,
    setting_name,
    value_text,
    varied_task_settings,
)
from analysis.stats import cell, speed_up
from grokbench.sweep.keys import experiment_name
from grokbench.sweep.mlflow_store import TrackingStore

EVENT_NAMES = {"memorise": "memorised", "grok": "grokked"}


def trials_table(runs: pd.DataFrame) -> Table:
    """Every finished trial, one row each: what the Table-1 cells summarise, and each trial's speed per update (a
    trial slowed by a busy machine shows here, not only in a wider interval)."""
    varied, events = varied_task_settings(runs), further_events(runs)
    final = f"final_{presentation(runs).test}"  # the test figure the task's criterion reads, at the trial's end
    # the trial key last: rows a condition tells apart (frozen embeddings, say) keep one order in every store
    finished = runs[runs["status"] != "running"].sort_values(
        ["experiment", "loss", "method", "lam", "init_scale", *varied, "seed", "trial_key"], key=_method_order
    )
    headers = ["sweep", "method", "loss", "λ", "init", *map(setting_name, varied), "seed", "status", "steps to grok"]
    headers += [f"steps to {e}" for e in events]
    headers += ["time to grok (s)", "phase time (s)", "updates run", "ms/update", final.replace("_", " ")]
    table = Table("trials", "Every trial", headers, printed=False)
    for _, r in finished.iterrows():
        table.rows.append(
            [
                str(r["sweep_id"]),
                row_label(r["method"], r["lam"], shared=True, variant=r["variant"]),
                r["loss"],
                f"{r['lam']:g}",
                f"{r['init_scale']:g}",
                *[value_text(r[c]) for c in varied],
                f"{r['seed']:g}",
                r["status"],
                whole_text(r["steps_to_grok"]),
                *[whole_text(r[event_columns(e)[0]]) for e in events],
                number_text(r["time_to_grok_s"]),
                number_text(r["grok_phase_time_s"]),
                whole_text(r["steps"]),
                number_text(1e3 * r["train_time_s"] / r["steps"] if r["steps"] else None),
                "—" if pd.isna(r.get(final)) else f"{r[final]:.4f}",
            ]
        )
    table.notes += [
        "steps are optimiser updates; times are training seconds; a censored trial has no time to "
        "grok, and ran its whole budget (updates run)",
        machine_note(finished),
    ]
    return table


def _method_order(column: pd.Series) -> pd.Series:
    return column.map(method_rank) if column.name == "method" else column


def sensitivity(runs: pd.DataFrame, by: str, title: str, name: str) -> Table | None:
    """Median time and steps to grok against one setting (λ or init scale), per method and loss."""
    runs = with_budget_columns(runs[runs["status"] != "running"])
    varied = varied_groups(runs, by)
    if not varied:
        return None
    table = Table(name, title, ["Method", "loss", by, "grokked", "seeds", "steps", "time (s)", "speed-up (time)"])
    speeds, counted = [], []
    runs = with_conditions(runs)
    for (method, loss, condition), group in varied:
        for value, sub in group.groupby(by, sort=True):
            block = runs[(runs["loss"] == loss) & (runs["condition"] == condition)]
            baseline = reference_baseline(
                block[block["init_scale"] == (value if by == "init_scale" else sub["init_scale"].iloc[0])]
            )
            steps, time = samples(sub, "steps"), samples(sub, "time")
            speed = speed_up(samples(baseline, "time"), time) if method != "baseline" and not baseline.empty else None
            speeds += [speed] if speed else []
            label = METHOD_NAMES.get(method, method) + (f" ({condition})" if condition else "")
            done = sub[sub["status"].isin(["grokked", "censored"])]
            counted.append(done)
            table.rows.append(
                [
                    label,
                    loss,
                    f"{value:g}",
                    f"{sum(steps.observed)}/{len(steps.values)}",
                    seeds_text(done),
                    sample_text(steps),
                    sample_text(time),
                    speed_text(speed),
                ]
            )
            table.stats.append({"n": len(time.values), **speed_columns("time", speed)})
    table.notes += [
        "n per row: the N of grokked k/N (trials that grokked or were censored)",
        CELL_NOTE,
        *speed_notes(speeds, per_seed_shown=False),
        machine_note(pd.concat(counted)),
    ]
    return table


def events_table(runs: pd.DataFrame) -> Table | None:
    """Epochs to memorise, to grok and to each further event of the criterion (a stricter threshold), per method
    and per value of the init scale and each task setting the sweep varied: what Table 1 (one threshold, no
    memorisation, no task setting) leaves out; none where it leaves nothing out."""
    varied, events = row_settings(runs), ["memorise", "grok", *further_events(runs)]
    if not varied and len(events) == 2:
        return None
    headers = ["Method", "loss", *map(setting_name, varied)]
    headers += [h for e in events for h in (EVENT_NAMES.get(e, e), f"epochs to {e}")]
    table = Table("events", "Epochs to memorise, to grok and to each further event", headers)
    for group in row_groups(runs, varied):
        row, columns = [group.label, *map(value_text, group.by)], {"n": len(group.runs)}
        for event in events:
            sample = event_sample(group.runs, event)
            c = cell(sample.values, sample.observed)
            row += [f"{c.grokked}/{c.n}", cell_text(c)]
            columns.update(
                {
                    f"{event}_reached": c.grokked,
                    f"epochs_to_{event}_median": c.median,
                    f"epochs_to_{event}_exceeds": c.exceeds,
                }
            )
        table.rows.append(row)
        table.stats.append(columns)
    table.notes += [
        "k/N: trials that reached the event of those that grokked or were censored; a trial that did not reach it is "
        "censored where it ended (at its budget, or where it stopped once it grokked and reached every further "
        "event), so a cell holding one shows the Kaplan–Meier median, or > t where it never fell to 1/2",
        "each cell otherwise: mean ± std over seeds (median), in epochs",
    ]
    return table if table.rows else None


def search_table(uri: str, experiments: list[str]) -> Table | None:
    store = TrackingStore(uri)
    table = Table("search_best", "Optuna: best setting per method", ["sweep", "method", "setting", "value"])
    for name in experiments:
        for key, value in sorted(store.best_tags(experiment_name(name)).items()):
            sweep, method, setting = TrackingStore.best_tag_parts(key)
            table.rows.append([sweep, method, setting, f"{float(value):.4g}"])
    return table if table.rows else None


def geometry_table(uri: str, runs: pd.DataFrame) -> Table | None:
    """The task's curves (`Presentation.tabled`; MNIST: geometry, as in the paper's Table 2; polynomial: the NTK's
    diagnostics) at memorisation and at grokking, median over seeds; one row per λ where a method ran at several,
    per variant, per init scale and per task setting a sweep varied."""
    store = TrackingStore(uri)
    presented, varied = presentation(runs), row_settings(runs)
    headers = ["Method", "loss", *map(setting_name, varied)] + [
        f"{m} @{event}" for m in presented.tabled for event in ("mem", "grok")
    ]
    table = Table(
        presented.name, f"{presented.title} at memorisation (@mem) and grokking (@grok), median over seeds", headers
    )
    for group in row_groups(runs, varied):
        values: dict[str, list[float]] = {}
        for _, run in group.runs.iterrows():
            for metric in presented.tabled:
                history = store.curve(run["run_id"], metric)
                for event, step in (("mem", run["steps_to_memorise"]), ("grok", run["steps_to_grok"])):
                    if pd.notna(step) and int(step) in history:
                        values.setdefault(f"{metric}@{event}", []).append(history[int(step)])
        row = [group.label, *map(value_text, group.by)]
        for metric in presented.tabled:
            for event in ("mem", "grok"):
                found = values.get(f"{metric}@{event}")
                row.append(fmt(float(pd.Series(found).median())) if found else "—")
        table.rows.append(row)
    return table if table.rows else None
