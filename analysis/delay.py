"""The memorise→grok delay against the initialisation scale, per method (MNIST): where grokking appears as α grows,
and whether a method removes the delay (groks within one evaluation of memorising, or before) or only shortens it."""

from __future__ import annotations

import pandas as pd

from analysis.cells import cell_text, fmt
from analysis.groups import RunGroup, run_groups
from analysis.output import Table
from analysis.runs import FINISHED, setting_name, value_text, varied_task_settings
from analysis.science_figures import grok_and_delay
from analysis.stats import cell, median_or_bound


def no_delay(runs: pd.DataFrame) -> pd.Series:
    """Grokked before memorising (or without it), or at most one evaluation after; a run whose evaluation interval
    is not recorded counts only the first."""
    grokked = runs["status"] == "grokked"
    gap = runs["epochs_to_grok"] - runs["epochs_to_memorise"].fillna(runs["epochs_to_grok"])
    return grokked & ((gap <= 0) | (gap <= runs["eval_every"]))


def delay_table(runs: pd.DataFrame) -> Table | None:
    runs = runs[(runs["task"] == "mnist") & runs["status"].isin(FINISHED)]
    if runs["init_scale"].nunique() < 2:
        return None
    varied = varied_task_settings(runs)
    headers = ["Method", "loss", *map(setting_name, varied), "init", "grokked", "steps to memorise", "delay (steps)"]
    headers += ["no delay", "delay ÷ baseline's"]
    table = Table("init_scale_delay", "The memorise→grok delay against the initialisation scale α", headers)
    groups = run_groups(runs, by=("loss", *varied, "init_scale"))
    baselines = {g.by: median_delay(g.runs) for g in groups if g.method == "baseline" and not g.runs["variant"].any()}
    for group in groups:
        row, (median, bound) = delay_row(group, baselines.get(group.by))
        table.rows.append([group.label, *map(value_text, group.by[:-1]), f"{group.by[-1]:g}", *row])
        table.stats.append({"method": group.method, "delay_median": median, "delay_median_is_bound": bound})
    table.notes += [
        "delay: optimiser steps from memorised (train accuracy ≥ 0.99) to grokked, 0 for a trial that grokked before "
        "it memorised; a censored trial's delay is censored where it ended (counted from its memorisation, or from "
        "its start where it never memorised): mean ± std (median) where every seed grokked, else the Kaplan–Meier "
        "median, or > t",
        "no delay: seeds that grokked within one evaluation of memorising (or before): a method that removes the "
        "delay has all its seeds here; one that only shortens it has a smaller delay than the baseline's",
        "delay ÷ baseline's: the ratio of the medians at the same α and loss (≤ where the baseline's is a bound)",
    ]
    return table


def median_delay(runs: pd.DataFrame) -> tuple[float | None, bool]:
    """The median delay, and whether it is only a lower bound (the Kaplan–Meier curve never fell to 1/2)."""
    _, delay = grok_and_delay(runs)
    return median_or_bound(delay.tolist(), (runs["status"] == "grokked").tolist())


def delay_row(
    group: RunGroup, baseline: tuple[float | None, bool] | None
) -> tuple[list[str], tuple[float | None, bool]]:
    """The row's cells, and its median delay with whether that is only a lower bound."""
    runs = group.runs
    _, delay = grok_and_delay(runs)
    observed = (runs["status"] == "grokked").tolist()
    median, bound = median_delay(runs)
    memorised = runs["steps_to_memorise"].dropna().tolist()
    cells = [
        f"{sum(observed)}/{len(runs)}",
        f"{len(memorised)}/{len(runs)}: " + cell_text(cell(memorised, [True] * len(memorised))),
        cell_text(cell(delay.tolist(), observed)),
        f"{int(no_delay(runs).sum())}/{len(runs)}",
        ratio_text(median, bound, baseline) if group.method != "baseline" else "—",
    ]
    return cells, (median, bound)


def ratio_text(median: float | None, bound: bool, baseline: tuple[float | None, bool] | None) -> str:
    """The method's median delay over the baseline's; ≤ where only the baseline's is a lower bound."""
    if baseline is None or not baseline[0] or median is None or bound:
        return "—"
    return ("≤ " if baseline[1] else "") + fmt(median / baseline[0])
