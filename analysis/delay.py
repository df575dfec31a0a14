"""The memorise→grok delay against the initialisation scale, per method: where grokking appears as α grows, and
whether a method removes the delay (groks within one evaluation of memorising, or before) or only shortens it."""

from __future__ import annotations

import pandas as pd

from analysis.cells import cell_text, fmt
from analysis.groups import METHOD_NAMES, method_rank
from analysis.output import Table
from analysis.science_figures import grok_and_delay
from analysis.stats import cell, median_or_bound


def no_delay(runs: pd.DataFrame) -> pd.Series:
    """Grokked at most one evaluation after memorising (or before it, or without memorising first)."""
    grokked = runs["status"] == "grokked"
    gap = runs["epochs_to_grok"] - runs["epochs_to_memorise"].fillna(runs["epochs_to_grok"])
    return grokked & (gap <= runs["eval_every"])


def delay_table(runs: pd.DataFrame) -> Table | None:
    runs = runs[runs["status"].isin(["grokked", "censored"])]
    if runs["init_scale"].nunique() < 2:
        return None
    headers = ["Method", "loss", "init", "grokked", "steps to memorise", "delay (steps)", "no delay"]
    headers += ["delay ÷ baseline's"]
    table = Table("init_scale_delay", "The memorise→grok delay against the initialisation scale α", headers)
    baselines = {}
    keys = sorted(runs.groupby(["method", "loss", "init_scale"]).groups, key=lambda k: (method_rank(k[0]), k[1:]))
    for method, loss, init in keys:
        group = runs[(runs["method"] == method) & (runs["loss"] == loss) & (runs["init_scale"] == init)]
        _, delay = grok_and_delay(group)
        observed = (group["status"] == "grokked").tolist()
        median, bound = median_or_bound(delay.tolist(), observed)
        if method == "baseline":
            baselines[(loss, init)] = (median, bound)
        base = baselines.get((loss, init))
        ratio = "—"
        if method != "baseline" and base and base[0] and median is not None and not (bound or base[1]):
            ratio = fmt(median / base[0])
        memorised = group["steps_to_memorise"].notna()
        table.rows.append(
            [
                METHOD_NAMES.get(method, method),
                loss,
                f"{init:g}",
                f"{sum(observed)}/{len(group)}",
                f"{memorised.sum()}/{len(group)}: "
                + cell_text(cell(group["steps_to_memorise"][memorised].tolist(), [True] * int(memorised.sum()))),
                cell_text(cell(delay.tolist(), observed)),
                f"{int(no_delay(group).sum())}/{len(group)}",
                ratio,
            ]
        )
        table.stats.append({"method": method, "loss": loss, "init_scale": init, "delay_median": median})
    table.notes += [
        "delay: optimiser steps from memorised (train accuracy ≥ 0.99) to grokked, 0 for a trial that grokked before "
        "it memorised; a censored trial's delay is censored where it ended (counted from its memorisation, or from "
        "its start where it never memorised): mean ± std (median) where every seed grokked, else the Kaplan–Meier "
        "median, or > t",
        "no delay: seeds that grokked within one evaluation of memorising (or before): a method that removes the "
        "delay has all its seeds here; one that only shortens it has a smaller delay than the baseline's",
        "delay ÷ baseline's: the ratio of the medians at the same α and loss, where neither is a bound",
    ]
    return table
